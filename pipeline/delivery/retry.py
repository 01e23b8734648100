"""How a batch is retried: exponential backoff with full jitter, bounded in tries and time,
and never sooner than the provider's Retry-After."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)


class RetryLater(Exception):
    """Some recipients of a batch should be tried again."""

    def __init__(self, retry_after: float | None, reason: str) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.reason = reason


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    max_seconds: float = 300.0
    base_seconds: float = 1.0
    cap_seconds: float = 60.0

    def retrying(self, sleep: Callable[[float], None]) -> Retrying:
        backoff = wait_random_exponential(multiplier=self.base_seconds, max=self.cap_seconds)

        def wait(state: RetryCallState) -> float:
            delay = float(backoff(state))
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, RetryLater) and error.retry_after is not None:
                delay = max(delay, min(error.retry_after, self.max_seconds))
            return delay

        return Retrying(
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.max_seconds),
            wait=wait,
            retry=retry_if_exception_type(RetryLater),
            sleep=sleep,
            reraise=True,
        )
