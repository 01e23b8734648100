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

from pipeline.audience.change_queue import apply_queued
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
from pipeline.delivery.loop import DeliveryLoop, DeliveryPolicy, LoopResult
from pipeline.delivery.provider import (
    Options,
    Outcome,
    Provider,
    RecipientResult,
    Reconciling,
    Searching,
)
from pipeline.delivery.providers import REGISTRY, create_provider
from pipeline.delivery.settle import Asked, ask_provider
from pipeline.errors import InputError, InputErrors, NewsletterError
from pipeline.events.sync import SyncReport
from pipeline.ledger.events import delivery_counts
from pipeline.ledger.lock import SendLock
from pipeline.ledger.store import (
    Counts,
    IssueStatus,
    Ledger,
    RecipientStatus,
    Settlement,
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
    reconciled: int = 0
    asked: Asked | None = None  # unknown rows settled by asking the provider
    unknown_replayable: int = 0  # unknown rows the (idempotent) provider will replay by key

    @property
    def unknown_resent_by_key(self) -> bool:
        return self.unknown_replayable > 0

    @property
    def exit_code(self) -> int:
        if self.this_run.stopped:
            return 2
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
    confirm: Callable[[SendPlan], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> SendReport | None:
    """Send (or resume) one issue to its audience, exactly once per recipient.

    Returns None when ``confirm`` declines.  Raises LockHeld if another send is running,
    InputError for bad input, an edited issue, or a bad list.
    """
    compiled = prepare(path, settings)
    with SendLock(settings.state_dir):
        ledger = open_ledger(settings, clock)
        try:
            return _send_locked(
                ledger,
                compiled,
                settings,
                provider,
                environ,
                resend_unknown,
                force,
                confirm,
                progress,
                sleep,
                monotonic,
            )
        finally:
            ledger.close()


def _send_locked(
    ledger: Ledger,
    compiled: CompiledEmail,
    settings: Settings,
    provider: Provider,
    environ: Mapping[str, str],
    resend_unknown: bool,
    force: bool,
    confirm: Callable[[SendPlan], bool] | None,
    progress: Callable[[int, int], None] | None,
    sleep: Callable[[float], None],
    monotonic: Callable[[], float],
) -> SendReport | None:
    issue = compiled.issue
    slug = issue.slug
    # Holding the lock, no live run has rows in flight: any left are from a dead run.
    recovered = ledger.recover_inflight().get(slug, 0)
    # Opt-outs the web app has answered but not yet written into the list are honoured.
    apply_queued(ledger.db, settings.subscribers, settings.state_dir)
    record = ledger.issue(slug)
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
    audience = _AudienceScan()
    withdrawn = 0
    if not record.audience_loaded:
        ledger.add_recipients(slug, audience.subscribers(settings.subscribers, issue.tags))
    else:
        for _ in audience.subscribers(settings.subscribers, issue.tags):
            pass
        withdrawn = ledger.withdraw(slug, audience.opted_out)
    factory = MessageFactory(
        compiled,
        settings,
        load_secret(settings.state_dir, environ),
        managed_unsubscribe=provider.managed_unsubscribe,
    )
    # Before anything is re-sent, a provider that can search says what it accepted.
    asked = (
        ask_provider(ledger, slug, provider, factory) if isinstance(provider, Searching) else None
    )
    if resend_unknown:
        # Batches an idempotent provider sent are replayed by the loop under their key.
        ledger.requeue_unknown(slug, provider.name if provider.idempotent else None)

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
    )
    result = loop.run(slug)
    counts = ledger.counts(slug)
    if result.stopped:
        status, note = IssueStatus.STOPPED, result.stopped
    elif result.paused:
        status, note = IssueStatus.PAUSED, result.paused
    elif counts.pending == 0:
        status, note = IssueStatus.COMPLETE, None
    else:
        status, note = IssueStatus.SENDING, None
    ledger.set_status(slug, status, note)
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
        withdrawn=withdrawn,
        reconciled=reconciled,
        asked=asked,
        unknown_replayable=(
            ledger.unknown_replayable(slug, provider.name) if provider.idempotent else 0
        ),
    )


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
        messages = [factory.build(r.key, r.email, r.fields) for r in rows]
        settlements = [
            Settlement(
                r.key,
                RecipientStatus.SENT if r.outcome is Outcome.SENT else RecipientStatus.PENDING,
                r.provider_id,
            )
            for r in provider.reconcile(messages)
        ]
        ledger.settle(slug, batch, settlements)
        settled += sum(1 for s in settlements if s.status is RecipientStatus.SENT)


# Cron -------------------------------------------------------------------------------------


@dataclass
class DueRun:
    plans: list[Plan]
    reports: list[SendReport]
    problems: list[InputError]
    suppressions: SyncReport | None = None  # the provider's lists, read before sending
    suppressions_problem: str | None = None  # why they could not be read (the send went on)

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
    ledger = open_ledger(settings)
    try:
        records = {record.slug: record for record in ledger.issues()}
    finally:
        ledger.close()
    plans = plan_due(drafts, records, now, settings.max_lateness)
    run = DueRun(plans, [], problems)
    if any(plan.acts for plan in plans):
        _sync_suppressions(settings, environ, run, sleep)
    reports = run.reports
    for plan in plans:
        if not plan.acts:
            continue
        provider = (provider_factory or (lambda: create_provider(settings, environ)))()
        try:
            report = send_issue(plan.draft.path, settings, provider, environ=environ, sleep=sleep)
        except InputError as exc:
            problems.extend(exc.problems if isinstance(exc, InputErrors) else [exc])
            continue
        finally:
            provider.close()
        assert report is not None
        reports.append(report)
    return run


def _sync_suppressions(
    settings: Settings, environ: Mapping[str, str], run: DueRun, sleep: Callable[[float], None]
) -> None:
    """Before cron sends, the provider's own suppression lists go into the list (where it
    has them and ``[provider] suppressions_sync`` is not false).  A provider that cannot be
    asked right now does not hold the send back: the list is as current as the last sync."""
    from pipeline.events.suppressions import run_sync, sync_before_send

    if not sync_before_send(settings):
        return
    try:
        run.suppressions = run_sync(settings, environ, sleep=sleep)
    except InputError as exc:
        run.problems.append(exc)
    except NewsletterError as exc:
        run.suppressions_problem = str(exc)


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
    if (settings.state_dir / LEDGER_NAME).exists():
        ledger = open_ledger(settings)
        try:
            record = ledger.issue(issue.slug)
            if record is not None:
                counts, status = ledger.counts(issue.slug), record.status
        finally:
            ledger.close()
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
    ledger = open_ledger(settings)
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
                    "provider_says": delivery_counts(ledger, record.slug),
                }
            )
        return rows
    finally:
        ledger.close()


__all__ = ["Decision", "DueRun", "SendReport", "send_due", "send_issue"]
