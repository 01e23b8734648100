"""The ledger: one row per (issue, recipient), moved through its states in durable steps.

    pending --claim--> inflight --settle--> sent | failed | pending (retry later)
                          |
                          +-- the process died: recover_inflight --> unknown

A batch is committed as ``inflight`` before the provider is called and settled after, each
step its own transaction (WAL; the claim with an fsync, synchronous=FULL, the settlement
without one of its own: the next claim's makes it durable), so a kill at any moment leaves
every row either settled or visibly in doubt, and a power cut at worst leaves a settled
batch in doubt, never one that was sent marked pending.  ``unknown`` rows are only re-sent
when asked.  Nothing is ever deleted: audience = sent + failed + unknown + pending (in-flight
counts as pending).

Claim and settle are the hot path (two writes a recipient), so they touch as little as
possible: a row of ``recipients`` holds only what they change (status, batch, provider id,
reason, time) and the keys, while the address, list line and fields, written once with the
audience, are in ``recipient_data`` under the same id (a row is rewritten whole, so 250 of
them made three times the pages to write with the fields in them); a claim finds pending
rows through a partial index of pending rows only and marks them by one UPDATE of their
rowids; a settle finds each row by its rowid (kept from the claim), all the rows of a
status by one UPDATE, and changes no index at all; the counts per status a send reads after
every batch are kept in ``recipient_counts``, moved by every method here that changes a
status, in the same transaction (see ``move_counts``).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from pipeline.audience.subscribers import Subscriber
from pipeline.errors import InputError
from pipeline.ledger.migrations import migrate
from pipeline.ledger.readonly import ORPHANED_WAL, orphaned_wal


class IssueStatus(StrEnum):
    SENDING = "sending"  # started; runs resume it
    PAUSED = "paused"  # too many failures in a row, or retries used up; the next run resumes
    STOPPED = "stopped"  # the provider refused the account or request; fix, then re-run
    COMPLETE = "complete"  # nobody pending


class RecipientStatus(StrEnum):
    PENDING = "pending"
    INFLIGHT = "inflight"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    WITHDRAWN = "withdrawn"  # opted out after the send began: not in the audience


@dataclass(frozen=True)
class IssueRecord:
    slug: str
    content_hash: str
    provider: str
    status: IssueStatus
    audience_loaded: bool
    note: str | None
    started_at: str
    finished_at: str | None


@dataclass(frozen=True)
class Counts:
    audience: int
    sent: int
    failed: int
    unknown: int
    pending: int  # includes in flight

    @property
    def done(self) -> bool:
        return self.pending == 0


@dataclass(frozen=True)
class AudienceChange:
    """What the list as it is now changed in a resumed send."""

    withdrawn: int  # no longer in the audience: not sent
    refreshed: int  # still to send, with the list's current values
    joined: int  # joined since the send began, not included (``--include-new`` includes them)
    added: int  # joined since, included in this send
    returned: int = 0  # withdrawn earlier, in the audience again: to send after all
    empty: bool = False  # the audience now is nobody: nothing was changed (see refresh_audience)


# Named tuples, not frozen dataclasses: one of each is made per recipient, and a frozen
# dataclass's __init__ (object.__setattr__ per field) took 0.40 us against 0.23.
class ClaimedRow(NamedTuple):
    key: str
    email: str
    fields: dict[str, str]


_claimed_row = partial(tuple.__new__, ClaimedRow)  # ClaimedRow from a (key, email, fields)


class Settlement(NamedTuple):
    key: str
    status: RecipientStatus  # sent, failed, unknown, or pending (to retry later)
    provider_id: str = ""
    reason: str = ""


def _storable(text: str) -> str | None:
    """``text`` as SQLite can store it (None for ""): a lone surrogate, half a UTF-16 pair
    (what json.loads makes of a provider's "\\ud800"), replaced by U+FFFD; no UTF-8 holds
    one, and binding it raised, leaving a settled batch in flight."""
    if not text:
        return None
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _storable_json(value: Any) -> Any:
    """A settlement's JSON value (a provider id, or [provider id, reason]), storable."""
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, tuple | list):
        return [_storable(v) if isinstance(v, str) else v for v in value]
    return value


def _counted(status: RecipientStatus) -> RecipientStatus:
    """The status a row is counted under in ``recipient_counts``: in flight is pending."""
    return RecipientStatus.PENDING if status is RecipientStatus.INFLIGHT else status


def move_counts(db: sqlite3.Connection, slug: str, moves: dict[RecipientStatus, int]) -> None:
    """Add ``moves`` (status -> rows gained, negative when lost) to the issue's counts, in
    the caller's transaction.  Every status change in the ledger goes through here with
    the rowcount of the statement that made it, so the counts are the rows' own; the
    start of every send recounts them from the rows anyway (``recover_inflight``)."""
    totals: dict[RecipientStatus, int] = {}
    for status, change in moves.items():
        totals[_counted(status)] = totals.get(_counted(status), 0) + change
    # Claiming pending rows, or settling rows back to pending: no change.  The rest in one
    # statement: each is a step of SQLite, where a send's delivery workers take the
    # interpreter lock (see ``_BATCH_OF``).
    changed = [(slug, status, change) for status, change in totals.items() if change]
    if changed:
        db.execute(
            "INSERT INTO recipient_counts (issue, status, n) VALUES "
            + ", ".join(["(?, ?, ?)"] * len(changed))
            + " ON CONFLICT (issue, status) DO UPDATE SET n = n + excluded.n",
            [value for row in changed for value in row],
        )


# A subscriber's fields as the ledger stores them: json.dumps(fields, ensure_ascii=False)
# exactly (resumes compare the stored text with the list's), without building an encoder per
# row as json.dumps with options does.  Read back with orjson, several times faster.
_fields_json = json.JSONEncoder(ensure_ascii=False).encode


# A recipient's row with its data (migration 9): a LEFT JOIN, so that a row missing its data
# is seen (its email NULL), never silently left out of a claim.
_WITH_DATA = "FROM recipients AS r LEFT JOIN recipient_data AS d ON d.id = r.id"

# A claim marks its rows: one UPDATE of the rowids it read (a JSON array), each only if still
# in the status it was read in.  NOT INDEXED: each row found by its rowid, never through an
# index holding the issue's every row.
_MARK = (
    "UPDATE recipients NOT INDEXED SET status = ?, batch = ?, updated_at = ?"
    " WHERE rowid IN (SELECT value FROM json_each(?)) AND issue = ? AND status = '{status}'"
)
# ...or, when the rows read are every row of the issue in that status between the first and
# the last of them (a claim's: read in rowid order, up to a limit), of that range of rowids:
# no JSON to write or read (0.2 us a row).
_MARK_RANGE = (
    "UPDATE recipients NOT INDEXED SET status = ?, batch = ?, updated_at = ?"
    " WHERE rowid BETWEEN ? AND ? AND issue = ? AND status = '{status}'"
)

# A settlement's rows of one status: one UPDATE joined with a JSON object of rowid -> provider
# id (or -> [provider id, reason]), each row found by its rowid, only while this batch holds
# it in flight.
_SETTLE = (
    "UPDATE recipients NOT INDEXED SET status = '{status}', provider_id = j.value,"
    " reason = NULL, updated_at = ? FROM json_each(?) AS j"
    " WHERE recipients.rowid = CAST(j.key AS INTEGER) AND recipients.status = 'inflight'"
    " AND recipients.batch = ?"
)
_SETTLE_WITH_REASONS = (
    "UPDATE recipients NOT INDEXED SET status = '{status}',"
    " provider_id = json_extract(j.value, '$[0]'), reason = json_extract(j.value, '$[1]'),"
    " updated_at = ? FROM json_each(?) AS j"
    " WHERE recipients.rowid = CAST(j.key AS INTEGER) AND recipients.status = 'inflight'"
    " AND recipients.batch = ?"
)

# An issue's pending rows from a rowid on, in list order: read by rowid (NOT INDEXED), not
# through the (issue, key) index, which holds every row of the issue in another order.
_PENDING = (
    "SELECT id, key FROM recipients NOT INDEXED"
    " WHERE id >= ? AND issue = ? AND status = 'pending' ORDER BY id LIMIT ?"
)

# A claim's rows (``{rows}``: a SELECT of their rowid and key, in list order) with their data,
# read as one value: a JSON array of [rowid, key, email], {fields}, ... made by SQLite, parsed
# by one orjson call (1.4 us a recipient against 1.65 for the rows one by one, each fields
# text parsed on its own).  One step of SQLite for the batch, not one a row: Python's sqlite3
# lets go of the interpreter lock at every step, and with another thread busy each step
# waited to take it back (with one thread encoding JSON beside it, a claim took 299 us a
# recipient one row a step, 104 in one).  The fields are stored as JSON already
# (``_fields_json``), so SQLite only joins the texts.  A LEFT JOIN, and the rows with data
# counted: a row missing its data (its element NULL, which group_concat leaves out) is seen,
# never silently left out of a claim.  (Four columns, [[rowid, ...], [key, ...], ...], took
# SQLite 0.1 us a recipient longer to make, a json_quote a value: 2026-12-07.)
_BATCH_OF = (
    "SELECT count(*), count(d.id), '[' || group_concat(json_array(r.id, r.key, d.email)"
    " || ',' || d.fields, ',') || ']' FROM ({rows}) AS r LEFT JOIN recipient_data AS d"
    " ON d.id = r.id"
)


_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)


class _Batch(NamedTuple):
    """A claim's rows as columns, in rowid order (``_batch_of``)."""

    ids: list[int]
    keys: list[str]
    emails: list[str]
    fields: list[dict[str, str]]


def _batch_of(db: sqlite3.Connection, rows: str, parameters: tuple[Any, ...]) -> _Batch:
    """The rows ``rows`` selects (rowid, key), with each one's address and fields, as
    columns in rowid order; see ``_BATCH_OF``."""
    count, with_data, text = db.execute(_BATCH_OF.format(rows=rows), parameters).fetchone()
    if with_data != count:
        raise sqlite3.DatabaseError("damaged: a recipient without its recipient_data row")
    if not count:
        return _Batch([], [], [], [])
    try:
        flat = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise sqlite3.DatabaseError("damaged: a recipient's fields are not JSON") from None
    # Each row is two values, its [rowid, key, email] and its fields: a fields text edited
    # into more or fewer values (or into an array or a string) would shift every reader's
    # data onto another's key, so the shape is checked before anything is handed on.  The
    # checks and the columns are C calls over the whole batch, not a Python step a row: 0.77
    # us a recipient from the text to the claim's rows, against 0.84 with loops (0.45 of
    # either is orjson's parse; 2026-12-07).
    heads, fields = flat[0::2], flat[1::2]
    if (
        len(flat) != 2 * count
        or set(map(type, heads)) != {list}
        or set(map(len, heads)) != {3}
        or set(map(type, fields)) != {dict}
    ):
        raise sqlite3.DatabaseError("damaged: a recipient's fields are not a JSON object")
    batch = _Batch(
        list(map(_FIRST, heads)), list(map(_SECOND, heads)), list(map(_THIRD, heads)), fields
    )
    # group_concat keeps the order the rows come in, which is the subquery's; SQLite does
    # not promise it, so it is checked (the claim marks the range from the first to the last).
    if batch.ids != sorted(batch.ids):
        order = sorted(range(count), key=batch.ids.__getitem__)
        ids, keys, emails, fields = batch
        batch = _Batch(
            [ids[i] for i in order],
            [keys[i] for i in order],
            [emails[i] for i in order],
            [fields[i] for i in order],
        )
    return batch


def _since(moment: datetime | None) -> str:
    """A bound on ``batches.started_at`` (ISO 8601 UTC text, which sorts as time does)."""
    if moment is None:
        return ""  # every batch
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def utc_now() -> datetime:
    return datetime.now(UTC)


class LedgerError(InputError):
    """The ledger cannot be used (damaged, read-only, disk full): one line, exit 2."""


def _explain(exc: sqlite3.Error | OSError) -> str:
    text = str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
    low = text.lower()
    code = exc.errno if isinstance(exc, OSError) else None
    if "disk is full" in low or code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return (
            f"the disk is full ({text}); free some space, then run the same command again "
            "(a send resumes where it stopped)"
        )
    if "disk i/o error" in low or code == errno.EIO:
        return (
            f"the ledger could not be written ({text}): is the disk full, or failing? Free "
            "some space or check the disk, then run the same command again (a send resumes "
            "where it stopped)"
        )
    if "readonly" in low or "read-only" in low or code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (
            f"the ledger cannot be written ({text}); check that the file and its folder are "
            "writable by this user, then run again"
        )
    if "malformed" in low or "not a database" in low or "damaged" in low:
        return (
            f"the ledger is damaged ({text}); put back a copy made by `newsletter backup` "
            "(see README, Losing the ledger), then run again"
        )
    if "locked" in low or "busy" in low:
        return f"the ledger is busy ({text}); another program is writing it: try again"
    if "unable to open" in low:
        return f"the ledger cannot be opened ({text}); check the folder exists and is writable"
    return f"the ledger could not be used ({text})"


_STORAGE_ERRORS = {
    errno.ENOSPC,
    errno.EFBIG,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EIO,
}


@contextmanager
def ledger_errors(path: Path) -> Iterator[None]:
    """SQLite's and the file system's errors about the ledger (or the state folder beside
    it) as one line that names the file and says what to do."""
    try:
        yield
    except sqlite3.Error as exc:
        raise LedgerError(_explain(exc), path=path) from None
    except OSError as exc:
        if exc.errno not in _STORAGE_ERRORS:
            raise
        raise LedgerError(_explain(exc), path=exc.filename or path) from None


def _use_wal(db: sqlite3.Connection, tries: int = 100) -> None:
    """``PRAGMA journal_mode=WAL``, tried again while another opener holds the file.

    Switching a new ledger to WAL needs an exclusive lock, and SQLite answers "database is
    locked" at once, without waiting out the busy timeout, when another connection is doing
    the same (six threads opening a new ledger together: 5 failures in 500 rounds; the web
    app and a first send starting together are the real case).  Bounded: about 5 seconds.
    """
    for attempt in range(tries):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.05)


class Ledger:
    def __init__(self, path: Path, clock: Callable[[], datetime] = utc_now) -> None:
        self.path = path
        self.clock = clock
        if orphaned_wal(path):
            raise LedgerError(ORPHANED_WAL, path=path)
        with ledger_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            _private(path)
            # Autocommit mode: every transaction below is explicit.
            self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
            _use_wal(self.db)
            # FULL: an "inflight" mark is on disk before the provider is called, even on
            # power loss.
            self.db.execute("PRAGMA synchronous=FULL")
            self._synchronous = "FULL"
            self.db.execute("PRAGMA foreign_keys=ON")
            migrate(self.db)
        # batch -> {key: rowid} of the rows this connection claimed and has not settled yet:
        # a settle finds each row by rowid, one b-tree search instead of two.
        self._held: dict[int, dict[str, int]] = {}
        # issue -> a rowid no pending row of it is below, as far as this connection knows
        # (see ``_pending``).
        self._pending_from: dict[str, int] = {}
        self._first_id: dict[str, int] = {}  # issue -> its lowest rowid (see ``_pending``)

    def verify(self) -> None:
        """Refuse a damaged ledger: a damaged one once reported 921 readers for 3,000."""
        with ledger_errors(self.path):
            problems = [str(row[0]) for row in self.db.execute("PRAGMA quick_check(1)")]
        if problems != ["ok"]:
            first = " ".join(" ".join(problems).split())[:200]  # one line, even for SQLite's
            raise LedgerError(
                _explain(sqlite3.DatabaseError(f"damaged: {first}")),
                path=self.path,
            )

    def close(self) -> None:
        self.db.close()

    def now(self) -> str:
        """The ledger's clock, as it writes times."""
        return self._now()

    def _now(self) -> str:
        return self.clock().astimezone(UTC).isoformat(timespec="seconds")

    @contextmanager
    def transaction(self, *, fsync: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; committed with an fsync (synchronous=FULL) unless ``fsync``
        is False (NORMAL: in WAL mode still safe from a killed process, and made durable by
        the next FULL commit).  Each transaction sets the mode it needs, so a claim is FULL
        whatever ran before it."""
        mode = "FULL" if fsync else "NORMAL"
        if self._synchronous != mode:
            self.db.execute(f"PRAGMA synchronous={mode}")
            self._synchronous = mode
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if self.db.in_transaction:  # SQLite may have rolled back already (I/O error, full disk)
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # Issues -------------------------------------------------------------------------------

    def issue(self, slug: str) -> IssueRecord | None:
        row = self.db.execute(
            "SELECT slug, content_hash, provider, status, audience_loaded, note, started_at,"
            " finished_at FROM issues WHERE slug = ?",
            (slug,),
        ).fetchone()
        return _issue_record(row) if row else None

    def issues(self) -> list[IssueRecord]:
        rows = self.db.execute(
            "SELECT slug, content_hash, provider, status, audience_loaded, note, started_at,"
            " finished_at FROM issues ORDER BY started_at, slug"
        ).fetchall()
        return [_issue_record(row) for row in rows]

    def start_issue(self, slug: str, content_hash: str, provider: str) -> IssueRecord:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO issues (slug, content_hash, provider, status, started_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (slug, content_hash, provider, IssueStatus.SENDING, self._now()),
            )
        record = self.issue(slug)
        assert record is not None
        return record

    def set_status(self, slug: str, status: IssueStatus, note: str | None = None) -> None:
        finished = self._now() if status is IssueStatus.COMPLETE else None
        with self.transaction() as db:
            db.execute(
                "UPDATE issues SET status = ?, note = ?, finished_at = ? WHERE slug = ?",
                (status, note, finished, slug),
            )

    def restart_issue(self, slug: str, content_hash: str, provider: str) -> IssueRecord:
        """Start again an issue that nobody was sent (no audience recorded): its audience is
        to be loaded afresh, so a load cut short now is continued, never taken as whole."""
        with self.transaction() as db:
            db.execute(
                "UPDATE issues SET content_hash = ?, provider = ?, status = ?, note = NULL,"
                " finished_at = NULL, audience_loaded = 0 WHERE slug = ?",
                (content_hash, provider, IssueStatus.SENDING, slug),
            )
        record = self.issue(slug)
        assert record is not None
        return record

    def trial_only(self, slug: str, trial_provider: str = "outbox") -> bool:
        """Whether every batch of the issue was handed to ``trial_provider`` (the outbox,
        which emails nobody), and there was at least one: then nobody was emailed it, whatever
        its rows say (sent to a file, or left in flight or unknown by a killed trial).  A batch
        of another provider, or of none recorded (a ledger from before batches had one), and
        it is not: someone may have been emailed."""
        row = self.db.execute(
            "SELECT count(*), count(*) FILTER (WHERE provider IS NOT ?) FROM batches"
            " WHERE issue = ?",
            (trial_provider, slug),
        ).fetchone()
        return bool(row[0]) and not row[1]

    def batch_providers(self, slug: str) -> set[str | None]:
        """The providers the issue's batches were handed to (None: not recorded)."""
        rows = self.db.execute("SELECT DISTINCT provider FROM batches WHERE issue = ?", (slug,))
        return {row[0] for row in rows}

    def forget_trial(self, slug: str, trial_provider: str = "outbox") -> int:
        """Forget the readers of an issue only ever written to ``trial_provider`` (see
        ``trial_only``), so that it starts afresh through a provider that emails: a trial
        recorded as complete kept the real send from ever starting ("complete: 0 sent").
        Checked again in the transaction that forgets; returns how many readers.  The one
        place rows are deleted: the claims' rowid bookkeeping for the issue starts over."""
        with self.transaction() as db:
            if not self.trial_only(slug, trial_provider):
                raise sqlite3.DatabaseError(f"{slug} has readers beyond a trial: not forgotten")
            ids = "SELECT id FROM recipients WHERE issue = ?"
            db.execute(f"DELETE FROM recipient_data WHERE id IN ({ids})", (slug,))
            forgotten = db.execute("DELETE FROM recipients WHERE issue = ?", (slug,)).rowcount
            db.execute("DELETE FROM recipient_counts WHERE issue = ?", (slug,))
            db.execute("DELETE FROM batches WHERE issue = ?", (slug,))
            db.execute("UPDATE issues SET audience_loaded = 0 WHERE slug = ?", (slug,))
        self._pending_from.pop(slug, None)
        self._first_id.pop(slug, None)
        return forgotten

    def set_content_hash(self, slug: str, content_hash: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE issues SET content_hash = ? WHERE slug = ?", (content_hash, slug))

    # Audience -----------------------------------------------------------------------------

    def add_recipients(
        self,
        slug: str,
        subscribers: Iterable[Subscriber],
        chunk: int = 2000,
        *,
        stay_withdrawn: Collection[str] = (),
    ) -> int:
        """Record the audience (idempotent: rows already there are kept as they are, but
        for withdrawn ones, which come back pending with the list's values now).

        Marks the audience loaded in the last transaction, so a load cut short by a kill is
        simply continued by the next run.

        Withdrawn rows are there when an issue starts again that nobody was sent: every
        reader withdrawn on a resume (the list saved empty by accident) before the first
        batch.  Skipped as rows already there, they could never be sent the issue.  Those
        in ``stay_withdrawn`` (removed on request) stay withdrawn, as on a resume.
        """
        added = 0
        items = iter(subscribers)
        withdrawn = self.db.execute(
            "SELECT n FROM recipient_counts WHERE issue = ? AND status = ?",
            (slug, RecipientStatus.WITHDRAWN),
        ).fetchone()
        bring_back = bool(withdrawn and withdrawn[0])
        while True:
            block = list(islice(items, chunk))
            # Each row is written with the time it was recorded: a claim then rewrites it at
            # the same length (SQLite rewrites a row whole, and a longer one splits its page:
            # 12 pages to the WAL a claim of 250, 9 with the time there from the start).
            loaded_at = self._now()
            with self.transaction() as db:
                # Each row's id chosen here, so that its data row has the same one; a row
                # already there (a load cut short, continued; a key twice in the list) is
                # kept as it is, its id left unused and its data row not written.
                first = int(
                    db.execute("SELECT coalesce(max(id), 0) + 1 FROM recipients").fetchone()[0]
                )
                cursor = db.executemany(
                    "INSERT OR IGNORE INTO recipients (id, issue, key, status, updated_at)"
                    " VALUES (?, ?, ?, 'pending', ?)",
                    [(first + i, slug, s.key, loaded_at) for i, s in enumerate(block)],
                )
                new = max(cursor.rowcount, 0)
                db.executemany(
                    "INSERT INTO recipient_data (id, email, line, fields) SELECT ?1, ?2, ?3, ?4"
                    " WHERE EXISTS (SELECT 1 FROM recipients WHERE id = ?1)",
                    [
                        (first + i, s.email, s.line, _fields_json(s.fields))
                        for i, s in enumerate(block)
                    ],
                )
                back = self._bring_back(db, slug, block, stay_withdrawn) if bring_back else 0
                added += new + back
                move_counts(
                    db,
                    slug,
                    {RecipientStatus.PENDING: new + back, RecipientStatus.WITHDRAWN: -back},
                )
                if len(block) < chunk:
                    db.execute("UPDATE issues SET audience_loaded = 1 WHERE slug = ?", (slug,))
                    return added

    def _bring_back(
        self,
        db: sqlite3.Connection,
        slug: str,
        block: list[Subscriber],
        stay_withdrawn: Collection[str],
    ) -> int:
        """Rows of ``block`` withdrawn from ``slug`` made pending again (but those in
        ``stay_withdrawn``), with their values as the list has them now; how many."""
        now = self._now()
        back = 0
        for s in block:
            if s.key in stay_withdrawn:
                continue
            row = db.execute(
                "UPDATE recipients SET status = ?, reason = NULL, updated_at = ?"
                " WHERE issue = ? AND key = ? AND status = ? RETURNING id",
                (RecipientStatus.PENDING, now, slug, s.key, RecipientStatus.WITHDRAWN),
            ).fetchone()
            if row is not None:
                db.execute(
                    "UPDATE recipient_data SET email = ?, line = ?, fields = ? WHERE id = ?",
                    (s.email, s.line, _fields_json(s.fields), row[0]),
                )
                back += 1
        if back:
            self.pending_again(slug)
        return back

    def refresh_audience(
        self,
        slug: str,
        subscribers: Iterable[Subscriber],
        opted_out: Iterable[str],
        *,
        include_new: bool = False,
        bring_back: bool = True,
        stay_withdrawn: Iterable[str] = (),
        chunk: int = 2000,
    ) -> AudienceChange:
        """On a resume (or when the list changes during a send), the list as it is now
        decides who is still to be sent, and how.

        ``bring_back``: whether withdrawn readers in the audience again are to send (a
        resume's, whose caller has read the consent history afresh; not a re-read during
        the send, whose history is the one of its start: someone who unsubscribed since,
        withdrawn, was brought back by an old copy of the list put back and mailed).
        ``stay_withdrawn``: keys never brought back (removed from the list by request).

        Pending readers no longer in the issue's audience (deleted, which may be an erasure
        request; unsubscribed; untagged) are withdrawn; the others get their current values
        (a corrected name); readers withdrawn earlier who are in the audience again (the
        list saved with rows missing, then put right) are to send again; people who joined
        since the send began are counted, and added when ``include_new``.  Rows already
        sent, failed or unknown are history: untouched.

        An audience of nobody changes nothing (``empty``): a list saved empty (the wrong
        sheet exported, a header row alone) withdrew everyone still to send, and the issue
        was complete with all of them lost to it.  The caller says what to do.
        """
        db = self.db
        self._load_current_audience(subscribers, chunk)
        now = self._now()
        try:
            if db.execute("SELECT 1 FROM temp.current_audience LIMIT 1").fetchone() is None:
                return AudienceChange(0, 0, 0, 0, empty=True)
            with self.transaction():
                db.execute("CREATE TEMP TABLE IF NOT EXISTS left_list (key TEXT PRIMARY KEY)")
                db.execute("DELETE FROM temp.left_list")
                db.executemany(
                    "INSERT OR IGNORE INTO temp.left_list VALUES (?)", ((k,) for k in opted_out)
                )
                withdrawn = db.execute(
                    "UPDATE recipients SET status = ?, updated_at = ?, reason = CASE WHEN key IN"
                    " (SELECT key FROM temp.left_list) THEN 'opted out after the send began'"
                    " ELSE 'no longer on the list (or not in this issue''s audience) after the"
                    " send began' END"
                    " WHERE issue = ? AND status = ?"
                    " AND key NOT IN (SELECT key FROM temp.current_audience)",
                    (RecipientStatus.WITHDRAWN, now, slug, RecipientStatus.PENDING),
                ).rowcount
                move_counts(
                    db,
                    slug,
                    {RecipientStatus.PENDING: -withdrawn, RecipientStatus.WITHDRAWN: withdrawn},
                )
                refreshed = db.execute(
                    "UPDATE recipient_data SET email = c.email, line = c.line, fields = c.fields"
                    " FROM recipients AS r, temp.current_audience AS c"
                    " WHERE recipient_data.id = r.id AND r.issue = ? AND r.status = ?"
                    " AND r.key = c.key"
                    " AND (recipient_data.fields != c.fields OR recipient_data.email != c.email)",
                    (slug, RecipientStatus.PENDING),
                ).rowcount
                # Withdrawn readers who are in the audience again (the list was saved with
                # rows missing by accident, then put back; or they resubscribed) are to send
                # after all, with the list's values now: a withdrawal is never a reader lost
                # for good, nor one left to `--include-new` as if new.  Never sent, any of them.
                returned = 0
                if bring_back:
                    db.execute("DELETE FROM temp.left_list")  # now: who stays withdrawn
                    db.executemany(
                        "INSERT OR IGNORE INTO temp.left_list VALUES (?)",
                        ((k,) for k in stay_withdrawn),
                    )
                    back = " AND r.key = c.key AND r.key NOT IN (SELECT key FROM temp.left_list)"
                    db.execute(
                        "UPDATE recipient_data SET email = c.email, line = c.line,"
                        " fields = c.fields FROM recipients AS r, temp.current_audience AS c"
                        f" WHERE recipient_data.id = r.id AND r.issue = ? AND r.status = ?{back}",
                        (slug, RecipientStatus.WITHDRAWN),
                    )
                    returned = db.execute(
                        "UPDATE recipients AS r SET status = ?, reason = NULL, updated_at = ?"
                        " FROM temp.current_audience AS c WHERE r.issue = ?"
                        f" AND r.status = ?{back}",
                        (RecipientStatus.PENDING, now, slug, RecipientStatus.WITHDRAWN),
                    ).rowcount
                new = (
                    "FROM temp.current_audience c WHERE NOT EXISTS (SELECT 1 FROM recipients r"
                    " WHERE r.issue = ? AND r.key = c.key)"
                )
                joined = int(db.execute(f"SELECT count(*) {new}", (slug,)).fetchone()[0])
                added = 0
                if include_new and joined:
                    added = db.execute(
                        "INSERT INTO recipients (issue, key, status)"
                        f" SELECT ?, c.key, ? {new} ORDER BY c.line",
                        (slug, RecipientStatus.PENDING, slug),
                    ).rowcount
                    db.execute(
                        "INSERT INTO recipient_data (id, email, line, fields)"
                        " SELECT r.id, c.email, c.line, c.fields FROM temp.current_audience AS c"
                        " JOIN recipients AS r ON r.issue = ? AND r.key = c.key"
                        " WHERE NOT EXISTS (SELECT 1 FROM recipient_data AS d WHERE d.id = r.id)",
                        (slug,),
                    )
                if returned or added:
                    self.pending_again(slug)
                move_counts(
                    db,
                    slug,
                    {
                        RecipientStatus.WITHDRAWN: -returned,
                        RecipientStatus.PENDING: returned + added,
                    },
                )
        finally:
            db.execute("DELETE FROM temp.current_audience")
        return AudienceChange(withdrawn, refreshed, joined - added, added, returned)

    def _load_current_audience(self, subscribers: Iterable[Subscriber], chunk: int) -> None:
        db = self.db
        db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS current_audience"
            " (key TEXT PRIMARY KEY, email TEXT, line INTEGER, fields TEXT)"
        )
        db.execute("DELETE FROM temp.current_audience")
        items = iter(subscribers)
        # Only the temporary table is written: a deferred transaction, no lock on the ledger
        # while the list is read.
        db.execute("BEGIN")
        try:
            while block := list(islice(items, chunk)):
                db.executemany(
                    "INSERT OR IGNORE INTO temp.current_audience VALUES (?, ?, ?, ?)",
                    [(s.key, s.email, s.line, _fields_json(s.fields)) for s in block],
                )
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (I/O error, full disk)
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def preview_audience(
        self, slug: str, subscribers: Iterable[Subscriber], *, chunk: int = 2000
    ) -> tuple[int, int]:
        """What ``refresh_audience`` would find, changing nothing (for the question asked
        before a resume): the readers still to send in the audience (pending, or withdrawn
        and back), and who joined since."""
        db = self.db
        self._load_current_audience(subscribers, chunk)
        try:
            pending = int(
                db.execute(
                    "SELECT count(*) FROM recipients WHERE issue = ? AND status IN (?, ?)"
                    " AND key IN (SELECT key FROM temp.current_audience)",
                    (slug, RecipientStatus.PENDING, RecipientStatus.WITHDRAWN),
                ).fetchone()[0]
            )
            joined = int(
                db.execute(
                    "SELECT count(*) FROM temp.current_audience c WHERE NOT EXISTS (SELECT 1"
                    " FROM recipients r WHERE r.issue = ? AND r.key = c.key)",
                    (slug,),
                ).fetchone()[0]
            )
        finally:
            db.execute("DELETE FROM temp.current_audience")
        return pending, joined

    def withdraw(self, slug: str, keys: Iterable[str]) -> int:
        """Pending recipients who opted out since the send began leave the audience."""
        total = 0
        with self.transaction() as db:
            for key in keys:
                total += db.execute(
                    "UPDATE recipients SET status = ?, reason = ?, updated_at = ?"
                    " WHERE issue = ? AND key = ? AND status = ?",
                    (
                        RecipientStatus.WITHDRAWN,
                        "opted out after the send began",
                        self._now(),
                        slug,
                        key,
                        RecipientStatus.PENDING,
                    ),
                ).rowcount
            move_counts(
                db, slug, {RecipientStatus.PENDING: -total, RecipientStatus.WITHDRAWN: total}
            )
        return total

    # Delivery -----------------------------------------------------------------------------

    def recover_inflight(self) -> dict[str, int]:
        """Rows a dead run left in flight cannot be known: they become ``unknown``.

        Only call this holding the send lock: then no live run has rows in flight.

        The counts per status are recounted from the rows here, at the start of every send
        (a ledger edited by hand is counted right from then on), by the one scan that also
        finds the rows in flight; the update runs only when there are some.  With no index
        on every row's status this reads the table: 0.6-0.7 s at 1,000,000 rows, once a
        send (0.2 s through the status index before migration 7, which every claim and
        settle paid for).  The same scan says where each issue's claims start.
        """
        with self.transaction() as db:
            rows = db.execute(
                "SELECT issue, status, count(*), min(id) FROM recipients GROUP BY issue, status"
            ).fetchall()
            found = {str(issue): int(n) for issue, status, n, _ in rows if status == "inflight"}
            if found:
                db.execute(
                    "UPDATE recipients SET status = ?, reason = ?, updated_at = ? WHERE status = ?",
                    (
                        RecipientStatus.UNKNOWN,
                        "in flight when a run was interrupted: may or may not have been delivered",
                        self._now(),
                        RecipientStatus.INFLIGHT,
                    ),
                )
            counts: dict[tuple[str, str], int] = {}
            for issue, status, n, _ in rows:
                if status == RecipientStatus.INFLIGHT:
                    status = RecipientStatus.UNKNOWN  # as just recorded
                counts[(issue, status)] = counts.get((issue, status), 0) + int(n)
            db.execute("DELETE FROM recipient_counts")
            db.executemany(
                "INSERT INTO recipient_counts (issue, status, n) VALUES (?, ?, ?)",
                [(issue, status, n) for (issue, status), n in counts.items()],
            )
        self._held.clear()
        # Where each issue's claims start: its first pending row, as just read.
        self._pending_from = {
            str(issue): int(first) for issue, status, _, first in rows if status == "pending"
        }
        return found

    def abandon_batch(self, slug: str, batch: int, reason: str) -> int:
        """The rows of ``batch`` still in flight become ``unknown`` with ``reason`` (a stopped
        send that could not wait longer for the provider's answer)."""
        held = self._held.pop(batch, {})
        with self.transaction() as db:
            # By rowid when this connection claimed the batch (no index on batch: a claim
            # would rewrite it for every row); else by reading the issue's rows.
            where = (
                f"rowid IN ({', '.join(str(rowid) for rowid in held.values())})"
                if held
                else "issue = ?"
            )
            gone = db.execute(
                f"UPDATE recipients SET status = ?, reason = ?, updated_at = ? WHERE {where}"
                " AND issue = ? AND batch = ? AND status = ?",
                (
                    RecipientStatus.UNKNOWN,
                    reason,
                    self._now(),
                    *(() if held else (slug,)),
                    slug,
                    batch,
                    RecipientStatus.INFLIGHT,
                ),
            ).rowcount
            move_counts(db, slug, {RecipientStatus.PENDING: -gone, RecipientStatus.UNKNOWN: gone})
        return gone

    def requeue_unknown(self, slug: str, keep_provider: str | None = None) -> int:
        """``unknown`` rows back to pending (``--resend-unknown``), except those in batches
        ``keep_provider`` sent: an idempotent provider replays those under their key."""
        with self.transaction() as db:
            moved = db.execute(
                "UPDATE recipients SET status = ?, updated_at = ? WHERE issue = ?"
                " AND status = 'unknown' AND NOT EXISTS (SELECT 1 FROM batches b"
                " WHERE b.id = recipients.batch AND b.provider = ?)",
                (RecipientStatus.PENDING, self._now(), slug, keep_provider),
            ).rowcount
            move_counts(db, slug, {RecipientStatus.UNKNOWN: -moved, RecipientStatus.PENDING: moved})
        self.pending_again(slug)
        return moved

    def unknown_replayable(self, slug: str, provider: str, since: datetime | None = None) -> int:
        """How many ``unknown`` rows sit in batches ``provider`` was handed (``since``: at
        or after then, while the provider still knows their key)."""
        row = self.db.execute(
            "SELECT count(*) FROM recipients r JOIN batches b ON b.id = r.batch"
            " WHERE r.issue = ? AND r.status = 'unknown' AND b.provider = ?"
            " AND b.started_at >= ?",
            (slug, provider, _since(since)),
        ).fetchone()
        return int(row[0])

    def claim(
        self,
        slug: str,
        limit: int,
        status: RecipientStatus = RecipientStatus.PENDING,
        provider: str | None = None,
    ) -> tuple[int, list[ClaimedRow]]:
        """Mark up to ``limit`` rows (pending ones, by default) in flight, durably, as one
        batch handed to ``provider``, and return them in list order.

        The rows are read, then marked by one UPDATE of exactly those rows (by rowid, and
        only while still in ``status``), in one write transaction (so they cannot differ;
        the count is checked).  Pending rows are read in list order from where the last
        claim stopped (``_pending``); other ones through their partial index (the status is
        written into the SQL, not bound: only then can SQLite use it)."""
        status = RecipientStatus(status)
        with self.transaction() as db:
            if status is RecipientStatus.PENDING:
                rows = self._pending(db, slug, limit)
            else:
                rows = _batch_of(
                    db,
                    f"SELECT id, key FROM recipients WHERE issue = ? AND status ="
                    f" '{status.value}' ORDER BY id LIMIT ?",
                    (slug, limit),
                )
            return self._hold(db, slug, rows, status, provider, every_row_between=True)

    def _pending(self, db: sqlite3.Connection, slug: str, limit: int) -> _Batch:
        """The first ``limit`` pending rows of the issue.

        No index holds the pending rows (a claim rewrote it for every row it marked): they
        are read in rowid order from where the last claim stopped, which no pending row is
        below unless one was made pending since, and every change here that makes rows
        pending says so (``pending_again``).  When none is found from there, the issue is
        read again from its first row before the claim says there are none: a row made
        pending by another connection, or by hand, is found then (once a send, at its end).
        """
        start = self._pending_from.get(slug)
        rows = (
            _Batch([], [], [], [])
            if start is None
            else _batch_of(db, _PENDING, (start, slug, limit))
        )
        if not rows.ids:
            first = self._first_id.get(slug)
            if first is None:
                # Read once an issue: it reads the index of the issue's every row (5 ms at
                # 50,000).  It never changes: rows are never deleted, and a new one's id is
                # above every other's.
                first = db.execute(
                    "SELECT min(id) FROM recipients WHERE issue = ?", (slug,)
                ).fetchone()[0]
                if first is not None:
                    self._first_id[slug] = first
            if first is not None and (start is None or first < start):
                rows = _batch_of(db, _PENDING, (first, slug, limit))
        if rows.ids:
            self._pending_from[slug] = rows.ids[-1] + 1
        return rows

    def pending_again(self, slug: str, rowid: int | None = None) -> None:
        """Rows of ``slug`` were made pending again (``rowid``: none below it; None: the
        lowest is not known), by this connection: the next claim looks from there."""
        start = self._pending_from.get(slug)
        if rowid is None:
            self._pending_from.pop(slug, None)
        elif start is not None and rowid < start:
            self._pending_from[slug] = rowid

    def claim_unknown_batch(
        self, slug: str, provider: str, since: datetime | None = None
    ) -> tuple[int, list[ClaimedRow]]:
        """Claim the ``unknown`` rows of the oldest batch ``provider`` was handed that has
        any, and only those: the batch as it was sent, to go again under the same key.
        ``since``: only a batch handed over at or after then (an older one's key has expired
        at the provider, which would send it again)."""
        with self.transaction() as db:
            rows = _batch_of(
                db,
                "SELECT r.id, r.key FROM recipients AS r WHERE r.issue = ?"
                " AND r.status = 'unknown' AND r.batch = (SELECT min(u.batch) FROM recipients u"
                " JOIN batches b ON b.id = u.batch WHERE u.issue = ? AND u.status = 'unknown'"
                " AND b.provider = ? AND b.started_at >= ?) ORDER BY r.id",
                (slug, slug, provider, _since(since)),
            )
            return self._hold(db, slug, rows, RecipientStatus.UNKNOWN, provider)

    def _hold(
        self,
        db: sqlite3.Connection,
        slug: str,
        rows: _Batch,
        status: RecipientStatus,
        provider: str | None,
        *,
        every_row_between: bool = False,
    ) -> tuple[int, list[ClaimedRow]]:
        """Mark ``rows`` (``_batch_of``'s), read in this write
        transaction in ``status``, in flight as one new batch.

        One UPDATE for the batch, of the rows whose rowids it is given as one JSON array
        (``NOT INDEXED``: each found by its rowid, never through an index of the issue's
        rows), each only if still in ``status``; with ``every_row_between`` (the rows are all
        the issue's in ``status`` from the first of them to the last), of that range."""
        ids = rows.ids
        if not ids:
            return 0, []
        now = self._now()
        batch = db.execute(
            "INSERT INTO batches (issue, size, started_at, provider) VALUES (?, ?, ?, ?)",
            (slug, len(ids), now, provider),
        ).lastrowid
        assert batch is not None
        if every_row_between:  # ids[0] to ids[-1], and nothing else of the issue's in status
            sql = _MARK_RANGE.format(status=status.value)
            which: tuple[Any, ...] = (ids[0], ids[-1])
        else:
            sql = _MARK.format(status=status.value)
            which = (orjson.dumps(ids).decode(),)
        held = db.execute(sql, (RecipientStatus.INFLIGHT, batch, now, *which, slug)).rowcount
        if held != len(ids):  # read in this same write transaction: cannot happen
            raise sqlite3.DatabaseError(f"damaged: claimed {held} of {len(ids)} rows")
        move_counts(db, slug, {status: -held, RecipientStatus.INFLIGHT: held})
        self._held[batch] = dict(zip(rows.keys, ids, strict=True))
        # C calls over the columns, no Python step a row (ClaimedRow's own __new__ is one).
        return batch, list(map(_claimed_row, zip(rows.keys, rows.emails, rows.fields, strict=True)))

    def settle(self, slug: str, batch: int, settlements: Sequence[Settlement]) -> None:
        """Record outcomes of rows this batch holds in flight, in one transaction.

        Committed without an fsync of its own (synchronous=NORMAL): in WAL mode a commit
        survives the process being killed, and the next claim's fsync (FULL) makes it
        durable on power loss too.  Losing a settlement to a power cut leaves its rows in
        flight, which the next run reports as ``unknown``: never sent twice.  The claim,
        which is what stops a second send, keeps its fsync before the provider is called.

        Each row is changed only if this batch still holds it in flight.  One statement a
        status, so that its rowcount says how many rows moved, for the counts and for the
        batch, which is settled once all its rows are.  The rows this connection claimed
        are found by the rowids the claim kept, all of a status in one UPDATE joined with
        one JSON object of rowid -> provider id (and reason, when there is one), not an
        UPDATE a row, each with its parameters bound from Python.  Any other row (claimed
        by another connection) is found by its key."""
        now = self._now()
        held = self._held.get(batch, {})
        ids: dict[RecipientStatus, dict[int, str | None]] = {}  # rowid -> provider id
        reasons: dict[RecipientStatus, dict[int, str]] = {}  # rowid -> reason, when one
        by_key: dict[RecipientStatus, list[tuple[Any, ...]]] = {}
        for s in settlements:
            rowid = held.pop(s.key, None)
            if rowid is None:
                by_key.setdefault(s.status, []).append(
                    (_storable(s.provider_id), _storable(s.reason), now, slug, s.key, batch)
                )
            else:
                ids.setdefault(s.status, {})[rowid] = s.provider_id or None
                if s.reason:
                    reasons.setdefault(s.status, {})[rowid] = s.reason
        if not held:
            self._held.pop(batch, None)
        if RecipientStatus.PENDING in by_key:
            self.pending_again(slug)
        elif RecipientStatus.PENDING in ids:
            self.pending_again(slug, min(ids[RecipientStatus.PENDING]))
        with self.transaction(fsync=False) as db:
            settled = 0
            for status in {*ids, *by_key}:
                moved = 0
                if status in ids:
                    if status in reasons:  # {rowid: [provider id, reason]}
                        why = reasons[status]
                        sql = _SETTLE_WITH_REASONS
                        values: Any = {r: (i, why.get(r)) for r, i in ids[status].items()}
                    else:  # {rowid: provider id}: no JSON read for each row (0.6 us a row)
                        sql, values = _SETTLE, ids[status]
                    try:
                        dumped = orjson.dumps(values, option=orjson.OPT_NON_STR_KEYS)
                    except TypeError:  # a lone surrogate, which no UTF-8 holds: replaced
                        dumped = orjson.dumps(
                            {r: _storable_json(v) for r, v in values.items()},
                            option=orjson.OPT_NON_STR_KEYS,
                        )
                    as_json = dumped.decode()
                    if "\\u0000" in as_json:
                        # SQLite's JSON functions end a text at a NUL: an id or reason with
                        # one (no provider sends one, but it is theirs to send) makes the
                        # whole status go the bound way, kept whole.  One look a batch, not
                        # one a row.
                        bound = {row[4] for row in by_key.get(status, [])}
                        by_key.setdefault(status, []).extend(
                            (_storable(s.provider_id), _storable(s.reason), now, slug, s.key, batch)
                            for s in settlements
                            if s.status == status and s.key not in bound
                        )
                    else:
                        moved += db.execute(
                            sql.format(status=status.value),
                            (now, as_json, batch),
                        ).rowcount
                if status in by_key:
                    moved += db.executemany(
                        f"UPDATE recipients SET status = '{status.value}', provider_id = ?,"
                        " reason = ?, updated_at = ? WHERE issue = ? AND key = ?"
                        " AND status = 'inflight' AND batch = ?",
                        by_key[status],
                    ).rowcount
                move_counts(db, slug, {RecipientStatus.INFLIGHT: -moved, status: moved})
                settled += moved
            db.execute(
                "UPDATE batches SET settled = settled + ?1, settled_at = CASE WHEN"
                " settled + ?1 >= size THEN ?2 ELSE settled_at END WHERE id = ?3",
                (settled, now, batch),
            )

    # Reading ------------------------------------------------------------------------------

    def counts(self, slug: str) -> Counts:
        """Read from ``recipient_counts``: a send asks after every batch, and counting the
        rows themselves grew with the list (70-110 ms a batch at 1M, 2.8 ms at 50k)."""
        by_status: dict[str, int] = dict(
            self.db.execute(
                "SELECT status, n FROM recipient_counts WHERE issue = ?", (slug,)
            ).fetchall()
        )
        pending = by_status.get(RecipientStatus.PENDING, 0) + by_status.get(
            RecipientStatus.INFLIGHT, 0
        )
        sent = by_status.get(RecipientStatus.SENT, 0)
        failed = by_status.get(RecipientStatus.FAILED, 0)
        unknown = by_status.get(RecipientStatus.UNKNOWN, 0)
        return Counts(sent + failed + unknown + pending, sent, failed, unknown, pending)

    def recipients(
        self, slug: str, status: RecipientStatus, limit: int = 50
    ) -> list[tuple[str, str]]:
        """(email, reason) of recipients in a status, in list order."""
        # The status in the SQL: unknown rows are then read from their index.
        rows = self.db.execute(
            f"SELECT d.email, coalesce(r.reason, '') {_WITH_DATA} WHERE r.issue = ?"
            f" AND r.status = '{RecipientStatus(status).value}' ORDER BY r.id LIMIT ?",
            (slug, limit),
        ).fetchall()
        return [(str(email), str(reason)) for email, reason in rows]

    def history(self, slug: str) -> list[dict[str, Any]]:
        """Every recipient row of an issue (for tests and audits)."""
        cursor = self.db.execute(
            f"SELECT r.key, d.email, r.status, r.provider_id, r.reason {_WITH_DATA}"
            " WHERE r.issue = ? ORDER BY r.id",
            (slug,),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _private(path: Path) -> None:
    """The ledger holds every subscriber's fields: 0600, like the signing key.  Made before
    SQLite opens it, since SQLite gives the -wal and -shm files the main file's mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        for item in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            with suppress(FileNotFoundError):
                if item.stat().st_mode & 0o077:
                    item.chmod(0o600)


def _issue_record(row: Sequence[Any]) -> IssueRecord:
    return IssueRecord(
        slug=row[0],
        content_hash=row[1],
        provider=row[2],
        status=IssueStatus(row[3]),
        audience_loaded=bool(row[4]),
        note=row[5],
        started_at=row[6],
        finished_at=row[7],
    )
