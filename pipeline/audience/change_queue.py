"""List changes queued in the ledger, then applied to subscribers.csv in one rewrite.

Input: ``ListChange``s from the web app (an opt-out, a confirmed signup).  Output: the list,
changed by ``apply_changes`` (the one locked, atomic writer), and the queue marked applied.

Why a queue: rewriting a 100,000-row list takes about a second, so 200 one-click opt-outs at
once cannot each wait for their own rewrite (issue 10 measured 8.8 s per opt-out, and lost 29
of 200 to resets).  An opt-out is answered as soon as it is committed here (WAL,
synchronous=FULL: on disk, it survives a kill or a power cut); the applier thread, the next
``newsletter serve`` start and every ``send`` apply whatever is queued, in order, in one
rewrite.  A send applies the queue before it reads the list, so an opt-out still queued is
honoured.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.audience.list_writer import ApplyResult, ListChange, apply_changes
from pipeline.ledger.consent import consent_key, timestamp

QUEUE_LOCK_NAME = "list-queue.lock"


def queue_change(db: sqlite3.Connection, change: ListChange) -> int:
    """Append one change (within the caller's transaction, if any); returns its id."""
    cursor = db.execute(
        "INSERT INTO list_changes (key, email, status, fields, create_row, queued_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            consent_key(change.email),
            change.email,
            change.status,
            json.dumps(dict(change.fields), ensure_ascii=False),
            int(change.create),
            timestamp(),
        ),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def queued_changes(db: sqlite3.Connection) -> list[tuple[int, ListChange]]:
    """Changes not yet applied, oldest first."""
    rows = db.execute(
        "SELECT id, email, status, fields, create_row FROM list_changes"
        " WHERE applied_at IS NULL ORDER BY id"
    ).fetchall()
    return [
        (int(id_), ListChange(str(email), status, json.loads(fields), bool(create)))
        for id_, email, status, fields, create in rows
    ]


@contextmanager
def _applying(state_dir: Path) -> Iterator[None]:
    """One applier at a time (the web app's thread, a send, a second server): two that each
    read the queue could otherwise apply an older change after a newer one."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / QUEUE_LOCK_NAME).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@dataclass(frozen=True)
class Flushed:
    applied: int  # queued changes now in the list
    result: ApplyResult | None  # what the rewrite did (None: nothing was queued)


def apply_queued(db: sqlite3.Connection, subscribers: Path, state_dir: Path) -> Flushed:
    """Apply every queued change in one rewrite, then mark them applied.

    Raises what ``apply_changes`` raises (InputError for a broken list, OSError); the
    changes then stay queued, and the next call tries again.  Marking happens after the
    rename: a kill between the two applies them again next time, which changes nothing
    (setting a status it already has, or finding the row a confirmation created)."""
    with _applying(state_dir):
        queued = queued_changes(db)
        if not queued:
            return Flushed(0, None)
        result = apply_changes(subscribers, [change for _, change in queued])
        now = timestamp()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "UPDATE list_changes SET applied_at = ? WHERE id = ?",
                [(now, id_) for id_, _ in queued],
            )
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (I/O error, full disk)
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return Flushed(len(queued), result)


def queued_count(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT count(*) FROM list_changes WHERE applied_at IS NULL").fetchone()
    return int(row[0])
