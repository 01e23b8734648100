"""``sendgrid``: ``POST /v3/mail/send``, up to 1,000 personalizations a call.

Wire format: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send
(one body in ``content``, text/plain first; per recipient a ``personalizations`` entry with
its own ``to``, ``subject``, ``headers`` and ``substitutions``, which SendGrid replaces in the
body without escaping).  Success is ``202 Accepted`` with an empty body and one
``X-Message-Id`` for the request; SendGrid reports bounces later, by webhook, so a call is
accepted or refused as a whole.  Errors: https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/responses
(400 a malformed request, 401/403 the key or the sender identity, 413 too large, 429 with
``X-RateLimit-Reset`` as a Unix time, 5xx).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.config import Settings
from pipeline.delivery.provider import (
    BatchResult,
    Options,
    Outcome,
    ProviderInfo,
    require_secret,
)
from pipeline.delivery.providers.http import (
    HttpApi,
    NoAnswer,
    api_from,
    email_object,
    error_text,
    http_options,
    json_body,
    reset_seconds,
    unanswered,
)
from pipeline.delivery.providers.substitution import SharedBodies, split_headers
from pipeline.messages.compose import Message

API_URL = "https://api.sendgrid.com"
# Headers SendGrid sets itself and refuses in ``headers``.
RESERVED = {"to", "from", "subject", "reply-to", "cc", "bcc", "content-type"}


class SendGridProvider:
    name = "sendgrid"
    max_batch = 1000  # personalizations per request
    max_concurrency = 16
    managed_unsubscribe: str | None = None
    idempotent = False  # the v3 Mail Send API has no idempotency key

    def __init__(self, api: HttpApi) -> None:
        self.api = api
        self.bodies = SharedBodies(lambda name: f"[%nl-{name}%]")

    def payload(self, messages: Sequence[Message]) -> dict[str, Any]:
        first = messages[0]
        shared = self.bodies.body(first)
        same_headers, varying = split_headers(messages)
        return {
            "personalizations": [
                {
                    "to": [email_object(m.to)],
                    "subject": m.subject,
                    "headers": {
                        "Message-ID": m.message_id,
                        **{name: value for name, value in m.headers if name in varying},
                    },
                    "substitutions": self.bodies.values(m),
                    "custom_args": {"newsletter_key": m.key},
                }
                for m in messages
            ],
            "from": email_object(first.sender),
            "reply_to": email_object(first.reply_to),
            # Headers the same for everyone go once; each personalization has its own subject.
            "headers": {k: v for k, v in same_headers.items() if k.lower() not in RESERVED},
            "content": [
                {"type": "text/plain", "value": shared.text},
                {"type": "text/html", "value": shared.html},
            ],
            "categories": [first.issue[:255]],
            "custom_args": {"issue": first.issue},
            # A health practice's readers are not tracked, and our own unsubscribe link is used.
            "tracking_settings": {
                "click_tracking": {"enable": False, "enable_text": False},
                "open_tracking": {"enable": False},
                "subscription_tracking": {"enable": False},
            },
        }

    def send(self, messages: Sequence[Message]) -> BatchResult:
        answer = self.api.post("/v3/mail/send", data=json.dumps(self.payload(messages)))
        if isinstance(answer, NoAnswer):
            return unanswered(messages, answer)
        status = answer.status_code
        if status in (200, 202):
            message_id = answer.headers.get("X-Message-Id", "")
            return BatchResult.all(messages, Outcome.SENT, "", provider_id=message_id)
        if status == 429 or status >= 500:
            return BatchResult.all(
                messages,
                Outcome.RETRY,
                f"SendGrid HTTP {status}: {error_text(answer)}",
                retry_after=reset_seconds(answer, "X-RateLimit-Reset", epoch=True),
            )
        body = json_body(answer)
        errors = body.get("errors") if isinstance(body, dict) else None
        detail = (
            "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
            if isinstance(errors, list)
            else error_text(answer)
        )
        reason = f"SendGrid refused the request (HTTP {status}: {detail})"
        return BatchResult.refused(messages, reason)

    def close(self) -> None:
        self.api.close()


def create(settings: Settings, environ: Mapping[str, str]) -> SendGridProvider:
    options = Options(settings, OPTIONS)
    key = require_secret(environ, "SENDGRID_API_KEY", "sendgrid")
    api = api_from(
        options,
        "SendGrid",
        API_URL,
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    return SendGridProvider(api)


OPTIONS = http_options(API_URL, "; https://api.eu.sendgrid.com for EU subusers")
INFO = ProviderInfo(
    name="sendgrid",
    summary="SendGrid's v3 Mail Send API, 1,000 personalizations a call",
    create=create,
    secrets=("SENDGRID_API_KEY",),
    options=OPTIONS,
)
