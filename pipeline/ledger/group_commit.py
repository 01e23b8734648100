"""Many small writes, one fsync: a writer thread commits whatever is waiting in one transaction.

The web app records each opt-out in the ledger before it answers, and the ledger commits with
``synchronous=FULL`` (on disk, even on a power cut).  One fsync per opt-out made 200 opt-outs
at once wait for 200 fsyncs in a row (3.5 ms each here: the 200th answer came after 0.7 s).
Here a request hands its write to this thread and waits; the thread takes every write waiting
at that moment, runs them in one transaction, commits once, then wakes them all.  Each is
still on disk before its answer.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.ledger.store import Ledger

Write = Callable[[sqlite3.Connection], None]
MAX_GROUP = 500


Done = Callable[[BaseException | None], None]


@dataclass
class _Pending:
    write: Write
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    then: Done | None = None  # called in the writer's thread once committed or failed

    def finish(self, error: BaseException | None = None) -> None:
        self.error = error
        self.done.set()
        if self.then is not None:
            # Never lets the writer's thread die, or the rest of its group wait for nobody.
            with contextlib.suppress(Exception):
                self.then(error)


class GroupCommitter:
    def __init__(self, ledger_path: Path) -> None:
        self.ledger_path = ledger_path
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="newsletter-ledger", daemon=True)
        self._started = False
        self._lock = threading.Lock()

    def commit(self, write: Write, timeout: float = 30) -> None:
        """Run ``write`` in a transaction and return once it is committed (or raise)."""
        pending = self._submit(_Pending(write))
        if not pending.done.wait(timeout):
            raise TimeoutError("the ledger did not answer in time")
        if pending.error is not None:
            raise pending.error

    def submit(self, write: Write, then: Done) -> None:
        """Run ``write`` in a transaction without waiting for it: ``then(None)`` once it is
        committed, ``then(error)`` if it failed, called in the writer's thread (so it must
        be quick and never raise).  For a caller that must not block: the web app's front
        door answers opt-outs from one event loop."""
        self._submit(_Pending(write, then=then))

    def _submit(self, pending: _Pending) -> _Pending:
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True
        self._queue.put(pending)
        return pending

    def close(self) -> None:
        with self._lock:
            if self._started:
                self._queue.put(None)
                self._thread.join(timeout=30)

    def _run(self) -> None:
        # Opened at the first group, and again after a failure: a ledger that cannot be
        # opened when the first opt-out arrives (a full disk, a folder in the way) fails
        # that group, not the thread.  A dead thread left every later opt-out waiting its
        # 30 s for nobody, and holding a server thread, long after the ledger was back.
        ledger: Ledger | None = None
        opened: tuple[int, int] | None = None
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                group = [first]
                while len(group) < MAX_GROUP:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        self._queue.put(None)  # stop after this group
                        break
                    group.append(item)
                try:
                    if ledger is not None and file_of(self.ledger_path) != opened:
                        # Deleted or replaced under us (a folder in its place, a copy put
                        # back): the open connection wrote on into a file nobody could read
                        # any more, and answered 200.  Open what is there now, or fail.
                        ledger.close()
                        ledger = None
                    if ledger is None:
                        ledger = Ledger(self.ledger_path)
                        opened = file_of(self.ledger_path)
                    self._write(ledger.db, group)
                except Exception as exc:  # the ledger failed under us (even its ROLLBACK)
                    for item in group:
                        if not item.done.is_set():
                            item.finish(exc)
                    if ledger is not None:
                        with contextlib.suppress(sqlite3.Error):
                            ledger.close()
                    ledger = None
        finally:
            if ledger is not None:
                ledger.close()

    def _write(self, db: sqlite3.Connection, group: list[_Pending]) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
            for item in group:
                item.write(db)
            db.execute("COMMIT")
        except Exception as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if len(group) > 1:
                # One bad write must not fail the others: each on its own, to find it.
                for item in group:
                    self._write(db, [item])
                return
            group[0].finish(exc)
            return
        for item in group:
            item.finish()


def file_of(path: Path) -> tuple[int, int] | None:
    """Which file ``path`` is now (device, inode), or None if there is none."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino
