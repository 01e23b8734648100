"""Compose the stages into a send: issue -> compiled -> audience -> ledger -> delivery loop.

``send_issue`` is the whole job for one issue; ``send_due`` is what cron runs; ``send_test``
sends one copy outside the ledger; ``dry_run`` says what would happen and sends nothing.
The CLI only parses options and prints what these return.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.audience.change_queue import apply_queued
from pipeline.audience.sample import sample_subscriber
from pipeline.audience.subscribers import (
    Skipped,
    SkipReason,
    Subscriber,
    address_key,
    check_list,
    normalise_address,
    scan,
)
from pipeline.build import preview_unsubscribe_url
from pipeline.config import Settings
from pipeline.content.issue import WELCOME_DRAFT, Issue, load_issue
from pipeline.delivery.loop import (
    STOP_GRACE,
    DeliveryLoop,
    DeliveryPolicy,
    LoopResult,
    build_each,
    replayable_since,
)
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
from pipeline.delivery.stopping import StopOnSignals, StopRequest
from pipeline.errors import InputError, InputErrors, NewsletterError, StoppedEarly
from pipeline.events.sync import SyncReport
from pipeline.ledger import start_record
from pipeline.ledger.consent import left_for_good, removed_for_good
from pipeline.ledger.events import delivery_counts
from pipeline.ledger.lock import SendLock
from pipeline.ledger.store import (
    AudienceChange,
    Counts,
    IssueRecord,
    IssueStatus,
    Ledger,
    RecipientStatus,
    Settlement,
    ledger_errors,
    utc_now,
)
from pipeline.messages.compose import Message, MessageFactory
from pipeline.messages.secret import load_secret
from pipeline.render.checks import check_issue, unmatched_tag
from pipeline.render.compile import CompiledEmail, compile_issue
from pipeline.schedule import (
    Decision,
    Draft,
    IssueState,
    Plan,
    issue_state,
    missed_detail,
    plan_due,
)
from pipeline.wording import count, local_time, shown, stopped_by

LEDGER_NAME = "ledger.sqlite3"
# How often, at most, a running send reads the list again when it has changed (opt-outs):
# every LIST_RECHECK seconds, or ten times as long as the last reading took (a 100,000-row
# list takes a second or two), so reading it never takes more than a tenth of the send.
LIST_RECHECK = 1.0
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


OUTBOX = "outbox"  # the provider that emails nobody: what it wrote is a trial


def open_ledger(settings: Settings, clock: Callable[[], datetime] = utc_now) -> Ledger:
    return Ledger(settings.state_dir / LEDGER_NAME, clock)


def refuse_welcome(path: Path, settings: Settings) -> None:
    """The welcome goes to each new subscriber once, from the web app; sent to the list, it
    would welcome everyone again."""
    if path.name == WELCOME_DRAFT and path.resolve().parent == settings.newsletters_dir.resolve():
        raise InputError(
            "this is the welcome email: `newsletter serve` sends it to each new subscriber "
            "once they confirm, so it is never sent to the list; to see it as they will, "
            f"send yourself a copy: newsletter send {shown(path)} --to YOUR_ADDRESS",
            path=path,
        )


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
    subject: str  # as the first reader sees it: merge fields filled
    provider: str
    audience: int  # who will get it (for a resume: who is still pending)
    resuming: bool
    counts: Counts | None
    early: datetime | None = None  # its send_at, when that is still in the future
    joined: int = 0  # a resume: joined the list since the send began
    include_new: bool = False  # ... and they are counted in ``audience``


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
    returned: int = 0  # withdrawn earlier, on the list again: sent after all
    joined: int = 0  # joined the list since the send began; not sent (see --include-new)
    kept_out: list[Skipped] = field(default_factory=list)  # "subscribed", but left earlier
    added: int = 0  # joined since and included (--include-new)
    reconciled: int = 0
    asked: Asked | None = None  # unknown rows settled by asking the provider
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
    # Who left for good according to the consent history (``left_for_good``): kept out even
    # where the list, an older copy put back, says subscribed.
    history: Mapping[str, str] = field(default_factory=dict)
    kept_out: list[Skipped] = field(default_factory=list)

    def subscribers(self, path: Path, tags: tuple[str, ...]) -> Iterator[Subscriber]:
        for item in scan(path, tags):
            if isinstance(item, Subscriber):
                left = self.history.get(item.key)
                if left is None:
                    yield item
                    continue
                item = Skipped(item.line, item.email, SkipReason.LEFT_EARLIER, left)
                if len(self.kept_out) < 1000:
                    self.kept_out.append(item)
            self.skipped[item.reason.value] += 1
            if item.reason is SkipReason.INVALID and len(self.invalid) < 1000:
                self.invalid.append(item)
            elif item.reason in OPTED_OUT or item.reason is SkipReason.LEFT_EARLIER:
                self.opted_out.append(address_key(item.email))


def count_audience(settings: Settings, issue: Issue) -> int:
    return sum(1 for item in scan(settings.subscribers, issue.tags) if isinstance(item, Subscriber))


def _early(issue: Issue, now: datetime) -> datetime | None:
    """The issue's send_at, if that is still to come."""
    if issue.send_at is not None and issue.send_at.astimezone(UTC) > now.astimezone(UTC):
        return issue.send_at
    return None


def _audience_preview(
    compiled: CompiledEmail,
    settings: Settings,
    *,
    whole: bool = True,
    history: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """How many would get the issue, and its subject as the first of them sees it (or the
    sample subscriber, when nobody would): what a person confirms, never a field token."""
    size, subject = 0, None
    for item in _AudienceScan(history=history or {}).subscribers(
        settings.subscribers, compiled.issue.tags
    ):
        if isinstance(item, Subscriber):
            if subject is None:
                subject = compiled.personalise(item.fields, preview_unsubscribe_url(settings))
            size += 1
            if not whole:
                break
    if subject is None:
        subject = compiled.personalise(
            sample_subscriber(settings), preview_unsubscribe_url(settings)
        )
    return size, subject.subject


def has_audience(
    settings: Settings, issue: Issue, history: Mapping[str, str] | None = None
) -> bool:
    """Whether anyone at all would get the issue: stops at the first who would."""
    scan_now = _AudienceScan(history=history or {})
    return any(True for _ in scan_now.subscribers(settings.subscribers, issue.tags))


def nobody_to_send_to(settings: Settings, issue: Issue) -> InputError:
    """Why the audience is empty, in words she can act on: the list or the tags."""
    path = settings.subscribers
    report = check_list(path, keep=0)
    if report.rows == 0:
        return InputError(
            "nobody to send to: the list has only its header row; add subscribers, one a row",
            path=path,
        )
    if report.audience == 0:
        states = ", ".join(f"{name} {n}" for name, n in sorted(report.by_status.items()))
        return InputError(
            f"nobody to send to: none of the list's {count(report.rows, 'row')} is a subscribed "
            f"reader ({states})",
            path=path,
        )
    message = unmatched_tag(issue.tags, report.by_tag)
    if message is not None:
        return InputError(f"nobody to send to: {message}", path=issue.path, field="tags")
    return InputError("nobody to send to: no subscribed reader has these tags", path=issue.path)


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
    early: bool = False,
    stop: StopRequest | None = None,
    stop_grace: float = STOP_GRACE,
    list_recheck: float = LIST_RECHECK,
) -> SendReport | None:
    """Send (or resume) one issue to its audience, exactly once per recipient.

    SIGTERM and SIGINT (or ``stop``, from a test) end it cleanly: no more batches, up to
    ``stop_grace`` seconds for the answers in flight, all recorded; ``interrupted`` says so.

    Returns None when ``confirm`` declines.  Raises LockHeld if another send is running,
    InputError for bad input, an edited issue, a bad list, an audience of nobody, or an
    issue whose ``send_at`` is still to come (unless ``early``, or ``confirm`` asks a person,
    who is told).
    """
    try:
        refuse_welcome(path, settings)
        compiled = prepare(path, settings)  # the draft and the whole list: seconds, at 300,000
        secret = load_secret(
            settings.state_dir,
            environ,
            sent_records=start_record.records_folder(settings.newsletters_dir),
        )  # refused before anything is recorded
    except KeyboardInterrupt:
        raise StoppedEarly("stopped by Ctrl-C before sending began; nothing was sent") from None
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
                early,
                stop,
                stop_grace,
                list_recheck,
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
    allow_early: bool,
    stop: StopRequest,
    stop_grace: float,
    list_recheck: float,
) -> SendReport | None:
    issue = compiled.issue
    slug = issue.slug
    # Holding the lock, no live run has rows in flight: any left are from a dead run.
    ledger.verify()  # a damaged ledger would miscount who is still to send
    recovered = ledger.recover_inflight().get(slug, 0)
    # Opt-outs the web app has answered but not yet written into the list are honoured.
    apply_queued(ledger.db, settings.subscribers, settings.state_dir)
    history = left_for_good(ledger.db)  # kept out even if an old copy of the list is back
    record = ledger.issue(slug)
    # A lost or older ledger must not look like a fresh start (it re-sent 3,000 of 3,000).
    sent_record = start_record.record_path(issue.path, slug)
    start_record.check(
        sent_record,
        ledger.path,
        record,
        ledger.counts(slug),
        settings.timezone,
        emailing=provider.name != OUTBOX,
    )
    # An issue recorded with nobody in it was sent to no one (older versions marked a send to
    # an empty list complete): it starts afresh, as if it had never started.
    # Only ever written to the outbox (a trial, which emailed nobody), now through a provider
    # that emails: it starts afresh.  Recorded complete, the trial kept it from ever going.
    trial = record is not None and provider.name != OUTBOX and ledger.trial_only(slug)
    fresh = record is None or trial or ledger.counts(slug).audience == 0
    early = _early(issue, ledger.clock()) if fresh else None
    subject = issue.subject
    if provider.name == OUTBOX and not fresh:
        emailed_through = sorted(str(p) for p in ledger.batch_providers(slug) - {OUTBOX} if p)
        counts_now = ledger.counts(slug)
        if emailed_through and (counts_now.pending or counts_now.unknown):
            # The rest written to files, and the issue marked complete: they would never get it.
            raise InputError(
                f"its sending began through {', '.join(emailed_through)} ({counts_now.sent}"
                " sent); finished through the outbox, the rest would be emailed nobody and the"
                f" issue marked complete: set [provider] back to {emailed_through[0]} to finish"
                " it",
                path=issue.path,
            )
    if fresh:
        if confirm is not None:
            audience_size, subject = _audience_preview(compiled, settings, history=history)
        else:
            audience_size = int(has_audience(settings, issue, history))
        if audience_size == 0:
            raise nobody_to_send_to(settings, issue)
        if early is not None and confirm is None and not allow_early:
            raise InputError(
                f"it is scheduled for {local_time(early, settings.timezone)}, when cron will "
                "send it; to send it now anyway, add --now",
                path=issue.path,
                field="send_at",
            )
        if not force and (
            twin := sent_twin(settings, issue, sent_texts(settings, really_sent(ledger)))
        ):
            raise InputError(
                f"{twin}, so it would mail the same email to the same list again; edit it,"
                " or re-run with --force to send it anyway",
                path=issue.path,
            )
    if record is not None and not fresh and record.content_hash != compiled.fingerprint:
        sent = ledger.counts(slug).sent
        if record.status is IssueStatus.COMPLETE and not force:
            # --force would send the new version to nobody: the way to send it is a new issue.
            raise InputError(
                f"the issue changed after its sending was complete ({sent} sent): nobody is "
                "left to send it to; to send the new version, start a new issue: "
                'newsletter new "Title"',
                path=issue.path,
            )
        if not force:
            raise InputError(
                f"the issue changed after its sending began ({sent} already sent): refusing "
                "to send a second version to the same list; re-run with --force to send the "
                "edited version to the rest",
                path=issue.path,
            )
        ledger.set_content_hash(slug, compiled.fingerprint)

    if confirm is not None:
        if fresh:
            plan = SendPlan(slug, subject, provider.name, audience_size, False, None, early)
        else:
            counts = ledger.counts(slug)
            subject = _audience_preview(compiled, settings, whole=False)[1]
            # The list as it is now decides a resume, so the question reads it too: it once
            # said "80 still to send" with 10 of them deleted since, and "0 still to send"
            # before --include-new sent the issue to two newcomers.
            pending, joined = counts.pending, 0
            if record is not None and record.audience_loaded:
                pending, joined = ledger.preview_audience(
                    slug,
                    _AudienceScan(history=history).subscribers(settings.subscribers, issue.tags),
                )
            plan = SendPlan(
                slug,
                subject,
                provider.name,
                pending + (joined if include_new else 0),
                True,
                counts,
                joined=joined,
                include_new=include_new,
            )
        if not confirm(plan):
            return None

    if record is None:
        record = ledger.start_issue(slug, compiled.fingerprint, provider.name)
    elif fresh:
        if trial:
            ledger.forget_trial(slug)
        record = ledger.restart_issue(slug, compiled.fingerprint, provider.name)
    _write_start_record(ledger, slug, sent_record)
    audience = _AudienceScan(history=history)
    change = AudienceChange(0, 0, 0, 0)
    list_seen = _list_stamp(settings.subscribers)  # before the read: a change during it shows
    if not record.audience_loaded:
        ledger.add_recipients(
            slug,
            audience.subscribers(settings.subscribers, issue.tags),
            stay_withdrawn=removed_for_good(ledger.db),
        )
        if ledger.counts(slug).audience == 0:  # the list changed since the look above
            raise nobody_to_send_to(settings, issue)
    else:
        # A resume: the list as it is now decides (someone deleted or unsubscribed since is
        # not sent; a corrected name is used; who joined since is reported, or included).
        change = ledger.refresh_audience(
            slug,
            audience.subscribers(settings.subscribers, issue.tags),
            audience.opted_out,
            include_new=include_new,
            stay_withdrawn=removed_for_good(ledger.db),
        )
        if change.empty and ledger.counts(slug).pending:
            # The list saved empty (or with nobody subscribed left): withdrawing everyone
            # still to send made the issue complete without them.  Refused, as a first send
            # to such a list is; nothing changed, so the resume goes on once it is put right.
            raise nobody_to_send_to(settings, issue)

    factory = MessageFactory(
        compiled, settings, secret, managed_unsubscribe=provider.managed_unsubscribe
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
    told = progress or (lambda done, total: None)
    withdrawn_since = returned_since = 0
    list_read_at, list_interval = monotonic(), list_recheck

    def progress_and_record(done: int, total: int) -> None:
        nonlocal list_seen, list_read_at, list_interval, withdrawn_since, returned_since
        # After each batch is settled in the ledger (so the record is never ahead of it): a
        # SIGKILL or power cut leaves the record saying who was sent, not "0" from the start.
        if done:
            # A safeguard, not the send: failing here (a full disk) must not abandon the
            # batches in flight; the rewrite at the end of the run reports it.
            with contextlib.suppress(InputError):
                _write_start_record(ledger, slug, sent_record)
        told(done, total)
        # Someone who unsubscribed or was erased (`newsletter unsubscribe`, `subscribers
        # remove`, the web app) while the send runs is withdrawn before their turn: the list
        # is read again when it changed (see LIST_RECHECK for how often, at most).
        stamp = _list_stamp(settings.subscribers)
        if stamp == list_seen or monotonic() - list_read_at < list_interval:
            return
        # The cost is this thread's CPU time: waiting for the ledger's lock (opt-outs being
        # written at this moment) is not reading, and must not put the next reading off.
        began = time.thread_time()
        list_seen = stamp
        scan_now = _AudienceScan(history=history)
        try:
            again = ledger.refresh_audience(
                slug,
                scan_now.subscribers(settings.subscribers, issue.tags),
                scan_now.opted_out,
                bring_back=False,  # its history is the start's: a resume brings them back
            )
            withdrawn_since += again.withdrawn
            returned_since += again.returned
        except InputError:
            pass  # a list saved half-edited: the send goes on; a resume reads it again
        list_read_at = monotonic()
        list_interval = max(list_recheck, 10 * (time.thread_time() - began))

    loop = DeliveryLoop(
        ledger,
        provider,
        factory,
        delivery_policy(settings, provider),
        sleep=sleep,
        monotonic=monotonic,
        progress=progress_and_record,
        stop=stop,
        stop_grace=stop_grace,
    )
    result = loop.run(slug)
    counts = ledger.counts(slug)
    if result.stopped:
        status, note = IssueStatus.STOPPED, result.stopped
    elif result.paused:
        status, note = IssueStatus.PAUSED, result.paused
    elif counts.pending == 0 and counts.audience > 0:  # never complete with nobody in it
        status, note = IssueStatus.COMPLETE, None
    elif result.interrupted:
        status, note = (
            IssueStatus.SENDING,
            f"stopped by {stopped_by(result.interrupted)}; run again to resume",
        )
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
        kept_out=audience.kept_out,
        failures=ledger.recipients(slug, RecipientStatus.FAILED),
        unknown=ledger.recipients(slug, RecipientStatus.UNKNOWN),
        recovered_unknown=recovered,
        withdrawn=change.withdrawn + withdrawn_since,
        returned=change.returned + returned_since,
        joined=change.joined,
        added=change.added,
        reconciled=reconciled,
        asked=asked,
        unknown_replayable=(
            ledger.unknown_replayable(
                slug, provider.name, replayable_since(provider, ledger.clock())
            )
            if provider.idempotent
            else 0
        ),
    )


def _list_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the list is rewritten (the list's writer renames a new file in)."""
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


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
    suppressions: SyncReport | None = None  # the provider's lists, read before sending
    suppressions_problem: str | None = None  # why they could not be read (the send went on)

    @property
    def exit_code(self) -> int:
        codes = [r.exit_code for r in self.reports] + [2 for _ in self.problems]
        return max(codes, default=0)


def really_sent(ledger: Ledger) -> dict[str, IssueRecord]:
    """The started issues but the trials (``Ledger.trial_only``): those someone was emailed."""
    return {s: r for s, r in started_issues_of(ledger).items() if not ledger.trial_only(s)}


def started_issues_of(ledger: Ledger) -> dict[str, IssueRecord]:
    return {r.slug: r for r in ledger.issues() if ledger.counts(r.slug).audience > 0}


# A draft's words as its readers see them -> the draft and its ledger record.
SentTexts = Mapping[tuple[str, tuple[str, ...]], tuple[Path, IssueRecord]]


def _words(issue: Issue) -> tuple[str, tuple[str, ...]]:
    """Subject and body as readers see them, for comparing: no trailing spaces, no blank
    edges, whatever the line endings."""
    return issue.subject.strip(), tuple(line.rstrip() for line in issue.body.strip().splitlines())


def sent_texts(settings: Settings, started: Mapping[str, IssueRecord]) -> SentTexts:
    """The words of every draft in ``started`` (``really_sent``'s: a trial emailed nobody),
    read once for all the comparisons of one command."""
    texts: dict[tuple[str, tuple[str, ...]], tuple[Path, IssueRecord]] = {}
    for path in sorted(settings.newsletters_dir.glob("*.md")):
        if path.stem not in started or path.name == WELCOME_DRAFT:
            continue
        try:
            texts.setdefault(
                _words(load_issue(path, settings.timezone)), (path, started[path.stem])
            )
        except InputError:
            continue
    return texts


def sent_twin(settings: Settings, issue: Issue, texts: SentTexts) -> str:
    """Why ``issue`` is a copy of one sent: its subject and body word for word another draft's
    of ``texts`` (``sent_texts``), or "" when none is.  A sent issue copied to a new file name
    (to fix its date, or as the start of the next one, then forgotten) is a new issue to the
    ledger, and went to the whole list again."""
    found = texts.get(_words(issue))
    if found is None or found[0].stem == issue.slug:
        return ""
    path, record = found
    when = local_time(datetime.fromisoformat(record.started_at), settings.timezone)
    return f"its subject and text are word for word {shown(path)}'s, sent {when}"


def trial_issues(settings: Settings, started: Mapping[str, IssueRecord]) -> set[str]:
    """Those of ``started`` only ever written to the outbox (``Ledger.trial_only``)."""
    if not started:
        return set()
    with ledger_errors(settings.state_dir / LEDGER_NAME):
        ledger = open_ledger(settings)
        try:
            return {slug for slug in started if ledger.trial_only(slug)}
        finally:
            ledger.close()


def started_issues(settings: Settings) -> dict[str, IssueRecord]:
    """The ledger's issues that have an audience: one recorded with nobody in it (a send to
    an empty list, by an older version) was sent to no one, and counts as never started."""
    path = settings.state_dir / LEDGER_NAME
    if not path.exists():
        return {}
    with ledger_errors(path):
        ledger = open_ledger(settings)
        try:
            ledger.verify()  # counts from a damaged ledger are wrong (921 of 3,000, once)
            return started_issues_of(ledger)
        finally:
            ledger.close()


def recorded_issues(settings: Settings) -> set[str]:
    """Every issue the ledger has a record of, with an audience or not: one whose readers
    were all withdrawn is in the ledger all the same (its record beside the drafts is
    not a lost ledger's)."""
    path = settings.state_dir / LEDGER_NAME
    if not path.exists():
        return set()
    with ledger_errors(path):
        ledger = open_ledger(settings)
        try:
            return {r.slug for r in ledger.issues()}
        finally:
            ledger.close()


def find_drafts(settings: Settings) -> tuple[list[Draft], list[InputError]]:
    drafts, problems = [], []
    for path in sorted(settings.newsletters_dir.glob("*.md")):
        if path.name == WELCOME_DRAFT:
            continue  # sent by the web app, one new subscriber at a time: never an issue
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
    records = started_issues(settings)
    if settings.provider.name != OUTBOX:  # a trial is no send: due by its send_at, as a draft
        trials = trial_issues(settings, records)
        records = {slug: r for slug, r in records.items() if slug not in trials}
    plans = plan_due(drafts, records, now, settings.max_lateness, settings.timezone)
    run = DueRun(plans, [], problems)
    if any(plan.acts for plan in plans):
        _sync_suppressions(settings, environ, run, sleep)
    reports = run.reports
    stop = StopRequest()
    for plan in plans:
        if not plan.acts:
            continue
        if stop.requested:
            break  # stopped by a signal: the next run goes on from here
        provider = (provider_factory or (lambda: create_provider(settings, environ)))()
        try:
            # early=True: the plan found it due by cron's clock, which is the one that counts.
            report = send_issue(
                plan.draft.path,
                settings,
                provider,
                environ=environ,
                sleep=sleep,
                early=True,
                stop=stop,
            )
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
    return send_tests(path, settings, provider, [address], environ)[0]


def send_tests(
    path: Path,
    settings: Settings,
    provider: Provider,
    addresses: Sequence[str],
    environ: Mapping[str, str],
) -> list[tuple[Message, RecipientResult]]:
    """A copy to each address, outside the ledger, subject prefixed with [Test]; every
    address is checked before the first is sent."""
    compiled = prepare(path, settings)
    recipients = [sample_fields(settings, address) for address in addresses]
    factory = MessageFactory(
        compiled,
        settings,
        load_secret(
            settings.state_dir,
            environ,
            sent_records=start_record.records_folder(settings.newsletters_dir),
        ),
        managed_unsubscribe=provider.managed_unsubscribe,
    )
    messages = [
        factory.build(key, fields.get("email", address), fields, test=True)
        for (key, fields), address in zip(recipients, addresses, strict=True)
    ]
    answer = provider.send(messages)
    if answer.stop:
        raise SendStopped(answer.stop)
    by_key = {result.key: result for result in answer.results}
    return [(message, by_key[message.key]) for message in messages]


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
    early: datetime | None = None  # its send_at, when a send now would be early
    kept_out: list[Skipped] = field(default_factory=list)  # "subscribed", but left earlier


def dry_run(
    path: Path,
    settings: Settings,
    provider: Provider,
    environ: Mapping[str, str],
    samples: int = 3,
    now: datetime | None = None,
) -> DryRun:
    """Everything a send would do up to the provider call; nothing is sent or recorded.

    Refuses as a send would when nobody would get the issue.
    """
    refuse_welcome(path, settings)
    delivery_policy(settings, provider)  # batch size, rate, retries: checked, as a send would
    compiled = prepare(path, settings)
    issue = compiled.issue
    history: dict[str, str] = {}
    if (settings.state_dir / LEDGER_NAME).exists():
        with ledger_errors(settings.state_dir / LEDGER_NAME):
            ledger = open_ledger(settings)
            try:
                history = left_for_good(ledger.db)
            finally:
                ledger.close()
    scan_result = _AudienceScan(history=history)
    factory = MessageFactory(
        compiled,
        settings,
        load_secret(
            settings.state_dir,
            environ,
            sent_records=start_record.records_folder(settings.newsletters_dir),
        ),
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
    trial = False
    sent_ones: dict[str, IssueRecord] = {}
    emailing = provider.name != OUTBOX
    if (settings.state_dir / LEDGER_NAME).exists():
        with ledger_errors(settings.state_dir / LEDGER_NAME):
            ledger = open_ledger(settings)
            try:
                record = ledger.issue(issue.slug)
                if record is not None:
                    counts, status = ledger.counts(issue.slug), record.status
                    trial = emailing and ledger.trial_only(issue.slug)
                sent_ones = really_sent(ledger)
            finally:
                ledger.close()
    # A lost ledger is not "would start a new send": say what the real send would say.
    start_record.check(
        start_record.record_path(issue.path, issue.slug),
        settings.state_dir / LEDGER_NAME,
        record,
        counts or Counts(0, 0, 0, 0, 0),
        settings.timezone,
        emailing=emailing,
    )
    if trial:  # only written to the outbox: the send starts it afresh, as a new one
        counts = status = None
        record = None
    if (record is None or trial) and (
        twin := sent_twin(settings, issue, sent_texts(settings, sent_ones))
    ):
        raise InputError(  # what the send would refuse, the dry run says
            f"{twin}, so it would mail the same email to the same list again; edit it,"
            " or re-run with --force to send it anyway",
            path=issue.path,
        )
    if counts is not None and counts.audience == 0:
        # Sent to nobody by an older version: it starts afresh, as the send would.
        counts = status = None
        record = None
    if record is None and audience == 0:
        raise nobody_to_send_to(settings, issue)
    subject = messages[0].subject if messages else _audience_preview(compiled, settings)[1]
    return DryRun(
        issue.slug,
        subject,
        provider.name,
        audience,
        scan_result.skipped,
        scan_result.invalid,
        messages,
        counts,
        status,
        _early(issue, now or utc_now()) if record is None else None,
        scan_result.kept_out,
    )


@dataclass(frozen=True)
class StatusRow:
    """One issue as ``newsletter status`` shows it."""

    issue: str  # the slug
    path: Path | None  # the draft, when it is still there
    state: IssueState
    send_at: datetime | None
    counts: Counts | None  # None until its sending starts
    when: str | None  # from the ledger: finished, else started (UTC, ISO 8601)
    note: str | None  # why it paused or stopped
    detail: str  # the state in words: when it goes, why it will not
    # What the provider's events said since (delivered, bounced, complained...), if any.
    provider_says: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        """The keys ``status --json`` always had, then ``state`` and ``send_at``."""
        counts = self.counts or Counts(0, 0, 0, 0, 0)
        return {
            "issue": self.issue,
            "audience": counts.audience,
            "sent": counts.sent,
            "failed": counts.failed,
            "unknown": counts.unknown,
            "pending": counts.pending,
            "when": self.when,
            "state": self.state.value,
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "provider_says": self.provider_says,
        }


@dataclass
class StatusReport:
    rows: list[StatusRow]
    problems: list[InputError]  # drafts that cannot be read, so have no state


def status_rows(
    settings: Settings, issue: Path | None = None, now: datetime | None = None
) -> StatusReport:
    """Every issue in newsletters/ and every one the ledger knows, with its state.

    ``issue``: only that one (a path, or a slug the ledger knows); an issue that is neither a
    file nor in the ledger is an InputError.
    """
    now = now or utc_now()
    drafts, problems = find_drafts(settings)
    started = every_started = started_issues(settings)
    if issue is not None:
        if issue.is_dir():
            raise InputError("is a folder, not a draft: name one .md file in it", path=issue)
        problems = []
        drafts = [d for d in drafts if d.slug == issue.stem]
        if not drafts and issue.is_file():
            loaded = load_issue(issue, settings.timezone)
            drafts = [Draft(issue, loaded.slug, loaded.send_at)]
        started = {k: v for k, v in started.items() if k == issue.stem}
        if not drafts and not started:
            raise InputError(
                f"no such issue: not a file, and not in {shown(settings.newsletters_dir)}/ "
                "or the ledger",
                path=issue,
            )
    counts: dict[str, Counts] = {}
    says: dict[str, dict[str, int]] = {}
    trials: set[str] = set()
    if every_started:
        with ledger_errors(settings.state_dir / LEDGER_NAME):
            ledger = open_ledger(settings)
            try:
                counts = {slug: ledger.counts(slug) for slug in started}
                says = {slug: delivery_counts(ledger, slug) for slug in started}
                trials = {slug for slug in every_started if ledger.trial_only(slug)}
            finally:
                ledger.close()
    emails = settings.provider.name != OUTBOX
    # Read once for every draft's "a copy of a sent issue?", not once a draft.
    texts = sent_texts(settings, {k: v for k, v in every_started.items() if k not in trials})
    by_slug: dict[str, Draft | None] = {d.slug: d for d in drafts}
    by_slug.update({slug: None for slug in started if slug not in by_slug})
    rows = []
    for slug in sorted(by_slug):
        draft, record = by_slug[slug], started.get(slug)
        send_at = draft.send_at.astimezone(settings.timezone) if draft and draft.send_at else None
        # Only written to the outbox, with a provider that emails now: not sent, but a draft
        # like any other, which that provider will send (cron by its send_at).
        trial_only = slug in trials and emails and draft is not None
        as_recorded = None if trial_only else record
        state = issue_state(send_at, as_recorded, now, settings.max_lateness)
        detail = _state_detail(state, draft, as_recorded, now, settings, texts)
        if slug in trials:
            detail = (
                f"only written to the outbox (a trial), emailed nobody; {detail}"
                if trial_only
                else f"{detail}; written to the outbox, emailed nobody"
            )
        rows.append(
            StatusRow(
                issue=slug,
                path=draft.path if draft else None,
                state=state,
                send_at=send_at,
                counts=None if trial_only else counts.get(slug),
                when=(record.finished_at or record.started_at) if record else None,
                note=record.note if record else None,
                detail=detail,
                provider_says=says.get(slug, {}),
            )
        )
    return StatusReport(rows, problems)


def _state_detail(
    state: IssueState,
    draft: Draft | None,
    record: IssueRecord | None,
    now: datetime,
    settings: Settings,
    texts: SentTexts,
) -> str:
    zone = settings.timezone
    if record is not None:
        moment = datetime.fromisoformat(record.finished_at or record.started_at)
        verb = "finished" if record.finished_at else "started"
        return f"{verb} {local_time(moment, zone)}" + (f"; {record.note}" if record.note else "")
    assert draft is not None  # an issue neither started nor a draft is not listed
    if draft.path.name == WELCOME_DRAFT:
        return "the welcome email: `newsletter serve` sends it to each new subscriber once"
    if state is IssueState.DRAFT:
        return (
            "no send_at, so cron will not send it; send it by hand: "
            f"newsletter send {shown(draft.path)}"
        )
    assert draft.send_at is not None
    if state is IssueState.SCHEDULED:
        return f"for {local_time(draft.send_at, zone)}" + _blocked_by(
            draft, settings, "then", texts
        )
    if state is IssueState.DUE:
        blocked = _blocked_by(draft, settings, "now", texts)
        if blocked:
            return f"send_at {local_time(draft.send_at, zone)} has passed{blocked}"
        return f"send_at {local_time(draft.send_at, zone)} has passed: the next cron run sends it"
    missed = missed_detail(draft, draft.send_at, now, settings.max_lateness, zone)
    twin = sent_twin(settings, load_issue(draft.path, settings.timezone), texts)
    return f"{missed}; but {twin}, so edit it first" if twin else missed


def _blocked_by(draft: Draft, settings: Settings, when: str, texts: SentTexts) -> str:
    """For an issue cron is to send: what would stop it, or "".  Cron refuses an issue with
    problems and says so only in its log, so ``status`` (what she reads) runs the same check
    cron's send runs first, rather than promise a send that will not happen."""
    twin = sent_twin(settings, load_issue(draft.path, settings.timezone), texts)
    if twin:
        return (
            f", but cron will not send it {when}: {twin}; edit it, or send it anyway with:"
            f" newsletter send {shown(draft.path)} --force"
        )
    problems = check_issue(draft.path, settings)
    if not problems:
        return ""
    return (
        f", but cron will not send it {when}: {count(len(problems), 'problem')} to fix"
        f" first (see them with: newsletter check {shown(draft.path)})"
    )


def recipients_in(
    settings: Settings, slug: str, status: RecipientStatus
) -> tuple[int, list[tuple[str, str]]]:
    """Everyone of an issue in ``status`` (failed, unknown), with the provider's reason."""
    if slug not in started_issues(settings):
        return 0, []
    with ledger_errors(settings.state_dir / LEDGER_NAME):
        ledger = open_ledger(settings)
        try:
            return len(rows := ledger.recipients(slug, status, limit=-1)), rows
        finally:
            ledger.close()


__all__ = ["Decision", "DueRun", "SendReport", "send_due", "send_issue"]
