"""Real local servers that speak providers' wire formats, with faults to inject.

One harness for every HTTP provider: a ThreadingHTTPServer on 127.0.0.1 that records each
request, checks its shape the way the provider would, and answers with the provider's
documented bodies.  Faults are queued per call (an HTTP status with headers, a delay longer
than the client's timeout) or per recipient (a provider error code for one address).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar


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


class FakeApi:
    """Base: subclasses implement ``handle(path, headers, body) -> (status, headers, body)``."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.delivered: Counter[str] = Counter()  # recipient address -> messages accepted
        self.faults: list[CallFault] = []
        self.recipient_errors: dict[str, int] = {}
        self.latency = 0.0  # seconds added to every call, like a network round trip
        self.at_once = self.most_at_once = 0  # calls being answered at the same time
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                status, headers, body = api.dispatch(self.path, dict(self.headers), raw)
                data = json.dumps(body).encode("utf-8")
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout fault)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
        if self.latency:
            time.sleep(self.latency)
        if fault.delay:
            time.sleep(fault.delay)
            if not fault.accept:
                return 503, {}, {"Message": "timed out"}
        if fault.status:
            return fault.status, fault.headers, fault.body or {}
        body = json.loads(raw) if raw else None
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
