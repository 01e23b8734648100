"""``brevo``: ``POST /v3/smtp/email`` with ``messageVersions``, up to 1,000 versions a call.

Wire format: https://developers.brevo.com/docs/batch-send-transactional-emails (one request,
one ``messageVersions`` entry per recipient with its own ``to``, ``subject``,
``htmlContent``, ``textContent`` and ``headers``; the top-level content is the default a
version overrides).  Success is 201 with ``messageIds``, one per version, in order.
Idempotency: https://developers.brevo.com/docs/heterogenous-versions-batch-emails (an
``idempotencyKey`` UUID in ``headers``; the same key within 30 minutes is processed once).
Errors: https://developers.brevo.com/docs/how-it-works#error-codes (400 a bad request,
401 the key, 402 not enough credits, 403 not permitted, 429 with ``x-sib-ratelimit-reset``
in seconds, 5xx).
"""

from __future__ import annotations

import json
import uuid
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
    SearchFailed,
    api_from,
    email_object,
    error_text,
    http_options,
    json_body,
    reset_seconds,
    unanswered,
)
from pipeline.messages.compose import Message

API_URL = "https://api.brevo.com"
# Brevo keeps an idempotency key 30 minutes: a batch younger than that is replayed under its
# key; an older one is looked up in Brevo's list of transactional emails instead.
KEY_LIFETIME = 1800.0
SEARCH_GRACE = 900.0
# The list of transactional emails "will show the list of emails for past 30 days by
# default" (get-transac-emails-list): an older email is not in it, so not found proves
# nothing past that.  Read LIST_PAGE at a time, newest first, LIST_PAGES pages at most.
LIST_KEEPS = 30 * 86400.0
LIST_PAGE = 100
LIST_PAGES = 10
# Brevo wants a UUID: ours is derived from the batch (uuid5), so a retry carries the same one.
KEY_NAMESPACE = uuid.UUID("6f1d7c52-3b0e-4f7a-9a55-2f4f0b1c9e11")
# Brevo requires a top-level htmlContent, the default a version without its own would get.
# Every version has its own, so this is never sent; it is not one reader's personal copy
# (which would cost a second fill of the first message and carry their unsubscribe link).
DEFAULT_HTML = "<!-- every messageVersion carries its own htmlContent -->"


class BrevoProvider:
    name = "brevo"
    max_batch = 1000  # message versions per request
    max_concurrency = 8
    one_call_per_message = False
    managed_unsubscribe: str | None = None
    idempotent = True  # within Brevo's 30-minute window; after it, its email list is asked
    search_grace = SEARCH_GRACE
    search_after = KEY_LIFETIME
    search_keeps: float | None = LIST_KEEPS

    def __init__(self, api: HttpApi) -> None:
        self.api = api

    def version_json(self, message: Message) -> str:
        head = json.dumps(
            {
                "to": [email_object(message.to)],
                "subject": message.subject,
                "headers": {"Message-Id": message.message_id, **dict(message.headers)},
            }
        )
        return (
            f'{head[:-1]}, "htmlContent": {message.body.html_json}, '
            f'"textContent": {message.body.text_json}}}'
        )

    def body(self, messages: Sequence[Message]) -> bytes:
        first = messages[0]
        key = str(uuid.uuid5(KEY_NAMESPACE, batch_key(messages)))
        head = json.dumps(
            {
                "sender": email_object(first.sender),
                "replyTo": email_object(first.reply_to),
                "subject": first.subject,
                "tags": [first.issue],
                "headers": {"idempotencyKey": key},
            }
        )
        versions = ", ".join(self.version_json(m) for m in messages)
        return (
            f'{head[:-1]}, "htmlContent": {json.dumps(DEFAULT_HTML)}, '
            f'"messageVersions": [{versions}]}}'
        ).encode("ascii")

    def send(self, messages: Sequence[Message]) -> BatchResult:
        answer = self.api.post("/v3/smtp/email", data=self.body(messages))
        if isinstance(answer, NoAnswer):
            return unanswered(messages, answer)
        status = answer.status_code
        parsed = json_body(answer)
        if status in (200, 201, 202):
            ids = parsed.get("messageIds") if isinstance(parsed, dict) else None
            if not isinstance(ids, list) or len(ids) != len(messages):
                reason = "Brevo answered without one message id per version"
                return BatchResult.all(messages, Outcome.UNKNOWN, reason)
            return BatchResult(
                [
                    RecipientResult(m.key, Outcome.SENT, provider_id=str(i))
                    for m, i in zip(messages, ids, strict=True)
                ]
            )
        detail = (
            f"{parsed.get('code', '')}: {parsed.get('message', '')}"
            if isinstance(parsed, dict)
            else error_text(answer)
        )
        if status == 429 or status >= 500:
            return BatchResult.all(
                messages,
                Outcome.RETRY,
                f"Brevo HTTP {status} {detail}",
                retry_after=reset_seconds(answer, "x-sib-ratelimit-reset"),
            )
        reason = f"Brevo refused the request (HTTP {status} {detail})"
        if status == 401:  # the key is what she can fix, so name where it comes from
            reason += ": check BREVO_API_KEY in the environment"
        return BatchResult.refused(messages, reason)

    def find_accepted(self, messages: Sequence[Message]) -> dict[str, str]:
        """Brevo's list of transactional emails, per recipient
        (https://developers.brevo.com/reference/get-transac-emails-list: ``GET
        /v3/smtp/emails?email=&sort=desc&limit=&offset=``, answering ``transactionalEmails``
        with ``messageId``, ``subject`` and ``tags``).  Ours are tagged with the issue; a
        test copy's subject starts ``[Test]``."""
        found: dict[str, str] = {}
        for message in messages:
            offset = 0
            while True:
                answer = self.api.get(
                    "/v3/smtp/emails",
                    {
                        "email": message.to_email,
                        "sort": "desc",
                        "limit": LIST_PAGE,
                        "offset": offset,
                    },
                )
                items = answer.get("transactionalEmails") if isinstance(answer, dict) else None
                if not isinstance(items, list):
                    raise SearchFailed("Brevo's email list answer has no transactionalEmails")
                message_id = _ours(message, items)
                if message_id:
                    found[message.key] = message_id
                    break
                # Newest first: a reader with a page full of newer emails (the practice's
                # other mail through the same account) may have ours on a later page, and
                # "not found" on the first would send it again.
                if len(items) < LIST_PAGE:
                    break
                offset += LIST_PAGE
                if offset >= LIST_PAGES * LIST_PAGE:
                    raise SearchFailed(
                        f"Brevo lists more than {LIST_PAGES * LIST_PAGE} emails to"
                        f" {message.to_email} in its last 30 days: it cannot be told whether"
                        " this issue's is among them"
                    )
        return found

    def close(self) -> None:
        self.api.close()


def _ours(message: Message, items: list[Any]) -> str | None:
    """The message id of this issue's email to this reader in one page of Brevo's list."""
    for item in items:
        # An item of another shape cannot be told apart from ours: the search fails (the row
        # stays unknown) rather than "not found" (sent again after the grace).
        tags = item.get("tags", []) if isinstance(item, dict) else None
        if not isinstance(tags, list):
            raise SearchFailed("Brevo's email list answer has an email without tags")
        if (
            isinstance(item, dict)
            and item.get("subject") == message.subject
            and message.issue in tags
            and item.get("messageId")
        ):
            return str(item["messageId"])
    return None


def create(settings: Settings, environ: Mapping[str, str]) -> BrevoProvider:
    options = Options(settings, OPTIONS)
    key = require_secret(environ, "BREVO_API_KEY", "brevo")
    api = api_from(
        options,
        "Brevo",
        API_URL,
        {"api-key": key, "Accept": "application/json", "Content-Type": "application/json"},
    )
    return BrevoProvider(api)


OPTIONS = http_options(API_URL)
INFO = ProviderInfo(
    name="brevo",
    summary="Brevo's transactional API with message versions, 1,000 a call, idempotent"
    " (exactly once within 30 minutes)",
    create=create,
    secrets=("BREVO_API_KEY",),
    options=OPTIONS,
)
