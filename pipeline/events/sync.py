"""``newsletter suppressions sync``: the provider's own suppression lists -> events -> the list.

For a practice with no public server (no webhooks), the provider still knows who bounced,
complained or unsubscribed.  Each provider's module reads its lists (``suppressions`` in
``<name>_events.py``), page by page, and yields them as ``ProviderEvent``s whose ids are
derived from the entry (list, address, time): stored once like webhook events, so a second
sync adds nothing, and applied the same way (the list writer, the consent history).

``ListClient`` is what the readers share: one ``requests`` session, GETs that wait out a
429 (``Retry-After`` or the provider's reset header) and retry a 5xx a few times, and an error
naming the provider and the status for anything else.  It only follows paging links on the
API's own host: the key never goes anywhere else.  And it ends every sync: a provider (or
something answering in its place) that sends the same page again, or more pages than any
practice's list could fill, is stopped with an error instead of being read forever.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from pipeline.config import Settings
from pipeline.delivery.providers.http import (
    USER_AGENT,
    error_text,
    reset_seconds,
    retry_after_seconds,
)
from pipeline.errors import NewsletterError
from pipeline.events.apply import Applied, apply_pending
from pipeline.events.base import ProviderEvent
from pipeline.ledger.events import store
from pipeline.ledger.store import Ledger

MAX_ATTEMPTS = 6
MAX_WAIT = 120.0  # seconds: a reset further away than this is reported, not slept through
# Pages read in one sync, every list together: 5,000 pages of 100 (Brevo's smallest) is half a
# million suppressed addresses, far beyond a practice's list; endless paging stops here.
MAX_PAGES = 5_000


# The secret each provider's list API refused, to name in a 401 or 403.
KEY_VARIABLES = {
    "Postmark": "POSTMARK_SERVER_TOKEN",
    "SendGrid": "SENDGRID_API_KEY",
    "Mailgun": "MAILGUN_API_KEY",
    "Brevo": "BREVO_API_KEY",
    "Amazon SES": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
}


class SyncError(NewsletterError):
    """The provider's suppression API refused or failed; nothing was changed by this page."""


Sign = Callable[[str, str], dict[str, str]]  # (method, url) -> extra headers (SigV4)


class ListClient:
    def __init__(
        self,
        provider: str,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        *,
        auth: tuple[str, str] | None = None,
        sign: Sign | None = None,
        reset_header: str = "",
        reset_epoch: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 30,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self.session.headers.update(dict(headers or {}))
        self.session.auth = auth
        self.sign = sign
        self.reset_header, self.reset_epoch = reset_header, reset_epoch
        self.sleep = sleep
        self.timeout = timeout
        self.max_pages = max_pages
        self.pages = 0
        self.seen: set[tuple[str, str]] = set()  # (path, digest of a page's body)

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            if urlsplit(path_or_url).netloc != self.host:
                raise SyncError(
                    f"{self.provider} pointed its next page at another host"
                    f" ({urlsplit(path_or_url).netloc}); stopped there"
                )
            return path_or_url
        return self.base_url + path_or_url

    def unreachable(self, url: str, exc: requests.RequestException) -> str:
        """In words she can act on: the exception's class name ("ConnectionError") is not."""
        host = urlsplit(url).netloc
        if isinstance(exc, requests.Timeout):
            what = f"no answer from {host} within {self.timeout:g} seconds"
        elif isinstance(exc, requests.exceptions.SSLError):
            what = f"the secure connection to {host} failed"
        elif isinstance(exc, requests.ConnectionError):
            what = f"no connection to {host}"
        else:
            what = f"the request to {host} failed"
        return (
            f"could not reach {self.provider} after {MAX_ATTEMPTS} tries ({what}): check this"
            " computer's internet connection and the provider's status page, then run again"
        )

    def get(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> Any:
        url = self.url(path_or_url)
        if self.pages >= self.max_pages:
            raise SyncError(
                f"{self.provider} kept sending pages ({self.max_pages:,} read); stopped there:"
                " run the sync again later"
            )
        self.pages += 1
        for attempt in range(1, MAX_ATTEMPTS + 1):
            prepared = requests.Request("GET", url, params=params).prepare()
            assert prepared.url is not None
            headers = self.sign("GET", prepared.url) if self.sign else {}
            try:
                answer = self.session.get(url, params=params, headers=headers, timeout=self.timeout)
            except requests.RequestException as exc:
                if attempt == MAX_ATTEMPTS:
                    raise SyncError(self.unreachable(url, exc)) from None
                self.sleep(min(2**attempt, 30))
                continue
            status = answer.status_code
            if status == 200:
                try:
                    found = answer.json()
                except ValueError:
                    raise SyncError(f"{self.provider} answered 200 without JSON") from None
                # A page of a list is never sent twice: the same body again means the paging
                # goes round in a circle (an offset ignored, a token that never changes).
                page = (urlsplit(url).path, hashlib.sha256(answer.content).hexdigest())
                if page in self.seen:
                    raise SyncError(
                        f"{self.provider} sent the same page of its list again; stopped there:"
                        " run the sync again later"
                    )
                self.seen.add(page)
                return found
            if (status == 429 or status >= 500) and attempt < MAX_ATTEMPTS:
                wait = None
                if status == 429 and self.reset_header:
                    wait = reset_seconds(answer, self.reset_header, epoch=self.reset_epoch)
                elif status == 429:
                    wait = retry_after_seconds(answer.headers.get("Retry-After"))
                wait = min(2**attempt, 30) if wait is None else wait
                if wait > MAX_WAIT:
                    raise SyncError(
                        f"{self.provider} asks to wait {wait:.0f} seconds (rate limit): try later"
                    )
                self.sleep(wait)
                continue
            hint = ""
            if status in (401, 403) and self.provider in KEY_VARIABLES:
                # The one thing she can change: the key she put in the environment.
                hint = (
                    f": check {KEY_VARIABLES[self.provider]} in the environment (and that"
                    " the key may read suppressions)"
                )
            raise SyncError(
                f"{self.provider} refused the suppression list request"
                f" (HTTP {status}: {error_text(answer)}){hint}"
            )
        raise SyncError(f"{self.provider} kept failing; try later")  # pragma: no cover

    def close(self) -> None:
        self.session.close()


class SuppressionReader(Protocol):
    """One provider's suppression lists."""

    @property
    def lists(self) -> tuple[str, ...]:  # what it reads, for the report
        ...

    def read(self) -> Iterator[ProviderEvent]: ...

    def close(self) -> None: ...


@dataclass
class SyncReport:
    provider: str
    lists: tuple[str, ...]
    read: int = 0
    new: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    applied: Applied = field(default_factory=Applied)


def sync_suppressions(settings: Settings, ledger: Ledger, reader: SuppressionReader) -> SyncReport:
    """Read every entry, store the new ones, apply them; idempotent."""
    provider = settings.provider.name
    report = SyncReport(provider, reader.lists)
    batch: list[ProviderEvent] = []
    for event in reader.read():
        report.read += 1
        report.by_type[event.type.value] = report.by_type.get(event.type.value, 0) + 1
        batch.append(event)
        if len(batch) >= 1000:
            report.new += store(ledger, batch)
            batch = []
    if batch:
        report.new += store(ledger, batch)
    report.applied = apply_pending(settings, ledger)
    return report
