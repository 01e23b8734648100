"""The one writer of subscribers.csv: changes applied under a lock, by temp file and rename.

Every change to the list (an opt-out from a link or the command line, a sign-up from the web
app, ``newsletter subscribers add/remove/resubscribe``) goes through ``apply_changes``:

- it holds an exclusive ``flock`` on a hidden file beside the list (``.subscribers.csv.lock``)
  from reading the list to the rename, so two writers never work from the same old copy;
- the new list is written to a temp file beside the old one (with the old one's permissions),
  flushed to disk, then renamed over it: the list is never half-written, whatever happens;
- a row the changes do not touch is copied back byte for byte (quotes, spacing, blank lines,
  line endings); only changed rows are re-written, in the file's own separator;
- rows are matched by address without validating them (``row_key``: an ASCII address is only
  lower-cased): rewriting a 100,000-row list costs one read and one write, not 100,000
  validations;
- temp files a killed rewrite left behind are removed by the next one.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.audience.csv_source import (
    UTF8_BOM,
    Header,
    ListFile,
    address_key_fast,
    clean,
    column_name,
)
from pipeline.audience.subscribers import Status, address_key, normalise_address
from pipeline.errors import InputError, NewsletterError

TEMP_SUFFIX = ".tmp"


class ListWriteError(NewsletterError):
    """The list could not be rewritten (permissions, a full disk); it is left as it was."""


@dataclass(frozen=True)
class ListChange:
    """One change to one address's rows.

    ``fields`` may name columns the way the file does or by their standard names
    (``first_name`` also writes a ``First Name`` column); a column the file lacks is added.
    ``delete`` removes every row of the address (an erasure request)."""

    email: str  # matched case-insensitively (address_key)
    status: str | None = None  # new status, or None to leave it
    fields: Mapping[str, str] = field(default_factory=dict)  # columns to set
    create: bool = False  # append a row if the address is not on the list
    delete: bool = False  # remove the address's rows altogether


@dataclass(frozen=True)
class ApplyResult:
    changed: int  # rows re-written with new values
    added: int  # rows appended
    unchanged: int  # rows of a changed address that already had those values
    removed: int = 0  # rows deleted
    missing: tuple[str, ...] = ()  # addresses with no row, not created


@dataclass
class _Plan:
    """Every change to one address, folded in order."""

    email: str
    status: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    create: bool = False
    delete: bool = False
    found: bool = False


def lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the list's writer lock (shared by every process on this machine)."""
    with lock_path(path).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def stale_temp_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"))


def _remove_stale(path: Path) -> int:
    # Only called under the lock: no writer is mid-rewrite, so every temp file is a leftover
    # of one that was killed (and may hold a full copy of the list: remove it).
    stale = stale_temp_files(path)
    for temp in stale:
        temp.unlink(missing_ok=True)
    return len(stale)


def remove_leftovers(path: Path) -> int:
    """Remove the temp files a killed rewrite left beside the list, unless a writer is at
    work right now (never waits for one); returns how many.  Readers call it, so a copy of
    the list does not linger until the next change."""
    path = path.resolve()
    if not stale_temp_files(path):
        return 0
    try:
        with lock_path(path).open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # a rewrite is in progress: its temp file is not a leftover
            try:
                return _remove_stale(path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    except OSError:
        return 0  # a read-only folder: nothing to do about it here


def defuse(value: str) -> str:
    """A value with no leading ``=``, ``+``, ``-`` or ``@``: the list is opened in Excel, and
    a sign-up form's "first name" of ``=HYPERLINK(...)`` would be a live formula there (OWASP,
    "CSV Injection").  No name or tag needs those characters first."""
    return value.lstrip("=+-@ \t")


def row_key(text: str) -> str:
    """The identity of the address in a cell, as the send computes it.  An ASCII address needs
    only lower-casing (``address_key_fast``), so the rows of a 100,000-row list are matched
    without validating them; a rare non-ASCII one goes through the validator, whose Unicode
    folding (a full-width letter in the domain) a shortcut could miss, and a missed match
    would be an opt-out not honoured."""
    if text.isascii():
        return address_key_fast(text)
    try:
        return address_key(normalise_address(clean(text)))
    except ValueError:
        return address_key_fast(text)


def _check_status(status: str | None) -> str | None:
    if status is None:
        return None
    try:
        return Status(status.strip().lower()).value
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise InputError(f"status {status!r} is not one of {allowed}") from None


def _plans(changes: Sequence[ListChange]) -> dict[str, _Plan]:
    plans: dict[str, _Plan] = {}
    for change in changes:
        email = clean(change.email)
        if change.create and not change.delete:
            try:
                email = normalise_address(email)
            except ValueError as exc:
                raise InputError(f"{change.email!r} is not a valid address: {exc}") from None
        key = row_key(email)
        if not key:
            raise InputError("an address is needed")
        plan = plans.setdefault(key, _Plan(email))
        if change.delete:
            # Forget what came before for this address: a later change may add it afresh.
            plans[key] = plan = _Plan(email, delete=True)
            continue
        plan.email = email
        if (status := _check_status(change.status)) is not None:
            plan.status = status
        for name, value in change.fields.items():
            if not column_name(name):
                raise InputError(f"{name!r} is not a column name")
            if column_name(name) == "email":
                raise InputError("an address cannot be changed: remove it and add the new one")
            plan.fields[column_name(name)] = defuse(clean(value))
        plan.create = plan.create or change.create
    return plans


def _header_with(
    header: Header, plans: Mapping[str, _Plan], stray_width: int = 0
) -> tuple[list[str], list[str]]:
    """The header cells and names, with any column the changes need and the file lacks.

    ``stray_width``: the most cells a row has, past the header's, with something in them: a
    new column goes after those (the header gets columns with no name over them, which are
    ignored, as they were), never over them.  Added at the header's end, a new column named
    a stray cell of every row that had one (a phone number read as ``subscribed_at``), and a
    change to such a row wrote over it."""
    cells, names = list(header.cells), list(header.names)
    padding = [""] * max(0, stray_width - len(cells))
    for plan in plans.values():
        wanted = list(plan.fields)
        if plan.status is not None or (plan.create and "status" not in plan.fields):
            wanted.append("status")
        for name in wanted:
            if name not in names:
                cells += padding
                names += padding
                padding = []
                cells.append(name)
                names.append(name)
    return cells, names


def _stray_width(path: Path, width: int) -> int:
    """The most cells any row has with something in them, when more than ``width`` (the
    header's); else ``width``.  One more read of the list, only when a column is added."""
    widest = width
    with ListFile(path) as source:
        for _line, values in source.cells():
            if len(values) > widest and any(values[widest:]):
                widest = max(i for i, value in enumerate(values) if value) + 1
    return widest


class _RowWriter:
    """Formats re-written rows the way the file writes them (separator, quoting, UTF-8)."""

    def __init__(self, delimiter: str) -> None:
        self.buffer = io.StringIO()
        # The terminator is written, then cut: Python before 3.13 quotes a cell holding a
        # line break only when the break is in ``lineterminator``, and with "" it wrote a
        # multi-line cell (Alt+Enter in a spreadsheet) bare, which split the row in two on
        # the next read: its second line a row of its own, a stranger subscribed.
        self.writer = csv.writer(self.buffer, delimiter=delimiter, lineterminator="\r\n")

    def row(self, cells: Sequence[str]) -> bytes:
        self.buffer.seek(0)
        self.buffer.truncate()
        self.writer.writerow(cells)
        return self.buffer.getvalue()[:-2].encode("utf-8")


def _line_ending(raw: bytes) -> bytes:
    return raw[len(raw.rstrip(b"\r\n")) :]


def _rewrite(path: Path, plans: dict[str, _Plan]) -> ApplyResult:
    changed = added = unchanged = removed = 0
    with ListFile(path, exact=True) as source:
        header = source.header
        cells, names = _header_with(header, plans)
        if len(cells) > len(header.cells):
            cells, names = _header_with(header, plans, _stray_width(path, len(header.cells)))
        newline = header.newline or b"\n"
        email_at = names.index("email")
        rows = _RowWriter(header.delimiter)
        info = path.stat()
        fd, temp_name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX
        )
        temp = Path(temp_name)
        try:
            # The list keeps its permissions (and owner, where allowed) through the rename.
            os.fchmod(fd, stat.S_IMODE(info.st_mode))
            if (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
                with suppress(PermissionError):
                    os.fchown(fd, info.st_uid, info.st_gid)
            with os.fdopen(fd, "wb") as target:
                if header.bom:
                    target.write(UTF8_BOM)
                written = source.header_raw
                if len(cells) > len(header.cells):
                    # New columns go on the end of the header line as written.
                    body = written[: len(written) - len(_line_ending(written))]
                    extra = rows.row(cells[len(header.cells) :])
                    written = body + header.delimiter.encode() + extra + _line_ending(written)
                target.write(written)
                for record in source.records():
                    plan = None
                    if len(record.cells) > email_at:
                        plan = plans.get(row_key(record.cells[email_at]))
                    if plan is None:
                        written = record.raw
                    else:
                        plan.found = True
                        if plan.delete:
                            removed += 1
                            continue
                        new = _updated(record.cells, names, plan)
                        if new is None:
                            unchanged += 1
                            written = record.raw
                        else:
                            changed += 1
                            written = rows.row(new) + _line_ending(record.raw)
                    target.write(written)
                for plan in plans.values():
                    if plan.found or not plan.create:
                        continue
                    if not _line_ending(written):
                        target.write(newline)  # the file did not end with a line break
                    written = rows.row(_new_row(names, plan)) + newline
                    target.write(written)
                    added += 1
                target.flush()
                os.fsync(target.fileno())
            if changed or added or removed:
                os.replace(temp, path)
                _sync_directory(path.parent)
            else:
                temp.unlink()  # nothing to change: the list is not rewritten at all
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    missing = tuple(p.email for p in plans.values() if not p.found and not p.create)
    return ApplyResult(changed, added, unchanged, removed, missing)


def _updated(cells: list[str], names: list[str], plan: _Plan) -> list[str] | None:
    """The row's cells with the plan applied (and tidied, as a reader sees them), or None
    when nothing would change."""
    new = [clean(cell) for cell in cells] + [""] * (len(names) - len(cells))
    wanted = dict(plan.fields)
    if plan.status is not None:
        wanted["status"] = plan.status
    differs = False
    for name, value in wanted.items():
        at = names.index(name)
        current = clean(new[at])
        if name == "status":
            current = current.lower() or Status.SUBSCRIBED.value
        if current != value:
            new[at] = value
            differs = True
    return new if differs else None


def _new_row(names: list[str], plan: _Plan) -> list[str]:
    values = {**plan.fields, "email": plan.email}
    values.setdefault("status", plan.status or Status.SUBSCRIBED.value)
    if plan.status is not None:
        values["status"] = plan.status
    return [values.get(name, "") for name in names]


def _sync_directory(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def apply_changes(path: Path, changes: Sequence[ListChange]) -> ApplyResult:
    """Apply every change in one rewrite of the list, under its lock.

    Changes to the same address are folded in order (the last status wins).  A row whose
    address no change names is written back byte for byte; when no row changes, the file is
    not rewritten at all.  Raises InputError for a list that cannot be read, an invalid new
    address or status; the list is then untouched."""
    plans = _plans(changes)
    # A list kept elsewhere through a symlink is replaced where it lives, and every writer
    # locks the same file however it was named.
    path = path.resolve()
    if not path.is_file():
        raise InputError("subscriber list not found", path=path)
    try:
        with locked(path):
            _remove_stale(path)
            if not plans:
                return ApplyResult(0, 0, 0)
            return _rewrite(path, plans)
    except OSError as exc:
        # A read-only folder, a full disk: the temp file is gone and the list as it was.
        raise ListWriteError(
            f"{path}: could not rewrite the list ({exc.strerror or exc}); nothing was changed:"
            " free some space (or fix the folder's permissions) and try again"
        ) from None
