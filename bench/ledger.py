"""9. The ledger: microseconds per recipient to claim a batch (mark it in flight, durably,
and read it back) and to settle it, amortised over batches of 250, through
``pipeline.ledger.store.Ledger``; against SQLite alone doing the same writes (one UPDATE per
claimed batch, one per settled row, the same fsyncs) in the same run.  Target: claim and
settle together under 5 us a recipient.

    .venv/bin/python bench/ledger.py             # 50,000 recipients, 5 rounds
    .venv/bin/python bench/ledger.py --small     # 2,000, 2 rounds (CI)
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

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


def bare(folder: Path, people: list[Subscriber]) -> tuple[float, float]:
    """SQLite alone: the same table, indexes and fsyncs (WAL, synchronous=FULL), the same
    row changes, no Python objects beyond the parameters."""
    db = sqlite3.connect(folder / "bare.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE recipients (issue TEXT, key TEXT, email TEXT, fields TEXT, status TEXT,"
        " batch INTEGER, provider_id TEXT, updated_at TEXT, PRIMARY KEY (issue, key))"
    )
    db.execute("CREATE INDEX by_status ON recipients (issue, status)")
    db.execute("CREATE INDEX by_batch ON recipients (batch)")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO recipients (issue, key, email, fields, status) VALUES (?, ?, ?, ?, ?)",
        [("issue", p.key, p.email, str(p.fields), "pending") for p in people],
    )
    db.execute("COMMIT")
    claiming = settling = 0.0
    batch = 0
    while True:
        batch += 1
        start = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "UPDATE recipients SET status = 'inflight', batch = ?, updated_at = 'now' WHERE"
            " rowid IN (SELECT rowid FROM recipients WHERE issue = 'issue' AND status ="
            " 'pending' ORDER BY rowid LIMIT ?)",
            (batch, BATCH),
        )
        keys = db.execute("SELECT key FROM recipients WHERE batch = ?", (batch,)).fetchall()
        db.execute("COMMIT")
        claiming += time.perf_counter() - start
        if not keys:
            break
        start = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "UPDATE recipients SET status = 'sent', provider_id = ?, updated_at = 'now'"
            " WHERE issue = 'issue' AND key = ?",
            [(f"id-{key}", key) for (key,) in keys],
        )
        db.execute("COMMIT")
        settling += time.perf_counter() - start
    db.close()
    return claiming / len(people) * 1e6, settling / len(people) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    small = parser.parse_args().small
    count, rounds = (2_000, 2) if small else (50_000, 5)
    people = audience(count)
    mine, floor = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as temp:
            mine.append(ours(Path(temp), people))
            floor.append(bare(Path(temp), people))
    claim, settle = (statistics.median(r[i] for r in mine) for i in (0, 1))
    bare_claim, bare_settle = (statistics.median(r[i] for r in floor) for i in (0, 1))
    rows = [
        (f"us per recipient, {count:,} in batches of {BATCH}", "claim", "settle", "together"),
        (
            "Ledger (pipeline/ledger/store.py)",
            f"{claim:.1f}",
            f"{settle:.1f}",
            f"{claim + settle:.1f}",
        ),
        (
            "SQLite alone, same writes",
            f"{bare_claim:.1f}",
            f"{bare_settle:.1f}",
            f"{bare_claim + bare_settle:.1f}",
        ),
    ]
    print(f"machine: {machine()}; median of {rounds} rounds")
    print(table(rows))
    print(f"claim + settle: {claim + settle:.1f} us a recipient (target < 5)")
    emit(
        {
            "claim_us": claim,
            "settle_us": settle,
            "ours_us": claim + settle,
            "bare_us": bare_claim + bare_settle,
            "ratio": (claim + settle) / (bare_claim + bare_settle),
        }
    )


if __name__ == "__main__":
    main()
