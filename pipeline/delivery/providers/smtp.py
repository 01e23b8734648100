"""``smtp``: smtplib over reused connections, STARTTLS or implicit TLS.

Each delivery worker (``[provider] concurrency``, 4 by default; 1 for a relay that takes one
connection at a time) keeps one connection of its own for the whole send: the loop's workers
send batches in parallel, and a message's MAIL, RCPT and DATA round trips never wait on
another's.  listmonk keeps a pool of connections for the same reason (its ``max_conns``).

Some relays close the connection every few thousand messages.  A drop before a message's
DATA means the server never took it: reconnect and go on.  A drop during DATA cannot be
known: that one message is ``unknown``, never silently re-sent (listmonk re-sent to people
here: its issues 2070 and 2313).
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import threading
from collections.abc import Mapping, Sequence

from pipeline.config import Settings
from pipeline.delivery.provider import (
    BatchResult,
    Options,
    Outcome,
    ProviderInfo,
    RecipientResult,
    require_secret,
)
from pipeline.messages.compose import Message
from pipeline.messages.mime import to_mime

SECURITY = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


def _reply(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(message.split())}"


class SmtpProvider:
    name = "smtp"
    max_batch = 100
    max_concurrency = 16  # connections at once, one per worker
    one_call_per_message = True
    managed_unsubscribe: str | None = None
    idempotent = False

    def __init__(
        self,
        host: str,
        port: int,
        security: str,
        username: str,
        password: str,
        envelope_from: str,
        timeout: float,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self.password = username, password
        self.envelope_from = envelope_from
        self.timeout = timeout
        self._local = threading.local()  # this worker's connection, as ``conn``
        self._open: set[smtplib.SMTP] = set()  # every worker's, for close()
        self._lock = threading.Lock()
        self.connections = 0  # how many times it connected (tests read it)

    @property
    def _conn(self) -> smtplib.SMTP | None:
        conn: smtplib.SMTP | None = getattr(self._local, "conn", None)
        return conn

    def _connect(self) -> smtplib.SMTP:
        if self._conn is not None:
            return self._conn
        context = ssl.create_default_context()
        conn: smtplib.SMTP
        if self.security == "tls":
            conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.security == "starttls":
                conn.starttls(context=context)
        conn.ehlo_or_helo_if_needed()
        if self.username:
            conn.login(self.username, self.password)
        self._local.conn = conn
        with self._lock:
            self._open.add(conn)
            self.connections += 1
        return conn

    def _drop(self) -> None:
        conn = self._conn
        if conn is not None:
            self._local.conn = None
            with self._lock:
                self._open.discard(conn)
            conn.close()

    def _envelope(self, conn: smtplib.SMTP, message: Message) -> RecipientResult | None:
        """MAIL and RCPT; a result if the server refused, None if it is ready for DATA."""
        code, text = conn.mail(self.envelope_from)
        if code != 250:
            conn.rset()
            outcome = Outcome.RETRY if 400 <= code < 500 else Outcome.FAILED
            return RecipientResult(message.key, outcome, reason=f"MAIL FROM: {_reply(code, text)}")
        code, text = conn.rcpt(message.to_email)
        if code not in (250, 251):
            conn.rset()
            outcome = Outcome.RETRY if 400 <= code < 500 else Outcome.FAILED
            return RecipientResult(message.key, outcome, reason=f"RCPT TO: {_reply(code, text)}")
        return None

    def _send_one(self, message: Message) -> RecipientResult:
        try:
            data = to_mime(message)
            message.to_email.encode("ascii")  # RCPT TO: no SMTPUTF8 here
        except ValueError as exc:  # this message cannot be encoded: it alone fails
            return RecipientResult(message.key, Outcome.FAILED, reason=f"not sendable: {exc}")
        for attempt in (1, 2):
            try:
                conn = self._connect()
                refused = self._envelope(conn, message)
                if refused is not None:
                    return refused
            except (
                smtplib.SMTPAuthenticationError,
                smtplib.SMTPNotSupportedError,
                ssl.SSLCertVerificationError,
            ):
                raise  # for send(): these stop the send
            except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
                # Nothing of this message was accepted yet: safe to reconnect and go on.
                self._drop()
                if attempt == 2:
                    return RecipientResult(message.key, Outcome.RETRY, reason=f"connection: {exc}")
                continue
            try:
                code, text = conn.data(data)
            except smtplib.SMTPDataError as exc:
                outcome = Outcome.RETRY if 400 <= exc.smtp_code < 500 else Outcome.FAILED
                return RecipientResult(
                    message.key, outcome, reason=f"DATA: {_reply(exc.smtp_code, exc.smtp_error)}"
                )
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                return RecipientResult(
                    message.key,
                    Outcome.UNKNOWN,
                    reason=f"connection lost while the message was being accepted: {exc}",
                )
            return RecipientResult(
                message.key, Outcome.SENT, provider_id=message.message_id, reason=_reply(code, text)
            )
        raise AssertionError("unreachable")

    def send(self, messages: Sequence[Message]) -> BatchResult:
        results: list[RecipientResult] = []
        for index, message in enumerate(messages):
            try:
                result = self._send_one(message)
            except smtplib.SMTPAuthenticationError as exc:
                reason = (
                    f"the SMTP server refused the login: {_reply(exc.smtp_code, exc.smtp_error)}"
                )
                rest = BatchResult.refused(messages[index:], reason)
                return BatchResult(results + rest.results, stop=reason)
            except (ssl.SSLCertVerificationError, smtplib.SMTPNotSupportedError) as exc:
                # Never fall back to plaintext: a relay that cannot prove who it is, or offers
                # no STARTTLS, is a setting to fix, not a failure to retry.
                self._drop()
                reason = f"no secure connection to {self.host}:{self.port} ({exc})"
                rest = BatchResult.refused(messages[index:], reason)
                return BatchResult(results + rest.results, stop=reason)
            results.append(result)
            if result.outcome is Outcome.RETRY and result.reason.startswith("connection"):
                # The server is gone: the rest of the batch waits for the retry.
                rest = BatchResult.all(messages[index + 1 :], Outcome.RETRY, result.reason)
                return BatchResult(results + rest.results)
        return BatchResult(results)

    def close(self) -> None:
        """QUIT every worker's connection (called once the workers are done)."""
        with self._lock:
            connections, self._open = list(self._open), set()
        for conn in connections:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                conn.quit()
            conn.close()
        self._local = threading.local()


def create(settings: Settings, environ: Mapping[str, str]) -> SmtpProvider:
    options = Options(settings, OPTIONS)
    security = options.string("security", "starttls")
    if security not in SECURITY:
        raise options.error("security", f"must be one of {', '.join(SECURITY)}, not {security!r}")
    username = options.string("username", "")
    password = require_secret(environ, "SMTP_PASSWORD", "smtp", token=False) if username else ""
    return SmtpProvider(
        host=options.string("host", "localhost"),
        port=options.integer("port", DEFAULT_PORTS[security], maximum=65535),
        security=security,
        username=username,
        password=password,
        envelope_from=settings.sender_address,
        timeout=options.number("timeout", 60, minimum=1),
    )


OPTIONS = {
    "host": "the relay (default localhost)",
    "port": "default 587 (starttls), 465 (tls) or 25 (none)",
    "security": "starttls (default), tls or none",
    "username": "login name; the password comes from SMTP_PASSWORD",
    "timeout": "seconds to wait for the server (default 60)",
}
INFO = ProviderInfo(
    name="smtp",
    summary="any SMTP relay, over one reused connection",
    create=create,
    secrets=("SMTP_PASSWORD (when username is set)",),
    options=OPTIONS,
)
