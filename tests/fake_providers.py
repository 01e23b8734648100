"""Real local servers that speak providers' wire formats, with faults to inject.

One harness for every HTTP provider: a ThreadingHTTPServer on 127.0.0.1 that records each
request, checks its shape the way the provider would, and answers with the provider's
documented bodies.  Faults are queued per call (an HTTP status with headers, a delay longer
than the client's timeout) or per recipient (a provider error code for one address).
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from email.utils import parseaddr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl


@dataclass
class CallFault:
    status: int = 0  # 0: answer normally (after ``delay``)
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0  # seconds before answering (a timeout, if longer than the client waits)
    accept: bool = False  # with a delay: process the messages anyway (the client never knows)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (the SIGKILL tests) is expected, not a failure."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FakeApi:
    """Base: subclasses implement ``handle(path, headers, body) -> (status, headers, body)``."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.delivered: Counter[str] = Counter()  # recipient address -> messages accepted
        self.faults: list[CallFault] = []
        self.recipient_errors: dict[str, int] = {}
        self.latency = 0.0  # seconds added to every call, like a network round trip
        self.replies: dict[str, tuple[int, dict[str, str], Any]] = {}  # idempotency key ->
        self.in_progress: set[str] = set()
        self.replayed = 0  # requests answered from an idempotency key, not sent again
        self.at_once = self.most_at_once = 0  # calls being answered at the same time
        self.lock = threading.Lock()
        self.accepted: list[dict[str, Any]] = []  # what the provider's search can find
        self.searches = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                status, headers, body = api.dispatch(self.path, dict(self.headers), raw)
                data = b"" if body is None else json.dumps(body).encode("utf-8")
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    if data:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout fault)

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                with api.lock:
                    status, headers, body = api.search(
                        path, dict(parse_qsl(query, keep_blank_values=True)), dict(self.headers)
                    )
                data = json.dumps(body).encode("utf-8")
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def dispatch(
        self, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            fault = self.faults.pop(0) if self.faults else CallFault()
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            return self._answer(path, headers, raw, fault)
        finally:
            with self.lock:
                self.at_once -= 1

    def _answer(
        self, path: str, headers: dict[str, str], raw: bytes, fault: CallFault
    ) -> tuple[int, dict[str, str], Any]:
        """With an idempotency key, as Resend documents it: the same key again replays the
        first successful answer and sends nothing; while the first is still being processed,
        a second gets 409 ``concurrent_idempotent_requests``."""
        key = self.idempotency_key(headers, raw)
        if key:
            with self.lock:
                if key in self.replies:
                    self.replayed += 1
                    return self.replies[key]
                if key in self.in_progress:
                    return self.concurrent_reply()
                self.in_progress.add(key)
        try:
            reply = self._process(path, headers, raw, fault)
            # Only an answer the API itself made is kept for the key; an injected fault
            # stands for what happened on the way, not for what the provider did.
            if key and reply[0] < 300 and not fault.status:
                with self.lock:
                    self.replies[key] = reply
            return reply
        finally:
            if key:
                with self.lock:
                    self.in_progress.discard(key)

    def idempotency_key(self, headers: dict[str, str], raw: bytes) -> str | None:
        return None

    def search(
        self, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        """A GET: the provider's search of what it accepted (where it has one)."""
        return 404, {}, {"message": f"no such endpoint {path}"}

    def concurrent_reply(self) -> tuple[int, dict[str, str], Any]:
        return 409, {}, {"message": "a request with this key is in progress"}

    def parse(self, headers: dict[str, str], raw: bytes) -> Any:
        return json.loads(raw) if raw else None

    def _process(
        self, path: str, headers: dict[str, str], raw: bytes, fault: CallFault
    ) -> tuple[int, dict[str, str], Any]:
        if self.latency:
            time.sleep(self.latency)
        if fault.delay:
            time.sleep(fault.delay)
            if not fault.accept:
                return 503, {}, {"Message": "timed out"}
        if fault.status:
            return fault.status, fault.headers, fault.body or {}
        body = self.parse(headers, raw)
        with self.lock:
            self.requests.append(Received(path, headers, body))
            return self.handle(path, headers, body)

    def handle(
        self, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


POSTMARK_TOKEN = "test-server-token"


class FakePostmark(FakeApi):
    """``POST /email/batch`` as documented:
    https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails
    """

    REQUIRED: ClassVar[set[str]] = {
        "From",
        "To",
        "Subject",
        "HtmlBody",
        "TextBody",
        "MessageStream",
    }

    def handle(
        self, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if path != "/email/batch":
            return 404, {}, {"ErrorCode": 404, "Message": f"no such endpoint {path}"}
        if headers.get("X-Postmark-Server-Token") != POSTMARK_TOKEN:
            return 401, {}, {"ErrorCode": 10, "Message": "Bad or missing Server API token."}
        if headers.get("Accept") != "application/json":
            return 422, {}, {"ErrorCode": 409, "Message": "JSON required"}
        if not isinstance(body, list):
            return 422, {}, {"ErrorCode": 402, "Message": "Invalid JSON"}
        if len(body) > 500:
            return 422, {}, {"ErrorCode": 410, "Message": "Too many batch messages"}
        results = []
        for number, message in enumerate(body):
            missing = self.REQUIRED - set(message)
            to = str(message.get("To", ""))
            address = to.rsplit("<", 1)[-1].rstrip(">").strip().lower()
            code = self.recipient_errors.get(address, 0)
            if missing:
                results.append({"ErrorCode": 300, "Message": f"missing {sorted(missing)}"})
            elif code == 406:
                results.append(
                    {
                        "ErrorCode": 406,
                        "Message": "You tried to send to a recipient that has been marked as "
                        "inactive.",
                        "To": to,
                    }
                )
            elif code:
                results.append({"ErrorCode": code, "Message": f"error {code}", "To": to})
            else:
                self.delivered[address] += 1
                self.accepted.append(
                    {
                        "MessageID": f"pm-{len(self.requests)}-{number}",
                        "Recipients": [address],
                        "To": [{"Email": address, "Name": None}],
                        "Tag": message.get("Tag", ""),
                        "Subject": message["Subject"],
                        "MessageStream": message["MessageStream"],
                        "Metadata": message.get("Metadata", {}),
                        "Status": "Sent",
                        "ReceivedAt": "2025-07-21T07:00:00-04:00",
                    }
                )
                results.append(
                    {
                        "ErrorCode": 0,
                        "Message": "OK",
                        "MessageID": f"pm-{len(self.requests)}-{number}",
                        "SubmittedAt": "2025-07-21T07:00:00-04:00",
                        "To": to,
                    }
                )
        return 200, {}, results

    def search(
        self, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        """``GET /messages/outbound``, the outbound message search:
        https://postmarkapp.com/developer/api/messages-api#outbound-message-search"""
        if path != "/messages/outbound":
            return 404, {}, {"ErrorCode": 404, "Message": f"no such endpoint {path}"}
        if headers.get("X-Postmark-Server-Token") != POSTMARK_TOKEN:
            return 401, {}, {"ErrorCode": 10, "Message": "Bad or missing Server API token."}
        if "count" not in query or "offset" not in query or int(query["count"]) > 500:
            return 422, {}, {"ErrorCode": 600, "Message": "count (at most 500) and offset"}
        self.searches += 1
        found = [
            m
            for m in self.accepted
            if (not query.get("recipient") or query["recipient"].lower() in m["Recipients"])
            and (not query.get("tag") or m["Tag"] == query["tag"])
            and (not query.get("messagestream") or m["MessageStream"] == query["messagestream"])
        ]
        offset, count = int(query["offset"]), int(query["count"])
        return 200, {}, {"TotalCount": len(found), "Messages": found[offset : offset + count]}


def _address_of(mailbox: str) -> str:
    return parseaddr(mailbox)[1].lower()


SENDGRID_KEY = "SG.test-key"


class FakeSendGrid(FakeApi):
    """``POST /v3/mail/send``:
    https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send
    """

    def handle(
        self, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if path != "/v3/mail/send":
            return 404, {}, {"errors": [{"message": f"no such endpoint {path}"}]}
        if headers.get("Authorization") != f"Bearer {SENDGRID_KEY}":
            return (
                401,
                {},
                {
                    "errors": [
                        {
                            "message": "The provided authorization grant is "
                            "invalid, expired, or revoked"
                        }
                    ]
                },
            )
        people = body.get("personalizations", [])
        content = body.get("content", [])
        problems = []
        if not 1 <= len(people) <= 1000:
            problems.append("personalizations: between 1 and 1000")
        if [c.get("type") for c in content] != ["text/plain", "text/html"]:
            problems.append("content: text/plain first, then text/html")
        if "email" not in body.get("from", {}):
            problems.append("from.email is required")
        for person in people:
            if len(person.get("to", [])) != 1 or "email" not in person["to"][0]:
                problems.append("personalizations.to: one recipient each")
            reserved = {h.lower() for h in person.get("headers", {})} & {"to", "from", "subject"}
            if reserved:
                problems.append(f"reserved headers {sorted(reserved)}")
            if sum(len(k) + len(v) for k, v in person.get("substitutions", {}).items()) > 10000:
                problems.append("substitutions over 10,000 bytes")
        if problems:
            return 400, {}, {"errors": [{"message": p} for p in problems]}
        message_id = f"sg-{len(self.requests)}"
        for number, person in enumerate(people):
            address = person["to"][0]["email"].lower()
            self.delivered[address] += 1
            self.accepted.insert(  # the Email Activity feed lists the most recent first
                0,
                {
                    "from_email": body["from"]["email"],
                    "msg_id": f"{message_id}.filter0001.16648.5515E0B8{number}.0",
                    "subject": person.get("subject", body.get("subject", "")),
                    "to_email": person["to"][0]["email"],  # as sent
                    "status": "delivered",
                    "opens_count": 0,
                    "clicks_count": 0,
                    "last_event_time": "2025-07-21T11:00:00Z",
                    "categories": list(body.get("categories", [])),
                },
            )
        return 202, {"X-Message-Id": message_id}, None

    # The Email Activity API, a paid add-on:
    # https://www.twilio.com/docs/sendgrid/api-reference/email-activity/filter-all-messages
    # Without it (or with a key lacking Email Activity access) SendGrid answers as
    # sendgrid/sendgrid-csharp#689 shows: 400 {"errors": [{"message": "authorization
    # required"}]} (403 "access forbidden" for a key without the scope).
    activity_addon = False
    refusal: tuple[int, Any] = (400, {"errors": [{"message": "authorization required"}]})
    searches_allowed: int | None = None  # then 429, as the 6-a-minute limit does
    QUERY = re.compile(r'CONTAINS\(categories,("(?:[^"\\]|\\.)*")\) AND to_email IN \((.*)\)')
    STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')

    def search(
        self, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        if path != "/v3/messages":
            return 404, {}, {"errors": [{"message": f"no such endpoint {path}"}]}
        if headers.get("Authorization") != f"Bearer {SENDGRID_KEY}":
            return 401, {}, {"errors": [{"message": "authorization required"}]}
        if not self.activity_addon:
            return self.refusal[0], {}, self.refusal[1]
        if self.searches_allowed is not None and self.searches >= self.searches_allowed:
            return 429, {}, {"errors": [{"message": "too many requests"}]}
        limit = query.get("limit", "")
        if not limit.isdigit() or not 1 <= int(limit) <= 1000:
            return 400, {}, {"errors": [{"field": "limit", "message": "limit must be 1-1000"}]}
        matched = self.QUERY.fullmatch(query.get("query", ""))
        if not matched:
            return 400, {}, {"errors": [{"field": "query", "message": "invalid query"}]}
        unescape = lambda text: re.sub(r"\\(.)", r"\1", text)  # noqa: E731
        category = unescape(self.STRING.fullmatch(matched.group(1)).group(1))  # type: ignore[union-attr]
        wanted = {unescape(s).lower() for s in self.STRING.findall(matched.group(2))}
        self.searches += 1
        found = [
            {k: v for k, v in m.items() if k != "categories"}
            for m in self.accepted
            if category in m["categories"] and m["to_email"].lower() in wanted
        ]
        return 200, {}, {"messages": found[: int(limit)]}


MAILGUN_KEY = "key-test"


class FakeMailgun(FakeApi):
    """``POST /v3/<domain>/messages``, form data:
    https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages/batch-sending
    """

    domain = "movementsolutions.example"

    def parse(self, headers: dict[str, str], raw: bytes) -> Any:
        assert headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
        return parse_qsl(raw.decode("ascii"), keep_blank_values=True)

    def handle(
        self, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if path != f"/v3/{self.domain}/messages":
            return 404, {}, {"message": f"Domain not found: {path}"}
        expected = "Basic " + base64.b64encode(f"api:{MAILGUN_KEY}".encode()).decode()
        if headers.get("Authorization") != expected:
            return 401, {}, None  # Mailgun answers a bare "Forbidden"
        fields: dict[str, list[str]] = {}
        for name, value in body:
            fields.setdefault(name, []).append(value)
        to = fields.get("to", [])
        if not 1 <= len(to) <= 1000:
            return 400, {}, {"message": "to: between 1 and 1000 recipients"}
        for required in ("from", "subject", "html", "text"):
            if required not in fields:
                return 400, {}, {"message": f"'{required}' parameter is missing"}
        # Without recipient-variables every recipient would see every address.
        if "recipient-variables" not in fields:
            return 400, {}, {"message": "batch sending without recipient-variables"}
        variables = json.loads(fields["recipient-variables"][0])
        if {_address_of(t) for t in to} != {a.lower() for a in variables}:
            return 400, {}, {"message": "recipient-variables do not match the recipients"}
        queued = f"mg-{len(self.requests)}@{self.domain}"
        request = Received("", headers, body)
        for address in to:
            self.delivered[_address_of(address)] += 1
            filled = self.expand(
                request, next(a for a in variables if a.lower() == _address_of(address))
            )
            self.accepted.append(
                {
                    "event": "accepted",
                    "recipient": _address_of(address),
                    "tags": fields.get("o:tag", []),
                    "user-variables": {
                        name[2:]: value for name, value in filled.items() if name.startswith("v:")
                    },
                    "message": {
                        "headers": {
                            "message-id": queued,
                            "to": address,
                            "subject": filled["subject"],
                        }
                    },
                }
            )
        return 200, {}, {"id": f"<{queued}>", "message": "Queued. Thank you."}

    def search(
        self, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        """``GET /v3/<domain>/events``, the Events API:
        https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Events/"""
        if path != f"/v3/{self.domain}/events":
            return 404, {}, {"message": f"not found: {path}"}
        expected = "Basic " + base64.b64encode(f"api:{MAILGUN_KEY}".encode()).decode()
        if headers.get("Authorization") != expected:
            return 401, {}, None
        if int(query.get("limit", "100")) > 300:
            return 400, {}, {"message": "limit: at most 300"}
        self.searches += 1
        items = [
            e
            for e in self.accepted
            if (not query.get("event") or e["event"] == query["event"])
            and (not query.get("recipient") or e["recipient"] == query["recipient"].lower())
            and (not query.get("tags") or query["tags"] in e["tags"])
        ]
        return 200, {}, {"items": items[: int(query.get("limit", "100"))], "paging": {}}

    def expand(self, request: Received, address: str) -> dict[str, str]:
        """What Mailgun would send ``address``: every %recipient.KEY% filled."""
        fields = dict(request.body)
        variables = json.loads(fields["recipient-variables"])[address]

        def fill(text: str) -> str:
            return re.sub(r"%recipient\.([^%]+)%", lambda m: variables[m.group(1)], text)

        return {name: fill(value) for name, value in request.body if name != "to"}


RESEND_KEY = "re_test"


class FakeResend(FakeApi):
    """``POST /emails/batch`` with ``Idempotency-Key`` and permissive validation:
    https://resend.com/docs/api-reference/emails/send-batch-emails
    """

    def idempotency_key(self, headers: dict[str, str], raw: bytes) -> str | None:
        return headers.get("Idempotency-Key")

    def concurrent_reply(self) -> tuple[int, dict[str, str], Any]:
        return (
            409,
            {},
            {
                "statusCode": 409,
                "name": "concurrent_idempotent_requests",
                "message": "Same idempotency key used while original request is still in progress.",
            },
        )

    def handle(
        self, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if path != "/emails/batch":
            return 404, {}, {"statusCode": 404, "name": "not_found", "message": path}
        if headers.get("Authorization") != f"Bearer {RESEND_KEY}":
            return (
                403,
                {},
                {"statusCode": 403, "name": "invalid_api_key", "message": "API key is invalid"},
            )
        if not isinstance(body, list) or not 1 <= len(body) <= 100:
            return (
                422,
                {},
                {
                    "statusCode": 422,
                    "name": "validation_error",
                    "message": "between 1 and 100 emails",
                },
            )
        data, errors = [], []
        for index, email in enumerate(body):
            missing = {"from", "to", "subject"} - set(email)
            address = _address_of(email.get("to", [""])[0])
            if missing or not ("html" in email or "text" in email):
                errors.append({"index": index, "message": f"missing {sorted(missing)}"})
            elif address in self.recipient_errors:
                errors.append({"index": index, "message": "Invalid `to` field."})
            else:
                self.delivered[address] += 1
                data.append({"id": f"re-{len(self.requests)}-{index}"})
        reply: dict[str, Any] = {"data": data}
        if headers.get("x-batch-validation") == "permissive":
            reply["errors"] = errors
        elif errors:
            return (
                422,
                {},
                {"statusCode": 422, "name": "validation_error", "message": errors[0]["message"]},
            )
        return 200, {}, reply


BREVO_KEY = "xkeysib-test"


class FakeBrevo(FakeApi):
    """``POST /v3/smtp/email`` with ``messageVersions`` and an ``idempotencyKey``:
    https://developers.brevo.com/docs/batch-send-transactional-emails
    """

    def idempotency_key(self, headers: dict[str, str], raw: bytes) -> str | None:
        key = json.loads(raw).get("headers", {}).get("idempotencyKey")
        if key:
            uuid.UUID(key)  # Brevo requires a UUID
        return key

    def handle(
        self, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if path != "/v3/smtp/email":
            return 404, {}, {"code": "not_found", "message": path}
        if headers.get("api-key") != BREVO_KEY:
            return 401, {}, {"code": "unauthorized", "message": "Key not found"}
        versions = body.get("messageVersions", [])
        if not 1 <= len(versions) <= 1000:
            return 400, {}, {"code": "invalid_parameter", "message": "messageVersions"}
        if "email" not in body.get("sender", {}) or "htmlContent" not in body:
            return 400, {}, {"code": "missing_parameter", "message": "sender, htmlContent"}
        for version in versions:
            for name, value in version.get("headers", {}).items():
                if not value.isascii():
                    return 400, {}, {"code": "invalid_parameter", "message": name}
        ids = []
        for number, version in enumerate(versions):
            address = version["to"][0]["email"].lower()
            self.delivered[address] += 1
            ids.append(f"<br-{len(self.requests)}-{number}@smtp-relay.mailin.fr>")
            self.accepted.append(
                {
                    "email": address,
                    "subject": version.get("subject", body.get("subject")),
                    "messageId": ids[-1],
                    "uuid": str(uuid.uuid4()),
                    "date": "2025-07-21T07:00:00.000+02:00",
                    "from": body["sender"]["email"],
                    "tags": body.get("tags", []),
                }
            )
        return 201, {}, {"messageIds": ids}

    def search(
        self, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        """``GET /v3/smtp/emails``, the list of transactional emails:
        https://developers.brevo.com/reference/get-transac-emails-list"""
        if path != "/v3/smtp/emails":
            return 404, {}, {"code": "not_found", "message": path}
        if headers.get("api-key") != BREVO_KEY:
            return 401, {}, {"code": "unauthorized", "message": "Key not found"}
        if not (query.get("email") or query.get("messageId") or query.get("templateId")):
            return (
                400,
                {},
                {"code": "invalid_parameter", "message": "email, messageId or templateId"},
            )
        self.searches += 1
        found = [
            e
            for e in reversed(self.accepted)
            if (not query.get("email") or e["email"] == query["email"].lower())
            and (not query.get("messageId") or e["messageId"] == query["messageId"])
        ]
        offset, limit = int(query.get("offset", "0")), int(query.get("limit", "500"))
        return 200, {}, {"count": len(found), "transactionalEmails": found[offset : offset + limit]}


SES_KEY_ID = "AKIDTEST"


class FakeSes(FakeApi):
    """SES v2 ``SendEmail`` with raw content (for faults; ``tests/test_ses.py`` also runs
    against moto's real implementation):
    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html
    """

    def handle(
        self, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if path != "/v2/email/outbound-emails":
            return 404, {"X-Amzn-ErrorType": "NotFoundException"}, {"message": path}
        if not headers.get("Authorization", "").startswith(
            f"AWS4-HMAC-SHA256 Credential={SES_KEY_ID}/"
        ):
            return (
                403,
                {"X-Amzn-ErrorType": "UnrecognizedClientException"},
                {"message": "The security token included in the request is invalid."},
            )
        raw = base64.b64decode(body["Content"]["Raw"]["Data"])
        parsed = message_from_bytes(raw)
        (address,) = [a.lower() for a in body["Destination"]["ToAddresses"]]
        if _address_of(parsed["To"]) != address:
            return 400, {"X-Amzn-ErrorType": "BadRequestException"}, {"message": "To"}
        if address in self.recipient_errors:
            return (
                400,
                {"X-Amzn-ErrorType": "MessageRejected"},
                {"message": f"Email address is blacklisted: {address}"},
            )
        self.delivered[address] += 1
        return 200, {}, {"MessageId": f"ses-{len(self.requests)}"}
