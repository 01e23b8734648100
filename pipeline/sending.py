"""Compose the stages into a send: issue -> compiled -> audience -> ledger -> delivery loop.

``send_issue`` is the whole job for one issue; ``send_due`` is what cron runs; ``send_test``
sends one copy outside the ledger; ``dry_run`` says what would happen and sends nothing.
The CLI only parses options and prints what these return.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline.audience.subscribers import (
    Skipped,
    SkipReason,
    Subscriber,
    address_key,
    normalise_address,
    scan,
)
from pipeline.config import Settings
from pipeline.content.issue import Issue, load_issue
from pipeline.delivery.loop import (
    STOP_GRACE,
    DeliveryLoop,
    DeliveryPolicy,
    LoopResult,
    build_each,
)
from pipeline.delivery.provider import Options, Outcome, Provider, RecipientResult, Reconciling
from pipeline.delivery.providers import REGISTRY, create_provider
from pipeline.delivery.stopping import StopOnSignals, StopRequest
from pipeline.errors import InputError, InputErrors, NewsletterError
from pipeline.ledger import start_record
from pipeline.ledger.lock import SendLock
from pipeline.ledger.store import (
    AudienceChange,
    Counts,
    IssueStatus,
    Ledger,
    LedgerError,
    RecipientStatus,
    Settlement,
    ledger_errors,
    utc_now,
)
from pipeline.messages.compose import Message, MessageFactory
from pipeline.messages.secret import load_secret
from pipeline.render.checks import check_issue
from pipeline.render.compile import CompiledEmail, compile_issue
from pipeline.schedule import Decision, Draft, Plan, plan_due

LEDGER_NAME = "ledger.sqlite3"
OPTED_OUT = {
    SkipReason.UNSUBSCRIBED,
    SkipReason.BOUNCED,
    SkipReason.COMPLAINED,
    SkipReason.SUPPRESSED,
}


# sysexits.h EX_TEMPFAIL: stopped by a signal with readers still to send; run again to resume.
EXIT_INTERRUPTED = 75


class SendStopped(NewsletterError):
    """The provider refused the account or the request; nothing more is sent until fixed."""


def open_ledger(settings: Settings, clock: Callable[[], datetime] = utc_now) -> Ledger:
    return Ledger(settings.state_dir / LEDGER_NAME, clock)


def prepare(path: Path, settings: Settings) -> CompiledEmail:
    """Check, then compile once.  A problem `check` would report stops the send here."""
    problems = check_issue(path, settings)
    if problems:
        raise InputErrors(problems)
    return compile_issue(load_issue(path, settings.timezone), settings)


def delivery_policy(settings: Settings, provider: Provider) -> DeliveryPolicy:
    info = REGISTRY[settings.provider.name]
    return DeliveryPolicy.from_options(Options(settings, info.options), provider)


@dataclass(frozen=True)
class SendPlan:
    """What a person confirms before a send starts or resumes."""

    slug: str
    subject: str
    provider: str
    audience: int  # who will get it (for a resume: who is still pending)
    resuming: bool
    counts: Counts | None


@dataclass
class SendReport:
    slug: str
    subject: str
    status: IssueStatus
    counts: Counts
    this_run: LoopResult
    skipped: Counter[str] = field(default_factory=Counter)
    invalid: list[Skipped] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    unknown: list[tuple[str, str]] = field(default_factory=list)
    recovered_unknown: int = 0
    withdrawn: int = 0
    joined: int = 0  # joined the list since the send began; not sent (see --include-new)
    added: int = 0  # joined since and included (--include-new)
    reconciled: int = 0
    unknown_replayable: int = 0  # unknown rows the (idempotent) provider will replay by key

    @property
    def unknown_resent_by_key(self) -> bool:
        return self.unknown_replayable > 0

    @property
    def interrupted(self) -> str | None:
        """The signal that stopped this run, if it stopped with readers still to send."""
        return self.this_run.interrupted if self.counts.pending else None

    @property
    def exit_code(self) -> int:
        if self.this_run.stopped:
            return 2
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.counts.failed or self.counts.unknown or self.counts.pending:
            return 1
        return 0


@dataclass
class _AudienceScan:
    skipped: Counter[str] = field(default_factory=Counter)
    invalid: list[Skipped] = field(default_factory=list)
    opted_out: list[str] = field(default_factory=list)

    def subscribers(self, path: Path, tags: tuple[str, ...]) -> Iterator[Subscriber]:
        for item in scan(path, tags):
            if isinstance(item, Subscriber):
                yield item
                continue
            self.skipped[item.reason.value] += 1
            if item.reason is SkipReason.INVALID and len(self.invalid) < 1000:
                self.invalid.append(item)
            elif item.reason in OPTED_OUT:
                self.opted_out.append(address_key(item.email))


def count_audience(settings: Settings, issue: Issue) -> int:
    return sum(1 for item in scan(settings.subscribers, issue.tags) if isinstance(item, Subscriber))


def send_issue(
    path: Path,
    settings: Settings,
    provider: Provider,
    *,
    environ: Mapping[str, str],
    resend_unknown: bool = False,
    force: bool = False,
    include_new: bool = False,
    confirm: Callable[[SendPlan], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    stop: StopRequest | None = None,
    stop_grace: float = STOP_GRACE,
) -> SendReport | None:
    """Send (or resume) one issue to its audience, exactly once per recipient.

    SIGTERM and SIGINT (or ``stop``, from a test) end it cleanly: no more batches, up to
    ``stop_grace`` seconds for the answers in flight, all recorded; ``interrupted`` says so.

    Returns None when ``confirm`` declines.  Raises LockHeld if another send is running,
    InputError for bad input, an edited issue, or a bad list.
    """
    compiled = prepare(path, settings)
    secret = load_secret(settings.state_dir, environ)  # refused before anything is recorded
    stop = stop or StopRequest()
    # From here a signal stops the send cleanly (the loop settles what is in flight) instead
    # of killing it; the question at the terminal keeps its usual Ctrl-C.
    ledger_path = settings.state_dir / LEDGER_NAME
    with (
        ledger_errors(ledger_path),
        SendLock(settings.state_dir),
        StopOnSignals(stop) as signals,
    ):
        ledger = open_ledger(settings, clock)
        try:
            return _send_locked(
                ledger,
                compiled,
                secret,
                settings,
                provider,
                environ,
                resend_unknown,
                force,
                include_new,
                signals.outside(confirm) if confirm is not None else None,
                progress,
                sleep,
                monotonic,
                stop,
                stop_grace,
            )
        finally:
            ledger.close()


def _send_locked(
    ledger: Ledger,
    compiled: CompiledEmail,
    secret: bytes,
    settings: Settings,
    provider: Provider,
    environ: Mapping[str, str],
    resend_unknown: bool,
    force: bool,
    include_new: bool,
    confirm: Callable[[SendPlan], bool] | None,
    progress: Callable[[int, int], None] | None,
    sleep: Callable[[float], None],
    monotonic: Callable[[], float],
    stop: StopRequest,
    stop_grace: float,
) -> SendReport | None:
    issue = compiled.issue
    slug = issue.slug
    # Holding the lock, no live run has rows in flight: any left are from a dead run.
    ledger.verify()  # a damaged ledger would miscount who is still to send
    recovered = ledger.recover_inflight().get(slug, 0)
    record = ledger.issue(slug)
    # A lost or older ledger must not look like a fresh start (it re-sent 3,000 of 3,000).
    sent_record = start_record.record_path(issue.path, slug)
    start_record.check(sent_record, ledger.path, record, ledger.counts(slug))
    if record is not None and record.content_hash != compiled.fingerprint:
        sent = ledger.counts(slug).sent
        if not force:
            raise InputError(
                f"the issue changed after its sending began ({sent} already sent): refusing "
                "to send a second version to the same list; re-run with --force to send the "
                "edited version to the rest",
                path=issue.path,
            )
        ledger.set_content_hash(slug, compiled.fingerprint)

    if confirm is not None:
        if record is None:
            plan = SendPlan(
                slug, issue.subject, provider.name, count_audience(settings, issue), False, None
            )
        else:
            counts = ledger.counts(slug)
            plan = SendPlan(slug, issue.subject, provider.name, counts.pending, True, counts)
        if not confirm(plan):
            return None

    if record is None:
        record = ledger.start_issue(slug, compiled.fingerprint, provider.name)
    _write_start_record(ledger, slug, sent_record)
    audience = _AudienceScan()
    change = AudienceChange(0, 0, 0, 0)
    if resend_unknown:
        # Batches an idempotent provider sent are replayed by the loop under their key.
        ledger.requeue_unknown(slug, provider.name if provider.idempotent else None)
    if not record.audience_loaded:
        ledger.add_recipients(slug, audience.subscribers(settings.subscribers, issue.tags))
    else:
        # A resume: the list as it is now decides (someone deleted or unsubscribed since is
        # not sent; a corrected name is used; who joined since is reported, or included).
        change = ledger.refresh_audience(
            slug,
            audience.subscribers(settings.subscribers, issue.tags),
            audience.opted_out,
            include_new=include_new,
        )

    factory = MessageFactory(
        compiled, settings, secret, managed_unsubscribe=provider.managed_unsubscribe
    )
    reconciled = _reconcile_unknown(ledger, slug, provider, factory)
    ledger.set_status(slug, IssueStatus.SENDING)
    loop = DeliveryLoop(
        ledger,
        provider,
        factory,
        delivery_policy(settings, provider),
        sleep=sleep,
        monotonic=monotonic,
        progress=progress,
        stop=stop,
        stop_grace=stop_grace,
    )
    result = loop.run(slug)
    counts = ledger.counts(slug)
    if result.stopped:
        status, note = IssueStatus.STOPPED, result.stopped
    elif result.paused:
        status, note = IssueStatus.PAUSED, result.paused
    elif counts.pending == 0:
        status, note = IssueStatus.COMPLETE, None
    elif result.interrupted:
        status, note = IssueStatus.SENDING, f"stopped by {result.interrupted}; run again to resume"
    else:
        status, note = IssueStatus.SENDING, None
    ledger.set_status(slug, status, note)
    _write_start_record(ledger, slug, sent_record)
    return SendReport(
        slug=slug,
        subject=issue.subject,
        status=status,
        counts=counts,
        this_run=result,
        skipped=audience.skipped,
        invalid=audience.invalid,
        failures=ledger.recipients(slug, RecipientStatus.FAILED),
        unknown=ledger.recipients(slug, RecipientStatus.UNKNOWN),
        recovered_unknown=recovered,
        withdrawn=change.withdrawn,
        joined=change.joined,
        added=change.added,
        reconciled=reconciled,
        unknown_replayable=(
            ledger.unknown_replayable(slug, provider.name) if provider.idempotent else 0
        ),
    )


def _write_start_record(ledger: Ledger, slug: str, path: Path) -> None:
    record = ledger.issue(slug)
    assert record is not None
    try:
        start_record.write(path, record, ledger.counts(slug), ledger.now())
    except OSError as exc:
        raise InputError(
            f"could not write this record of the issue's sending ({exc.strerror or exc}); it "
            "guards against re-sending if the ledger is lost: fix the folder and run again",
            path=path,
        ) from None


def _reconcile_unknown(
    ledger: Ledger, slug: str, provider: Provider, factory: MessageFactory
) -> int:
    """Providers that can look (the outbox) settle ``unknown`` rows without sending twice:
    found -> sent; certainly not there -> pending, to be sent normally."""
    if not isinstance(provider, Reconciling):
        return 0
    settled = 0
    while True:
        batch, rows = ledger.claim(slug, 500, RecipientStatus.UNKNOWN, provider.name)
        if not rows:
            return settled
        messages, unbuildable = build_each(factory, rows)
        # A message that cannot be built now cannot be looked for: it stays in doubt.
        settlements = [
            Settlement(s.key, RecipientStatus.UNKNOWN, reason=s.reason) for s in unbuildable
        ]
        settlements += [
            Settlement(
                r.key,
                RecipientStatus.SENT if r.outcome is Outcome.SENT else RecipientStatus.PENDING,
                r.provider_id,
            )
            for r in provider.reconcile(messages)
        ]
        ledger.settle(slug, batch, settlements)
        if not messages:
            return settled
        settled += sum(1 for s in settlements if s.status is RecipientStatus.SENT)


# Cron -------------------------------------------------------------------------------------


@dataclass
class DueRun:
    plans: list[Plan]
    reports: list[SendReport]
    problems: list[InputError]

    @property
    def exit_code(self) -> int:
        codes = [r.exit_code for r in self.reports] + [2 for _ in self.problems]
        return max(codes, default=0)


def find_drafts(settings: Settings) -> tuple[list[Draft], list[InputError]]:
    drafts, problems = [], []
    for path in sorted(settings.newsletters_dir.glob("*.md")):
        try:
            issue = load_issue(path, settings.timezone)
        except InputErrors as exc:
            problems += exc.problems
            continue
        except InputError as exc:
            problems.append(exc)
            continue
        drafts.append(Draft(path, issue.slug, issue.send_at))
    return drafts, problems


def send_due(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    now: datetime,
    provider_factory: Callable[[], Provider] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DueRun:
    """Send every issue whose time has come, oldest first; resume any interrupted one."""
    drafts, problems = find_drafts(settings)
    with ledger_errors(settings.state_dir / LEDGER_NAME):
        ledger = open_ledger(settings)
        try:
            records = {record.slug: record for record in ledger.issues()}
        finally:
            ledger.close()
    plans = plan_due(drafts, records, now, settings.max_lateness)
    reports = []
    stop = StopRequest()
    for plan in plans:
        if not plan.acts:
            continue
        if stop.requested:
            break  # stopped by a signal: the next run goes on from here
        provider = (provider_factory or (lambda: create_provider(settings, environ)))()
        try:
            report = send_issue(
                plan.draft.path, settings, provider, environ=environ, sleep=sleep, stop=stop
            )
        except InputError as exc:
            problems.extend(exc.problems if isinstance(exc, InputErrors) else [exc])
            continue
        finally:
            provider.close()
        assert report is not None
        reports.append(report)
    return DueRun(plans, reports, problems)


# Test copies and dry runs -----------------------------------------------------------------


def sample_fields(settings: Settings, address: str) -> tuple[str, dict[str, str]]:
    """The list's row for ``address`` if it has one, else just the address."""
    try:
        email = normalise_address(address)
    except ValueError as exc:
        raise InputError(f"{address!r} is not a valid address: {exc}", field="--to") from None
    key = address_key(email)
    if settings.subscribers.is_file():
        for item in scan(settings.subscribers):
            if isinstance(item, Subscriber) and item.key == key:
                return key, item.fields
    return key, {"email": email}


def send_test(
    path: Path, settings: Settings, provider: Provider, address: str, environ: Mapping[str, str]
) -> tuple[Message, RecipientResult]:
    """One copy to ``address``, outside the ledger, subject prefixed with [Test]."""
    compiled = prepare(path, settings)
    key, fields = sample_fields(settings, address)
    factory = MessageFactory(
        compiled,
        settings,
        load_secret(settings.state_dir, environ),
        managed_unsubscribe=provider.managed_unsubscribe,
    )
    message = factory.build(key, fields.get("email", address), fields, test=True)
    answer = provider.send([message])
    if answer.stop:
        raise SendStopped(answer.stop)
    return message, answer.results[0]


@dataclass
class DryRun:
    slug: str
    subject: str
    provider: str
    audience: int
    skipped: Counter[str]
    invalid: list[Skipped]
    samples: list[Message]
    ledger_counts: Counts | None
    ledger_status: IssueStatus | None


def dry_run(
    path: Path, settings: Settings, provider: Provider, environ: Mapping[str, str], samples: int = 3
) -> DryRun:
    """Everything a send would do up to the provider call; nothing is sent or recorded."""
    delivery_policy(settings, provider)  # batch size, rate, retries: checked, as a send would
    compiled = prepare(path, settings)
    issue = compiled.issue
    scan_result = _AudienceScan()
    factory = MessageFactory(
        compiled,
        settings,
        load_secret(settings.state_dir, environ),
        managed_unsubscribe=provider.managed_unsubscribe,
    )
    messages: list[Message] = []
    audience = 0
    for subscriber in scan_result.subscribers(settings.subscribers, issue.tags):
        audience += 1
        if len(messages) < samples:
            messages.append(factory.build(subscriber.key, subscriber.email, subscriber.fields))
    counts = status = None
    record = None
    if (settings.state_dir / LEDGER_NAME).exists():
        with ledger_errors(settings.state_dir / LEDGER_NAME):
            ledger = open_ledger(settings)
            try:
                record = ledger.issue(issue.slug)
                if record is not None:
                    counts, status = ledger.counts(issue.slug), record.status
            finally:
                ledger.close()
    # A lost ledger is not "would start a new send": say what the real send would say.
    start_record.check(
        start_record.record_path(issue.path, issue.slug),
        settings.state_dir / LEDGER_NAME,
        record,
        counts or Counts(0, 0, 0, 0, 0),
    )
    return DryRun(
        issue.slug,
        issue.subject,
        provider.name,
        audience,
        scan_result.skipped,
        scan_result.invalid,
        messages,
        counts,
        status,
    )


def status_rows(settings: Settings, slug: str | None = None) -> list[dict[str, object]]:
    """For ``newsletter status``: per issue, audience, sent, failed, unknown, pending, when."""
    if not (settings.state_dir / LEDGER_NAME).exists():
        return []
    with ledger_errors(settings.state_dir / LEDGER_NAME):
        ledger = open_ledger(settings)
        try:
            ledger.verify()  # counts from a damaged ledger are wrong (921 of 3,000, once)
        except LedgerError:
            ledger.close()
            raise
    try:
        rows = []
        for record in ledger.issues():
            if slug is not None and record.slug != slug:
                continue
            counts = ledger.counts(record.slug)
            rows.append(
                {
                    "issue": record.slug,
                    "audience": counts.audience,
                    "sent": counts.sent,
                    "failed": counts.failed,
                    "unknown": counts.unknown,
                    "pending": counts.pending,
                    "when": record.finished_at or record.started_at,
                    "status": record.status.value,
                    "note": record.note,
                }
            )
        return rows
    finally:
        ledger.close()


__all__ = ["Decision", "DueRun", "SendReport", "send_due", "send_issue"]
