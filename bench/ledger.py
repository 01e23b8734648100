"""9. The ledger: microseconds per recipient to claim a batch (mark it in flight, durably,
and read it back) and to settle it, amortised over batches of 250, through
``pipeline.ledger.store.Ledger``; in the same run, against SQLite alone doing the same
writes the plainest way (one UPDATE ... RETURNING per claimed batch committed with an
fsync, one UPDATE per settled row by its key committed without), on the same table with the
ledger's indexes (the baseline) and with the indexes it had before migration 7 (what the
schema change saved); and the floor: the same commits on a table of nothing but
(rowid, status, batch, provider id).  Target: claim and settle together under 5 us a
recipient.

    .venv/bin/python bench/ledger.py             # 50,000 recipients, 5 rounds
    .venv/bin/python bench/ledger.py --small     # 2,000, 2 rounds (CI)
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from _common import emit, machine, table

from pipeline.audience.subscribers import Subscriber
from pipeline.ledger.store import Ledger, RecipientStatus, Settlement

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


def _bare_table(db: sqlite3.Connection, people: list[Subscriber], indexes: list[str]) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE recipients (issue TEXT, key TEXT, email TEXT, line INTEGER, fields TEXT,"
        " status TEXT, batch INTEGER, provider_id TEXT, reason TEXT, updated_at TEXT,"
        " PRIMARY KEY (issue, key))"
    )
    for index in indexes:
        db.execute(index)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO recipients (issue, key, email, line, fields, status)"
        " VALUES (?, ?, ?, ?, ?, 'pending')",
        [("issue", p.key, p.email, p.line, json.dumps(p.fields)) for p in people],
    )
    db.execute("COMMIT")


def bare(folder: Path, people: list[Subscriber], indexes: list[str]) -> tuple[float, float]:
    """SQLite alone, the plainest way: the ledger's table and columns with ``indexes``, a
    claim that marks a batch with one UPDATE ... RETURNING and commits with an fsync
    (synchronous=FULL), a settlement of one UPDATE a row by the (issue, key) key, committed
    without (NORMAL), as the ledger's are.  No batches table, no counts, no Python objects
    beyond the parameters and the parsed fields."""
    db = sqlite3.connect(folder / f"bare-{len(indexes)}.sqlite3", isolation_level=None)
    _bare_table(db, people, indexes)
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


# The ledger's indexes today (migration 7), and before it (migrations 1, 2 and 6).
NOW = ["CREATE INDEX pending ON recipients (issue) WHERE status = 'pending'"]
BEFORE = [
    "CREATE INDEX by_status ON recipients (issue, status)",
    "CREATE INDEX by_batch ON recipients (batch)",
    "CREATE INDEX by_provider_id ON recipients (provider_id)",
]


def floor(folder: Path, count: int) -> tuple[float, float]:
    """What no ledger on this machine can beat: a table of nothing but (rowid, status,
    batch, provider id), no index, the batch a range of rowids, the same commits and
    fsyncs; no fields read back."""
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
        db.executemany(
            "UPDATE r SET status = 'sent', provider_id = ? WHERE id = ?",
            [(f"id-{i}", i) for (i,) in ids],
        )
        db.execute("COMMIT")
        settling += time.perf_counter() - start
    db.close()
    return claiming / count * 1e6, settling / count * 1e6


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
                else:
                    sides[name].append(bare(folder, people, NOW if name == "bare" else BEFORE))
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
        f"{together['floor']:.1f}"
    )
    emit(
        {
            "claim_us": claim,
            "settle_us": settle,
            "ours_us": together["ours"],
            "bare_us": together["bare"],
            "before_us": together["before"],
            "floor_us": together["floor"],
            "ratio": together["ours"] / together["bare"],
        }
    )


SIDES = {
    "ours": "Ledger (pipeline/ledger/store.py)",
    "bare": "SQLite alone, the same writes, the ledger's indexes",
    "before": "SQLite alone, the same writes, the indexes before migration 7",
    "floor": "floor: (rowid, status, batch, provider id) only, no index",
}


if __name__ == "__main__":
    main()
