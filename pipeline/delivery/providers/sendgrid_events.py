"""What SendGrid tells us after a send: its Event Webhook.

Verification: the Signed Event Webhook,
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
(an ECDSA P-256 / SHA-256 signature, base64 DER, in ``X-Twilio-Email-Event-Webhook-Signature``,
over the ``X-Twilio-Email-Event-Webhook-Timestamp`` value followed by the raw body; the
verification key the dashboard shows is a base64 DER public key:
``SENDGRID_WEBHOOK_VERIFICATION_KEY``).  A timestamp too far from now is refused.

Payload: https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event (a JSON
array; each event has ``event``, ``email``, ``timestamp``, ``sg_event_id``,
``sg_message_id`` (the send's ``X-Message-Id``, a dot, then a filter suffix), ``reason``,
and our ``custom_args`` at the top level: ``issue`` and ``newsletter_key``, sendgrid.py).
``bounce`` events have ``type`` ``bounce`` (permanent) or ``blocked`` (temporary).
The mapping follows anymail/webhooks/sendgrid.py.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from pipeline.config import Settings
from pipeline.delivery.provider import Options, require_secret
from pipeline.delivery.providers import sendgrid
from pipeline.delivery.providers.http import api_url
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
    from_unix,
    obj,
    raw_hash,
    text,
)
from pipeline.events.sync import ListClient, SyncError

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
# Ten minutes allows for clock skew and a slow queue; an event refused as stale is not lost
# for good: ``newsletter suppressions sync`` reads SendGrid's lists.
TOLERANCE = 10 * 60

EVENTS: dict[str, tuple[EventType, Bounce | None]] = {
    "delivered": (EventType.DELIVERED, None),
    "deferred": (EventType.DEFERRED, None),
    "bounce": (EventType.BOUNCED, Bounce.HARD),
    "dropped": (EventType.REJECTED, None),
    "spamreport": (EventType.COMPLAINED, None),
    "unsubscribe": (EventType.UNSUBSCRIBED, None),
    "group_unsubscribe": (EventType.UNSUBSCRIBED, None),
    "open": (EventType.OPENED, None),
    "click": (EventType.CLICKED, None),
}


class SendGridWebhook:
    provider = "sendgrid"

    def __init__(self, public_key: ec.EllipticCurvePublicKey) -> None:
        self.public_key = public_key

    def verify(self, request: WebhookRequest, now: float) -> Nonce | None:
        signature = request.header(SIGNATURE)
        timestamp = request.header(TIMESTAMP)
        try:
            der = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise Refused("the SendGrid signature is not base64") from None
        try:
            self.public_key.verify(
                der, timestamp.encode("utf-8") + request.body, ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature:
            raise Refused("wrong SendGrid signature") from None
        check_age(timestamp, now, TOLERANCE, "the SendGrid timestamp")
        return None

    def parse(self, request: WebhookRequest) -> list[ProviderEvent]:
        raw = request.json()
        if not isinstance(raw, list):
            raise Refused("not a SendGrid event webhook: not a JSON array", 400)
        events = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("event"), str):
                raise Refused("not a SendGrid event: no event", 400)
            event = parse_event(item)
            if event:
                events.append(event)
        return events


def parse_event(raw: Mapping[str, Any]) -> ProviderEvent | None:
    found = EVENTS.get(raw["event"])
    if found is None:
        return None  # processed, group_resubscribe (a resubscribe needs the reader's consent)
    kind, bounce = found
    if kind is EventType.BOUNCED and raw.get("type") == "blocked":
        bounce = Bounce.SOFT
    email = text(raw.get("email"))
    if not email:
        raise Refused(f"a SendGrid {raw['event']} event without an address", 400)
    # sg_message_id is "<X-Message-Id>.<filter...>"; the ledger keeps the X-Message-Id.
    message_id = text(raw.get("sg_message_id")).split(".", 1)[0] or None
    categories = raw.get("category")
    issue = raw.get("issue") or (
        categories[0] if isinstance(categories, list) and categories else categories
    )
    return ProviderEvent(
        provider="sendgrid",
        event_id=text(raw.get("sg_event_id")) or raw_hash("sendgrid", raw),
        type=kind,
        email=email,
        issue=text(issue) or None,
        message_id=message_id,
        bounce=bounce,
        reason=text(raw.get("reason")) or text(raw.get("response")),
        occurred_at=from_unix(raw.get("timestamp")),
        raw=as_json(raw),
    )


def load_key(text_key: str) -> ec.EllipticCurvePublicKey:
    """The verification key as the dashboard shows it: base64 DER (SubjectPublicKeyInfo)."""
    try:
        key = load_der_public_key(base64.b64decode(text_key.strip(), validate=True))
    except (binascii.Error, ValueError):
        # The library's reason ("Incorrect padding") means nothing to her; where to copy
        # the key from does.
        raise NotConfigured(
            "SENDGRID_WEBHOOK_VERIFICATION_KEY is not SendGrid's verification key"
            " (copy it whole from SendGrid: Mail Settings > Event Webhook > Signed Event Webhook >"
            " verification key)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise NotConfigured(
            "SENDGRID_WEBHOOK_VERIFICATION_KEY is not SendGrid's verification key"
            " (copy it whole from SendGrid: Mail Settings > Event Webhook > Signed Event Webhook >"
            " verification key)"
        )
    return key


def webhook(settings: Settings, environ: Mapping[str, str]) -> SendGridWebhook:
    key = environ.get("SENDGRID_WEBHOOK_VERIFICATION_KEY", "").strip()
    if not key:
        raise NotConfigured(
            "sendgrid webhooks need SENDGRID_WEBHOOK_VERIFICATION_KEY (SendGrid: Mail Settings"
            " > Event Webhook > Signed Event Webhook > verification key)"
        )
    return SendGridWebhook(load_key(key))


# Suppression lists --------------------------------------------------------------------------
# https://www.twilio.com/docs/sendgrid/api-reference/bounces-api/retrieve-all-bounces and the
# same for blocks, spam reports, invalid emails and global unsubscribes
# (GET /v3/suppression/<list>?limit=&offset=: a JSON array of ``{"created", "email",
# "reason", "status"}``, paged by ``offset``, 500 at most a page; 429 with
# ``X-RateLimit-Reset`` as a Unix time).  Blocks are the receiving server refusing for now
# (SendGrid does not suppress them): stored as soft bounces, they change nobody alone.

PAGE = 500
LISTS: dict[str, tuple[EventType, Bounce | None]] = {
    "bounces": (EventType.BOUNCED, Bounce.HARD),
    "invalid_emails": (EventType.BOUNCED, Bounce.HARD),
    "blocks": (EventType.BOUNCED, Bounce.SOFT),
    "spam_reports": (EventType.COMPLAINED, None),
    "unsubscribes": (EventType.UNSUBSCRIBED, None),
}


class SendGridSuppressions:
    lists = tuple(LISTS)

    def __init__(self, client: ListClient) -> None:
        self.client = client

    def read(self) -> Iterator[ProviderEvent]:
        for name, (kind, bounce) in LISTS.items():
            offset = 0
            while True:
                page = self.client.get(f"/v3/suppression/{name}", {"limit": PAGE, "offset": offset})
                if not isinstance(page, list):
                    raise SyncError(f"SendGrid's {name} list is not a JSON array")
                for item in page:
                    item = obj(item)
                    email = text(item.get("email"))
                    if not email:
                        continue
                    yield ProviderEvent(
                        provider="sendgrid",
                        event_id=f"suppression:{name}:{email.lower()}:{item.get('created')}",
                        type=kind,
                        email=email,
                        issue=None,
                        message_id=None,
                        bounce=bounce,
                        reason=f"on SendGrid's {name} list"
                        + (f": {text(item.get('reason'))}" if text(item.get("reason")) else ""),
                        occurred_at=from_unix(item.get("created")),
                        raw=as_json(item),
                    )
                if len(page) < PAGE:
                    break
                offset += PAGE

    def close(self) -> None:
        self.client.close()


def suppressions(
    settings: Settings, environ: Mapping[str, str], sleep: Callable[[float], None]
) -> SendGridSuppressions:
    options = Options(settings, sendgrid.OPTIONS)
    key = require_secret(environ, "SENDGRID_API_KEY", "sendgrid")
    client = ListClient(
        "SendGrid",
        api_url(options, sendgrid.API_URL),
        {"Authorization": f"Bearer {key}"},
        reset_header="X-RateLimit-Reset",
        reset_epoch=True,
        sleep=sleep,
    )
    return SendGridSuppressions(client)
