"""Apply an opt-out to subscribers.csv, atomically: a temp file beside it, then a rename.

The file is never half-written, whatever happens mid-way; its columns, quoting, BOM and line
endings are kept.  A list without a ``status`` column gains one.
"""

from __future__ import annotations

import csv
import fcntl
import os
import tempfile
from pathlib import Path

from pipeline.audience.subscribers import address_key, normalise_address
from pipeline.errors import InputError


def set_status(path: Path, key: str, status: str) -> int:
    """Set ``status`` on every row of this address; returns how many rows changed.

    Holds an exclusive lock (a hidden file beside the list) from reading to the rename, so
    two opt-outs at once (the unsubscribe server's threads, the command) never undo each
    other by writing from the same old copy."""
    lock_path = path.parent / f".{path.name}.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _rewrite(path, key, status)


def _rewrite(path: Path, key: str, status: str) -> int:
    raw = path.read_bytes()
    bom = raw.startswith(b"\xef\xbb\xbf")
    newline = "\r\n" if b"\r\n" in raw[:4096] else "\n"
    changed = 0
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (
            path.open(newline="", encoding="utf-8-sig") as source,
            os.fdopen(fd, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as target,
        ):
            reader = csv.reader(source)
            writer = csv.writer(target, lineterminator=newline)
            header = next(reader)
            names = [name.strip().lower() for name in header]
            if "email" not in names:
                raise InputError("the header row has no 'email' column", path=path, line=1)
            if "status" not in names:
                header, names = [*header, "status"], [*names, "status"]
            email_at, status_at = names.index("email"), names.index("status")
            writer.writerow(header)
            for cells in reader:
                cells = cells + [""] * (len(names) - len(cells))
                try:
                    row_key = address_key(normalise_address(cells[email_at].strip()))
                except ValueError:
                    row_key = cells[email_at].strip().lower()
                if row_key == key and cells[status_at].strip().lower() != status:
                    cells[status_at] = status
                    changed += 1
                writer.writerow(cells)
            target.flush()
            os.fsync(target.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return changed
