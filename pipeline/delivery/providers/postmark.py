"""``postmark``: ``POST /email/batch``, up to 500 messages a call.

Wire format: https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails
(a JSON array of messages; HTTP 200 with one result per message, in order, each with its own
``ErrorCode``).  Error codes: https://postmarkapp.com/developer/api/overview#error-codes
(406 inactive recipient and 300 invalid request are about one message; 10 bad token, 400/401
sender signature, 405 not allowed to send, 412 account pending, 413 account may not send are
about the account).  Broadcast streams: https://postmarkapp.com/support/article/1208-how-to-add-an-unsubscribe-link
(Postmark manages unsubscribes and puts its link where ``{{{ pm:unsubscribe }}}`` stands).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.config import Settings
from pipeline.delivery.provider import (
    BatchResult,
    Options,
    Outcome,
    ProviderInfo,
    RecipientResult,
    require_secret,
)
from pipeline.delivery.providers.http import (
    HttpApi,
    NoAnswer,
    SearchFailed,
    api_from,
    error_text,
    http_options,
    json_bytes,
    retry_after_seconds,
    unanswered,
)
from pipeline.messages.compose import Message

API_URL = "https://api.postmarkapp.com"
UNSUBSCRIBE_PLACEHOLDER = "{{{ pm:unsubscribe }}}"
RECIPIENT_CODES = {300: "invalid email request", 406: "inactive recipient"}
ACCOUNT_CODES = {
    10: "bad or missing server token",
    400: "sender signature not found",
    401: "sender signature not confirmed",
    405: "not allowed to send",
    412: "account is pending",
    413: "account may not send",
}
# Postmark's search shows a message moments after it accepted it; ten minutes is ample.
SEARCH_GRACE = 600.0
# Postmark keeps messages and their events "for 45 days by default", 7 to 365 with its
# Retention Add-on (support article 838, "How long are Inbound and Outbound messages stored
# in activity?"): past that, a message its search does not find may have been sent.
RETENTION_DAYS = 45.0
# Postmark manages these on broadcast streams and refuses them from us.
MANAGED_HEADERS = {"List-Unsubscribe", "List-Unsubscribe-Post"}


class PostmarkProvider:
    name = "postmark"
    max_batch = 500
    max_concurrency = 16
    one_call_per_message = False
    idempotent = False  # Postmark has no idempotency key, but its search settles unknowns
    search_grace = SEARCH_GRACE
    search_after = 0.0
    search_keeps: float | None = RETENTION_DAYS * 86400.0

    def __init__(self, api: HttpApi, stream: str, managed_unsubscribe: bool) -> None:
        self.api = api
        self.stream = stream
        self.managed_unsubscribe = UNSUBSCRIBE_PLACEHOLDER if managed_unsubscribe else None

    def payload(self, message: Message) -> dict[str, Any]:
        headers = [{"Name": "Message-ID", "Value": message.message_id}]
        headers += [
            {"Name": name, "Value": value}
            for name, value in message.headers
            if not (self.managed_unsubscribe and name in MANAGED_HEADERS)
        ]
        return {
            "From": message.sender,
            "To": message.to,
            "ReplyTo": message.reply_to,
            "Subject": message.subject,
            "Headers": headers,
            "MessageStream": self.stream,
            "Tag": message.issue,
            "Metadata": {"issue": message.issue},
            # A health practice's readers are not tracked.
            "TrackOpens": False,
            "TrackLinks": "None",
        }

    def add_payload(self, message: Message, out: list[bytes]) -> None:
        """One message as JSON, appended to ``out`` as bytes pieces.  The bodies come
        pre-escaped from the compiled issue (encoding 20 KB of HTML per recipient was the
        pipeline's largest cost); the rest is encoded by orjson (0.5 us against 7 for
        ``json.dumps``, 2026-12-07)."""
        out.append(json_bytes(self.payload(message))[:-1])
        out.append(b', "HtmlBody": ')
        message.body.add_html_json(out)
        out.append(b', "TextBody": ')
        message.body.add_text_json(out)
        out.append(b"}")

    def batch_body(self, messages: Sequence[Message]) -> bytes:
        """The request body of POST /email/batch: a JSON array of the messages.

        Built as pieces of bytes, joined once: each message's bodies are copied once, into
        the request body, and a batch is never held twice while it is built.  (Joined as
        text, encoded and appended to a buffer, the copies were 29% of all the time a send
        held the interpreter lock, 2026-12-07, py-spy --gil.)"""
        parts = [b"["]
        for index, message in enumerate(messages):
            if index:
                parts.append(b", ")
            self.add_payload(message, parts)
        parts.append(b"]")
        return b"".join(parts)

    def send(self, messages: Sequence[Message]) -> BatchResult:
        answer = self.api.post("/email/batch", data=self.batch_body(messages))
        if isinstance(answer, NoAnswer):
            return unanswered(messages, answer)
        status = answer.status_code
        if status == 429 or status >= 500:
            return BatchResult.all(
                messages,
                Outcome.RETRY,
                f"Postmark HTTP {status}: {error_text(answer)}",
                retry_after=retry_after_seconds(answer.headers.get("Retry-After")),
            )
        if status != 200:
            try:
                body = answer.json()
                detail = f"error {body.get('ErrorCode')}: {body.get('Message')}"
            except ValueError:
                detail = error_text(answer)
            reason = f"Postmark refused the request (HTTP {status}, {detail})"
            if status == 401:  # the key is what she can fix, so name where it comes from
                reason += ": check POSTMARK_SERVER_TOKEN in the environment"
            return BatchResult.refused(messages, reason)
        try:
            items = answer.json()
            if not isinstance(items, list) or len(items) != len(messages):
                raise ValueError("not one result per message")
        except ValueError as exc:
            reason = f"Postmark answered HTTP 200 with an unreadable body ({exc})"
            return BatchResult.all(messages, Outcome.UNKNOWN, reason)
        return self._per_message(messages, items)

    def _per_message(self, messages: Sequence[Message], items: list[Any]) -> BatchResult:
        results, stop = [], None
        for message, item in zip(messages, items, strict=True):
            code = int(item.get("ErrorCode", -1))
            text = str(item.get("Message", ""))
            if code == 0:
                results.append(
                    RecipientResult(
                        message.key, Outcome.SENT, provider_id=str(item.get("MessageID"))
                    )
                )
            elif code in RECIPIENT_CODES:
                reason = f"{RECIPIENT_CODES[code]} (Postmark {code}): {text}"
                results.append(RecipientResult(message.key, Outcome.FAILED, reason=reason))
            elif code == 429:
                results.append(RecipientResult(message.key, Outcome.RETRY, reason=text))
            elif code in ACCOUNT_CODES:
                stop = f"Postmark: {ACCOUNT_CODES[code]} (error {code}): {text}"
                results.append(RecipientResult(message.key, Outcome.RETRY, reason=stop))
            else:
                reason = f"Postmark error {code}: {text}"
                results.append(RecipientResult(message.key, Outcome.FAILED, reason=reason))
        return BatchResult(results, stop)

    def find_accepted(self, messages: Sequence[Message]) -> dict[str, str]:
        """Postmark's outbound message search, per recipient, by our tag and stream
        (https://postmarkapp.com/developer/api/messages-api#outbound-message-search:
        ``GET /messages/outbound?recipient=&tag=&messagestream=&count=&offset=``, answering
        ``Messages`` with ``MessageID``, ``Recipients``, ``Subject``, ``Metadata``).  A test
        copy has the same tag but a ``[Test]`` subject, so the subject must match too."""
        found: dict[str, str] = {}
        for message in messages:
            answer = self.api.get(
                "/messages/outbound",
                {
                    "recipient": message.to_email,
                    "tag": message.issue,
                    "messagestream": self.stream,
                    "count": 50,
                    "offset": 0,
                },
            )
            items = answer.get("Messages") if isinstance(answer, dict) else None
            if not isinstance(items, list):
                raise SearchFailed("Postmark's search answer has no Messages list")
            for item in items:
                # An item of another shape cannot be told apart from ours: the search fails
                # (the row stays unknown) rather than "not found" (sent again after the grace).
                listed = item.get("Recipients") if isinstance(item, dict) else None
                if not isinstance(listed, list) or not all(isinstance(r, str) for r in listed):
                    raise SearchFailed("Postmark's search answer has a message without Recipients")
                if item.get("Subject") != message.subject:
                    continue
                recipients = [r.lower() for r in listed]
                if message.to_email.lower() in recipients and item.get("MessageID"):
                    found[message.key] = str(item["MessageID"])
                    break
        return found

    def close(self) -> None:
        self.api.close()


def create(settings: Settings, environ: Mapping[str, str]) -> PostmarkProvider:
    options = Options(settings, OPTIONS)
    token = require_secret(environ, "POSTMARK_SERVER_TOKEN", "postmark")
    stream = options.string("message_stream", "broadcast")
    api = api_from(
        options,
        "Postmark",
        API_URL,
        {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "X-Postmark-Server-Token": token,
        },
    )
    managed = options.boolean("managed_unsubscribe", stream == "broadcast")
    provider = PostmarkProvider(api, stream, managed)
    provider.search_grace = options.number("search_grace", SEARCH_GRACE)
    days = options.number("retention_days", RETENTION_DAYS, minimum=1, maximum=365)
    provider.search_keeps = days * 86400.0
    return provider


def create_transactional(settings: Settings, environ: Mapping[str, str]) -> PostmarkProvider:
    """For the mail a person asks for one at a time (the signup confirmation, the welcome):
    a transactional stream (``confirm_stream``, default ``outbound``), where Postmark does not
    manage unsubscribes; broadcast streams are for newsletters."""
    provider = create(settings, environ)
    provider.stream = Options(settings, OPTIONS).string("confirm_stream", "outbound")
    provider.managed_unsubscribe = None
    return provider


OPTIONS = {
    **http_options(API_URL),
    "search_grace": "seconds after a batch before a message Postmark's search does not find is"
    " taken as never sent, when settling unknown recipients (default 600)",
    "retention_days": "days Postmark keeps your messages (default 45; 7 to 365 with its"
    " Retention Add-on): a message older than that is never taken as not sent",
    "message_stream": "the stream (default broadcast)",
    "confirm_stream": "the transactional stream for signup confirmations and the welcome"
    " (default outbound)",
    "managed_unsubscribe": "let Postmark insert its unsubscribe link and headers (default: true"
    " on the broadcast stream, where Postmark requires it)",
}
INFO = ProviderInfo(
    name="postmark",
    summary="Postmark's batch API, 500 messages a call",
    create=create,
    secrets=("POSTMARK_SERVER_TOKEN",),
    options=OPTIONS,
)
