"""The app served by waitress, with a limit on everything a client can hold.

waitress reads each request whole in its I/O loop before a worker thread sees it, so a slow
or half-open client costs a socket, not a thread (issue 10: 300 half-open connections held
301 threads of the old server).  The limits below bound the rest:

- ``backlog`` 1024: the old server's Python default of 5 reset 29 of 200 opt-outs at once;
- ``connection_limit``: beyond it waitress stops accepting (the kernel's backlog queues);
- ``channel_timeout``: a connection idle this long is closed;
- ``max_request_body_size`` and ``max_request_header_size``: bigger requests are refused
  (413/431) before they reach the app; a bad ``Content-Length`` (``-1``, ``abc``) is a 400.
  The body limit is the webhooks' (a SendGrid batch is up to 768 KB), not the form's: the
  app refuses a form over its own 16 KB itself (413), and waitress keeps a large body in a
  temporary file, not in memory, while it arrives.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from flask import Flask, render_template
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from pipeline.config import Settings
from pipeline.web.app import MAX_BODY
from pipeline.web.front_door import EXTENSION as FRONT_DOOR
from pipeline.web.front_door import FrontDoor, FrontDoorPlan
from pipeline.web.webhooks import MAX_BODY as MAX_WEBHOOK_BODY

THREADS = 16  # a burst of opt-outs shares one commit among the threads waiting for it
BACKLOG = 1024
CONNECTION_LIMIT = 500
CHANNEL_TIMEOUT = 20  # seconds a connection may sit idle
REQUEST_DEADLINE = 60  # seconds a request may take to arrive, however it trickles in
CLEANUP_INTERVAL = 2  # how often both are checked
MAX_HEADERS = 16 * 1024


def make_server(
    app: Flask,
    host: str = "127.0.0.1",
    port: int = 8026,
    *,
    threads: int = THREADS,
    deadline: float = REQUEST_DEADLINE,
    front_door: bool = True,
) -> BaseWSGIServer | MultiSocketServer:
    """Bound and listening; ``.run()`` serves, ``stop_server`` stops.  For the newsletter's
    app, connections come in through its front door (``pipeline.web.front_door``), which
    answers one-click opt-outs and hands the rest to waitress (``front_door=False``:
    waitress accepts them all itself, as a plain WSGI server)."""
    # "Task queue depth is 8" on every burst: requests waiting their turn is the design
    # (they are answered in order, none is lost), not something to warn the operator about.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    plan = getattr(app, "extensions", {}).get(FRONT_DOOR)
    # Behind nginx (``serve --proxies N``) the app's ProxyFix reads X-Forwarded-For/-Proto,
    # so waitress must pass them on: by default it deletes them before the app sees them,
    # and every reader's consent was recorded as nginx's address (and every signup shared
    # nginx's hourly limit).  Without proxies they are still deleted: anyone can send them.
    behind_proxies = isinstance(plan, FrontDoorPlan) and plan.trusted_proxies > 0
    server = create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        backlog=BACKLOG,
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=CHANNEL_TIMEOUT,
        max_request_body_size=max(MAX_BODY, MAX_WEBHOOK_BODY),
        max_request_header_size=MAX_HEADERS,
        ident="newsletter",  # the Server header: no version to look up exploits by
        expose_tracebacks=False,
        # poll(), not select(): no 1024-descriptor ceiling under many connections.
        asyncore_use_poll=True,
        cleanup_interval=CLEANUP_INTERVAL,
        clear_untrusted_proxy_headers=not behind_proxies,
    )
    found = (server.map or {}).values() if isinstance(server, MultiSocketServer) else [server]
    listeners = [listener for listener in found if isinstance(listener, BaseWSGIServer)]
    for listener in listeners:
        listener.channel_class = PatientChannel
        _enforce_deadline(listener, deadline)
    if isinstance(plan, FrontDoorPlan) and front_door:
        door = FrontDoor(
            listeners,
            plan.one_click,
            trusted_proxies=plan.trusted_proxies,
            connection_limit=CONNECTION_LIMIT,
        )
        door.start()
        server.front_door = door  # type: ignore[union-attr]
    return server


class PatientChannel(HTTPChannel):
    """A connection the I/O loop leaves alone while a worker thread is still answering it.

    waitress flushes an answer while its task runs: a connection with output waiting is
    "writable", so poll() returns at once, the loop finds the task holding the buffer, and
    goes round again.  In a burst of opt-outs (200 at once, each waiting a moment for the
    ledger's commit) that loop spun on every answer written but not yet finished, and took
    the interpreter from the very threads it waited for: the server spent 2.5-8 ms of CPU
    per opt-out instead of 0.5, and answered the last of 200 after 0.5-1.3 s instead of
    0.1.  Our answers are small (a page, a JSON line), so they go out when the task is done:
    its end wakes the loop (waitress pulls its trigger).  Output past the high-water mark
    (a worker waiting for room), and a connection closing, are flushed as before."""

    def writable(self) -> bool:
        if (
            self.requests
            and not (self.will_close or self.close_when_flushed)
            and self.total_outbufs_len <= self.adj.outbuf_high_watermark
        ):
            return False
        return bool(super().writable())


def _enforce_deadline(server: BaseWSGIServer, deadline: float) -> None:
    """Close a connection whose request has been arriving for longer than ``deadline``, or
    that has brought no request at all for that long.

    waitress closes a connection idle for ``channel_timeout``, but a client that sends one
    byte every few seconds is never idle (slowloris): 500 of them held every connection
    waitress accepts.  Each request's first sight is noted at the periodic cleanup, and a
    request still incomplete ``deadline`` seconds later is dropped (a real one, even a
    768 KB webhook batch, arrives in well under a second).  Blank lines are not a request
    (waitress drops them, RFC 7230 3.5), yet they kept a connection busy: a client sending
    blank lines every few seconds held it for good.  So a connection also lives at most
    ``deadline`` past the last request it brought (a keep-alive client that asks again keeps
    it; an idle one is closed sooner anyway)."""
    first_seen: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()
    last_request: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()
    maintenance: Any = server.maintenance  # types-waitress types these two wrongly
    channels: Any = server.active_channels
    add_task: Any = server.add_task

    def noting_requests(channel: Any) -> None:
        # Called in the I/O loop for each request handed to a worker (as is the cleanup).
        last_request[channel] = time.time()
        add_task(channel)

    def with_deadline(now: float) -> None:
        maintenance(now)
        for channel in list(channels.values()):
            arriving = channel.request
            if arriving is not None and not arriving.completed:
                if now - first_seen.setdefault(arriving, now) > deadline:
                    channel.will_close = True
                continue
            if channel.requests or channel.total_outbufs_len:
                continue  # being answered, or its answer still going out: never cut one
            if now - last_request.get(channel, channel.creation_time) > deadline:
                channel.will_close = True

    server.add_task = noting_requests  # type: ignore[method-assign, assignment]
    server.maintenance = with_deadline  # type: ignore[method-assign]


def stop_server(server: BaseWSGIServer | MultiSocketServer) -> None:
    """Let the requests in hand finish (bounded), then close the sockets: the listening one
    and the clients' idle keep-alive connections, which would otherwise keep waitress's
    loop running until each timed out."""
    door = getattr(server, "front_door", None)
    if isinstance(door, FrontDoor):
        door.stop()  # first: nothing more is handed to waitress, opt-outs in hand answered
    server.task_dispatcher.shutdown(timeout=10)
    server.close()
    # A single socket's server keeps its channels in ``_map``; several sockets share ``map``.
    channels = getattr(server, "_map", None) or getattr(server, "map", {})
    wasyncore.close_all(channels, ignore_all=True)


def snippet(app: Flask, settings: Settings) -> str:
    """The HTML form to paste into any page of the practice's site."""
    with app.app_context():
        return render_template(
            "snippet.html",
            action=f"{settings.base_url}/subscribe",
            tags=settings.signup.tags,
        ).strip()
