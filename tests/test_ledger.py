"""The ledger: migrations, claim/settle, recovery."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipeline.audience.subscribers import Subscriber
from pipeline.ledger.migrations import MIGRATIONS
from pipeline.ledger.store import Ledger, RecipientStatus, Settlement


def people(count: int) -> list[Subscriber]:
    return [
        Subscriber(i + 2, f"p{i}@example.org", f"p{i}@example.org", {"email": f"p{i}@example.org"})
        for i in range(count)
    ]


def test_migrations_apply_in_order_and_only_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"recipients_by_status", "recipients_by_batch"} <= indexes
    db.close()
    Ledger(path).close()  # opening again applies nothing and fails on nothing


def test_a_version_1_ledger_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.close()
    Ledger(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    columns = [row[1] for row in db.execute("PRAGMA table_info(batches)")]
    assert "provider" in columns  # migration 3
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"consent_history", "list_changes", "mail_once"} <= tables


def test_claim_settle_and_recover(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.start_issue("issue", "hash", "outbox")
    assert ledger.add_recipients("issue", people(5)) == 5
    assert ledger.add_recipients("issue", people(5)) == 0  # idempotent
    batch, rows = ledger.claim("issue", 3)
    assert [r.email for r in rows] == ["p0@example.org", "p1@example.org", "p2@example.org"]
    assert ledger.counts("issue").pending == 5  # in flight counts as pending
    ledger.settle(
        "issue",
        batch,
        [
            Settlement("p0@example.org", RecipientStatus.SENT, "id-0"),
            Settlement("p1@example.org", RecipientStatus.FAILED, reason="inactive"),
        ],
    )
    # p2 is still in flight: a run that dies now leaves it in doubt.
    assert ledger.recover_inflight() == {"issue": 1}
    counts = ledger.counts("issue")
    assert (counts.sent, counts.failed, counts.unknown, counts.pending) == (1, 1, 1, 2)
    assert counts.audience == 5
    # A settlement for a row no longer in flight in that batch changes nothing.
    ledger.settle("issue", batch, [Settlement("p2@example.org", RecipientStatus.SENT)])
    assert ledger.counts("issue").unknown == 1
    ledger.close()
