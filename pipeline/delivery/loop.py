"""The one delivery loop: claim a batch, build its messages, pace, send, retry, settle.

Every provider is driven by this loop and nothing else, so batching, the rate limit, retries,
pausing and the ledger's bookkeeping are written once.  Input: an issue's pending rows in the
ledger.  Output: those rows settled, and a ``LoopResult`` saying why the loop ended.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.delivery.provider import (
    BatchResult,
    Options,
    Outcome,
    Provider,
    RecipientResult,
    Searching,
)
from pipeline.delivery.retry import RetryLater, RetryPolicy
from pipeline.delivery.stopping import StopRequest
from pipeline.errors import NewsletterError
from pipeline.ledger.store import ClaimedRow, Ledger, RecipientStatus, Settlement
from pipeline.messages.compose import Message, MessageFactory
from pipeline.wording import count, stopped_by

SETTLED_AS = {
    Outcome.SENT: RecipientStatus.SENT,
    Outcome.FAILED: RecipientStatus.FAILED,
    Outcome.UNKNOWN: RecipientStatus.UNKNOWN,
    Outcome.RETRY: RecipientStatus.PENDING,
}


# How long a stopped send waits for the answers already on their way: the providers' read
# timeout (60 s), so an answer that can come is recorded; under systemd's default 90 s stop
# timeout, so the stop is clean.
STOP_GRACE = 60.0

# Messages per call unless [provider] batch_size says otherwise (up to the provider's limit).
# Four batches of 250 in flight keep a send's memory near 100 MB; 500 would be 150 MB for
# ~10% more throughput (bench/scale.py).
DEFAULT_BATCH = 250

# A batch answered slower than this (seconds, the call including our encoding of it) halves the
# batches in flight; see ``Window``.  A healthy local API answers a batch of 250 in 70 ms
# (p50; 130 ms at most, bench/send.py); slower is a slow link or a struggling provider, where
# more batches in flight widen what a kill leaves ``unknown`` (README, "The kill window").
SLOW_ANSWER = 0.15


def describe(exc: BaseException) -> str:
    """An unexpected error in words: its kind and message, never a traceback."""
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def build_each(
    factory: MessageFactory, rows: Sequence[ClaimedRow]
) -> tuple[list[Message], list[Settlement]]:
    """Each row's message; a row whose message cannot be built is ``failed`` with the reason,
    and the others go on: one reader's data never stops a send."""
    messages, failed = [], []
    for row in rows:
        try:
            messages.append(factory.build(row.key, row.email, row.fields))
        except NewsletterError as exc:
            failed.append(Settlement(row.key, RecipientStatus.FAILED, reason=str(exc)))
        except Exception as exc:  # whatever it is, it is this reader's alone
            reason = f"this reader's message could not be built: {describe(exc)}"
            failed.append(Settlement(row.key, RecipientStatus.FAILED, reason=reason))
    return messages, failed


@dataclass(frozen=True)
class DeliveryPolicy:
    batch_size: int
    rate: float | None  # messages per second
    retry: RetryPolicy
    max_consecutive_failures: int
    concurrency: int = 1  # batches in flight at once, at most (see ``Window``)
    slow_answer: float = SLOW_ANSWER  # seconds: a slower answer keeps one batch in flight
    per_message: bool = False  # the provider makes a call per message: time each call

    @classmethod
    def from_options(cls, options: Options, provider: Provider) -> DeliveryPolicy:
        rate = options.number("rate", 0) or None
        batch = options.integer(
            "batch_size", min(DEFAULT_BATCH, provider.max_batch), maximum=provider.max_batch
        )
        if rate is not None:
            batch = max(1, min(batch, int(rate)))  # at most a second's worth per call
        return cls(
            batch_size=batch,
            rate=rate,
            retry=RetryPolicy(
                attempts=options.integer("max_attempts", 5, maximum=50),
                max_seconds=options.number("max_retry_seconds", 300),
            ),
            max_consecutive_failures=options.integer("max_consecutive_failures", 50),
            concurrency=options.integer(
                "concurrency",
                min(4, provider.max_concurrency),
                maximum=provider.max_concurrency,
            ),
            slow_answer=options.number("slow_answer", SLOW_ANSWER),
            per_message=provider.one_call_per_message,
        )


@dataclass
class LoopResult:
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    paused: str | None = None  # retries used up, or too many failures in a row
    stopped: str | None = None  # the provider refused the account or the request
    interrupted: str | None = None  # a signal asked the send to stop ("SIGTERM", "SIGINT")
    abandoned: int = 0  # in flight when the wait for answers ended: recorded unknown


class Pacer:
    """Keeps the average rate at or under ``rate`` messages per second."""

    def __init__(
        self, rate: float | None, monotonic: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.rate, self.monotonic, self.sleep = rate, monotonic, sleep
        self._next: float | None = None

    def wait(self, count: int) -> None:
        if not self.rate:
            return
        now = self.monotonic()
        if self._next is not None and self._next > now:
            self.sleep(self._next - now)
            now = self._next
        self._next = now + count / self.rate


class Window:
    """How many batches may be in flight now: the kill window, kept as small as it can be
    without slowing a healthy send.

    Every batch in flight when the process is killed ends ``unknown`` (the provider may or may
    not have it).  So a send starts with one batch in flight; each answer that comes back
    within ``slow`` seconds opens one more (up to ``most``, the ``concurrency`` setting), and
    a slower one halves them (TCP's additive increase, multiplicative decrease: one slow
    answer among fast ones costs little, steady slow answers close it to one in two steps).
    A batch that had to be retried (429, 5xx, a timeout) or whose answer was lost counts as
    slow whatever its time.  A fast provider reaches full concurrency after a few answers,
    where each batch is in flight only briefly; a slow one (a busy provider, a slow uplink)
    is sent one batch at a time, so a kill leaves one batch to settle instead of
    ``concurrency`` of them."""

    def __init__(self, most: int, slow: float) -> None:
        self.most, self.slow = most, slow
        self.open = 1
        self.widest = 1  # the most this send opened (tests and the report on it)

    def answered(self, seconds: float, struggled: bool = False) -> None:
        """A batch was answered after ``seconds`` (its slowest call); ``struggled``: some of
        it had to be retried, or its answer was lost (a provider pushing back is slow too)."""
        if struggled or seconds > self.slow:
            self.open = max(1, self.open // 2)
        else:
            self.open = min(self.most, self.open + 1)
        self.widest = max(self.widest, self.open)


def replayable_since(provider: Provider, now: datetime) -> datetime | None:
    """The oldest batch an idempotent provider may still replay under its key: one handed
    over longer ago than a searching provider's key lasts (Brevo: 30 minutes) was asked
    about instead, and if it is still ``unknown`` (the search failed, or no longer
    remembers) a replay would be sent again, not recognised.  ``None``: every batch."""
    if isinstance(provider, Searching) and provider.search_after > 0:
        return now - timedelta(seconds=provider.search_after)
    return None


class _RetryCancelled(Exception):
    """A stop was requested while a batch waited to be retried."""


@dataclass(frozen=True)
class BatchEnd:
    """How one batch's send ended, once every message of it was reported."""

    paused: str | None = None
    stopped: str | None = None
    slowest: float = 0.0  # seconds: its slowest call to the provider (``Window``)
    struggled: bool = False  # some of it was retried or left in doubt (``Window``)


Report = Callable[[list[Settlement]], None]


class DeliveryLoop:
    """Claims batches and keeps up to ``policy.concurrency`` of them in flight, fewer while
    the provider answers slowly (``Window``).

    A batch is sent (with its retries) in a worker thread, which reports settlements back;
    only this thread touches the ledger, so every write stays in order and in one place.
    """

    def __init__(
        self,
        ledger: Ledger,
        provider: Provider,
        factory: MessageFactory,
        policy: DeliveryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        progress: Callable[[int, int], None] | None = None,
        stop: StopRequest | None = None,
        stop_grace: float = STOP_GRACE,
    ) -> None:
        self.ledger, self.provider, self.factory, self.policy = ledger, provider, factory, policy
        self.sleep = sleep
        self.monotonic = monotonic
        self.stop = stop or StopRequest()
        self.stop_grace = stop_grace
        self.pacer = Pacer(policy.rate, monotonic, sleep)
        self.progress = progress or (lambda done, total: None)
        self._consecutive_failures = 0
        self._last_failure = ""
        self.window = Window(policy.concurrency, policy.slow_answer)
        # An idempotent provider first replays the batches it left unknown (only its own:
        # another provider never saw the key).
        self._unknown_done = not provider.idempotent

    def build(self, rows: Sequence[ClaimedRow]) -> tuple[list[Message], list[Settlement]]:
        return build_each(self.factory, rows)

    def _apply(self, slug: str, batch: int, items: list[Settlement], result: LoopResult) -> None:
        """Record settlements in the ledger and in the run's counters (this thread only)."""
        if not items:
            return
        self.ledger.settle(slug, batch, items)
        for item in items:
            if item.status is RecipientStatus.SENT:
                result.sent += 1
                self._consecutive_failures = 0
            elif item.status is RecipientStatus.FAILED:
                result.failed += 1
                self._consecutive_failures += 1
                self._last_failure = item.reason
            elif item.status is RecipientStatus.UNKNOWN:
                result.unknown += 1

    def run(self, slug: str) -> LoopResult:
        result = LoopResult()
        total, done = self.ledger.counts(slug).pending, 0
        self.progress(done, total)
        reports: queue.Queue[tuple[int, list[Settlement]]] = queue.Queue()
        in_flight: dict[Future[BatchEnd], tuple[int, int]] = {}
        stop = self.stop
        give_up_at: float | None = None  # when a stop stops waiting for answers in flight

        def drain() -> None:
            while True:
                try:
                    batch, items = reports.get_nowait()
                except queue.Empty:
                    return
                self._apply(slug, batch, items, result)

        window = self.window = Window(self.policy.concurrency, self.policy.slow_answer)
        pool = ThreadPoolExecutor(max_workers=self.policy.concurrency)
        try:
            exhausted = False
            while True:
                # Fill the pipe, unless the send is ending.
                while (
                    not exhausted
                    and len(in_flight) < window.open
                    and not (result.paused or result.stopped or stop.requested)
                ):
                    batch, rows = self._claim(slug)
                    if not rows:
                        exhausted = True
                        break
                    messages, unbuildable = self.build(rows)
                    self._apply(slug, batch, unbuildable, result)
                    self.pacer.wait(len(messages))
                    if stop.requested:
                        # Claimed but never handed over: certainly not sent.
                        self._release(slug, batch, rows, unbuildable)
                        break

                    def report(items: list[Settlement], batch: int = batch) -> None:
                        reports.put((batch, items))

                    future = pool.submit(self._deliver, messages, report)
                    in_flight[future] = (batch, len(rows))
                if stop.requested:
                    result.interrupted = stop.reason
                    if give_up_at is None:
                        give_up_at = self.monotonic() + self.stop_grace
                    if in_flight and (stop.now or self.monotonic() >= give_up_at):
                        drain()
                        result.abandoned = self._abandon(slug, in_flight, stop.reason)
                        result.unknown += result.abandoned
                        return result
                if not in_flight:
                    return result
                finished, _ = wait(in_flight, timeout=0.05, return_when=FIRST_COMPLETED)
                drain()
                for future in finished:
                    batch, size = in_flight.pop(future)
                    end = future.result()
                    drain()
                    window.answered(end.slowest, end.struggled)
                    result.paused = result.paused or end.paused
                    result.stopped = result.stopped or end.stopped
                    done += size
                    self.progress(done, total)
                limit = self.policy.max_consecutive_failures
                if self._consecutive_failures >= limit and not result.paused:
                    result.paused = (
                        f"{self._consecutive_failures} recipients in a row failed "
                        f"(last: {self._last_failure}); paused instead of burning through the list"
                    )
        finally:
            # After giving up on answers, a worker may still be waiting for one: do not wait
            # for it (its answer can no longer be recorded; its batch is already unknown).
            pool.shutdown(wait=not result.abandoned, cancel_futures=True)

    def _release(
        self, slug: str, batch: int, rows: Sequence[ClaimedRow], unbuildable: list[Settlement]
    ) -> None:
        settled = {s.key for s in unbuildable}
        self.ledger.settle(
            slug,
            batch,
            [
                Settlement(row.key, RecipientStatus.PENDING, reason="")
                for row in rows
                if row.key not in settled
            ],
        )

    def _abandon(
        self, slug: str, in_flight: dict[Future[BatchEnd], tuple[int, int]], reason: str | None
    ) -> int:
        """Batches whose answer did not come in time: ``unknown``, said so, now."""
        why = (
            f"the send was stopped by {stopped_by(reason or 'a stop')} while the provider had"
            " not answered yet: "
            "may or may not have been delivered"
        )
        return sum(self.ledger.abandon_batch(slug, batch, why) for batch, _ in in_flight.values())

    def _claim(self, slug: str) -> tuple[int, list[ClaimedRow]]:
        """The next batch: for an idempotent provider, first each batch a dead run left
        ``unknown``, exactly as it was sent, so that its idempotency key is the same."""
        if not self._unknown_done:
            since = replayable_since(self.provider, self.ledger.clock())
            batch, rows = self.ledger.claim_unknown_batch(slug, self.provider.name, since)
            if rows:
                return batch, rows
            self._unknown_done = True
        return self.ledger.claim(slug, self.policy.batch_size, provider=self.provider.name)

    def _deliver(self, messages: list[Message], report: Report) -> BatchEnd:
        """Send one batch with retries, reporting every message's settlement (worker thread).

        With an idempotent provider an ``unknown`` answer is retried like a transient error:
        the same messages, so the same key, and the provider delivers them once."""
        remaining = messages
        stopped = None
        slowest = 0.0
        struggled = False
        in_doubt: set[str] = set()  # keys whose last answer was unknown
        retry_unknown = self.provider.idempotent
        try:
            for attempt in self.policy.retry.retrying(self._pause):
                with attempt:
                    if not remaining:
                        break
                    began = time.monotonic()  # the real clock: tests' fake one stands still
                    try:
                        answer = self.provider.send(remaining)
                    except Exception as exc:  # settled, never a dead thread
                        # Providers turn every per-message problem into that message's result;
                        # anything else is a fault in the provider itself, after which nobody
                        # can say which of these messages went: unknown, and the send stops.
                        reason = f"the {self.provider.name} provider failed: {describe(exc)}"
                        answer = BatchResult.all(remaining, Outcome.UNKNOWN, reason, stop=reason)
                        retry_unknown = False
                    took = time.monotonic() - began
                    if self.policy.per_message:  # SMTP, SES: the batch was len() calls
                        took /= max(1, len(remaining))
                    slowest = max(slowest, took)
                    by_key = {r.key: r for r in answer.results}
                    retry: list[tuple[Message, RecipientResult]] = []
                    settlements: list[Settlement] = []
                    for message in remaining:
                        outcome = by_key.get(message.key) or RecipientResult(
                            message.key, Outcome.UNKNOWN, reason="the provider said nothing of it"
                        )
                        if outcome.outcome is Outcome.RETRY or (
                            retry_unknown and outcome.outcome is Outcome.UNKNOWN
                        ):
                            if outcome.outcome is Outcome.UNKNOWN:
                                # Stays in doubt: a later "not sent" is about a later try.
                                in_doubt.add(message.key)
                            retry.append((message, outcome))
                            continue
                        settlements.append(
                            Settlement(
                                message.key,
                                SETTLED_AS[outcome.outcome],
                                outcome.provider_id,
                                outcome.reason,
                            )
                        )
                    if answer.stop:
                        # Not delivered: back to pending for the run after the fix.
                        settlements += [
                            Settlement(m.key, self._unsettled(m.key, in_doubt), reason=r.reason)
                            for m, r in retry
                        ]
                        retry = []
                        stopped = answer.stop
                    report(settlements)
                    struggled = (
                        struggled
                        or bool(retry)
                        or any(s.status is RecipientStatus.UNKNOWN for s in settlements)
                    )
                    remaining = [message for message, _ in retry]
                    if remaining:
                        delays = [r.retry_after for _, r in retry if r.retry_after is not None]
                        raise RetryLater(max(delays) if delays else None, retry[0][1].reason)
        except _RetryCancelled:
            # Stopping: a batch waiting to be retried is not tried again in this run.
            report(
                [
                    Settlement(
                        m.key,
                        self._unsettled(m.key, in_doubt),
                        reason="not retried: the send was stopped by "
                        + stopped_by(self.stop.reason or "a stop"),
                    )
                    for m in remaining
                ]
            )
            return BatchEnd(slowest=slowest, struggled=True)
        except RetryLater as exc:
            report(
                [
                    Settlement(m.key, self._unsettled(m.key, in_doubt), reason=exc.reason)
                    for m in remaining
                ]
            )
            return BatchEnd(
                paused=f"{count(len(remaining), 'message')} still could not be sent after "
                f"{self.policy.retry.attempts} tries: {exc.reason}",
                slowest=slowest,
                struggled=True,
            )
        return BatchEnd(stopped=stopped, slowest=slowest, struggled=struggled)

    def _pause(self, seconds: float) -> None:
        """The wait before a retry; a stop cuts it short and cancels the retry."""
        if self.sleep is time.sleep:
            self.stop.event.wait(seconds)
        elif not self.stop.requested:
            self.sleep(seconds)
        if self.stop.requested:
            raise _RetryCancelled

    @staticmethod
    def _unsettled(key: str, in_doubt: set[str]) -> RecipientStatus:
        """Where a message that is not settled goes: back to pending when it was certainly
        not delivered; ``unknown`` when its last answer left that open (the next run re-sends
        its batch as it was, with the same idempotency key)."""
        return RecipientStatus.UNKNOWN if key in in_doubt else RecipientStatus.PENDING
