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
    # Replays find unknown rows by a partial index; the full status, batch and provider-id
    # indexes a claim or settle rewrote are gone (7), and so is the index of pending rows,
    # which a claim rewrote for every row it marked (9).
    assert "recipients_unknown" in indexes
    assert not {"recipients_by_status", "recipients_by_batch", "recipients_pending"} & indexes
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


def test_a_claim_is_one_batch_in_list_order_and_keeps_its_fsync(tmp_path: Path) -> None:
    """The claim marks a batch in flight with one statement and records its size; the
    settlement commits without its own fsync, and the next claim has its fsync again (the
    one that stops a second send after a power cut)."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.start_issue("issue", "hash", "postmark")
    readers = people(7)
    readers[3] = Subscriber(5, "p3@example.org", "p3@example.org", {"first_name": "Zoë", "x": "é"})
    ledger.add_recipients("issue", readers)
    first, rows = ledger.claim("issue", 4, provider="postmark")
    assert [r.key for r in rows] == [f"p{i}@example.org" for i in range(4)]
    assert rows[3].fields == {"first_name": "Zoë", "x": "é"}
    second, rest = ledger.claim("issue", 4, provider="postmark")
    assert [r.key for r in rest] == [f"p{i}@example.org" for i in range(4, 7)]
    sizes = dict(ledger.db.execute("SELECT id, size FROM batches").fetchall())
    assert sizes == {first: 4, second: 3}
    assert ledger.claim("issue", 4) == (0, [])
    assert ledger.db.execute("SELECT count(*) FROM batches").fetchone()[0] == 2  # none empty
    ledger.settle("issue", first, [Settlement(r.key, RecipientStatus.SENT, "m") for r in rows])
    assert ledger.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: no fsync
    ledger.claim("issue", 4)
    assert ledger.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL for a claim
    assert ledger.counts("issue").sent == 4
    stored = ledger.db.execute(
        "SELECT d.fields FROM recipients r JOIN recipient_data d ON d.id = r.id"
        " WHERE r.key = 'p3@example.org'"
    )
    assert stored.fetchone()[0] == '{"first_name": "Zoë", "x": "é"}'  # json.dumps' own form
    ledger.close()
