"""What Brevo tells us after a send: its transactional webhooks.

Verification: Brevo signs nothing; a webhook URL may carry HTTP basic auth, or Brevo sends a
bearer token it was given (https://developers.brevo.com/docs/how-to-secure-webhooks).  Either
must match ``NEWSLETTER_WEBHOOK_SECRET`` (``user:password``; the bearer token is that whole
string).

Payload: https://developers.brevo.com/docs/transactional-webhooks (one JSON object per
event, or an array of them when batched: ``event``, ``email``, ``message-id``, ``tags``,
``tag``, ``reason``, ``ts_epoch`` in milliseconds; no event id of its own, so the raw event
is hashed).  Our sender puts the issue slug as the first of ``tags`` (brevo.py).
The mapping follows anymail/webhooks/brevo.py.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pipeline.config import Settings
from pipeline.delivery.provider import Options, require_secret
from pipeline.delivery.providers import brevo
from pipeline.delivery.providers.http import api_url
from pipeline.events.base import (
    Bounce,
    EventType,
    Nonce,
    ProviderEvent,
    Refused,
    WebhookRequest,
    as_json,
    basic_auth_secret,
    check_basic_auth,
    from_iso,
    from_unix,
    obj,
    raw_hash,
    text,
)
from pipeline.events.sync import ListClient, SyncError

EVENTS: dict[str, tuple[EventType, Bounce | None]] = {
    "delivered": (EventType.DELIVERED, None),
    "hard_bounce": (EventType.BOUNCED, Bounce.HARD),
    "invalid_email": (EventType.BOUNCED, Bounce.HARD),
    "soft_bounce": (EventType.BOUNCED, Bounce.SOFT),
    "deferred": (EventType.DEFERRED, None),
    "blocked": (EventType.REJECTED, None),
    "error": (EventType.REJECTED, None),
    "spam": (EventType.COMPLAINED, None),
    "complaint": (EventType.COMPLAINED, None),
    "unsubscribe": (EventType.UNSUBSCRIBED, None),
    "unsubscribed": (EventType.UNSUBSCRIBED, None),
    "opened": (EventType.OPENED, None),
    "unique_opened": (EventType.OPENED, None),
    "click": (EventType.CLICKED, None),
}


class BrevoWebhook:
    provider = "brevo"

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def verify(self, request: WebhookRequest, now: float) -> Nonce | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            if not hmac.compare_digest(token.strip().encode(), self.secret.encode()):
                raise Refused(
                    "its token is not NEWSLETTER_WEBHOOK_SECRET: give Brevo the same user:password"
                )
            return None
        check_basic_auth(request, self.secret, self.provider)
        return None

    def parse(self, request: WebhookRequest) -> list[ProviderEvent]:
        raw = request.json()
        items = raw if isinstance(raw, list) else [raw]
        events = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("event"), str):
                raise Refused("not a Brevo webhook: no event", 400)
            event = parse_event(item)
            if event:
                events.append(event)
        return events


def parse_event(raw: Mapping[str, Any]) -> ProviderEvent | None:
    found = EVENTS.get(raw["event"])
    if found is None:
        return None  # "request" (queued), list events: nothing about delivery
    kind, bounce = found
    email = text(raw.get("email"))
    if not email:
        raise Refused(f"a Brevo {raw['event']} event without an address", 400)
    tags = raw.get("tags")
    issue = tags[0] if isinstance(tags, list) and tags else raw.get("tag")
    # ts_epoch is milliseconds and UTC; ts and date follow the account's time zone.
    epoch = raw.get("ts_epoch")
    return ProviderEvent(
        provider="brevo",
        event_id=raw_hash("brevo", raw),
        type=kind,
        email=email,
        issue=text(issue) or None,
        message_id=text(raw.get("message-id")) or None,
        bounce=bounce,
        reason=text(raw.get("reason")),
        occurred_at=from_unix(epoch / 1000) if isinstance(epoch, (int, float)) else None,
        raw=as_json(raw),
    )


def webhook(settings: Settings, environ: Mapping[str, str]) -> BrevoWebhook:
    return BrevoWebhook(basic_auth_secret(environ, "brevo"))


# Suppression list ---------------------------------------------------------------------------
# https://developers.brevo.com/reference/get-transac-blocked-contacts
# (GET /v3/smtp/blockedContacts?limit=&offset=: ``{"count", "contacts": [{"email",
# "senderEmail", "reason": {"code", "message"}, "blockedAt"}]}``, 100 at most a page; 429
# with ``x-sib-ratelimit-reset`` in seconds).

PAGE = 100
BLOCK_REASONS: dict[str, tuple[EventType, Bounce | None]] = {
    "hardBounce": (EventType.BOUNCED, Bounce.HARD),
    "contactFlaggedAsSpam": (EventType.COMPLAINED, None),
    "unsubscribedViaEmail": (EventType.UNSUBSCRIBED, None),
    "unsubscribedViaMA": (EventType.UNSUBSCRIBED, None),
    "unsubscribedViaApi": (EventType.UNSUBSCRIBED, None),
    "adminBlocked": (EventType.REJECTED, None),  # blocked by a person at Brevo: noted only
}


class BrevoSuppressions:
    lists = ("blocked contacts",)

    def __init__(self, client: ListClient) -> None:
        self.client = client

    def read(self) -> Iterator[ProviderEvent]:
        offset = 0
        while True:
            page = obj(
                self.client.get("/v3/smtp/blockedContacts", {"limit": PAGE, "offset": offset})
            )
            contacts = page.get("contacts")
            if not isinstance(contacts, list):
                raise SyncError("Brevo's blocked contacts answer has no contacts list")
            for item in contacts:
                item = obj(item)
                reason = obj(item.get("reason"))
                found = BLOCK_REASONS.get(text(reason.get("code")))
                email = text(item.get("email"))
                if found is None or not email:
                    continue
                kind, bounce = found
                yield ProviderEvent(
                    provider="brevo",
                    event_id=f"suppression:{email.lower()}:{reason.get('code')}:{item.get('blockedAt')}",
                    type=kind,
                    email=email,
                    issue=None,
                    message_id=None,
                    bounce=bounce,
                    reason=f"blocked at Brevo: {text(reason.get('message')) or reason.get('code')}",
                    occurred_at=from_iso(item.get("blockedAt")),
                    raw=as_json(item),
                )
            offset += len(contacts)
            total = page.get("count")
            if len(contacts) < PAGE or (isinstance(total, int) and offset >= total):
                return

    def close(self) -> None:
        self.client.close()


def suppressions(
    settings: Settings, environ: Mapping[str, str], sleep: Callable[[float], None]
) -> BrevoSuppressions:
    options = Options(settings, brevo.OPTIONS)
    key = require_secret(environ, "BREVO_API_KEY", "brevo")
    client = ListClient(
        "Brevo",
        api_url(options, brevo.API_URL),
        {"api-key": key},
        reset_header="x-sib-ratelimit-reset",
        sleep=sleep,
    )
    return BrevoSuppressions(client)
