"""The front door of ``newsletter serve``: one event loop that accepts every connection,
answers RFC 8058 one-click opt-outs itself, and hands every other connection to waitress.

Why: after a send, mail clients post ``List-Unsubscribe=One-Click`` for every reader who
presses Unsubscribe, hundreds within a second, and each is to be answered within 100 ms once
it is on disk (issue 10).  waitress is a pure-Python server with a thread per request in hand:
answering a fixed page, with nothing behind it, cost it 0.31 ms of the one interpreter per
request, and the last of 200 at once waited 60-110 ms (``bench/optout_load.py``'s floor),
before any opt-out was recorded.  An event loop reading one small request and writing one
small answer costs about a third of that, and a request waiting for the ledger's group commit
holds no thread: its answer is written when the commit calls back.

What it answers, exactly: ``POST /unsubscribe?<query> HTTP/1.1`` (or 1.0) with one ``Content-Length:
26``, no ``Transfer-Encoding`` or ``Expect``, plain ASCII header lines, and the body RFC 8058
prescribes, nothing after it, whose token verifies (``OneClick.take_soon``: the same checks,
write and page as the WSGI middleware and the Flask view).  Anything else, and anything
unusual about it (a header twice, a folded line, a byte outside ASCII or a bare CR or LF, a
request that has not arrived whole within ``WAIT`` seconds), goes to waitress with the
bytes read so far, as if waitress had accepted it: its parser, limits and deadlines apply as
before (``_hand_over``).
So the front door never has to parse HTTP well, only to recognise one request for certain.

After the answer, a connection the client asked to keep (HTTP/1.1 without ``Connection:
close``) is handed to waitress too, for whatever it asks next; any other is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, NamedTuple

from pipeline.web.one_click import ONE_CLICK_BODY, OneClick
from pipeline.web.subscriptions import Visitor

WAIT = 1.0  # seconds a connection may take to bring a whole one-click request
ANSWER_WAIT = 30.0  # seconds an opt-out may wait for the ledger (GroupCommitter.commit's)
STOP_WAIT = 10.0  # seconds a stop waits for the opt-outs in hand (waitress's own wait)
MAX_HEAD = 16 * 1024  # waitress's max_request_header_size: a bigger head is waitress's (431)

_START = b"POST /unsubscribe?"
# A header line as the front door takes it: a plain name, and a value without leading or
# trailing spaces (a tab, or any byte outside printable ASCII, was handed over already).
_HEADER = re.compile(rb"([A-Za-z0-9-]+): *([\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)? *")
# The query: printable ASCII, no space, no fragment.  HTTP/1.0 too: nginx speaks it to the
# app unless told otherwise (proxy_http_version).
_REQUEST_LINE = re.compile(rb"POST /unsubscribe\?([\x21-\x22\x24-\x7e]*) HTTP/(1\.[01])")


class FrontDoorPlan(NamedTuple):
    """What ``create_app`` leaves for ``make_server``: the app's one-click answerer and how
    many proxies stand in front (for the client's address)."""

    one_click: OneClick
    trusted_proxies: int


EXTENSION = "newsletter-front-door"  # in app.extensions


@dataclass(frozen=True)
class OneClickPost:
    """What the front door needs of a one-click request it will answer."""

    query: str
    user_agent: str | None
    forwarded_for: str | None
    version: str = "1.1"  # of HTTP: the answer's is the request's, as waitress answers
    keep_alive: bool = False  # the connection stays open after the answer (waitress's)


NOT_YET = "not yet"  # could still become a one-click request: read on
HAND_OVER = "hand over"  # not one, or not for certain: waitress's


def recognise(data: bytes) -> OneClickPost | str:
    """``data`` (a connection's bytes so far) as a whole one-click POST, ``NOT_YET``, or
    ``HAND_OVER``.  Strict on purpose: whatever it does not take, waitress serves.  The head
    is judged as soon as it is whole, before any body: a request that will not be one (no
    body to come, ``Expect: 100-continue``) goes to waitress at once, not after ``WAIT``."""
    if not data.startswith(_START):
        return NOT_YET if _START.startswith(data) else HAND_OVER
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return NOT_YET if len(data) <= MAX_HEAD else HAND_OVER
    if end > MAX_HEAD:
        return HAND_OVER
    post = _head(data[:end])
    if post is None:
        return HAND_OVER
    body = data[end + 4 :]
    if body == ONE_CLICK_BODY:
        return post
    arriving = len(body) < len(ONE_CLICK_BODY) and ONE_CLICK_BODY.startswith(body)
    return NOT_YET if arriving else HAND_OVER


def _head(head: bytes) -> OneClickPost | None:
    """The request line and headers of a one-click POST, or None for anything else."""
    first, *lines = head.split(b"\r\n")
    request = _REQUEST_LINE.fullmatch(first)
    if request is None:  # a bare CR or LF, a space too many, a byte outside ASCII...
        return None
    seen: dict[bytes, bytes] = {}
    for line in lines:
        header = _HEADER.fullmatch(line)
        if header is None:  # a folded line, no colon, a name waitress reads otherwise
            return None
        name = header[1].lower()
        if name in seen:  # twice: how each reader joins them is a question not worth asking
            return None
        seen[name] = header[2] or b""
    if seen.get(b"content-length") != b"26" or b"transfer-encoding" in seen or b"expect" in seen:
        return None
    agent, forwarded = seen.get(b"user-agent"), seen.get(b"x-forwarded-for")
    version = request[2].decode("ascii")
    return OneClickPost(
        query=request[1].decode("ascii"),
        user_agent=agent.decode("ascii") if agent is not None else None,
        forwarded_for=forwarded.decode("ascii") if forwarded is not None else None,
        version=version,
        # HTTP/1.1 keeps the connection unless told not to: waitress takes it on after the
        # answer.  HTTP/1.0 (nginx) closes, as waitress closes it without keep-alive.
        keep_alive=version == "1.1" and seen.get(b"connection", b"").lower() != b"close",
    )


class Answers:
    """The whole answers, as waitress writes one: the page's headers, waitress's Server and
    Date, ``Connection: close`` unless the connection stays open, every header in name
    order.  The lines are put together once; only the length and the date change."""

    def __init__(self, one_click: OneClick, ident: str) -> None:
        self.one_click = one_click
        self.ident = ident
        self._heads: dict[str, str] = {}
        self._date = (0, "")

    def reply(self, version: str, status: str, body: bytes, *, close: bool = True) -> bytes:
        which = f"{version} {status} {close}"
        head = self._heads.get(which)
        if head is None:
            head = self._heads[which] = self._head(version, status, close)
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, formatdate(now, usegmt=True))
        return (head % (len(body), self._date[1])).encode("latin-1") + body

    def _head(self, version: str, status: str, close: bool) -> str:
        headers = [
            (name, value.replace("%", "%%"))
            for name, value in self.one_click.headers(b"")
            if name != "Content-Length"
        ]
        lines = sorted(
            [
                *headers,
                ("Content-Length", "%d"),
                *([("Connection", "close")] if close else []),  # HTTP/1.1 keeps it by default
                ("Server", self.ident.replace("%", "%%")),
                ("Date", "%s"),
            ],
            key=lambda pair: pair[0],
        )
        return f"HTTP/{version} {status}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in lines) + "\r\n"


class FrontDoor:
    """Accepts on waitress's listening sockets in its own thread's event loop (waitress's
    own accepting is switched off), answers one-click opt-outs, hands the rest on."""

    def __init__(
        self,
        listeners: list[Any],  # waitress BaseWSGIServer, bound and listening
        one_click: OneClick,
        *,
        trusted_proxies: int = 0,
        connection_limit: int,
        wait: float | None = None,
    ) -> None:
        self.listeners = listeners
        self.one_click = one_click
        self.connection_limit = connection_limit
        self.wait = WAIT if wait is None else wait
        self.visitor = client_visitor(trusted_proxies)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="newsletter-front-door", daemon=True)
        self._in_hand: set[asyncio.Task[None]] = set()
        self._waiting: dict[asyncio.Future[tuple[str, bytes] | None], float] = {}
        self._answers = Answers(one_click, listeners[0].adj.ident if listeners else "")
        self._background: list[asyncio.Task[None]] = []
        self._ready = threading.Event()
        self._stopping = False
        self._handing = 0  # handed to waitress, not yet adopted by its thread
        self._handing_lock = threading.Lock()

    # Start and stop -----------------------------------------------------------------------

    def start(self) -> None:
        for listener in self.listeners:
            listener.accepting = False  # waitress's loop leaves the listening socket to us
        self._thread.start()
        self._ready.wait(10)

    def stop(self, timeout: float = STOP_WAIT) -> None:
        """Stop accepting; let the opt-outs in hand be answered (bounded), hand nothing more
        on; then end the loop."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._stop(timeout), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout + 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _stop(self, timeout: float) -> None:
        self._stopping = True
        for listener in self.listeners:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(listener.socket.fileno())
        for task in self._background:
            task.cancel()
        if self._in_hand:
            await asyncio.wait(set(self._in_hand), timeout=timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        for listener in self.listeners:
            self._listen(listener)
        self._background.append(self._loop.create_task(self._watch()))
        self._loop.call_soon(self._ready.set)
        try:
            self._loop.run_forever()
        finally:
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    # Connections --------------------------------------------------------------------------

    def _listen(self, listener: Any) -> None:
        """Accept whenever the listening socket is readable.  A reader callback, not an
        awaited ``sock_accept``: cancelling that at a stop raced with a connection arriving
        (Python 3.11), which was accepted and dropped with a traceback in the log."""
        if not self._stopping:
            self._loop.add_reader(listener.socket.fileno(), self._accept, listener)

    def _open(self, listener: Any) -> int:
        """Connections open, counted as waitress counts them (its map holds its listening
        socket and trigger too), with ours: in hand, or handed on and not yet adopted."""
        with self._handing_lock:
            handing = self._handing
        return len(listener._map) + len(self._in_hand) + handing

    def _accept(self, listener: Any) -> None:
        while self._open(listener) < self.connection_limit:
            try:
                connection, address = listener.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the client left before it was accepted; the socket was closed
                return
            connection.setblocking(False)
            with contextlib.suppress(OSError):
                listener.set_socket_options(connection)
            task = self._loop.create_task(self._guarded(listener, connection, address))
            self._in_hand.add(task)
            task.add_done_callback(self._in_hand.discard)
        # At the limit: the kernel's backlog holds the rest (as waitress does) until a
        # connection closes; look again in a moment.
        with contextlib.suppress(Exception):
            self._loop.remove_reader(listener.socket.fileno())
        self._loop.call_later(0.05, self._listen, listener)

    async def _guarded(self, listener: Any, connection: socket.socket, address: Any) -> None:
        try:
            await self._serve(listener, connection, address)
        except asyncio.CancelledError:  # a stop that waited long enough: nobody to answer
            connection.close()
            raise
        except Exception as exc:  # never a task dying with its connection left open
            connection.close()
            self.one_click.subscriptions.log(
                f"a connection was closed unanswered: {type(exc).__name__}: {exc}"
            )

    async def _serve(self, listener: Any, connection: socket.socket, address: Any) -> None:
        loop = asyncio.get_running_loop()
        data = b""
        try:
            # A mail client's request is usually there by the time it is accepted: read it
            # without a timer or a future (a burst is 200 of these).
            data = connection.recv(65536)
            if not data:  # the client closed without a word: nothing to answer
                connection.close()
                return
        except BlockingIOError:
            pass
        except OSError:
            connection.close()
            return
        found = recognise(data)
        try:
            deadline = loop.time() + self.wait
            while found is NOT_YET and (left := deadline - loop.time()) > 0:
                async with asyncio.timeout(left):
                    chunk = await loop.sock_recv(connection, 65536)
                if not chunk:  # half-closed after a request that is not one: waitress's
                    break
                data += chunk
                found = recognise(data)
        except TimeoutError:
            pass
        except OSError:
            connection.close()
            return
        if isinstance(found, OneClickPost) and await self._answer(
            listener, connection, address, found
        ):
            return
        self._hand_over(listener, connection, address, data)

    async def _answer(
        self, listener: Any, connection: socket.socket, address: Any, post: OneClickPost
    ) -> bool:
        """Record and answer ``post``; False when it is not ours after all (handed on)."""
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[tuple[str, bytes] | None] = loop.create_future()

        def settle(status: str, page: bytes) -> None:  # in the ledger's thread
            with contextlib.suppress(RuntimeError):  # the loop has stopped: nobody to tell
                loop.call_soon_threadsafe(_resolve, answered, (status, page))

        peer = address[0] if isinstance(address, tuple) else None
        visitor = self.visitor(peer, post.forwarded_for, post.user_agent)
        too_long = self.one_click.take_soon(post.query, visitor, settle)
        if too_long is None:
            return False
        self._waiting[answered] = loop.time() + ANSWER_WAIT  # see _watch
        try:
            outcome = await answered
        finally:
            self._waiting.pop(answered, None)
        status, page = outcome if outcome is not None else too_long()
        keep = post.keep_alive and not self._stopping
        reply = self._answers.reply(post.version, status, page, close=not keep)
        try:
            sent = connection.send(reply)  # 2 KB: almost always all of it, at once
            if sent < len(reply):
                await loop.sock_sendall(connection, reply[sent:])
        except OSError:
            connection.close()  # the client left: the opt-out is recorded all the same
            return True
        if keep:  # its next request, if it sends one, is waitress's to answer
            self._hand_over(listener, connection, address, b"")
            return True
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_WR)  # the answer, then a clean end
        connection.close()
        return True

    async def _watch(self) -> None:
        """Give up on an opt-out the ledger has not answered in ``ANSWER_WAIT`` seconds (a
        disk that hangs: it is answered 503): one timer for them all, not one each."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1)
            now = loop.time()
            for waiting, until in list(self._waiting.items()):
                if until <= now:
                    _resolve(waiting, None)

    def _hand_over(
        self, listener: Any, connection: socket.socket, address: Any, data: bytes
    ) -> None:
        """Give the connection to waitress, in waitress's I/O thread (its trigger runs
        ``adopt`` there), as its own accept would have, with the bytes already read."""

        def adopt() -> None:
            with self._handing_lock:
                self._handing -= 1
            try:
                channel = listener.channel_class(
                    listener,
                    connection,
                    listener.fix_addr(address),
                    listener.adj,
                    map=listener._map,
                )
                if data:
                    channel.received(data)
            except Exception:
                connection.close()

        with self._handing_lock:
            self._handing += 1
        listener.trigger.pull_trigger(adopt)


def _resolve(
    future: asyncio.Future[tuple[str, bytes] | None], value: tuple[str, bytes] | None
) -> None:
    if not future.done():
        future.set_result(value)


def client_visitor(trusted_proxies: int) -> Callable[[str | None, str | None, str | None], Visitor]:
    """Who sent a request, as the app's ProxyFix would say: the socket's peer, or with
    ``trusted_proxies`` the address that many hops back in X-Forwarded-For."""
    if not trusted_proxies:
        return lambda peer, forwarded, agent: Visitor(ip=peer, user_agent=agent)
    from werkzeug.middleware.proxy_fix import ProxyFix

    def remote_addr(environ: dict[str, Any], start_response: Any) -> list[Any]:
        return [environ.get("REMOTE_ADDR")]

    # ProxyFix itself, on an environ of just these two: its rules, not a copy of them.
    fix: Any = ProxyFix(remote_addr, x_for=trusted_proxies)

    def visitor(peer: str | None, forwarded: str | None, agent: str | None) -> Visitor:
        environ: dict[str, Any] = {"REMOTE_ADDR": peer}
        if forwarded is not None:
            environ["HTTP_X_FORWARDED_FOR"] = forwarded
        (ip,) = fix(environ, lambda *args: None)
        return Visitor(ip=ip, user_agent=agent)

    return visitor
