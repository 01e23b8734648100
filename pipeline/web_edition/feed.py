"""The Atom feed (``feed.xml``), made by feedgen: a well-kept library whose output feed
readers accept, rather than a template that must get Atom's rules right by hand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from feedgen.feed import FeedGenerator

from pipeline.config import Settings
from pipeline.web_edition.urls import site_url


@dataclass(frozen=True)
class FeedItem:
    url: str
    title: str
    summary: str
    body: str  # HTML
    published: datetime  # aware


def atom_feed(settings: Settings, author: str, items: Sequence[FeedItem], now: datetime) -> bytes:
    """Newest first.  ``updated`` is the newest issue's date (``now`` only for an empty feed),
    so an unchanged archive writes the same bytes and uploads nothing new."""
    root = site_url(settings)
    generator = FeedGenerator()
    generator.id(root)
    generator.title(settings.name)
    generator.author({"name": author})
    generator.link(href=root, rel="alternate")
    generator.link(href=f"{root}feed.xml", rel="self")
    generator.language(settings.language)
    generator.updated(max((item.published for item in items), default=now))
    for item in items:
        entry = generator.add_entry(order="append")
        entry.id(item.url)
        entry.title(item.title)
        entry.link(href=item.url, rel="alternate")
        entry.published(item.published)
        entry.updated(item.published)
        if item.summary:
            entry.summary(item.summary)
        entry.content(item.body, type="html")
    return bytes(generator.atom_str(pretty=True))
