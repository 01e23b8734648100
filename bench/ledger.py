"""9. The ledger: microseconds per recipient to claim a batch (mark it in flight, durably,
and read it back) and to settle it, amortised over batches of 250, through
``pipeline.ledger.store.Ledger``; in the same run, against SQLite alone doing the same
writes the plainest way on the ledger's tables and indexes (migration 9: the rows a claim
and a settle rewrite apart from each recipient's address and fields): a claim of one
UPDATE ... RETURNING of the next 250 pending rows and one SELECT of their data, committed
with an fsync, a settlement of one UPDATE a row by its key, committed without; the same
on the table as it was before migration 9 (address and fields in the row, an index of
pending rows: what the schema change saved); and the floor: the same commits on a table
of nothing but (rowid, status, batch, provider id), a claim of one range of rowids, a
settlement of one UPDATE joined with the ids, no data read back; and the floor with the
data read back, on the ledger's tables: a claim that marks no row at all (one row in a
table of batches says which rows are in flight: what a ledger whose fsync'd claim did not
carry each row's status would write), the batch's rows read with their address and fields
as the ledger reads them, a settlement marking each row.  Target: claim and settle together
under 5 us a recipient.  It also prints the disk's part: the median time of a bare
fdatasync of 40 KB, which each claim's commit waits for (the ledger's figure moves with it:
on one machine of this kind, 2026-12-07: 110-150 us while quiet, 4 ms while other jobs
wrote to the same disk).

    .venv/bin/python bench/ledger.py             # 50,000 recipients, 5 rounds
    .venv/bin/python bench/ledger.py --small     # 2,000, 2 rounds (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from _common import emit, machine, table

from pipeline.audience.subscribers import Subscriber
from pipeline.ledger.store import _BATCH_OF, _PENDING, Ledger, RecipientStatus, Settlement

BATCH = 250


def audience(count: int) -> list[Subscriber]:
    return [
        Subscriber(
            i + 2,
            f"reader{i:07d}@example.org",
            f"reader{i:07d}@example.org",
            {
                "email": f"reader{i:07d}@example.org",
                "first_name": f"Reader{i}",
                "last_name": f"Number{i}",
                "status": "subscribed",
                "tags": "runners",
                "city": f"Town{i % 97}",
            },
        )
        for i in range(count)
    ]


def ours(folder: Path, people: list[Subscriber]) -> tuple[float, float]:
    ledger = Ledger(folder / "ledger.sqlite3")
    ledger.start_issue("issue", "hash", "postmark")
    ledger.add_recipients("issue", people)
    claiming = settling = 0.0
    while True:
        start = time.perf_counter()
        batch, rows = ledger.claim("issue", BATCH, provider="postmark")
        claiming += time.perf_counter() - start
        if not rows:
            break
        settlements = [Settlement(r.key, RecipientStatus.SENT, f"id-{r.key}") for r in rows]
        start = time.perf_counter()
        ledger.settle("issue", batch, settlements)
        settling += time.perf_counter() - start
    ledger.close()
    return claiming / len(people) * 1e6, settling / len(people) * 1e6


def _schema_7_table(db: sqlite3.Connection, people: list[Subscriber]) -> None:
    """The recipients table as migration 7 left it: every column in the row, and the index
    of pending rows a claim read (and rewrote)."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE recipients (issue TEXT, key TEXT, email TEXT, line INTEGER, fields TEXT,"
        " status TEXT, batch INTEGER, provider_id TEXT, reason TEXT, updated_at TEXT,"
        " PRIMARY KEY (issue, key))"
    )
    db.execute("CREATE INDEX pending ON recipients (issue) WHERE status = 'pending'")
    db.execute("CREATE INDEX unknown ON recipients (issue, batch) WHERE status = 'unknown'")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO recipients (issue, key, email, line, fields, status)"
        " VALUES (?, ?, ?, ?, ?, 'pending')",
        [("issue", p.key, p.email, p.line, json.dumps(p.fields)) for p in people],
    )
    db.execute("COMMIT")


def _tables(db: sqlite3.Connection, people: list[Subscriber]) -> None:
    """The ledger's tables (migration 9): the columns a claim and a settle change, with the
    keys; each recipient's address, line and fields apart, under the same id."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE recipients (id INTEGER PRIMARY KEY, issue TEXT, key TEXT, status TEXT,"
        " batch INTEGER, provider_id TEXT, reason TEXT, updated_at TEXT, UNIQUE (issue, key))"
    )
    db.execute(
        "CREATE TABLE recipient_data (id INTEGER PRIMARY KEY, email TEXT, line INTEGER,"
        " fields TEXT)"
    )
    db.execute("CREATE INDEX unknown ON recipients (issue, batch) WHERE status = 'unknown'")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO recipients (id, issue, key, status) VALUES (?, 'issue', ?, 'pending')",
        [(i + 1, p.key) for i, p in enumerate(people)],
    )
    db.executemany(
        "INSERT INTO recipient_data (id, email, line, fields) VALUES (?, ?, ?, ?)",
        [(i + 1, p.email, p.line, json.dumps(p.fields)) for i, p in enumerate(people)],
    )
    db.execute("COMMIT")


def bare(folder: Path, people: list[Subscriber]) -> tuple[float, float]:
    """SQLite alone, the plainest way, on the ledger's tables and indexes: a claim that
    marks the next batch of pending rows (found by id from the last one claimed, as the
    ledger has no index of them) with one UPDATE ... RETURNING, reads their address and
    fields with one SELECT and commits with an fsync (synchronous=FULL); a settlement of one
    UPDATE a row by the (issue, key) key, committed without (NORMAL), as the ledger's are.
    No batches table, no counts, no Python objects beyond the parameters and the parsed
    fields."""
    db = sqlite3.connect(folder / "bare.sqlite3", isolation_level=None)
    _tables(db, people)
    claiming = settling = 0.0
    batch = after = 0
    while True:
        batch += 1
        start = time.perf_counter()
        db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        marked = db.execute(
            "UPDATE recipients SET status = 'inflight', batch = ?, updated_at = 'now' WHERE"
            " id IN (SELECT id FROM recipients NOT INDEXED WHERE id > ? AND issue = 'issue'"
            " AND status = 'pending' ORDER BY id LIMIT ?) RETURNING id, key",
            (batch, after, BATCH),
        ).fetchall()
        data = db.execute(
            "SELECT id, email, fields FROM recipient_data WHERE id IN"
            " (SELECT value FROM json_each(?))",
            (json.dumps([i for i, _ in marked]),),
        ).fetchall()
        db.execute("COMMIT")
        keys = dict(marked)
        held = [(keys[i], email, orjson.loads(fields)) for i, email, fields in data]
        claiming += time.perf_counter() - start
        if not held:
            break
        after = max(keys)
        start = time.perf_counter()
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "UPDATE recipients SET status = 'sent', provider_id = ?, updated_at = 'now'"
            " WHERE issue = 'issue' AND key = ? AND status = 'inflight'",
            [(f"id-{key}", key) for key, _, _ in held],
        )
        db.execute("COMMIT")
        settling += time.perf_counter() - start
    db.close()
    return claiming / len(people) * 1e6, settling / len(people) * 1e6


def before(folder: Path, people: list[Subscriber]) -> tuple[float, float]:
    """The same, on the table before migration 9: a claim of one UPDATE ... RETURNING the
    rows with their address and fields, found through the index of pending rows; the same
    settlement."""
    db = sqlite3.connect(folder / "before.sqlite3", isolation_level=None)
    _schema_7_table(db, people)
    claiming = settling = 0.0
    batch = 0
    while True:
        batch += 1
        start = time.perf_counter()
        db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        rows = db.execute(
            "UPDATE recipients SET status = 'inflight', batch = ?, updated_at = 'now' WHERE"
            " rowid IN (SELECT rowid FROM recipients WHERE issue = 'issue' AND status ="
            " 'pending' ORDER BY rowid LIMIT ?) RETURNING key, email, fields",
            (batch, BATCH),
        ).fetchall()
        db.execute("COMMIT")
        held = [(key, email, orjson.loads(fields)) for key, email, fields in rows]
        claiming += time.perf_counter() - start
        if not held:
            break
        start = time.perf_counter()
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "UPDATE recipients SET status = 'sent', provider_id = ?, updated_at = 'now'"
            " WHERE issue = 'issue' AND key = ? AND status = 'inflight'",
            [(f"id-{key}", key) for key, _, _ in held],
        )
        db.execute("COMMIT")
        settling += time.perf_counter() - start
    db.close()
    return claiming / len(people) * 1e6, settling / len(people) * 1e6


def floor(folder: Path, count: int) -> tuple[float, float]:
    """What no ledger on this machine can beat: a table of nothing but (rowid, status,
    batch, provider id), no index, the batch a range of rowids, the same commits and
    fsyncs, a settlement of one UPDATE joined with the batch's ids (as the ledger's); no
    fields read back."""
    db = sqlite3.connect(folder / "floor.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, status TEXT, batch INT, provider_id TEXT)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO r (status) VALUES ('pending')", [()] * count)
    db.execute("COMMIT")
    claiming = settling = 0.0
    for batch in range(count // BATCH):
        low = batch * BATCH + 1
        start = time.perf_counter()
        db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        ids = db.execute(
            "UPDATE r SET status = 'inflight', batch = ? WHERE id BETWEEN ? AND ? RETURNING id",
            (batch + 1, low, low + BATCH - 1),
        ).fetchall()
        db.execute("COMMIT")
        claiming += time.perf_counter() - start
        start = time.perf_counter()
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "UPDATE r SET status = 'sent', provider_id = j.value FROM json_each(?) AS j"
            " WHERE r.id = j.key",
            (
                orjson.dumps(
                    {i: f"id-{i}" for (i,) in ids}, option=orjson.OPT_NON_STR_KEYS
                ).decode(),
            ),
        )
        db.execute("COMMIT")
        settling += time.perf_counter() - start
    db.close()
    return claiming / count * 1e6, settling / count * 1e6


def batch_record(folder: Path, people: list[Subscriber]) -> tuple[float, float]:
    """The floor for a ledger that hands back each reader's address and fields: a claim that
    writes one row of a batches table (its first and last rowid) and nothing in the rows,
    committed with an fsync, reading the rows with their data as one JSON text parsed by one
    orjson call (``pipeline.ledger.store._BATCH_OF`` itself); a settlement of one UPDATE
    joined with the rowid -> provider id object, which marks each row sent for the first
    time.  No counts, no checks of what was read, no Python objects beyond a tuple a row."""
    db = sqlite3.connect(folder / "batch_record.sqlite3", isolation_level=None)
    _tables(db, people)
    db.execute("CREATE TABLE batches (id INTEGER PRIMARY KEY, first INT, last INT, settled INT)")
    claiming = settling = 0.0
    after = 0
    while True:
        start = time.perf_counter()
        db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        # The ledger's own read of a claim's rows, the same statement.
        count, _, text = db.execute(
            _BATCH_OF.format(rows=_PENDING), (after + 1, "issue", BATCH)
        ).fetchone()
        if not count:
            db.execute("COMMIT")
            claiming += time.perf_counter() - start
            break
        flat = orjson.loads(text)
        heads = flat[0::2]
        batch = db.execute(
            "INSERT INTO batches (first, last, settled) VALUES (?, ?, 0)",
            (heads[0][0], heads[-1][0]),
        ).lastrowid
        db.execute("COMMIT")
        held = [
            (rowid, key, email, fields)
            for (rowid, key, email), fields in zip(heads, flat[1::2], strict=True)
        ]
        claiming += time.perf_counter() - start
        after = heads[-1][0]
        start = time.perf_counter()
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "UPDATE recipients NOT INDEXED SET status = 'sent', batch = ?, provider_id ="
            " j.value, updated_at = 'now' FROM json_each(?) AS j WHERE recipients.rowid ="
            " CAST(j.key AS INTEGER) AND recipients.status = 'pending'",
            (
                batch,
                orjson.dumps(
                    {rowid: f"id-{key}" for rowid, key, _, _ in held},
                    option=orjson.OPT_NON_STR_KEYS,
                ).decode(),
            ),
        )
        db.execute("UPDATE batches SET settled = 1 WHERE id = ?", (batch,))
        db.execute("COMMIT")
        settling += time.perf_counter() - start
    db.close()
    return claiming / len(people) * 1e6, settling / len(people) * 1e6


def disk_sync(folder: Path, times: int = 200) -> float:
    """This disk's part, in us: the median time of an fdatasync after writing 40 KB (about
    what a claim's commit writes to the WAL, with the settle before it) over a file of the
    same size.  A claim's commit waits for one, whatever the code: at 250 a batch each 100
    us of it is 0.4 us a recipient, so the ledger's figure moves with the disk's."""
    path = folder / "sync.test"
    chunk = b"x" * 40_960
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        os.pwrite(fd, chunk * 50, 0)  # written out first: overwrites, as a reused WAL's are
        os.fsync(fd)
        timings = []
        for i in range(times):
            os.pwrite(fd, chunk, (i % 50) * len(chunk))
            start = time.perf_counter()
            os.fdatasync(fd)
            timings.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    return statistics.median(timings) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    small = parser.parse_args().small
    count, rounds = (2_000, 2) if small else (50_000, 5)
    people = audience(count)
    sides: dict[str, list[tuple[float, float]]] = {name: [] for name in SIDES}
    for round_number in range(rounds):
        order = list(SIDES) if round_number % 2 == 0 else list(reversed(SIDES))
        with tempfile.TemporaryDirectory() as temp:
            for name in order:  # alternated: a machine getting busier favours no side
                folder = Path(temp)
                if name == "ours":
                    sides[name].append(ours(folder, people))
                elif name == "floor":
                    sides[name].append(floor(folder, count))
                elif name == "batch_record":
                    sides[name].append(batch_record(folder, people))
                elif name == "bare":
                    sides[name].append(bare(folder, people))
                else:
                    sides[name].append(before(folder, people))
    with tempfile.TemporaryDirectory() as temp:
        sync_us = disk_sync(Path(temp), 40 if small else 200)
    medians = {
        name: tuple(statistics.median(r[i] for r in runs) for i in (0, 1))
        for name, runs in sides.items()
    }
    rows = [(f"us per recipient, {count:,} in batches of {BATCH}", "claim", "settle", "together")]
    for name, label in SIDES.items():
        claim, settle = medians[name]
        spread = [c + s for c, s in sides[name]]
        rows.append(
            (
                label,
                f"{claim:.1f}",
                f"{settle:.1f}",
                f"{claim + settle:.1f} ({min(spread):.1f}-{max(spread):.1f})",
            )
        )
    print(f"machine: {machine()}; median (min-max) of {rounds} rounds")
    print(table(rows))
    claim, settle = medians["ours"]
    together = {name: sum(pair) for name, pair in medians.items()}
    print(
        f"claim + settle: {claim + settle:.1f} us a recipient (target < 5); "
        f"{together['ours'] / together['bare']:.2f}x SQLite alone; the floor here "
        f"{together['floor']:.1f}, with the data read back {together['batch_record']:.1f}"
    )
    print(
        f"this disk: an fdatasync of 40 KB takes {sync_us:.0f} us (median), which a claim's"
        f" commit waits for: {sync_us / BATCH:.2f} us of each recipient's claim"
    )
    emit(
        {
            "claim_us": claim,
            "settle_us": settle,
            "ours_us": together["ours"],
            "bare_us": together["bare"],
            "before_us": together["before"],
            "floor_us": together["floor"],
            "floor_data_us": together["batch_record"],
            "ratio": together["ours"] / together["bare"],
            "fdatasync_us": sync_us,
        }
    )


SIDES = {
    "ours": "Ledger (pipeline/ledger/store.py)",
    "bare": "SQLite alone, the same writes, the ledger's tables and indexes",
    "before": "SQLite alone, the same writes, the table before migration 9",
    "floor": "floor: (rowid, status, batch, provider id) only, no index",
    "batch_record": "floor with the data read back: a claim of one batch row, no row marked",
}


if __name__ == "__main__":
    main()
