"""What Postmark tells us after a send: its webhooks.

Verification: Postmark signs nothing; its docs recommend HTTP basic auth in the webhook URL
(https://postmarkapp.com/developer/webhooks/webhooks-overview#protecting-your-webhook), so
the URL to give it is ``https://user:password@your-site/webhooks/postmark`` with
``NEWSLETTER_WEBHOOK_SECRET=user:password``.

Payloads, one event per request, told apart by ``RecordType``:
- Bounce: https://postmarkapp.com/developer/webhooks/bounce-webhook (``ID``, ``Type``,
  ``Email``, ``MessageID``, ``Tag``, ``Metadata``, ``BouncedAt``, ``Details``; types in
  https://postmarkapp.com/developer/api/bounce-api#bounce-types)
- SpamComplaint: https://postmarkapp.com/developer/webhooks/spam-complaint-webhook
- Delivery: https://postmarkapp.com/developer/webhooks/delivery-webhook (``Recipient``)
- SubscriptionChange: https://postmarkapp.com/developer/webhooks/subscription-change-webhook
  (``SuppressSending``, ``SuppressionReason`` ManualSuppression | HardBounce | SpamComplaint):
  how an unsubscribe through Postmark's own link on a broadcast stream reaches us.
- Open, Click: https://postmarkapp.com/developer/webhooks/open-tracking-webhook,
  https://postmarkapp.com/developer/webhooks/click-webhook
Our sender puts the issue slug in ``Tag`` and ``Metadata.issue`` (postmark.py).
The mapping follows anymail/webhooks/postmark.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from pipeline.config import Settings
from pipeline.delivery.provider import Options, require_secret
from pipeline.delivery.providers import postmark
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
    obj,
    raw_hash,
    text,
)
from pipeline.events.sync import ListClient, SyncError

# Bounce ``Type`` -> (event, hard or soft).  Types not here (AutoResponder, AddressChange,
# OpenRelayTest, ChallengeVerification, Unknown...) say nothing about the reader: ignored.
BOUNCE_TYPES: dict[str, tuple[EventType, Bounce | None]] = {
    "HardBounce": (EventType.BOUNCED, Bounce.HARD),
    "BadEmailAddress": (EventType.BOUNCED, Bounce.HARD),
    "SoftBounce": (EventType.BOUNCED, Bounce.SOFT),
    "Transient": (EventType.DEFERRED, None),
    "DnsError": (EventType.DEFERRED, None),
    "SpamNotification": (EventType.COMPLAINED, None),
    "SpamComplaint": (EventType.COMPLAINED, None),
    "ManuallyDeactivated": (EventType.REJECTED, None),
    "Blocked": (EventType.REJECTED, None),
    "DMARCPolicy": (EventType.REJECTED, None),
    "Unconfirmed": (EventType.REJECTED, None),
}
RECORD_TYPES = {
    "Delivery": EventType.DELIVERED,
    "Open": EventType.OPENED,
    "Click": EventType.CLICKED,
}
SUPPRESSION_REASONS: dict[str, tuple[EventType, Bounce | None]] = {
    "ManualSuppression": (EventType.UNSUBSCRIBED, None),
    "HardBounce": (EventType.BOUNCED, Bounce.HARD),
    "SpamComplaint": (EventType.COMPLAINED, None),
}


class PostmarkWebhook:
    provider = "postmark"

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def verify(self, request: WebhookRequest, now: float) -> Nonce | None:
        check_basic_auth(request, self.secret, self.provider)
        return None

    def parse(self, request: WebhookRequest) -> list[ProviderEvent]:
        raw = request.json()
        if not isinstance(raw, dict) or not isinstance(raw.get("RecordType"), str):
            raise Refused("not a Postmark webhook: no RecordType", 400)
        event = parse_event(raw)
        return [event] if event else []


def parse_event(raw: Mapping[str, Any]) -> ProviderEvent | None:
    record = raw["RecordType"]
    bounce: Bounce | None = None
    if record in ("Bounce", "SpamComplaint"):
        found = BOUNCE_TYPES.get(text(raw.get("Type")) or record)
        if found is None:
            return None
        kind, bounce = found
    elif record == "SubscriptionChange":
        if raw.get("SuppressSending") is not True:
            # A reactivation: only the reader's own confirmed signup puts them back.
            return None
        found = SUPPRESSION_REASONS.get(text(raw.get("SuppressionReason")))
        if found is None:
            return None
        kind, bounce = found
    elif record in RECORD_TYPES:
        kind = RECORD_TYPES[record]
    else:
        return None
    email = text(raw.get("Email")) or text(raw.get("Recipient"))
    if not email:
        raise Refused(f"a Postmark {record} event without an address", 400)
    metadata = raw.get("Metadata")
    issue = (metadata.get("issue") if isinstance(metadata, dict) else None) or raw.get("Tag")
    # Only bounces and complaints carry an ``ID`` of their own.
    event_id = f"{record}:{raw['ID']}" if raw.get("ID") not in (None, "") else ""
    moment = next(
        (
            raw[name]
            for name in ("BouncedAt", "DeliveredAt", "ReceivedAt", "ChangedAt")
            if raw.get(name)
        ),
        None,
    )
    # Details is what the reader's server answered ("smtp;550 5.1.1 ... does not exist");
    # Description is one fixed sentence per bounce type, kept only when Details is empty.
    reason = text(raw.get("Details")) or text(raw.get("Description"))
    if record == "SubscriptionChange":
        reason = f"{raw.get('SuppressionReason')} ({text(raw.get('Origin')) or 'Postmark'})"
    return ProviderEvent(
        provider="postmark",
        event_id=event_id or raw_hash("postmark", raw),
        type=kind,
        email=email,
        issue=text(issue) or None,
        message_id=text(raw.get("MessageID")) or None,
        bounce=bounce,
        reason=reason,
        occurred_at=from_iso(moment),
        raw=as_json(raw),
    )


def webhook(settings: Settings, environ: Mapping[str, str]) -> PostmarkWebhook:
    return PostmarkWebhook(basic_auth_secret(environ, "postmark"))


# Suppression list -------------------------------------------------------------------------
# https://postmarkapp.com/developer/api/suppressions-api#suppression-dump
# (GET /message-streams/{stream}/suppressions/dump: every suppression of the stream, in one
# answer: ``Suppressions`` with ``EmailAddress``, ``SuppressionReason``, ``Origin``,
# ``CreatedAt``).  On a broadcast stream this is where Postmark's own unsubscribe link lands.


class PostmarkSuppressions:
    def __init__(self, client: ListClient, stream: str) -> None:
        self.client = client
        self.stream = stream
        self.lists = (f"suppressions of the {stream} stream",)

    def read(self) -> Iterator[ProviderEvent]:
        body = self.client.get(f"/message-streams/{quote(self.stream, safe='')}/suppressions/dump")
        items = body.get("Suppressions") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise SyncError("Postmark's suppression dump has no Suppressions list")
        for item in items:
            item = obj(item)
            found = SUPPRESSION_REASONS.get(text(item.get("SuppressionReason")))
            email = text(item.get("EmailAddress"))
            if found is None or not email:
                continue
            kind, bounce = found
            yield ProviderEvent(
                provider="postmark",
                event_id=f"suppression:{self.stream}:{email.lower()}:{item.get('CreatedAt')}",
                type=kind,
                email=email,
                issue=None,
                message_id=None,
                bounce=bounce,
                reason=f"on Postmark's suppression list: {item.get('SuppressionReason')}"
                f" ({text(item.get('Origin')) or 'Postmark'})",
                occurred_at=from_iso(item.get("CreatedAt")),
                raw=as_json(item),
            )

    def close(self) -> None:
        self.client.close()


def suppressions(
    settings: Settings, environ: Mapping[str, str], sleep: Callable[[float], None]
) -> PostmarkSuppressions:
    options = Options(settings, postmark.OPTIONS)
    token = require_secret(environ, "POSTMARK_SERVER_TOKEN", "postmark")
    client = ListClient(
        "Postmark",
        api_url(options, postmark.API_URL),
        {"X-Postmark-Server-Token": token},
        sleep=sleep,
    )
    return PostmarkSuppressions(client, options.string("message_stream", "broadcast"))
