"""The ledger as the archive and the report read it: read-only, and a damaged one is one line.

Reading never creates, migrates or locks the ledger.  Whatever is wrong with it (not a
database, a folder in its place, a table or a column missing, a time that is not a time),
the reader says so in one line naming the file, and never guesses: which issues went out,
and to how many, is the ledger's to say.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pipeline.errors import InputError

LEDGER_NAME = "ledger.sqlite3"
# The provider that emails nobody: a recipient the ledger has "sent" through it (its batch's
# provider) was written to a file in outbox/, a trial; the report and the archive tell it apart.
OUTBOX = "outbox"

ORPHANED_WAL = (
    "the ledger's main file is missing, but its -wal file (the latest sends) is still "
    "there: the main file was deleted. Nothing was changed. Put that same file back (from "
    "the trash) and leave the -wal where it is; to restore a copy made by `newsletter "
    "backup` instead, remove ledger.sqlite3-wal and -shm first (README: Losing the ledger)"
)


def orphaned_wal(path: Path) -> bool:
    """The main file gone, its WAL (with data) left: opening it would make SQLite start a new,
    empty main file and throw the WAL away, and with it the only record of the latest sends
    (which the deleted main file, put back from the trash, would still have needed)."""
    wal = path.with_name(path.name + "-wal")
    # The WAL first: a WAL is only ever made after its main file, so one with data and no
    # main file after it is a deleted main file.  Read the other way round, a ledger made by
    # another thread between the two looks (absent, then with a WAL) deleted.
    return wal.is_file() and wal.stat().st_size > 0 and not path.exists()


class LedgerDamaged(ValueError):
    """A value in the ledger is not what its column holds (raised while reading it)."""


def _damaged(path: Path, why: object) -> InputError:
    return InputError(f"the ledger cannot be read ({why}); restore it from a backup", path=path)


@contextmanager
def read_ledger(state_dir: Path) -> Iterator[sqlite3.Connection | None]:
    """The ledger opened read-only, or None if nothing was ever sent."""
    path = state_dir / LEDGER_NAME
    if orphaned_wal(path):
        # Not "nothing was ever sent" (the report's counts, the archive's dates): the latest
        # sends are in the -wal, and its main file was deleted.
        raise InputError(ORPHANED_WAL, path=path)
    if not path.exists():
        yield None
        return
    try:
        # Opening is inside the try: a folder or an unreadable file in its place fails here.
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise _damaged(path, exc) from None
    try:
        yield db
    except (sqlite3.Error, LedgerDamaged) as exc:
        raise _damaged(path, exc) from None
    finally:
        db.close()


def ledger_time(value: object, column: str) -> datetime:
    """A time the ledger wrote (ISO 8601, UTC), as an aware datetime.

    The ledger writes UTC with its offset; a time without one is read as UTC, not as the
    machine's local time.  Anything else is damage (``LedgerDamaged``).
    """
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise LedgerDamaged(f"{column} {value!r} is not a time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def has_table(db: sqlite3.Connection, name: str) -> bool:
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return row.fetchone() is not None
