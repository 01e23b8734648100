"""What every provider's events share: one vocabulary, the request, and refusing it.

A provider's webhook module turns its own payload into ``ProviderEvent``s (anymail's
``AnymailTrackingEvent`` is the model: one type per event, a per-provider mapping dict) and
checks its own signature.  The rest of the pipeline only ever sees ``ProviderEvent``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from pipeline.audience.subscribers import address_key, normalise_address


class EventType(StrEnum):
    DELIVERED = "delivered"
    BOUNCED = "bounced"  # with ``bounce``: hard (permanent) or soft (temporary)
    DEFERRED = "deferred"  # the provider is still trying
    COMPLAINED = "complained"  # marked as spam
    UNSUBSCRIBED = "unsubscribed"  # at the provider (its link, its list)
    OPENED = "opened"
    CLICKED = "clicked"
    REJECTED = "rejected"  # the provider would not send it (its suppression list, invalid)


class Bounce(StrEnum):
    HARD = "hard"
    SOFT = "soft"


@dataclass(frozen=True)
class ProviderEvent:
    provider: str
    event_id: str  # the provider's own id, or a hash of the raw event when it has none
    type: EventType
    email: str
    issue: str | None  # our issue slug, from our header, metadata or tag
    message_id: str | None  # the provider's message id (as the ledger's provider_id has it)
    bounce: Bounce | None = None
    reason: str = ""
    occurred_at: datetime | None = None
    raw: str = ""  # the provider's event, as JSON, kept in the ledger

    @property
    def key(self) -> str:
        """The reader's identity in the list and the ledger."""
        try:
            return address_key(normalise_address(self.email))
        except ValueError:
            return self.email.strip().lower()


class Refused(Exception):
    """An unverifiable or unreadable request: answered ``status``, nothing changes."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class WebhookRequest:
    headers: Mapping[str, str]  # names lower-cased
    body: bytes

    @classmethod
    def of(cls, headers: Iterable[tuple[str, str]], body: bytes) -> WebhookRequest:
        return cls({name.lower(): value for name, value in headers}, body)

    def header(self, name: str) -> str:
        """A required header; a request without it is refused."""
        value = self.headers.get(name.lower(), "").strip()
        if not value:
            raise Refused(f"the {name} header is missing")
        return value

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise Refused("the body is not JSON", 400) from None
        except RecursionError:  # "[[[[..." deep enough to exhaust the parser's stack
            raise Refused("the body nests too deeply", 400) from None


@dataclass(frozen=True)
class Nonce:
    """A one-time value the signature covers but the body does not (Mailgun's token): seen
    again with another body, the request is a replay and is refused."""

    value: str
    body_hash: str


class WebhookSource(Protocol):
    """One provider's webhook: ``verify`` raises Refused unless the request is genuine;
    ``parse`` (only called after) gives its events, or raises Refused(..., 400)."""

    provider: str

    def verify(self, request: WebhookRequest, now: float) -> Nonce | None: ...

    def parse(self, request: WebhookRequest) -> list[ProviderEvent]: ...


class NotConfigured(Exception):
    """The secret a provider's webhook needs is not set: its requests are all refused."""


def check_basic_auth(request: WebhookRequest, secret: str, provider: str) -> None:
    """HTTP basic auth against ``user:password`` (RFC 7617), compared in constant time.

    The reasons go to the app's log, where the operator reads them: each says what to change
    at the provider (the URL she gave it), never the secret itself."""
    url = f"https://USER:PASSWORD@your-site/webhooks/{provider}"
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Refused(
            f"no user:password came with it: the webhook URL at {provider.capitalize()} must"
            f" be {url}, with NEWSLETTER_WEBHOOK_SECRET's user and password"
        )
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        raise Refused("the user:password that came with it could not be read") from None
    if not hmac.compare_digest(given, secret.encode("utf-8")):
        raise Refused(
            f"its user:password is not NEWSLETTER_WEBHOOK_SECRET's: the webhook URL at"
            f" {provider.capitalize()} must be {url} with the same user and password"
        )


MIN_PASSWORD = 16


def basic_auth_secret(environ: Mapping[str, str], provider: str) -> str:
    """``user:password`` for providers that sign nothing; a short password is refused (it is
    all that stands between the internet and the list)."""
    secret = environ.get("NEWSLETTER_WEBHOOK_SECRET", "").strip()
    user, _, password = secret.partition(":")
    if not user or len(password) < MIN_PASSWORD:
        raise NotConfigured(
            f"{provider} webhooks need NEWSLETTER_WEBHOOK_SECRET set to user:password, the"
            f" password at least {MIN_PASSWORD} characters (put the same in the webhook URL:"
            f" https://user:password@your-site/webhooks/{provider})"
        )
    return secret


def check_age(timestamp: str, now: float, tolerance: float, what: str) -> None:
    """A signed timestamp too far from now (either way) is refused: a captured request
    cannot be replayed later."""
    try:
        moment = float(timestamp)
    except ValueError:
        raise Refused(f"{what} is not a Unix time") from None
    if abs(now - moment) > tolerance:
        raise Refused(f"{what} is stale (more than {int(tolerance)} seconds from now)")


def raw_hash(provider: str, raw: Any) -> str:
    """An event id for providers that give none: the same event posted again has the same."""
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(f"{provider}\0{text}".encode()).hexdigest()


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def as_json(raw: Any) -> str:
    return json.dumps(raw, ensure_ascii=False, separators=(",", ":"))


def from_unix(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def from_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def listed_header(headers: Any, name: str) -> str | None:
    """A header from a payload's ``[{"name": ..., "value": ...}]`` list (Resend, SES)."""
    if isinstance(headers, list):
        for header in headers:
            if isinstance(header, dict) and text(header.get("name")).lower() == name.lower():
                return text(header.get("value")) or None
    return None


def obj(value: Any) -> dict[str, Any]:
    """A JSON object from a payload, or an empty one if it is anything else."""
    return value if isinstance(value, dict) else {}
