"""``resend``: ``POST /emails/batch``, up to 100 emails a call, each with an idempotency key.

Wire format: https://resend.com/docs/api-reference/emails/send-batch-emails (a JSON array of
emails; ``x-batch-validation: permissive`` sends the valid ones and lists the others in
``errors`` by index, so one bad address never holds back the other 99).
Idempotency: https://resend.com/docs/dashboard/emails/idempotency-keys (``Idempotency-Key``
header, kept 24 hours: the same key and body again returns the first answer and sends
nothing).  The key is derived from the batch's recipients and the issue's content
(``batch_key``), so a retried, timed-out or resumed batch is delivered once.
Errors: https://resend.com/docs/api-reference/errors (429 ``rate_limit_exceeded`` is
transient, with ``retry-after`` and ``ratelimit-reset``; 429 ``daily_quota_exceeded`` and
``monthly_quota_exceeded``, 401, 403 and 422 stop the send; 409
``concurrent_idempotent_requests`` is transient, ``invalid_idempotent_request`` is not).
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
    RecipientResult,
    batch_key,
    require_secret,
)
from pipeline.delivery.providers.http import (
    HttpApi,
    NoAnswer,
    api_from,
    error_text,
    http_options,
    json_body,
    reset_seconds,
    tag_value,
    unanswered,
)
from pipeline.messages.compose import Message

API_URL = "https://api.resend.com"
TRANSIENT = {"rate_limit_exceeded", "concurrent_idempotent_requests"}


class ResendProvider:
    name = "resend"
    max_batch = 100
    max_concurrency = 8
    one_call_per_message = False
    managed_unsubscribe: str | None = None
    idempotent = True

    def __init__(self, api: HttpApi) -> None:
        self.api = api

    def payload_json(self, message: Message) -> str:
        head = json.dumps(
            {
                "from": message.sender,
                "to": [message.to],
                "reply_to": message.reply_to,
                "subject": message.subject,
                "headers": {"Message-ID": message.message_id, **dict(message.headers)},
                "tags": [{"name": "issue", "value": tag_value(message.issue)}],
            }
        )
        return f'{head[:-1]}, "html": {message.body.html_json}, "text": {message.body.text_json}}}'

    def send(self, messages: Sequence[Message]) -> BatchResult:
        body = "[" + ", ".join(self.payload_json(m) for m in messages) + "]"
        answer = self.api.post(
            "/emails/batch",
            data=body.encode("ascii"),
            headers={
                "Idempotency-Key": f"newsletter/{batch_key(messages)}",
                "x-batch-validation": "permissive",
            },
        )
        if isinstance(answer, NoAnswer):
            return unanswered(messages, answer)
        status = answer.status_code
        parsed = json_body(answer)
        if status == 200:
            return self._per_email(messages, parsed)
        name = str(parsed.get("name", "")) if isinstance(parsed, dict) else ""
        text = str(parsed.get("message", "")) if isinstance(parsed, dict) else error_text(answer)
        reason = f"Resend HTTP {status} {name}: {text}".replace("  ", " ")
        if status >= 500 or name in TRANSIENT or (status == 429 and not name):
            wait = reset_seconds(answer, "ratelimit-reset")
            if wait is None and name == "concurrent_idempotent_requests":
                wait = 1.0
            return BatchResult.all(messages, Outcome.RETRY, reason, retry_after=wait)
        stop = f"Resend refused the request ({reason})"
        return BatchResult.refused(messages, stop)

    def _per_email(self, messages: Sequence[Message], parsed: Any) -> BatchResult:
        """``data`` holds the ids of the emails accepted, in order; ``errors`` the index and
        reason of each refused one."""
        data = parsed.get("data") if isinstance(parsed, dict) else None
        errors = (parsed.get("errors") if isinstance(parsed, dict) else None) or []
        refused = {
            int(e["index"]): str(e.get("message", ""))
            for e in errors
            if isinstance(e, dict) and isinstance(e.get("index"), int)
        }
        accepted = [i for i in range(len(messages)) if i not in refused]
        if not isinstance(data, list) or len(data) != len(accepted):
            reason = "Resend answered 200 without one id per accepted email"
            return BatchResult.all(messages, Outcome.UNKNOWN, reason)
        results = [
            RecipientResult(messages[i].key, Outcome.FAILED, reason=f"Resend: {text}")
            for i, text in refused.items()
            if i < len(messages)
        ]
        results += [
            RecipientResult(messages[i].key, Outcome.SENT, provider_id=str(item.get("id", "")))
            for i, item in zip(accepted, data, strict=True)
        ]
        return BatchResult(results)

    def close(self) -> None:
        self.api.close()


def create(settings: Settings, environ: Mapping[str, str]) -> ResendProvider:
    options = Options(settings, OPTIONS)
    key = require_secret(environ, "RESEND_API_KEY", "resend")
    api = api_from(
        options,
        "Resend",
        API_URL,
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    return ResendProvider(api)


OPTIONS = http_options(API_URL)
INFO = ProviderInfo(
    name="resend",
    summary="Resend's batch API, 100 emails a call, idempotent (exactly once for 24 hours)",
    create=create,
    secrets=("RESEND_API_KEY",),
    options=OPTIONS,
)
