"""The one delivery loop: claim a batch, build its messages, pace, send, retry, settle.

Every provider is driven by this loop and nothing else, so batching, the rate limit, retries,
pausing and the ledger's bookkeeping are written once.  Input: an issue's pending rows in the
ledger.  Output: those rows settled, and a ``LoopResult`` saying why the loop ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.delivery.provider import Options, Outcome, Provider, RecipientResult
from pipeline.delivery.retry import RetryLater, RetryPolicy
from pipeline.errors import NewsletterError
from pipeline.ledger.store import ClaimedRow, Ledger, RecipientStatus, Settlement
from pipeline.messages.compose import Message, MessageFactory

SETTLED_AS = {
    Outcome.SENT: RecipientStatus.SENT,
    Outcome.FAILED: RecipientStatus.FAILED,
    Outcome.UNKNOWN: RecipientStatus.UNKNOWN,
    Outcome.RETRY: RecipientStatus.PENDING,
}


@dataclass(frozen=True)
class DeliveryPolicy:
    batch_size: int
    rate: float | None  # messages per second
    retry: RetryPolicy
    max_consecutive_failures: int

    @classmethod
    def from_options(cls, options: Options, provider: Provider) -> DeliveryPolicy:
        rate = options.number("rate", 0) or None
        batch = options.integer("batch_size", provider.max_batch, maximum=provider.max_batch)
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
        )


@dataclass
class LoopResult:
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    paused: str | None = None  # retries used up, or too many failures in a row
    stopped: str | None = None  # the provider refused the account or the request


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


class DeliveryLoop:
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
    ) -> None:
        self.ledger, self.provider, self.factory, self.policy = ledger, provider, factory, policy
        self.sleep = sleep
        self.pacer = Pacer(policy.rate, monotonic, sleep)
        self.progress = progress or (lambda done, total: None)

    def build(self, rows: Sequence[ClaimedRow]) -> tuple[list[Message], list[Settlement]]:
        messages, failed = [], []
        for row in rows:
            try:
                messages.append(self.factory.build(row.key, row.email, row.fields))
            except NewsletterError as exc:
                failed.append(Settlement(row.key, RecipientStatus.FAILED, reason=str(exc)))
        return messages, failed

    def run(self, slug: str) -> LoopResult:
        result = LoopResult()
        consecutive_failures = 0
        total, done = self.ledger.counts(slug).pending, 0
        self.progress(done, total)
        while True:
            batch, rows = self.ledger.claim(slug, self.policy.batch_size)
            if not rows:
                return result
            messages, unbuildable = self.build(rows)
            if unbuildable:
                self.ledger.settle(slug, batch, unbuildable)
                result.failed += len(unbuildable)
            self.pacer.wait(len(messages))
            settled = self._deliver(slug, batch, messages, result)
            done += len(rows)
            self.progress(done, total)
            for item in [*unbuildable, *settled]:
                if item.status is RecipientStatus.SENT:
                    consecutive_failures = 0
                elif item.status is RecipientStatus.FAILED:
                    consecutive_failures += 1
            if result.stopped or result.paused:
                return result
            if consecutive_failures >= self.policy.max_consecutive_failures:
                last = settled[-1].reason if settled else ""
                result.paused = (
                    f"{consecutive_failures} recipients in a row failed (last: {last}); "
                    "paused instead of burning through the list"
                )
                return result

    def _deliver(
        self, slug: str, batch: int, messages: list[Message], result: LoopResult
    ) -> list[Settlement]:
        """Send one batch with retries; settle every message of it; return the settlements."""
        remaining = messages
        done: list[Settlement] = []
        try:
            for attempt in self.policy.retry.retrying(self.sleep):
                with attempt:
                    if not remaining:
                        break
                    answer = self.provider.send(remaining)
                    by_key = {r.key: r for r in answer.results}
                    retry: list[tuple[Message, RecipientResult]] = []
                    settlements: list[Settlement] = []
                    for message in remaining:
                        outcome = by_key.get(message.key) or RecipientResult(
                            message.key, Outcome.UNKNOWN, reason="the provider said nothing of it"
                        )
                        if outcome.outcome is Outcome.RETRY:
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
                            Settlement(m.key, RecipientStatus.PENDING, reason=r.reason)
                            for m, r in retry
                        ]
                        retry = []
                        result.stopped = answer.stop
                    self.ledger.settle(slug, batch, settlements)
                    done += settlements
                    for item in settlements:
                        if item.status is RecipientStatus.SENT:
                            result.sent += 1
                        elif item.status is RecipientStatus.FAILED:
                            result.failed += 1
                        elif item.status is RecipientStatus.UNKNOWN:
                            result.unknown += 1
                    remaining = [message for message, _ in retry]
                    if remaining:
                        delays = [r.retry_after for _, r in retry if r.retry_after is not None]
                        raise RetryLater(max(delays) if delays else None, retry[0][1].reason)
        except RetryLater as exc:
            back = [
                Settlement(m.key, RecipientStatus.PENDING, reason=exc.reason) for m in remaining
            ]
            self.ledger.settle(slug, batch, back)
            done += back
            result.paused = (
                f"{len(remaining)} messages still could not be sent after "
                f"{self.policy.retry.attempts} tries: {exc.reason}"
            )
        return done
