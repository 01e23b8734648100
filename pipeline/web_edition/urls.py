"""Where the web edition lives: one place, so an email's "View in browser" link and the page
the archive writes can never disagree."""

from __future__ import annotations

from urllib.parse import quote

from pipeline.config import Settings


def issue_path(slug: str) -> str:
    """The slug as one URL path segment: a file named with spaces or accents still links."""
    return quote(slug, safe="")


def issue_url(settings: Settings, slug: str) -> str:
    """The public address of an issue's page (``site/issues/<slug>/index.html``)."""
    return f"{settings.archive.url}{issue_path(slug)}/"


def site_url(settings: Settings) -> str:
    """The address of the site's root (``site/index.html``): the folder above ``issues/``."""
    return settings.archive.url.removesuffix("issues/")


def signup_url(settings: Settings) -> str:
    """Where "Sign up" points: ``[signup] url``, or the web app's signup page."""
    return settings.archive.signup_url or f"{settings.base_url}/subscribe"
