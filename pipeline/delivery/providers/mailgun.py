"""``mailgun``: ``POST /v3/<domain>/messages``, form data, up to 1,000 recipients a call.

Wire format: https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages/batch-sending
(several ``to`` fields and ``recipient-variables``: a JSON object keyed by address whose
values fill ``%recipient.KEY%`` anywhere in the message, headers included).  Without
``recipient-variables`` Mailgun sends one message showing every address to everyone, so a
request here always carries them.  Success is 200 with one queued ``id`` for the request.
Errors: https://documentation.mailgun.com/docs/mailgun/api-reference/api-overview
(400 a bad request, 401/403 the key, 404 an unknown domain, 413 too large, 429, 5xx).
The EU region is ``base_url = "https://api.eu.mailgun.net"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from urllib.parse import quote

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
    api_from,
    error_text,
    http_options,
    json_body,
    reset_seconds,
    unanswered,
)
from pipeline.delivery.providers.substitution import SharedBodies, split_headers
from pipeline.messages.compose import Message

API_URL = "https://api.mailgun.net"
# Mailgun's events can take a few minutes to appear; past a quarter of an hour, a message
# with no ``accepted`` event was not accepted.
SEARCH_GRACE = 900.0
# Mailgun keeps events "for at least 30 days for paid accounts and at least 2 days for free
# accounts" (User manual, Tracking Messages: Introduction to Email Events): past that, a
# message with no accepted event may have been accepted and forgotten, so it is never taken
# as not sent.  The least any account keeps, unless [provider] events_days says more.
EVENTS_DAYS = 2.0
EVENTS_DAYS_MOST = 3650.0


def _var(name: str) -> str:
    return f"%recipient.{name}%"


class MailgunProvider:
    name = "mailgun"
    max_batch = 1000  # recipients per request
    max_concurrency = 16
    one_call_per_message = False
    managed_unsubscribe: str | None = None
    idempotent = False  # Mailgun has no idempotency key, but its events settle unknowns
    search_grace = SEARCH_GRACE
    search_after = 0.0
    search_keeps: float | None = EVENTS_DAYS * 86400.0

    def __init__(self, api: HttpApi, domain: str) -> None:
        self.api = api
        self.path = f"/v3/{quote(domain, safe='')}/messages"
        self.events_path = f"/v3/{quote(domain, safe='')}/events"
        self.bodies = SharedBodies(_var, value_key=lambda name: name)

    def form(self, messages: Sequence[Message]) -> list[tuple[str, str]]:
        first = messages[0]
        shared = self.bodies.body(first)
        same_headers, varying = split_headers(messages)
        fields = [
            ("from", first.sender),
            ("h:Reply-To", first.reply_to),
            ("subject", _var("subject")),
            ("text", shared.text),
            ("html", shared.html),
            ("h:Message-Id", _var("message_id")),
            *((f"h:{name}", value) for name, value in same_headers.items()),
            *((f"h:{name}", _var(f"h:{name}")) for name in varying),
            ("o:tag", first.issue[:128]),
            ("o:tracking", "no"),  # a health practice's readers are not tracked
            ("v:issue", first.issue),
            ("v:newsletter_key", _var("key")),
        ]
        variables = {}
        for message in messages:
            fields.append(("to", message.to))
            values = self.bodies.values(message)
            headers = dict(message.headers)
            values.update({f"h:{name}": headers[name] for name in varying})
            values.update(subject=message.subject, message_id=message.message_id, key=message.key)
            variables[message.to_email] = values
        fields.append(("recipient-variables", json.dumps(variables)))
        return fields

    def send(self, messages: Sequence[Message]) -> BatchResult:
        answer = self.api.post(self.path, data=self.form(messages))
        if isinstance(answer, NoAnswer):
            return unanswered(messages, answer)
        status = answer.status_code
        body = json_body(answer)
        if status == 200:
            queued = body.get("id") if isinstance(body, dict) else None
            if not queued:
                reason = f"Mailgun answered 200 without a message id: {error_text(answer)}"
                return BatchResult.all(messages, Outcome.UNKNOWN, reason)
            return BatchResult.all(messages, Outcome.SENT, "", provider_id=str(queued))
        if status == 429 or status >= 500:
            return BatchResult.all(
                messages,
                Outcome.RETRY,
                f"Mailgun HTTP {status}: {error_text(answer)}",
                retry_after=reset_seconds(answer, "X-RateLimit-Reset", epoch=True),
            )
        detail = body.get("message") if isinstance(body, dict) else error_text(answer)
        reason = f"Mailgun refused the request (HTTP {status}: {detail})"
        if status == 401:  # the key is what she can fix, so name where it comes from
            reason += ": check MAILGUN_API_KEY in the environment"
        return BatchResult.refused(messages, reason)

    def find_accepted(self, messages: Sequence[Message]) -> dict[str, str]:
        """Mailgun's Events API, per recipient: ``accepted`` events for our tag
        (https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Events/:
        ``GET /v3/<domain>/events?event=accepted&recipient=&tags=&limit=``, answering
        ``items`` with ``user-variables`` and ``message.headers``).  Ours carry
        ``v:issue`` and ``v:newsletter_key``; a test copy's subject starts ``[Test]``."""
        found: dict[str, str] = {}
        for message in messages:
            answer = self.api.get(
                self.events_path,
                {
                    "event": "accepted",
                    "recipient": message.to_email,
                    "tags": message.issue[:128],
                    "limit": 50,
                },
            )
            items = answer.get("items") if isinstance(answer, dict) else None
            if not isinstance(items, list):
                raise SearchFailed("Mailgun's events answer has no items list")
            for item in items:
                # An item of another shape cannot be told apart from ours: the search fails
                # (the row stays unknown) rather than "not found" (sent again after the grace).
                message_part = item.get("message") if isinstance(item, dict) else None
                headers = message_part.get("headers") if isinstance(message_part, dict) else None
                if not isinstance(headers, dict):
                    raise SearchFailed("Mailgun's events answer has an event without headers")
                variables = item.get("user-variables")
                if (
                    isinstance(variables, dict)
                    and variables.get("issue") == message.issue
                    and variables.get("newsletter_key") == message.key
                    and headers.get("subject") == message.subject
                    and headers.get("message-id")
                ):
                    found[message.key] = f"<{str(headers['message-id']).strip('<>')}>"
                    break
        return found

    def close(self) -> None:
        self.api.close()


def create(settings: Settings, environ: Mapping[str, str]) -> MailgunProvider:
    options = Options(settings, OPTIONS)
    key = require_secret(environ, "MAILGUN_API_KEY", "mailgun")
    domain = options.string("domain", settings.sender_address.rpartition("@")[2])
    api = api_from(options, "Mailgun", API_URL, {})
    api.session.auth = ("api", key)
    provider = MailgunProvider(api, domain)
    provider.search_grace = options.number("search_grace", SEARCH_GRACE)
    days = options.number("events_days", EVENTS_DAYS, maximum=EVENTS_DAYS_MOST)
    provider.search_keeps = days * 86400.0
    return provider


OPTIONS = {
    **http_options(API_URL, "; https://api.eu.mailgun.net for the EU region"),
    "domain": "the sending domain (default: the domain of [newsletter] from)",
    "search_grace": "seconds after a batch before a message with no accepted event is taken"
    " as never sent, when settling unknown recipients (default 900)",
    "events_days": "days of events your Mailgun plan keeps (default 2, what a free account"
    " keeps; 30 on paid plans): a message older than that is never taken as not sent",
}
INFO = ProviderInfo(
    name="mailgun",
    summary="Mailgun's messages API with recipient variables, 1,000 recipients a call",
    create=create,
    secrets=("MAILGUN_API_KEY",),
    options=OPTIONS,
)
