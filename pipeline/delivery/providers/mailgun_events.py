"""What Mailgun tells us after a send: its webhooks.

Verification: https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks
(the JSON body's ``signature`` block: ``timestamp``, ``token`` and ``signature``, the hex
HMAC-SHA256 of timestamp + token under the HTTP webhook signing key,
``MAILGUN_WEBHOOK_SIGNING_KEY``).  The signature does not cover the body, so, as the docs
advise, a token is accepted once (with the body it came with) and a timestamp too far from
now is refused: a captured signature cannot be put on another body.

Payload: https://documentation.mailgun.com/docs/mailgun/user-manual/events/webhooks/
(``event-data``: ``event`` delivered | failed (``severity`` permanent or temporary) | opened
| clicked | unsubscribed | complained | rejected, ``id``, ``timestamp``, ``recipient``,
``message.headers.message-id``, ``user-variables``, ``tags``, ``delivery-status``).  Our
sender sets ``v:issue`` and the tag to the issue slug (mailgun.py).  The mapping follows
anymail/webhooks/mailgun.py.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from pipeline.config import Settings
from pipeline.delivery.provider import Options, require_secret
from pipeline.delivery.providers import mailgun
from pipeline.events.base import (
    Bounce,
    EventType,
    Nonce,
    NotConfigured,
    ProviderEvent,
    Refused,
    WebhookRequest,
    as_json,
    body_hash,
    check_age,
    from_unix,
    obj,
    text,
)
from pipeline.events.sync import ListClient, SyncError

# A quarter of an hour allows for clock skew and Mailgun's first retries; an event refused
# as stale is not lost for good: ``newsletter suppressions sync`` reads Mailgun's lists.
TOLERANCE = 15 * 60

EVENTS = {
    "delivered": EventType.DELIVERED,
    "failed": EventType.BOUNCED,
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "complained": EventType.COMPLAINED,
    "rejected": EventType.REJECTED,
}

# Mailgun's HTTP webhook signing keys are 32 characters or more.
MIN_KEY = 16


class MailgunWebhook:
    provider = "mailgun"

    def __init__(self, signing_key: str) -> None:
        self.signing_key = signing_key.encode("utf-8")

    def verify(self, request: WebhookRequest, now: float) -> Nonce | None:
        raw = request.json()
        block = raw.get("signature") if isinstance(raw, dict) else None
        if not isinstance(block, dict):
            raise Refused("no Mailgun signature block")
        timestamp, token, signature = (
            str(block.get(name, "")) for name in ("timestamp", "token", "signature")
        )
        if not (timestamp and token and signature):
            raise Refused("the Mailgun signature block is incomplete")
        expected = hmac.new(
            self.signing_key, f"{timestamp}{token}".encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Refused("wrong Mailgun signature")
        check_age(timestamp, now, TOLERANCE, "the Mailgun timestamp")
        return Nonce(token, body_hash(request.body))

    def parse(self, request: WebhookRequest) -> list[ProviderEvent]:
        raw = request.json()
        data = raw.get("event-data") if isinstance(raw, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            raise Refused("not a Mailgun webhook: no event-data", 400)
        event = parse_event(data)
        return [event] if event else []


def message_id(value: Any) -> str | None:
    """Mailgun's message id as its send API returned it (the ledger's), in angle brackets."""
    found = text(value)
    if not found:
        return None
    return found if found.startswith("<") else f"<{found}>"


def parse_event(data: Mapping[str, Any]) -> ProviderEvent | None:
    kind = EVENTS.get(data["event"])
    if kind is None:
        return None  # accepted, stored, list events
    bounce: Bounce | None = None
    if kind is EventType.BOUNCED:
        bounce = Bounce.SOFT if data.get("severity") == "temporary" else Bounce.HARD
    message = data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    email = text(data.get("recipient"))
    if not email and isinstance(headers, dict):
        email = text(headers.get("to"))
    if not email:
        raise Refused(f"a Mailgun {data['event']} event without a recipient", 400)
    variables = data.get("user-variables")
    tags = data.get("tags")
    issue = (variables.get("issue") if isinstance(variables, dict) else None) or (
        tags[0] if isinstance(tags, list) and tags else None
    )
    status = data.get("delivery-status")
    reason = ""
    if isinstance(status, dict):
        reason = text(status.get("description")) or text(status.get("message"))
    reason = reason or text(data.get("reason"))
    if not data.get("id"):
        raise Refused("a Mailgun event without an id", 400)
    return ProviderEvent(
        provider="mailgun",
        # ``id`` is unique within a day; with the event's time it is unique.
        event_id=f"{data['id']}:{data.get('timestamp')}",
        type=kind,
        email=email,
        issue=text(issue) or None,
        message_id=message_id(headers.get("message-id")) if isinstance(headers, dict) else None,
        bounce=bounce,
        reason=reason,
        occurred_at=from_unix(data.get("timestamp")),
        raw=as_json(data),
    )


def webhook(settings: Settings, environ: Mapping[str, str]) -> MailgunWebhook:
    key = environ.get("MAILGUN_WEBHOOK_SIGNING_KEY", "").strip()
    if not key:
        raise NotConfigured(
            "mailgun webhooks need MAILGUN_WEBHOOK_SIGNING_KEY (Mailgun: Sending > Webhooks >"
            " HTTP webhook signing key)"
        )
    if len(key) < MIN_KEY:
        # A placeholder ("key", "test") is guessable, and then anyone can sign events.
        raise NotConfigured(
            f"MAILGUN_WEBHOOK_SIGNING_KEY is too short to be Mailgun's signing key (fewer than"
            f" {MIN_KEY} characters): copy it from Sending > Webhooks > HTTP webhook signing key"
        )
    return MailgunWebhook(key)


# Suppression lists --------------------------------------------------------------------------
# https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Bounces/
# (and Unsubscribe, Complaints): GET /v3/<domain>/bounces|unsubscribes|complaints?limit=
# answers ``{"items": [{"address", "code", "error", "created_at"}], "paging": {"next": URL,
# ...}}``; the next page is the ``paging.next`` URL, and an empty ``items`` ends the list.
# 429 carries ``X-RateLimit-Reset`` (a Unix time).

PAGE = 1000
LISTS: dict[str, tuple[EventType, Bounce | None]] = {
    "bounces": (EventType.BOUNCED, Bounce.HARD),
    "complaints": (EventType.COMPLAINED, None),
    "unsubscribes": (EventType.UNSUBSCRIBED, None),
}


class MailgunSuppressions:
    lists = tuple(LISTS)

    def __init__(self, client: ListClient, domain: str) -> None:
        self.client = client
        self.domain = domain

    def read(self) -> Iterator[ProviderEvent]:
        for name, (kind, bounce) in LISTS.items():
            url: str | None = f"/v3/{quote(self.domain, safe='')}/{name}"
            params: dict[str, int] | None = {"limit": PAGE}
            seen: set[str] = set()
            pages: set[str] = set()  # digests of the items of each page read
            while url and url not in seen:
                seen.add(url)
                page = obj(self.client.get(url, params))
                items = page.get("items")
                if not isinstance(items, list):
                    raise SyncError(f"Mailgun's {name} answer has no items list")
                if not items:
                    break
                # Each page carries its own paging links, so the client cannot see a page
                # repeated; the same items under a new `next` link forever is endless paging.
                digest = hashlib.sha256(as_json(items).encode()).hexdigest()
                if digest in pages:
                    raise SyncError(
                        "Mailgun sent the same page of its list again; stopped there:"
                        " run the sync again later"
                    )
                pages.add(digest)
                for item in items:
                    item = obj(item)
                    email = text(item.get("address"))
                    if not email:
                        continue
                    detail = text(item.get("error"))
                    yield ProviderEvent(
                        provider="mailgun",
                        event_id=f"suppression:{name}:{email.lower()}:{item.get('created_at')}",
                        type=kind,
                        email=email,
                        issue=None,
                        message_id=None,
                        bounce=bounce,
                        reason=f"on Mailgun's {name} list" + (f": {detail}" if detail else ""),
                        occurred_at=_rfc2822(item.get("created_at")),
                        raw=as_json(item),
                    )
                url = text(obj(page.get("paging")).get("next")) or None
                params = None  # the next URL carries them

    def close(self) -> None:
        self.client.close()


def _rfc2822(value: Any) -> datetime | None:
    try:
        return parsedate_to_datetime(text(value))
    except (TypeError, ValueError):
        return None


def suppressions(
    settings: Settings, environ: Mapping[str, str], sleep: Callable[[float], None]
) -> MailgunSuppressions:
    options = Options(settings, mailgun.OPTIONS)
    key = require_secret(environ, "MAILGUN_API_KEY", "mailgun")
    client = ListClient(
        "Mailgun",
        options.string("base_url", mailgun.API_URL),
        auth=("api", key),
        reset_header="X-RateLimit-Reset",
        reset_epoch=True,
        sleep=sleep,
    )
    domain = options.string("domain", settings.sender_address.rpartition("@")[2])
    return MailgunSuppressions(client, domain)
