"""RFC 8058 one-click opt-outs, answered in front of Flask.

After a send, mail clients post ``List-Unsubscribe=One-Click`` to ``/unsubscribe?token=...``
for every reader who presses Unsubscribe: hundreds can arrive within a second, and each must be
recorded durably (the ledger's group commit) before it is answered.  Through Flask, each cost
about 0.5 ms of the one interpreter's time (request context, routing, the page's template)
on top of waitress's own; 200 at once queued behind each other for 250 ms and more (issue 10).

So this WSGI middleware takes exactly that request, and nothing else, before Flask sees it:
a ``POST`` to ``/unsubscribe`` whose body is the 26 bytes RFC 8058 prescribes and whose token
verifies.  It records the opt-out through the same ``Subscriptions.unsubscribe`` the view
calls, and answers with the same page, rendered once at start with a placeholder for the
masked address (as the email is rendered once and filled per reader).  Everything else
(a GET, a forged token, another body, a custom page the placeholder cannot fill) goes on to
Flask unchanged, which answers it as before.

``newsletter serve`` answers the same request one step earlier still, in its front door
(``pipeline.web.front_door``), which calls ``take_soon`` here: the same checks, the same
write, the same page, without a server thread waiting on the ledger.  This middleware answers
it under any other WSGI server, and whatever the front door hands on.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from markupsafe import escape
from werkzeug.wrappers import Request

from pipeline.messages.unsubscribe import read_token
from pipeline.web.subscriptions import (
    NOT_RECORDED,
    Subscriptions,
    Visitor,
    mask,
    not_recorded_line,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"
PLACEHOLDER = "\x00who\x00"  # never in a page: a NUL cannot come from the templates


class OneClickPages:
    """The two answers, as bytes: the success page split around the masked address, and
    the "not recorded" page (the same for everyone)."""

    def __init__(self, done: str, failed: str, headers: list[tuple[str, str]]) -> None:
        self.before, self.after = (
            done.split(PLACEHOLDER) if done.count(PLACEHOLDER) == 1 else ("", "")
        )
        self.usable = bool(self.before or self.after)
        self.failed = failed.encode("utf-8")
        self.headers = headers

    def done(self, who: str) -> bytes:
        # Escaped as Jinja escapes ``{{ who }}`` (markupsafe), so the bytes are the view's.
        return f"{self.before}{escape(who)}{self.after}".encode()


_PLAIN_QUERY = re.compile(r"token=([A-Za-z0-9_.-]+)")


def read_key(secret: bytes, query_string: str) -> str | None:
    """The address a one-click URL's ``token`` stands for (None: no token, or not ours).

    The query read exactly as the view reads it (werkzeug's ``request.args``): with
    ``?token=&token=<valid>`` the view takes the first, empty, value and refuses, and so must
    this (urllib's parse_qs drops blank values and took the second).  A query of nothing
    but ``token=`` and a token's own characters reads the same either way, without building
    a request (the front door's every opt-out)."""
    plain = _PLAIN_QUERY.fullmatch(query_string)
    if plain is not None:
        return read_token(secret, plain[1])
    try:
        args = Request({"QUERY_STRING": query_string}, populate_request=False).args
        token = args.get("token", "")
    except ValueError:  # bytes that are not UTF-8: the view answers that
        return None
    return read_token(secret, token) if token else None


Answered = Callable[[str, bytes], None]  # (the status line's code and words, the page)


class OneClick:
    def __init__(
        self, app: WSGIApplication, subscriptions: Subscriptions, pages: OneClickPages
    ) -> None:
        self.app = app
        self.subscriptions = subscriptions
        self.pages = pages

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if (
            environ.get("REQUEST_METHOD") != "POST"
            or environ.get("PATH_INFO") != "/unsubscribe"
            or environ.get("CONTENT_LENGTH") != str(len(ONE_CLICK_BODY))
        ):
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(len(ONE_CLICK_BODY))
        key = self._key(environ) if body == ONE_CLICK_BODY else None
        pages = self.pages
        if key is None or not pages.usable:
            environ["wsgi.input"] = io.BytesIO(body)  # Flask reads it again, as sent
            return self.app(environ, start_response)
        visitor = Visitor(ip=environ.get("REMOTE_ADDR"), user_agent=environ.get("HTTP_USER_AGENT"))
        try:
            self.subscriptions.unsubscribe(key, visitor)
        except NOT_RECORDED as exc:
            # Not recorded: say so (a mail client retries a 5xx), as the view does.
            self.subscriptions.log(not_recorded_line(key, exc))
            return self._answer(start_response, "503 Service Unavailable", pages.failed, pages)
        return self._answer(start_response, "200 OK", pages.done(mask(key)), pages)

    def _key(self, environ: WSGIEnvironment) -> str | None:
        return read_key(self.subscriptions.mailer.secret, environ.get("QUERY_STRING", ""))

    def take_soon(
        self, query_string: str, visitor: Visitor, answered: Answered
    ) -> Callable[[], tuple[str, bytes]] | None:
        """The front door's way in: for a one-click POST (method, path and body already
        checked) with this query, record the opt-out and call ``answered(status, page)``
        once it is recorded or refused, without waiting here.  Returns what to call if the
        ledger takes too long (it says so, for /healthz and the log, and gives the 503
        answer); None when it is not ours to answer (no valid token, or her page cannot be
        filled): the request goes on to Flask."""
        key = read_key(self.subscriptions.mailer.secret, query_string)
        pages = self.pages
        if key is None or not pages.usable:
            return None

        def refused(error: BaseException) -> tuple[str, bytes]:
            # Not recorded: say so (a mail client retries a 5xx), as the view does.
            self.subscriptions.log(not_recorded_line(key, error))
            return "503 Service Unavailable", pages.failed

        def recorded(error: BaseException | None) -> None:
            answered(*(("200 OK", pages.done(mask(key))) if error is None else refused(error)))

        def too_long() -> tuple[str, bytes]:
            late = TimeoutError("the ledger did not answer in time")
            self.subscriptions.not_recorded(late)
            return refused(late)

        self.subscriptions.unsubscribe_soon(key, visitor, recorded)
        return too_long

    def headers(self, body: bytes) -> list[tuple[str, str]]:
        """The answer's headers (the server adds its own: Date, Server, Connection)."""
        return [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *self.pages.headers,
        ]

    def _answer(
        self, start_response: StartResponse, status: str, body: bytes, pages: OneClickPages
    ) -> list[bytes]:
        headers: list[Any] = self.headers(body)
        start_response(status, headers)
        return [body]
