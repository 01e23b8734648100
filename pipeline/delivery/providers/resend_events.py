"""What Resend tells us after a send: its webhooks, signed by Svix.

Verification: https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests, the Svix
scheme (https://docs.svix.com/receiving/verifying-payloads/how-manual, the same as Standard
Webhooks): ``svix-signature`` holds space-separated ``v1,<base64>`` HMAC-SHA256 signatures of
``{svix-id}.{svix-timestamp}.{raw body}`` under the base64 key after ``whsec_`` in
``RESEND_WEBHOOK_SECRET``; a timestamp more than five minutes from now is refused.  These few
lines are checked against the Standard Webhooks test vector in tests/test_webhooks.py.

Payload: https://resend.com/docs/dashboard/webhooks/event-types (``type`` email.delivered |
email.bounced (``data.bounce.type`` Permanent | Transient | Undetermined) |
email.delivery_delayed | email.complained | email.opened | email.clicked | email.failed;
``data.email_id``, ``data.to``, ``data.tags``, ``data.headers``).  ``svix-id`` is the same
for every retry of one event: it is the event id.  Our sender tags each email ``issue`` and
sets ``X-Newsletter-Issue`` (resend.py).  The mapping follows anymail/webhooks/resend.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any

from pipeline.config import Settings
from pipeline.events.base import (
    Bounce,
    EventType,
    Nonce,
    NotConfigured,
    ProviderEvent,
    Refused,
    WebhookRequest,
    as_json,
    check_age,
    from_iso,
    listed_header,
    obj,
    text,
)
from pipeline.messages.compose import ISSUE_HEADER

TOLERANCE = 5 * 60  # Svix's own default

EVENTS: dict[str, tuple[EventType, Bounce | None]] = {
    "email.delivered": (EventType.DELIVERED, None),
    "email.bounced": (EventType.BOUNCED, Bounce.HARD),
    "email.delivery_delayed": (EventType.DEFERRED, None),
    "email.complained": (EventType.COMPLAINED, None),
    "email.opened": (EventType.OPENED, None),
    "email.clicked": (EventType.CLICKED, None),
    "email.failed": (EventType.REJECTED, None),
    "email.suppressed": (EventType.REJECTED, None),
}


def svix_signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message (Svix / Standard Webhooks)."""
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def svix_key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.strip().removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise NotConfigured(
            "RESEND_WEBHOOK_SECRET is not a whsec_... signing secret"
            " (copy it from Resend: Webhooks > your endpoint > Signing secret)"
        ) from None


class ResendWebhook:
    provider = "resend"

    def __init__(self, key: bytes) -> None:
        self.key = key

    def verify(self, request: WebhookRequest, now: float) -> Nonce | None:
        msg_id = request.header("svix-id")
        timestamp = request.header("svix-timestamp")
        given = request.header("svix-signature").split()
        expected = svix_signature(self.key, msg_id, timestamp, request.body).encode()
        # Several signatures are sent while a secret is being rotated: one must match.
        if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in given):
            raise Refused("wrong Svix signature")
        check_age(timestamp, now, TOLERANCE, "the svix-timestamp")
        return None

    def parse(self, request: WebhookRequest) -> list[ProviderEvent]:
        raw = request.json()
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            raise Refused("not a Resend webhook: no type", 400)
        event = parse_event(raw, request.header("svix-id"))
        return [event] if event else []


def _issue(data: Mapping[str, Any]) -> str | None:
    found = listed_header(data.get("headers"), ISSUE_HEADER)
    if found:
        return found
    tags = data.get("tags")
    if isinstance(tags, dict):
        return text(tags.get("issue")) or None
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, dict) and tag.get("name") == "issue":
                return text(tag.get("value")) or None
    return None


def parse_event(raw: Mapping[str, Any], svix_id: str) -> ProviderEvent | None:
    found = EVENTS.get(raw["type"])
    if found is None:
        return None  # email.sent, contact and domain events
    kind, bounce = found
    data = raw.get("data")
    if not isinstance(data, dict):
        raise Refused(f"a Resend {raw['type']} event without data", 400)
    if kind is EventType.BOUNCED and obj(data.get("bounce")).get("type") != "Permanent":
        bounce = Bounce.SOFT
    # Resend sends an event per recipient without naming which; ours have one "to" each.
    to = data.get("to")
    email = parseaddr(text(to[0]) if isinstance(to, list) and to else text(to))[1]
    if not email:
        raise Refused(f"a Resend {raw['type']} event without an address", 400)
    reason = text(obj(data.get("bounce")).get("message"))
    return ProviderEvent(
        provider="resend",
        event_id=svix_id,
        type=kind,
        email=email,
        issue=_issue(data),
        message_id=text(data.get("email_id")) or None,
        bounce=bounce,
        reason=reason,
        occurred_at=from_iso(raw.get("created_at")),
        raw=as_json(raw),
    )


def webhook(settings: Settings, environ: Mapping[str, str]) -> ResendWebhook:
    secret = environ.get("RESEND_WEBHOOK_SECRET", "").strip()
    if not secret:
        raise NotConfigured(
            "resend webhooks need RESEND_WEBHOOK_SECRET (Resend: Webhooks > your endpoint >"
            " Signing secret, whsec_...)"
        )
    key = svix_key(secret)
    if len(key) < 16:
        raise NotConfigured(
            "RESEND_WEBHOOK_SECRET is too short to be a signing secret"
            " (copy it from Resend: Webhooks > your endpoint > Signing secret)"
        )
    return ResendWebhook(key)
