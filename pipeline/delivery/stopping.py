"""Stopping a send cleanly on SIGTERM (``systemctl stop``), SIGINT (Ctrl-C) or SIGHUP (the
terminal window closed, or the SSH connection dropped).

A signal does not kill the send: it asks the delivery loop to stop claiming, wait (bounded)
for the answers already on their way, and record them, so nobody the provider answered for is
left ``unknown``.  A second signal stops the waiting: what is still in flight is recorded as
``unknown`` at once.  Only SIGKILL or a power cut can leave a batch unsettled, and the next
run settles those (``recover_inflight``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

# SIGHUP too: closing the terminal window is how a send started by hand is most often ended,
# and its default action killed the process like SIGKILL, leaving batches to settle.
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
T = TypeVar("T")


class StopRequest:
    """Set from a signal handler (or a test); read by the delivery loop and its workers."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None  # "SIGTERM", "SIGINT", "SIGHUP"
        self.now = False  # a second signal: stop waiting for answers in flight

    def request(self, reason: str, *, now: bool = False) -> None:
        self.reason = self.reason or reason
        self.now = self.now or now
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()


class StopOnSignals:
    """While active (in the main thread), SIGTERM, SIGINT and SIGHUP set ``stop`` instead of killing
    the process; the handlers that were there before come back on exit."""

    def __init__(self, stop: StopRequest) -> None:
        self.stop = stop
        self._saved: dict[int, Any] = {}
        self._seen = 0

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self._seen += 1
        self.stop.request(signal.Signals(number).name, now=self._seen > 1)

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                if number == signal.SIGHUP and signal.getsignal(number) == signal.SIG_IGN:
                    continue  # `nohup newsletter send ...`: asked to outlive the terminal
                self._saved[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._saved.items():
            signal.signal(number, handler)
        self._saved.clear()

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """The previous handlers, for a moment (a question at the terminal: Ctrl-C there
        means "no", as always)."""
        active = dict(self._saved)
        for number, handler in active.items():
            signal.signal(number, handler)
        try:
            yield
        finally:
            for number in active:
                signal.signal(number, self._handle)

    def outside(self, function: Callable[..., T]) -> Callable[..., T]:
        def call(*args: Any) -> T:
            with self.suspended():
                return function(*args)

        return call
