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

Legacy webhooks (Mailgun's only kind before June 2018, still sent by accounts that set
them up then): https://documentation.mailgun.com/en/latest/user_manual.html#legacy-webhooks
(Tracking Deliveries, Opens, Clicks, Unsubscribes, Spam Complaints, Bounces, Failures).  A
form post, ``application/x-www-form-urlencoded`` or ``multipart/form-data`` (a bounce may
carry the returned message as an attachment), with ``timestamp``, ``token`` and
``signature`` at the top level, signed the same way, and the event's fields beside them:
``event`` (delivered | dropped | bounced | complained | unsubscribed | opened | clicked),
``recipient``, ``Message-Id``, ``code``, ``error``/``notification``/``description``,
``tag``, ``message-headers`` (the message's headers, a JSON list of [name, value] pairs,
X-Mailgun-Variables among them) and our custom variables merged in as fields of their own.
A custom variable named like a Mailgun field is sent too, so a field can come twice:
like anymail, the signature's fields are read from the *last* value (Mailgun's own, after
the user's) and the event's fields from the *first*.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

from pipeline.config import Settings
from pipeline.delivery.provider import Options, require_secret
from pipeline.delivery.providers import mailgun
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
    body_hash,
    check_age,
    from_unix,
    obj,
    raw_hash,
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

# Legacy webhooks: https://documentation.mailgun.com/en/latest/user_manual.html#legacy-webhooks
# (``dropped``: Mailgun will not deliver it, its suppressions or repeated failures; anymail
# maps it to rejected.  ``bounced`` is a permanent failure: the legacy kind sends none for
# temporary ones.)
LEGACY_EVENTS = {
    "delivered": EventType.DELIVERED,
    "dropped": EventType.REJECTED,
    "bounced": EventType.BOUNCED,
    "complained": EventType.COMPLAINED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
}
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")

# Mailgun's HTTP webhook signing keys are 32 characters or more.
MIN_KEY = 16


def legacy_form(request: WebhookRequest) -> MultiDict[str, str] | None:
    """A legacy webhook's fields, in the order sent; ``None`` for a body that is not a form
    (the JSON kind).  Attachments (a bounce's returned message) are read past, not kept."""
    mimetype, options = parse_options_header(request.headers.get("content-type", ""))
    if mimetype not in FORMS:
        return None
    parser = FormDataParser(
        max_form_memory_size=len(request.body) + 1, max_form_parts=1000, silent=False
    )
    try:
        _, form, _ = parser.parse(io.BytesIO(request.body), mimetype, len(request.body), options)
    except (ValueError, HTTPException):  # a malformed multipart body, too many parts
        raise Refused("the Mailgun form could not be read", 400) from None
    return form


class MailgunWebhook:
    provider = "mailgun"

    def __init__(self, signing_key: str) -> None:
        self.signing_key = signing_key.encode("utf-8")

    def verify(self, request: WebhookRequest, now: float) -> Nonce | None:
        form = legacy_form(request)
        if form is not None:
            # The last value: a custom variable named "token" comes before Mailgun's own.
            timestamp, token, signature = (
                (form.getlist(name) or [""])[-1] for name in ("timestamp", "token", "signature")
            )
        else:
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
        form = legacy_form(request)
        if form is not None:
            event = parse_legacy(form)
            return [event] if event else []
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


def parse_legacy(form: MultiDict[str, str]) -> ProviderEvent | None:
    """A legacy webhook's event, as anymail's ``mailgun_legacy_to_anymail_event`` reads it."""

    def first(*names: str) -> str:
        for name in names:
            values = form.getlist(name)
            if values and values[0].strip():
                return values[0].strip()
        return ""

    name = first("event")
    if not name:
        raise Refused("not a Mailgun webhook: no event field", 400)
    kind = LEGACY_EVENTS.get(name)
    if kind is None:
        return None
    email = first("recipient")
    if not email:
        raise Refused(f"a Mailgun {name} event without a recipient", 400)
    variables = _legacy_variables(form)
    tags = form.getlist("tag") or form.getlist("X-Mailgun-Tag")
    # Our custom variable "issue" is a field of its own (or, where Mailgun sends the
    # message's headers, inside X-Mailgun-Variables); the tag is the issue slug too.
    issue = first("issue") or text(variables.get("issue")) or (tags[0] if tags else "")
    found_id = first("Message-Id", "message-id")
    timestamp = (form.getlist("timestamp") or [""])[-1]
    fields = {
        key: form.getlist(key) for key in form if key not in ("timestamp", "token", "signature")
    }
    reason = first("error", "notification", "description", "reason")
    code = first("code")
    if code and reason:
        reason = f"{code} {reason}"
    return ProviderEvent(
        provider="mailgun",
        # Legacy events have no id of their own: a hash of the event's fields without the
        # signature's three, so the same event signed afresh (a retry) is the same event.
        event_id=raw_hash("mailgun", fields),
        type=kind,
        email=email,
        issue=issue or None,
        message_id=message_id(found_id),
        bounce=Bounce.HARD if kind is EventType.BOUNCED else None,
        reason=reason,
        occurred_at=from_unix(timestamp),
        raw=as_json(fields),
    )


def _legacy_variables(form: MultiDict[str, str]) -> dict[str, Any]:
    """Our custom variables from ``message-headers``' X-Mailgun-Variables, where sent."""
    try:
        headers = json.loads(form.get("message-headers") or "[]")
    except ValueError:
        return {}
    found: dict[str, Any] = {}
    for pair in headers if isinstance(headers, list) else []:
        if isinstance(pair, list) and len(pair) == 2 and pair[0] == "X-Mailgun-Variables":
            try:
                value = json.loads(pair[1])
            except (TypeError, ValueError):
                continue
            if isinstance(value, dict):
                found.update(value)
    return found


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
        api_url(options, mailgun.API_URL),
        auth=("api", key),
        reset_header="X-RateLimit-Reset",
        reset_epoch=True,
        sleep=sleep,
    )
    domain = options.string("domain", settings.sender_address.rpartition("@")[2])
    return MailgunSuppressions(client, domain)
