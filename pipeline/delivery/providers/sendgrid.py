"""``sendgrid``: ``POST /v3/mail/send``, up to 1,000 personalizations a call.

Wire format: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send
(one body in ``content``, text/plain first; per recipient a ``personalizations`` entry with
its own ``to``, ``subject``, ``headers`` and ``substitutions``, which SendGrid replaces in the
body without escaping).  Success is ``202 Accepted`` with an empty body and one
``X-Message-Id`` for the request; SendGrid reports bounces later, by webhook, so a call is
accepted or refused as a whole.  Errors: https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/responses
(400 a malformed request, 401/403 the key or the sender identity, 413 too large, 429 with
``X-RateLimit-Reset`` as a Unix time, 5xx).

Settling ``unknown`` by asking (``Searching``): the Email Activity API, a paid add-on
(https://www.twilio.com/docs/sendgrid/api-reference/email-activity/filter-all-messages).
``GET /v3/messages?query=...&limit=`` (limit 1 to 1,000, no paging cursor) answers
``{"messages": [{"msg_id", "from_email", "subject", "to_email", "status" (processed |
delivered | not_delivered), "opens_count", "clicks_count", "last_event_time"}]}``; the
query is in SendGrid's query language (the filter-all-messages page's "query reference",
and https://www.twilio.com/docs/sendgrid/for-developers/sending-email/segmentation-query-language:
``CONTAINS(array, value)``, ``field IN (values)``, ``AND``, strings in double quotes with
backslash escapes).  Every message of ours carries the issue slug as its category.  The API
is limited to 6 requests a minute (the Email Activity overview's "Rate limits"); an account
without the add-on, or a key without Email Activity access, is answered 400/401 "authorization
required" or 403 "access forbidden" (sendgrid/sendgrid-csharp#689, sendgrid-nodejs#1003,
sendgrid-php#664): then nothing can be settled by asking, and the rows stay ``unknown``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import requests

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
    SearchFailed,
    SearchUnavailable,
    api_from,
    email_object,
    error_text,
    http_options,
    json_body,
    plain,
    reset_seconds,
    unanswered,
)
from pipeline.delivery.providers.substitution import SharedBodies, split_headers
from pipeline.messages.compose import Message

API_URL = "https://api.sendgrid.com"
# Email Activity lags a little behind sending; not found this long after its batch was handed
# over, a message was never accepted (as at Postmark).
SEARCH_GRACE = 600.0
# Email Activity keeps messages for the account's history (3 days without the extended
# history add-on, longer with it): older, a message it does not show may still have gone.
ACTIVITY_DAYS = 3.0
# Ten years: far past any add-on, and well inside what a date can be counted back by.
ACTIVITY_DAYS_MOST = 3650.0
ACTIVITY_LIMIT = 1000  # the most messages one answer holds (the API's largest ``limit``)
# Recipients asked about per request: a query of 50 addresses stays near 2 KB of URL, and
# 200 unknown rows (settle.PAGE) take 4 of the 6 requests a minute the API allows.
ASK_AT_ONCE = 50
UNAVAILABLE = (
    "SendGrid's Email Activity API is not available to this account or API key (it is a"
    " paid add-on, and the key needs Email Activity access)"
)
# Headers SendGrid sets itself and refuses in ``headers``.
RESERVED = {"to", "from", "subject", "reply-to", "cc", "bcc", "content-type"}


class SendGridProvider:
    name = "sendgrid"
    max_batch = 1000  # personalizations per request
    max_concurrency = 16
    one_call_per_message = False
    managed_unsubscribe: str | None = None
    idempotent = False  # the v3 Mail Send API has no idempotency key
    search_grace = SEARCH_GRACE
    search_after = 0.0
    search_keeps: float | None = ACTIVITY_DAYS * 86400.0

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
        if status == 401:  # the key is what she can fix, so name where it comes from
            reason += ": check SENDGRID_API_KEY in the environment"
        return BatchResult.refused(messages, reason)

    def find_accepted(self, messages: Sequence[Message]) -> dict[str, str]:
        """Which of these SendGrid accepted, from its Email Activity (module docstring):
        key -> its ``msg_id``.  A message counts when its issue's category, its recipient
        and its subject all match (a ``[Test]`` copy never does); whatever its status
        since (delivered or not), SendGrid had it.  Raises ``SearchUnavailable`` when the
        account cannot search, ``SearchFailed`` when this search could not be asked."""
        found: dict[str, str] = {}
        groups = [list(messages[i : i + ASK_AT_ONCE]) for i in range(0, len(messages), ASK_AT_ONCE)]
        while groups:
            group = groups.pop()
            items = self._activity(group)
            if len(items) >= ACTIVITY_LIMIT:
                # No cursor to page with: a full answer may have left some out, so ask about
                # each half; one reader with that many messages cannot be told.
                if len(group) == 1:
                    raise SearchFailed(
                        f"SendGrid's Email Activity has {ACTIVITY_LIMIT} or more messages of"
                        f" this issue for {group[0].to_email}: it cannot be told which is ours"
                    )
                half = len(group) // 2
                groups += [group[:half], group[half:]]
                continue
            found.update(_matches(group, items))
        return found

    def _activity(self, group: Sequence[Message]) -> list[dict[str, Any]]:
        addresses = ",".join(_quoted(m.to_email) for m in group)
        query = (
            f"CONTAINS(categories,{_quoted(group[0].issue[:255])}) AND to_email IN ({addresses})"
        )
        try:
            answer = self.api.session.get(
                self.api.base_url + "/v3/messages",
                params={"query": query, "limit": str(ACTIVITY_LIMIT)},
                timeout=self.api.timeout,
            )
        except requests.RequestException as error:
            raise SearchFailed(f"could not ask SendGrid ({plain(error)})") from None
        status = answer.status_code
        detail = _error_messages(answer)
        if status in (401, 403) or (status == 400 and "authorization required" in detail):
            raise SearchUnavailable(f"{UNAVAILABLE}; SendGrid answered: {detail}")
        if status == 429:
            raise SearchFailed(
                "SendGrid's Email Activity API allows 6 searches a minute and answered 429:"
                " the rest are asked by the next run"
            )
        if status != 200:
            raise SearchFailed(f"SendGrid refused the search (HTTP {status}: {detail})")
        body = json_body(answer)
        items = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise SearchFailed("SendGrid's Email Activity answer has no messages list")
        for item in items:
            # A message of another shape cannot be told apart from ours: the search fails
            # (the rows stay unknown) rather than "not found" (sent again after the grace).
            if not (
                isinstance(item, dict)
                and isinstance(item.get("to_email"), str)
                and isinstance(item.get("subject"), str)
                and isinstance(item.get("msg_id"), str)
                and item["msg_id"]
            ):
                raise SearchFailed(
                    "SendGrid's Email Activity answer has a message without its recipient,"
                    " subject or id"
                )
        return items

    def close(self) -> None:
        self.api.close()


def _error_messages(answer: requests.Response) -> str:
    """SendGrid's ``{"errors": [{"message": ...}]}`` in words, else the body, shortened."""
    body = json_body(answer)
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list):
        found = [str(e.get("message", "")) for e in errors if isinstance(e, dict)]
        if any(found):
            return "; ".join(m for m in found if m)[:300]
    return error_text(answer) or f"HTTP {answer.status_code}"


def _quoted(value: str) -> str:
    """A string in SendGrid's query language: double quotes, backslash escapes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _matches(group: Sequence[Message], items: list[dict[str, Any]]) -> dict[str, str]:
    by_reader: dict[tuple[str, str], str] = {}
    for item in items:
        by_reader.setdefault((item["to_email"].strip().lower(), item["subject"]), item["msg_id"])
    found = {}
    for message in group:
        msg_id = by_reader.get((message.to_email.lower(), message.subject))
        if msg_id:
            # The ledger keeps the send's X-Message-Id: msg_id is it, a dot, then a suffix.
            found[message.key] = msg_id.split(".", 1)[0]
    return found


def create(settings: Settings, environ: Mapping[str, str]) -> SendGridProvider:
    options = Options(settings, OPTIONS)
    key = require_secret(environ, "SENDGRID_API_KEY", "sendgrid")
    api = api_from(
        options,
        "SendGrid",
        API_URL,
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    provider = SendGridProvider(api)
    provider.search_grace = options.number("search_grace", SEARCH_GRACE)
    days = options.number("activity_days", ACTIVITY_DAYS, maximum=ACTIVITY_DAYS_MOST)
    provider.search_keeps = days * 86400.0
    return provider


OPTIONS = {
    **http_options(API_URL, "; https://api.eu.sendgrid.com for EU subusers"),
    "search_grace": "seconds after a batch before a message SendGrid's Email Activity does not"
    " show is taken as never sent, when settling unknown recipients (default 600; needs the"
    " Email Activity add-on)",
    "activity_days": "days of Email Activity history the account keeps (default 3; what your"
    " add-on keeps, if longer): a message older than that is never taken as not sent",
}
INFO = ProviderInfo(
    name="sendgrid",
    summary="SendGrid's v3 Mail Send API, 1,000 personalizations a call",
    create=create,
    secrets=("SENDGRID_API_KEY",),
    options=OPTIONS,
)
