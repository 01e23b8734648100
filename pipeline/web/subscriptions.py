"""Joining and leaving, without Flask: what the web app's views call.

Input: a posted signup form, a confirmation token, a verified unsubscribe key, and who sent
them (IP, user agent, page).  Output: changes queued for the list (``audience.change_queue``),
facts in the consent history (``ledger.consent``), and the confirmation and welcome emails
(``web.mail``), sent by one background worker.

Double opt-in, the way inbox providers and privacy law expect:
- A signup always gets the same answer, at the same speed, whatever the address's state: the
  list lookup and the email happen in the background, so neither the page nor its timing
  tells anyone who is on the list.
- A new or unsubscribed address gets one confirmation (at most one an hour, not counting
  one sent before the address last left); a subscribed one gets none.  Nothing joins the
  list until the person presses Confirm.
- A confirmation link issued before the address's last unsubscribe (or bounce, complaint,
  removal) is refused, and so is one already used: coming back needs a new confirmation.
"""

from __future__ import annotations

import ipaddress
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from pipeline.audience.change_queue import Flushed, apply_queued, queue_change
from pipeline.audience.list_writer import ApplyResult, ListChange
from pipeline.audience.listing import status_of
from pipeline.config import Settings
from pipeline.errors import InputError, NewsletterError
from pipeline.ledger.consent import (
    ConsentAction,
    ConsentCause,
    consent_key,
    last_event,
    record_consent,
    timestamp,
)
from pipeline.ledger.group_commit import GroupCommitter, file_of
from pipeline.ledger.store import Ledger
from pipeline.messages.headers import clean_header
from pipeline.web.limits import SlidingWindow
from pipeline.web.list_applier import ChildApplier
from pipeline.web.mail import Mailer, confirmations_within, inbox_key
from pipeline.web.tokens import Signer, SignupRequest, TokenProblem
from pipeline.wording import count

LEDGER_NAME = "ledger.sqlite3"  # the same file as sending.LEDGER_NAME
SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"  # the list status an opt-out queues
OPTED_OUT = (
    ConsentAction.UNSUBSCRIBED,
    ConsentAction.BOUNCED,
    ConsentAction.COMPLAINED,
    ConsentAction.REMOVED,
)
JOINED = (ConsentAction.CONFIRMED, ConsentAction.RESUBSCRIBED)
MAX_NAME = 100
LINK_LIKE = re.compile(
    r"://|www\.|@|[\w-]+\.[a-z]{2,}/|[\w-]+\.(com|net|org|info|biz|ru|cn|xyz|top|io|ly|co|me"
    r"|link|click|site|online|shop|app)\b",
    re.IGNORECASE,
)
CONFIRMATION_INTERVAL = timedelta(hours=1)
QUIET = 0.3  # seconds without a new change before the list is rewritten...
MAX_DELAY = 3.0  # ...but never later than this after a change arrived


@dataclass(frozen=True)
class Visitor:
    """Who sent a request: kept in the consent history as evidence."""

    ip: str | None = None
    user_agent: str | None = None
    page: str | None = None  # the page the form was on (or the confirm link)


@dataclass(frozen=True)
class SignupForm:
    email: str
    first_name: str = ""
    tags: tuple[str, ...] = ()
    honeypot: str = ""  # a field people never see; programs fill it
    stamp: str | None = None  # signed time our signup page was served
    elapsed: str | None = None  # seconds on the page, from the snippet's script


class Answer(StrEnum):
    CHECK_INBOX = "check inbox"  # the one answer for every accepted (or silently dropped) post
    BAD_ADDRESS = "bad address"
    TOO_MANY = "too many"


@dataclass(frozen=True)
class SignupAnswer:
    answer: Answer
    problem: str = ""  # what is wrong with the address, for the form
    retry_after: int = 0


class Confirmation(StrEnum):
    CONFIRMED = "confirmed"
    ALREADY = "already subscribed"
    STALE = "stale"  # issued before a later unsubscribe: a new signup is needed
    INVALID = "invalid"
    EXPIRED = "expired"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def mask(address: str) -> str:
    """``c***@example.org``: enough for a reader to recognise, not to harvest."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def visitor_key(ip: str | None) -> str:
    """Who the per-IP limit counts: an IPv4 address, or an IPv6 /64 (what one home or
    server is given: counted address by address, the limit could never be reached)."""
    if not ip:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:198.51.100.7 is that IPv4 address
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


# What ``unsubscribe`` raises when the opt-out was not recorded (the ledger is full, damaged,
# cannot be opened, or did not answer): the answer says so (503), and a mail client retries.
NOT_RECORDED = (sqlite3.Error, OSError, TimeoutError, NewsletterError)


def not_recorded_line(key: str, exc: BaseException) -> str:
    """The log line for an opt-out that was not recorded: the masked address and why."""
    problem = exc.location_message() if isinstance(exc, InputError) else str(exc)
    return f"{mask(key)}: opt-out NOT recorded: {problem}"


def _already_leaving(db: sqlite3.Connection, key: str) -> bool:
    """True while this address's last queued change is an opt-out not yet applied and its last
    consent event is that opt-out.  One reader's own link posted in a loop (or a mail client
    that retries) added a queued change and a history row each time: 330 bytes a post, some
    900 MB of ledger an hour from one client.  Once the queue is applied, a new press records
    again (at most once per rewrite of the list); a join in between records the next one."""
    address = consent_key(key)
    queued = db.execute(
        "SELECT status FROM list_changes WHERE key = ? AND applied_at IS NULL"
        " AND status IS NOT NULL ORDER BY id DESC LIMIT 1",
        (address,),
    ).fetchone()
    if queued is None or queued[0] != UNSUBSCRIBED:
        return False
    last = db.execute(
        "SELECT action FROM consent_history WHERE key = ? ORDER BY at DESC, id DESC LIMIT 1",
        (address,),
    ).fetchone()
    return last is not None and last[0] == ConsentAction.UNSUBSCRIBED.value


def applied_line(applied: int, r: ApplyResult) -> str:
    """The log's line for a rewrite: every queued change accounted for (an opt-out for an
    address no longer on the list was "0 changed, 0 added, 0 unchanged", which added up to
    nothing)."""
    parts = [f"{r.changed} changed", f"{r.added} added", f"{r.unchanged} unchanged"]
    if r.removed:
        parts.append(f"{r.removed} removed")
    if r.missing:
        parts.append(f"{len(r.missing)} not on the list any more")
    return f"list updated: {count(applied, 'queued change')} applied ({', '.join(parts)})"


def _public(exc: Exception) -> str:
    """A list problem for /healthz: where, not what (the log has the rest)."""
    if isinstance(exc, InputError) and exc.path:
        where = Path(exc.path).name + (f":{exc.line}" if exc.line else "")
        return f"{where}: the list cannot be read or written (the server's log says why)"
    return f"the list cannot be updated ({type(exc).__name__}: the server's log says why)"


class Subscriptions:
    """One per app: the per-thread ledger connections, the mail worker and the applier."""

    def __init__(
        self,
        settings: Settings,
        secret: bytes,
        environ: Mapping[str, str],
        *,
        log: Callable[[str], None] = lambda line: None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.settings = settings
        self.signup = settings.signup
        self.log = log
        self.clock = clock
        self.signer = Signer(secret, settings.signup.confirm_expiry)
        self.mailer = Mailer(settings, environ, secret)
        self.by_ip = SlidingWindow(settings.signup.per_ip_per_hour, 3600)
        self.by_address = SlidingWindow(settings.signup.per_address_per_hour, 3600)
        self._local = threading.local()
        self._confirm_lock = threading.Lock()
        self._mail = ThreadPoolExecutor(max_workers=1, thread_name_prefix="newsletter-mail")
        self._pending: set[Future[None]] = set()
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._applier: threading.Thread | None = None
        self.writer = GroupCommitter(settings.state_dir / LEDGER_NAME)
        # The background rewrites of a long list run in a child process (list_applier's
        # docstring says why).
        self.elsewhere = ChildApplier(settings.state_dir / LEDGER_NAME, log=log)
        self._last_problem = ""
        self._public_problem = ""
        self._ledger_problem = ""

    # Plumbing ---------------------------------------------------------------------------

    def db(self) -> sqlite3.Connection:
        """This thread's ledger connection (sqlite3 connections stay in their thread), to
        the ledger file there is now: one deleted or replaced while serving (a copy put
        back) is opened afresh, as the group commit does, or the applier read on from the
        old file and never saw the opt-outs written into the new one."""
        path = self.settings.state_dir / LEDGER_NAME
        ledger: Ledger | None = getattr(self._local, "ledger", None)
        if ledger is not None and file_of(path) != self._local.opened:
            self._local.ledger = None  # closed below: never handed out again, even if
            with suppress(sqlite3.Error):  # opening what is there now fails
                ledger.close()
            ledger = None
        if ledger is None:
            ledger = Ledger(path)
            self._local.ledger, self._local.opened = ledger, file_of(path)
        return ledger.db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (I/O error, full disk)
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def start(self) -> None:
        """Apply what an earlier run left queued, then keep applying in the background."""
        self._flush_logged()
        self._applier = threading.Thread(
            target=self._apply_loop, name="newsletter-list-applier", daemon=True
        )
        self._applier.start()

    def close(self) -> None:
        """Stop the applier, finish the mail in hand, and apply what is queued."""
        self._stopping.set()
        self._wake.set()
        if self._applier is not None:
            self._applier.join(timeout=30)
        self.elsewhere.close()
        self._mail.shutdown(wait=True)
        self.writer.close()
        self._flush_logged()
        self.mailer.close()

    def drain(self, timeout: float = 60) -> None:
        """Wait until the emails asked for so far are sent (tests, and shutdown)."""
        with self._pending_lock:
            pending = set(self._pending)
        wait(pending, timeout=timeout)

    def flush(self) -> Flushed:
        """Apply every queued change to the list now."""
        return apply_queued(self.db(), self.settings.subscribers, self.settings.state_dir)

    def _flush_logged(self, *, in_background: bool = False) -> None:
        try:
            if in_background:  # while answering: a long list is rewritten by the child
                flushed = self.elsewhere.apply(
                    self.flush, self.settings.subscribers, self.settings.state_dir
                )
            else:
                flushed = self.flush()
        except (NewsletterError, OSError, sqlite3.Error) as exc:
            problem = exc.location_message() if isinstance(exc, InputError) else str(exc)
            if problem != self._last_problem:  # once, not every few seconds
                self.log(f"list NOT updated, changes stay queued until it can be: {problem}")
            self._last_problem = problem
            self._public_problem = _public(exc)
            return
        if self._last_problem:
            self.log("list readable again")
            self._last_problem = ""
            self._public_problem = ""
        if flushed.applied and flushed.result is not None:
            self.log(applied_line(flushed.applied, flushed.result))

    @property
    def ledger_problem(self) -> str:
        """Why the last opt-out was not recorded ("" once one is), fit for /healthz."""
        return self._ledger_problem

    @property
    def list_problem(self) -> str:
        """Why the queue could not be applied last time ("" when it could), in words fit for
        /healthz, which the proxy makes public: the file and line, never the problem's full
        text (a list without its header row is described by its first reader) or a folder."""
        return self._public_problem

    def _changed(self) -> None:
        self._wake.set()

    def _apply_loop(self) -> None:
        while not self._stopping.is_set():
            # Woken by each new change; every few seconds anyway, for changes another
            # process queued (a second server, a webhook receiver).
            woke = self._wake.wait(timeout=5 if not self._last_problem else 30)
            self._wake.clear()
            if woke:
                # A burst (200 opt-outs at once) goes in one rewrite, after it: rewriting a
                # large list mid-burst would slow the answers, not the list.
                deadline = time.monotonic() + MAX_DELAY
                while time.monotonic() < deadline and self._wake.wait(QUIET):
                    self._wake.clear()
                    if self._stopping.is_set():
                        break
            if self._stopping.is_set():
                return
            self._flush_logged(in_background=True)

    def _in_background(self, job: Callable[[], None]) -> None:
        def run() -> None:
            try:
                job()
            except Exception as exc:  # a worker must never die silently
                message = exc.location_message() if isinstance(exc, InputError) else str(exc)
                self.log(f"email NOT sent: {message}")

        future = self._mail.submit(run)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    def current_status(self, key: str) -> str | None:
        """The status the list will have once the queue is applied."""
        row = (
            self.db()
            .execute(
                "SELECT status FROM list_changes WHERE key = ? AND applied_at IS NULL"
                " AND status IS NOT NULL ORDER BY id DESC LIMIT 1",
                (key,),
            )
            .fetchone()
        )
        if row is not None:
            return str(row[0])
        return status_of(self.settings.subscribers, key)

    # Joining ----------------------------------------------------------------------------

    def request_signup(self, form: SignupForm, visitor: Visitor) -> SignupAnswer:
        wait_ip = self.by_ip.hit(visitor_key(visitor.ip))
        if wait_ip is not None:
            return SignupAnswer(Answer.TOO_MANY, retry_after=wait_ip)
        if self._looks_automated(form):
            self.log("signup ignored: filled in by a program (hidden field or too fast)")
            return SignupAnswer(Answer.CHECK_INBOX)
        try:
            # No DNS: a lookup per post would be slow and would let the form probe domains.
            # Internationalised local parts are refused: not every provider can send to
            # them (SMTPUTF8), and one such address once stopped a whole send.
            checked = validate_email(
                form.email.strip(), check_deliverability=False, allow_smtputf8=False
            )
        except EmailNotValidError as exc:
            return SignupAnswer(Answer.BAD_ADDRESS, problem=str(exc))
        email = str(checked.ascii_email or checked.normalized)
        key = consent_key(email)
        wait_address = self.by_address.hit(inbox_key(key))  # pat+1@, pat+2@: one inbox
        if wait_address is not None:
            return SignupAnswer(Answer.TOO_MANY, retry_after=wait_address)
        offered = set(self.signup.tags)
        tags = tuple(sorted({t.strip().lower() for t in form.tags} & offered))
        # The name goes into a header (To:) and the list: controls out, length bounded.
        first_name = clean_header(form.first_name)[:MAX_NAME]
        if LINK_LIKE.search(first_name):
            # Form spam: a stranger's address and a link as the "name", for our domain to
            # mail them.  Nobody's first name is a link: the confirmation goes without it.
            self.log("signup: a first name carrying a link or an address was left out")
            first_name = ""
        record_consent(
            self.db(),
            email,
            ConsentAction.SIGNUP_REQUESTED,
            ConsentCause.FORM,
            at=self.clock(),
            ip=visitor.ip,
            user_agent=visitor.user_agent,
            source_url=visitor.page,
            detail=f"interests: {', '.join(tags)}" if tags else None,
        )
        request = SignupRequest(email, first_name, tags, timestamp(self.clock()))
        self._in_background(lambda: self._send_confirmation(request, key))
        return SignupAnswer(Answer.CHECK_INBOX)

    def _looks_automated(self, form: SignupForm) -> bool:
        if form.honeypot.strip():
            return True
        minimum = self.signup.min_fill_seconds
        if form.stamp:
            age = self.signer.form_age(form.stamp)
            return age is None or age < minimum
        if form.elapsed:
            try:
                return float(form.elapsed) < minimum
            except ValueError:
                return True
        return False  # a pasted form without its script: the honeypot still applies

    def _send_confirmation(self, request: SignupRequest, key: str) -> None:
        who = mask(request.email)
        db = self.db()
        if self.current_status(key) == SUBSCRIBED:
            self.log(f"signup for {who}: already subscribed, no confirmation sent")
            return
        # A confirmation sent before the address last left is out of date (its link is
        # refused), so it does not count: someone who unsubscribed by mistake and signs up
        # again at once gets a link that works, not an hour's silence.
        since = self.clock() - CONFIRMATION_INTERVAL
        left = last_event(db, request.email, OPTED_OUT)
        if left is not None:
            since = max(since, datetime.fromisoformat(left.at))
        if confirmations_within(db, key, since):
            self.log(f"signup for {who}: a confirmation went out within the hour, none sent")
            return
        token = self.signer.confirmation_token(request)
        url = f"{self.settings.base_url}/confirm?token={token}"
        outcome = self.mailer.send_confirmation(db, key, request.email, request.first_name, url)
        self.log(f"signup for {who}: confirmation {outcome}")

    def read_confirmation(self, token: str) -> SignupRequest | TokenProblem:
        return self.signer.read_confirmation(token)

    def confirm(self, token: str, visitor: Visitor) -> tuple[Confirmation, str]:
        """Press of the Confirm button: (what happened, the masked address)."""
        request = self.signer.read_confirmation(token)
        if request is TokenProblem.EXPIRED:
            return Confirmation.EXPIRED, ""
        if not isinstance(request, SignupRequest):
            return Confirmation.INVALID, ""
        key = consent_key(request.email)
        who = mask(request.email)
        with self._confirm_lock:  # a double click confirms once
            db = self.db()
            left = last_event(db, request.email, OPTED_OUT)
            if left is not None and left.at >= request.issued_at:
                return Confirmation.STALE, who
            status = self.current_status(key)
            if status == SUBSCRIBED:
                return Confirmation.ALREADY, who
            # A link is used once.  Pressed again after the reader left the list in a way no
            # history records (she edited subscribers.csv, or deleted the row on request), it
            # would put them back: coming back takes a new signup and its new link.
            used = last_event(db, request.email, JOINED)
            if used is not None and used.at >= request.issued_at:
                return Confirmation.STALE, who
            now = self.clock()
            fields = {"subscribed_at": now.astimezone(UTC).isoformat(timespec="seconds")}
            if request.first_name:
                fields["first_name"] = request.first_name
            if request.tags:
                fields["tags"] = ";".join(request.tags)
            action = ConsentAction.CONFIRMED if status is None else ConsentAction.RESUBSCRIBED
            with self._transaction() as db:
                queue_change(db, ListChange(request.email, SUBSCRIBED, fields, create=True))
                record_consent(
                    db,
                    request.email,
                    action,
                    ConsentCause.FORM,
                    at=now,
                    ip=visitor.ip,
                    user_agent=visitor.user_agent,
                    source_url=visitor.page,
                    detail=f"confirmation link issued {request.issued_at}",
                )
        self._changed()
        self.log(f"{who}: {action.value}")
        welcome_fields = {"email": request.email, **fields}
        self._in_background(lambda: self._send_welcome(request.email, key, welcome_fields))
        return Confirmation.CONFIRMED, who

    def _send_welcome(self, email: str, key: str, fields: dict[str, str]) -> None:
        outcome = self.mailer.send_welcome(self.db(), key, email, fields)
        if outcome is not None:
            self.log(f"welcome to {mask(email)}: {outcome}")

    # Leaving ----------------------------------------------------------------------------

    def unsubscribe(self, key: str, visitor: Visitor) -> None:
        """Recorded durably, with its evidence, before the answer; the list follows."""
        try:
            self.writer.commit(self._opt_out(key, visitor))
        except NOT_RECORDED as exc:
            self._recorded(exc)
            raise
        self._recorded(None)

    def unsubscribe_soon(
        self, key: str, visitor: Visitor, then: Callable[[BaseException | None], None]
    ) -> None:
        """``unsubscribe`` without waiting: the same write, and ``then(None)`` once it is on
        disk or ``then(error)`` if it is not (called in the ledger's thread, so it must be
        quick: the front door hands the answer back to its event loop)."""

        def recorded(error: BaseException | None) -> None:
            self._recorded(error)
            then(error)

        self.writer.submit(self._opt_out(key, visitor), recorded)

    def _opt_out(self, key: str, visitor: Visitor) -> Callable[[sqlite3.Connection], None]:
        at = self.clock()

        def write(db: sqlite3.Connection) -> None:
            if _already_leaving(db, key):
                return  # the same opt-out again: already queued, already in the history
            queue_change(db, ListChange(key, UNSUBSCRIBED))
            record_consent(
                db,
                key,
                ConsentAction.UNSUBSCRIBED,
                ConsentCause.ONE_CLICK,
                at=at,
                ip=visitor.ip,
                user_agent=visitor.user_agent,
            )

        return write

    def not_recorded(self, error: BaseException) -> None:
        """An opt-out that could not be recorded (or not in time): /healthz says so."""
        self._recorded(error)

    def _recorded(self, error: BaseException | None) -> None:
        if error is not None:
            # For /healthz until one is recorded again: every opt-out a 503 on a full disk,
            # while the health check (which only reads) said "ok", and nobody looked.
            self._ledger_problem = (
                "the last opt-out could not be recorded in the ledger "
                f"({type(error).__name__}: the server's log says why)"
            )
            return
        self._ledger_problem = ""
        self._changed()
