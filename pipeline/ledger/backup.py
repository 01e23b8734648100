"""``newsletter backup``: a consistent copy of the ledger, taken while it may be in use.

Copying ``ledger.sqlite3`` alone is not a backup: the ledger runs in WAL mode, so the latest
transactions live in ``ledger.sqlite3-wal`` until SQLite folds them back in, and a copy of the
main file taken meanwhile misses them (or, copied mid-write, is torn).  SQLite's online backup
API copies every page as one consistent snapshot, WAL included.  The copy is written to a
temporary file, checked, made a single self-contained file (no WAL), and renamed into place,
mode 0600 like the ledger itself.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError
from pipeline.ledger.readonly import ORPHANED_WAL, orphaned_wal


@dataclass(frozen=True)
class Backup:
    path: Path
    issues: int
    recipients: int


def backup_ledger(ledger_path: Path, out: Path) -> Backup:
    if not ledger_path.is_file():
        if orphaned_wal(ledger_path):
            # Not "nothing has been sent": the latest sends are in the -wal.
            raise InputError(ORPHANED_WAL, path=ledger_path)
        raise InputError(
            "there is no ledger to back up yet (nothing has been sent)", path=ledger_path
        )
    _refuse_to_copy_nothing(ledger_path)
    _refuse_to_overwrite(ledger_path, out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a stick not mounted, a file where a folder should be
        why = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror
        raise InputError(
            f"cannot make the folder for the backup ({why or exc}): give --out a folder "
            "that exists and you can write to",
            path=out.parent,
        ) from None
    try:
        fd, temp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")  # 0600
    except OSError as exc:
        raise InputError(
            f"could not write the backup there ({exc.strerror or exc}): give --out a folder "
            "you can write to",
            path=out,
        ) from None
    os.close(fd)
    try:
        source = sqlite3.connect(ledger_path, timeout=30)
        try:
            copy = sqlite3.connect(temp, isolation_level=None)
            try:
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # one file, nothing beside it
                if copy.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    raise InputError("the copy failed its integrity check", path=out)
                issues = copy.execute("SELECT count(*) FROM issues").fetchone()[0]
                recipients = copy.execute("SELECT count(*) FROM recipients").fetchone()[0]
            finally:
                copy.close()
        finally:
            source.close()
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, out)
    except sqlite3.DatabaseError as exc:
        raise InputError(f"could not back up the ledger: {exc}", path=ledger_path) from None
    except OSError as exc:
        raise InputError(f"could not write the backup: {exc.strerror or exc}", path=out) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    return Backup(out, int(issues), int(recipients))


def _refuse_to_copy_nothing(ledger_path: Path) -> None:
    """An empty or foreign file is not backed up as if it were the ledger: a copy of
    nothing, reported as a backup, is worse than none (she would count on it)."""
    wal = Path(f"{ledger_path}-wal")
    if ledger_path.stat().st_size == 0 and not (wal.is_file() and wal.stat().st_size > 0):
        raise InputError(
            "the ledger is empty (0 bytes): there is nothing to back up. If it held your "
            "sends, it was cut short (a full disk?): see README, 'Losing the ledger', "
            "before sending again",
            path=ledger_path,
        )
    try:
        db = sqlite3.connect(f"{ledger_path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"could not back up the ledger: {exc}", path=ledger_path) from None
    if not {"issues", "recipients"} <= tables:
        raise InputError(
            "this is not the newsletter's ledger (it has no issues or recipients): "
            "nothing was backed up",
            path=ledger_path,
        )


SQLITE_HEADER = b"SQLite format 3\x00"  # https://www.sqlite.org/fileformat.html#the_database_header


def _refuse_to_overwrite(ledger_path: Path, out: Path) -> None:
    """A backup replaces only an earlier backup: ``--out subscribers.csv`` ("back up my
    subscribers") once replaced her list with a SQLite file, exit 0."""
    live = {ledger_path.resolve(), *(Path(f"{ledger_path.resolve()}{s}") for s in ("-wal", "-shm"))}
    if out.resolve() in live:
        raise InputError(
            "that is the ledger itself: a backup is a copy kept somewhere else", path=out
        )
    if not out.exists():
        return
    try:
        with out.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
        looks_like_backup = header == SQLITE_HEADER
        if looks_like_backup:
            db = sqlite3.connect(f"{out.resolve().as_uri()}?mode=ro", uri=True)
            try:
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            finally:
                db.close()
            looks_like_backup = {"issues", "recipients"} <= tables
    except (OSError, sqlite3.DatabaseError):
        looks_like_backup = False
    if not looks_like_backup:
        raise InputError(
            "this file exists and is not a backup of the ledger: a backup never writes over "
            "another file; give --out a new name",
            path=out,
        )
