"""The smtp provider against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import email
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Iterator
from email import policy
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from pipeline.config import load_settings
from pipeline.delivery.providers import create_provider
from pipeline.delivery.providers.smtp import SmtpProvider
from pipeline.sending import send_issue

from .conftest import SAMPLE_ISSUE


class Relay:
    """An SMTP sink that behaves like real relays: refuses some recipients, closes the
    connection every few messages, and can die in the middle of a message."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.secure: list[bool] = []  # per message: TLS and a login
        self.refuse: set[str] = set()
        self.drop_every = 0
        self.drop_during_data: set[str] = set()
        self._per_session: Counter[int] = Counter()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        rcpt = envelope.rcpt_tos[0]
        self.received.append((rcpt, envelope.original_content))
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.secure.append(tls and session.authenticated)
        if rcpt in self.drop_during_data:
            self.drop_during_data.discard(rcpt)
            server.transport.close()  # accepted, but the client never hears so
            return "250 never sent"
        self._per_session[id(session)] += 1
        if self.drop_every and self._per_session[id(session)] >= self.drop_every:
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 2.0.0 Ok: queued"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    handler = Relay()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def list_of(count: int) -> str:
    rows = [f"reader{i:03d}@example.org,Reader{i},Number {i},," for i in range(count)]
    return "email,first_name,last_name,status,tags\n" + "\n".join(rows) + "\n"


@pytest.fixture
def smtp_project(make_project: Callable[..., Path], relay: tuple[Relay, int]) -> Path:
    _, port = relay
    return make_project(
        provider=f'name = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        "timeout = 10",
        csv=list_of(30),
    )


def run_send(root: Path, **kwargs: Any) -> tuple[Any, SmtpProvider]:
    settings = load_settings(root / "newsletter.toml")
    provider = create_provider(settings, {})
    assert isinstance(provider, SmtpProvider)
    try:
        report = send_issue(
            root / SAMPLE_ISSUE, settings, provider, environ={}, sleep=lambda s: None, **kwargs
        )
    finally:
        provider.close()
    return report, provider


def test_a_send_arrives_over_smtp(relay: tuple[Relay, int], smtp_project: Path) -> None:
    server, _ = relay
    report, provider = run_send(smtp_project)
    assert report.counts.sent == 30 and report.exit_code == 0
    assert provider.connections == 1  # one reused connection
    assert sorted(r for r, _ in server.received) == [
        f"reader{i:03d}@example.org" for i in range(30)
    ]
    message = email.message_from_bytes(server.received[0][1], policy=policy.default)
    assert message["To"] == "Reader0 Number 0 <reader000@example.org>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Hi Reader0," in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_reconnects_when_the_relay_drops_the_connection(
    relay: tuple[Relay, int], smtp_project: Path
) -> None:
    server, _ = relay
    server.drop_every = 7
    report, provider = run_send(smtp_project)
    assert report.counts.sent == 30 and report.counts.unknown == 0
    assert provider.connections == 5  # 30 messages, a new connection after every 7
    assert Counter(r for r, _ in server.received) == {
        f"reader{i:03d}@example.org": 1 for i in range(30)
    }


def test_refused_recipient_fails_alone(relay: tuple[Relay, int], smtp_project: Path) -> None:
    server, _ = relay
    server.refuse = {"reader004@example.org"}
    report, _ = run_send(smtp_project)
    assert (report.counts.sent, report.counts.failed) == (29, 1)
    assert report.failures == [
        (
            "reader004@example.org",
            "RCPT TO: 550 5.1.1 <reader004@example.org>: Recipient address rejected: User unknown",
        )
    ]
    assert report.exit_code == 1


def test_a_drop_during_data_is_unknown_and_not_resent_unless_asked(
    relay: tuple[Relay, int], smtp_project: Path
) -> None:
    server, _ = relay
    server.drop_during_data = {"reader010@example.org"}
    report, _ = run_send(smtp_project)
    assert (report.counts.sent, report.counts.unknown) == (29, 1)
    assert report.unknown[0][0] == "reader010@example.org"
    assert len(server.received) == 30  # the server did take it: re-sending would duplicate

    again, _ = run_send(smtp_project)
    assert again.this_run.sent == 0 and len(server.received) == 30
    resent, _ = run_send(smtp_project, resend_unknown=True)
    assert resent.this_run.sent == 1 and resent.counts.unknown == 0
    assert [r for r, _ in server.received].count("reader010@example.org") == 2


def test_relay_down_pauses_and_the_next_run_resumes(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(
        provider=f'name = "smtp"\nhost = "127.0.0.1"\nport = {free_port()}\nsecurity = "none"',
        csv=list_of(5),
    )
    report, _ = run_send(root)
    assert report.counts.pending == 5 and report.this_run.paused
    assert "could not be sent after 5 tries" in report.this_run.paused
    assert "connection" in report.this_run.paused
    assert report.exit_code == 1


def test_one_message_paused_is_said_in_the_singular(make_project: Callable[..., Path]) -> None:
    root = make_project(
        provider=f'name = "smtp"\nhost = "127.0.0.1"\nport = {free_port()}\nsecurity = "none"',
        csv=list_of(1),
    )
    report, _ = run_send(root)
    assert report.this_run.paused is not None
    assert report.this_run.paused.startswith("1 message still could not be sent after 5 tries")


# TLS: a real test CA (trustme), trusted through SSL_CERT_FILE as a system CA would be.


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))


def _login(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"connie",
        b"relay-password",
    )
    return AuthResult(success=ok, handled=False)


@contextlib.contextmanager
def tls_relay(ca: trustme.CA, *, implicit: bool) -> Iterator[tuple[Relay, int]]:
    """A relay that takes mail only over TLS (STARTTLS required, or implicit TLS) and only
    after a login, as submission servers do."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    handler, port = Relay(), free_port()
    tls: dict[str, Any] = (
        {"ssl_context": context} if implicit else {"tls_context": context, "require_starttls": True}
    )
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=_login,
        # aiosmtpd counts only STARTTLS as TLS for AUTH; on an implicit-TLS port every
        # byte is encrypted anyway (the handler checks the transport itself).
        auth_require_tls=not implicit,
        **tls,
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def send_over(make_project: Callable[..., Path], port: int, security: str, password: str) -> Any:
    root = make_project(
        provider=f'name = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "{security}"\n'
        'username = "connie"\ntimeout = 10',
        csv=list_of(12),
    )
    settings = load_settings(root / "newsletter.toml")
    env = {"SMTP_PASSWORD": password}
    provider = create_provider(settings, env)
    try:
        return send_issue(
            root / SAMPLE_ISSUE, settings, provider, environ=env, sleep=lambda s: None
        )
    finally:
        provider.close()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_and_login(
    make_project: Callable[..., Path], ca: trustme.CA, trusted: None, security: str
) -> None:
    with tls_relay(ca, implicit=security == "tls") as (server, port):
        report = send_over(make_project, port, security, "relay-password")
    assert report.counts.sent == 12 and report.exit_code == 0
    assert len(server.received) == 12
    assert server.secure == [True] * 12  # every message went over TLS, after the login


def test_a_wrong_password_stops_the_send(
    make_project: Callable[..., Path], ca: trustme.CA, trusted: None
) -> None:
    with tls_relay(ca, implicit=False) as (server, port):
        report = send_over(make_project, port, "starttls", "wrong")
    assert report.status == "stopped" and "refused the login" in (report.this_run.stopped or "")
    assert "wrong" not in (report.this_run.stopped or "")  # the password is never echoed
    assert not server.received and report.counts.pending == 12


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_an_untrusted_certificate_stops_and_nothing_goes_in_plaintext(
    make_project: Callable[..., Path], ca: trustme.CA, security: str
) -> None:
    """No SSL_CERT_FILE: the test CA is unknown, as a self-signed relay would be."""
    with tls_relay(ca, implicit=security == "tls") as (server, port):
        report = send_over(make_project, port, security, "relay-password")
    assert report.status == "stopped"
    assert "no secure connection" in (report.this_run.stopped or "")
    assert "certificate" in (report.this_run.stopped or "")
    assert not server.received and report.counts.pending == 12


def test_a_relay_without_starttls_stops_the_send(
    make_project: Callable[..., Path], relay: tuple[Relay, int]
) -> None:
    server, port = relay  # plain SMTP, no STARTTLS offered
    report = send_over(make_project, port, "starttls", "relay-password")
    assert report.status == "stopped" and "STARTTLS" in (report.this_run.stopped or "")
    assert not server.received and report.counts.pending == 12


def test_several_workers_each_keep_a_connection_and_send_each_message_once(
    relay: tuple[Relay, int], make_project: Callable[..., Path]
) -> None:
    """``concurrency`` applies to SMTP: each delivery worker reuses a connection of its own
    (never one shared between threads), every message arrives once, and closing the
    provider ends every worker's connection."""
    server, port = relay
    server.drop_every = 45  # and reconnecting still works per worker
    root = make_project(
        provider=f'name = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        "timeout = 10\nbatch_size = 50\nconcurrency = 3",
        csv=list_of(300),
    )
    report, provider = run_send(root)
    assert report.counts.sent == 300 and report.exit_code == 0
    assert Counter(r for r, _ in server.received) == {
        f"reader{i:03d}@example.org": 1 for i in range(300)
    }
    # 6 batches on at most 3 workers; a connection lasts 45 messages at most.
    assert 7 <= provider.connections <= 3 + 300 // 45 + 3
    assert not provider._open  # all closed by close()
