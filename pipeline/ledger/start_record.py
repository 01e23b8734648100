"""A small record of each issue's sending, kept beside the drafts: ``.sent/<slug>.json``.

The ledger is the truth about who got what, but it is one file in a hidden folder: deleted,
replaced by an old copy, or left behind on another machine, it would let the next run mail
everyone again (3,000 of 3,000 in a test).  This record lives with the drafts and is meant
to be committed with them, so losing the ledger no longer looks like a fresh start: the send
refuses, and says how to restore the ledger or, knowingly, go on.  It is written when sending
begins, after every batch the ledger has settled, and at the end of every run.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from pipeline.errors import InputError
from pipeline.ledger.store import Counts, IssueRecord

FOLDER = ".sent"


class LedgerMismatch(InputError):
    """The ledger does not know what the record beside the drafts says was sent."""


@dataclass(frozen=True)
class StartRecord:
    issue: str
    started_at: str
    provider: str
    content_hash: str
    # sent + failed when the last run ended: these only ever grow (an unknown reader may go
    # back to pending, with --resend-unknown), so a ledger with fewer is an older one.
    settled: int
    sent: int
    updated_at: str


def records_folder(drafts: Path) -> Path:
    """Where the records of the issues in ``drafts`` are kept."""
    return drafts / FOLDER


def record_path(draft: Path, slug: str) -> Path:
    return draft.parent / FOLDER / f"{slug}.json"


def read(path: Path) -> StartRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return StartRecord(**{name: data[name] for name in StartRecord.__dataclass_fields__})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LedgerMismatch(
            f"this record of the issue's sending cannot be read ({exc}); restore it from git "
            "(it is meant to be committed with the drafts)",
            path=path,
        ) from None


def write(path: Path, record: IssueRecord, counts: Counts, now: str) -> None:
    """Atomically (temporary file, fsync, rename): a reader never sees half a record."""
    settled = counts.sent + counts.failed
    data = StartRecord(
        record.slug, record.started_at, record.provider, record.content_hash, settled,
        counts.sent, now,
    )  # fmt: skip
    with contextlib.suppress(LedgerMismatch):
        old = read(path)
        if old is not None and asdict(old) | {"updated_at": now} == asdict(data):
            return  # nothing new: the file (committed with the drafts) stays as it is
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under the send lock: any temporary file here is a killed run's leftover.
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(data), handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def when(stamp: str, timezone: tzinfo | None) -> str:
    """A time from the record as she reads times elsewhere (``Wed 25 Nov 2026, 08:02 PST``)."""
    if timezone is None:
        return stamp
    # Here, not at the top: the web edition imports this module, and its page cache is keyed
    # on every module it loads (tests/test_web_edition_attacks.py).
    from pipeline.wording import local_time

    try:
        return local_time(datetime.fromisoformat(stamp), timezone)
    except ValueError:
        return stamp


def check(
    path: Path,
    ledger_path: Path,
    ledger_record: IssueRecord | None,
    counts: Counts,
    timezone: tzinfo | None = None,
    *,
    emailing: bool = False,
) -> None:
    """Refuse when the ledger is missing this issue, or knows less than its last run did.

    ``emailing``: the send goes through a provider that emails; then a trial's record (the
    outbox's, which emailed nobody) holds nobody a ledger could forget (killed between
    forgetting the trial and rewriting this file, every send after was refused, saying
    readers would be mailed again)."""
    start = read(path)
    if start is None or (emailing and start.provider == "outbox"):
        return
    if ledger_record is None:
        raise LedgerMismatch(
            f"{ledger_path} has no record of this issue, but this file says its sending began "
            f"{when(start.started_at, timezone)} via {start.provider} ({start.sent} sent by "
            f"{when(start.updated_at, timezone)}; a run stopped after that may have sent "
            "more): the ledger was lost or replaced, and sending now would mail those readers "
            "again. Put the ledger back (a copy made by `newsletter backup`), or, only if the "
            "provider's activity log (or the outbox folder) shows nobody got this issue, "
            "delete this file and run again",
            path=path,
        )
    settled = counts.sent + counts.failed
    if settled < start.settled:
        raise LedgerMismatch(
            f"{ledger_path} is older than the last run of this issue: it has {settled} "
            f"readers sent or failed, and this file recorded {start.settled} at "
            f"{when(start.updated_at, timezone)}, so up to {start.settled - settled} would be "
            "mailed again. Put back a newer copy of the ledger, or, accepting those "
            "duplicates, delete this file and run again",
            path=path,
        )


def unmatched(drafts: Path, known: set[str]) -> list[tuple[Path, StartRecord]]:
    """Records beside the drafts of issues the ledger does not know: a lost ledger."""
    found = []
    for path in sorted((drafts / FOLDER).glob("*.json")):
        record = read(path)
        if record is not None and record.issue not in known:
            found.append((path, record))
    return found
