"""The web app's rewrites of a long list, in a process of their own.

Why: ``newsletter serve`` answers opt-outs from one event loop (``front_door``), and the
list applier rewrites ``subscribers.csv`` in a thread of the same process.  Rewriting a
100,000-row list is 0.3 s of pure Python, holding the interpreter's one lock: the opt-outs
that arrived while it ran (a second wave, a few tenths of a second after the first) waited
for it: the slowest answer of such a wave took 98-209 ms, against 37-67 with the rewrite
in a child (``bench/optout_load.py``'s waves, three runs, 2026-12-07).  In a child process
the rewrite holds no lock of the server's; the file locks
(``list_writer.locked``, ``change_queue._applying``) already keep every writer in every
process one at a time, so nothing else changes.

A short list is rewritten in a few milliseconds: it stays in the thread, as before (no child
process to start for it).  A child that dies (killed, out of memory) leaves its changes
queued and its temporary file to the next rewrite's clean-up; the rewrite is then done in the
thread, and a new child started for the next.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

from pipeline.audience.change_queue import Flushed, apply_queued

IN_A_CHILD_FROM: float = 1_000_000  # bytes of list (about 15,000 rows): a rewrite of 50 ms or more
CHILD_WAIT = 600.0  # seconds a rewrite may take in the child (1,000,000 rows: about 3)
RETRY_CHILD_AFTER = 300.0  # seconds before a child is tried again, after none could start


def _child_start() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the server decides when its
    # child stops (after the rewrite in hand), not the key press.  The child was started
    # with SIGINT blocked (``_starting``), so a key press during its imports was held, not
    # a traceback in the log; once ignored, it can be let through (and is dropped).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # A server killed outright (SIGKILL, a crash) cannot end its child, which would wait for
    # work forever (its queue's pipe stays open: it holds both ends): it ends itself.
    threading.Thread(target=_end_with, args=(os.getppid(),), daemon=True).start()


def _end_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)  # a rewrite cut short leaves its temporary file to the next one's clean-up


@contextmanager
def _starting() -> Iterator[None]:
    """SIGINT blocked in this thread while it starts a child, which inherits the mask (the
    process's handlers, in the main thread, are untouched)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _apply_here(ledger: str, subscribers: str, state_dir: str) -> Flushed:
    """In the child: the same ``apply_queued``, on a connection of its own."""
    from pipeline.ledger.store import Ledger

    opened = Ledger(Path(ledger))
    try:
        return apply_queued(opened.db, Path(subscribers), Path(state_dir))
    finally:
        opened.close()


class ChildApplier:
    """Applies the queued changes to a long list in a child process (started when first
    needed, kept for the next rewrite); to a short one, or when no child can run, with the
    connection it is given.  What goes wrong with the child (not with the list) is said in
    the log, once, and the rewrite is done in the thread."""

    def __init__(
        self,
        ledger: Path,
        in_a_child_from: float | None = None,
        *,
        log: Callable[[str], None] = lambda line: None,
        wait: float = CHILD_WAIT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.in_a_child_from = IN_A_CHILD_FROM if in_a_child_from is None else in_a_child_from
        self.log = log
        self.wait = wait
        self.monotonic = monotonic
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._no_child_until = 0.0  # after a child could not be started: not tried before
        self.children_started = 0  # for the tests and the log

    def apply(self, here: Callable[[], Flushed], subscribers: Path, state_dir: Path) -> Flushed:
        """``apply_queued`` for ``subscribers``: in the child when the list is long, else
        ``here()`` (the caller's own, in its thread)."""
        try:
            long = subscribers.stat().st_size >= self.in_a_child_from
        except OSError:
            long = False  # missing or unreadable: the rewrite in the thread says why
        if not long or self.monotonic() < self._no_child_until:
            return here()
        try:
            with _starting():  # the pool starts processes: its lock's tracker, the child
                pool = self._running_pool()
                job = pool.submit(_apply_here, str(self.ledger), str(subscribers), str(state_dir))
        except BrokenProcessPool:  # the child died since the last rewrite: a new one next time
            self._end(self._pool)
            self.log(
                "the list's rewriting process had ended unexpectedly; this rewrite is done here"
            )
            return here()
        except (OSError, RuntimeError) as exc:  # no process can be started (a limit, memory)
            self._no_child_until = self.monotonic() + RETRY_CHILD_AFTER
            self._end(self._pool)
            self.log(
                "the list is rewritten by the server itself for now: no process could be "
                f"started for it ({type(exc).__name__}: {exc}); answers may be slower meanwhile"
            )
            return here()
        try:
            return job.result(timeout=self.wait)  # what the rewrite raised, it raises here
        except BrokenProcessPool:
            # The child died (killed, out of memory), or what it answered could not be read
            # back: a new child next time; this time, here.
            self._end(pool)
            self.log("the list's rewriting process ended unexpectedly; this rewrite is done here")
            return here()
        except TimeoutError:  # stopped (SIGSTOP) or hung on its disk: ended, done here
            self._end(pool)
            self.log(
                f"the list's rewriting process did not finish in {self.wait:.0f} s and was "
                "ended; this rewrite is done here"
            )
            return here()

    def _running_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_child_start,
                )
                self.children_started += 1
            return self._pool

    def _end(self, pool: ProcessPoolExecutor | None, grace: float = 0.0) -> None:
        """Forget ``pool`` and end its child: at once, or after ``grace`` seconds for the
        rewrite in hand."""
        if pool is None:
            return
        with self._lock:
            if self._pool is pool:
                self._pool = None
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = self.monotonic() + grace
        for process in processes:
            process.join(max(0.0, deadline - self.monotonic()))
            if process.is_alive():
                process.kill()  # a temporary file it leaves is the next rewrite's to remove
                process.join(5)

    def close(self, grace: float = 30.0) -> None:
        """Let the rewrite in hand finish (``grace`` seconds at most), and end the child."""
        self._end(self._pool, grace)
