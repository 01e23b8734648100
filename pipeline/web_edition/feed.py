"""The Atom feed (``feed.xml``), made by feedgen: a well-kept library whose output feed
readers accept, rather than a template that must get Atom's rules right by hand."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from feedgen.feed import FeedGenerator

from pipeline.config import Settings
from pipeline.web_edition.urls import site_url

# Characters XML 1.0 forbids (lxml refuses them with a ValueError): a form feed or vertical tab
# pasted from a word processor is legal in HTML but would stop the whole archive at the feed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_text(text: str) -> str:
    """``text`` with the characters XML cannot hold made spaces."""
    return _NOT_XML.sub(" ", text)


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
    generator.title(xml_text(settings.name))
    generator.author({"name": xml_text(author)})
    generator.link(href=root, rel="alternate")
    generator.link(href=f"{root}feed.xml", rel="self")
    generator.language(settings.language)
    generator.updated(max((item.published for item in items), default=now))
    for item in items:
        entry = generator.add_entry(order="append")
        entry.id(item.url)
        entry.title(xml_text(item.title))
        entry.link(href=item.url, rel="alternate")
        entry.published(item.published)
        entry.updated(item.published)
        if item.summary:
            entry.summary(xml_text(item.summary))
        entry.content(xml_text(item.body), type="html")
    return bytes(generator.atom_str(pretty=True))
