"""The ledger opened by several processes at once (the web app's webhook thread, a send, a
sync) while it is new: each migration is applied once, whoever gets there first."""

from __future__ import annotations

import threading
from pathlib import Path

from pipeline.ledger.migrations import MIGRATIONS
from pipeline.ledger.store import Ledger


def test_a_new_ledger_opened_by_many_at_once_is_migrated_once(tmp_path: Path) -> None:
    # 200 rounds: switching a new ledger to WAL failed at once with "database is locked" in
    # about 1 round in 100 (SQLite does not wait out the busy timeout there); 5 rounds let
    # that through, and it failed the whole suite now and then.
    for attempt in range(200):
        path = tmp_path / f"ledger{attempt}.sqlite3"
        errors: list[BaseException] = []
        start = threading.Barrier(6)

        def open_it(
            path: Path = path,
            start: threading.Barrier = start,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                start.wait()
                Ledger(path).close()
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        ledger = Ledger(path)
        try:
            version = ledger.db.execute("PRAGMA user_version").fetchone()[0]
            assert version == len(MIGRATIONS)
        finally:
            ledger.close()
