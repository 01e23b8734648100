"""Migration 7: the ledger's counts per status are kept, not counted, and claim and settle
use partial indexes.  The kept counts must equal the rows' own after every kind of change,
and a ledger written by the schema before it must carry on where it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipeline.audience.subscribers import Subscriber
from pipeline.config import load_settings
from pipeline.events.base import EventType, ProviderEvent
from pipeline.ledger.events import find_issue
from pipeline.ledger.migrations import MIGRATIONS
from pipeline.ledger.settle import settle_asked
from pipeline.ledger.store import Counts, Ledger, RecipientStatus, Settlement
from pipeline.report.outcomes import issue_outcomes
from pipeline.sending import LEDGER_NAME

from .conftest import write_project


def people(count: int, start: int = 0) -> list[Subscriber]:
    return [
        Subscriber(i + 2, f"p{i}@example.org", f"p{i}@example.org", {"email": f"p{i}@example.org"})
        for i in range(start, start + count)
    ]


def counted_from_rows(ledger: Ledger, slug: str) -> Counts:
    """What ``counts`` answered before migration 7: the rows, counted."""
    rows = dict(
        ledger.db.execute(
            "SELECT status, count(*) FROM recipients WHERE issue = ? GROUP BY status", (slug,)
        ).fetchall()
    )
    sent, failed, unknown = (rows.get(s, 0) for s in ("sent", "failed", "unknown"))
    pending = rows.get("pending", 0) + rows.get("inflight", 0)
    return Counts(sent + failed + unknown + pending, sent, failed, unknown, pending)


def test_the_kept_counts_follow_every_change_of_status(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    steps = 0

    def same() -> None:
        nonlocal steps
        steps += 1
        for slug in ("one", "two"):
            assert ledger.counts(slug) == counted_from_rows(ledger, slug), (steps, slug)

    for slug in ("one", "two"):
        ledger.start_issue(slug, "hash", "postmark")
        ledger.add_recipients(slug, people(30))
    same()
    ledger.add_recipients("one", people(30))  # again: nothing new
    same()
    batch, rows = ledger.claim("one", 10, provider="postmark")
    same()
    statuses = [RecipientStatus.SENT, RecipientStatus.FAILED, RecipientStatus.UNKNOWN]
    statuses += [RecipientStatus.PENDING]
    ledger.settle("one", batch, [Settlement(r.key, statuses[i % 4]) for i, r in enumerate(rows)])
    same()
    # Settled twice, or for a row the batch does not hold: nothing moves.
    ledger.settle("one", batch, [Settlement(rows[0].key, RecipientStatus.FAILED)])
    ledger.settle("one", batch, [Settlement("p29@example.org", RecipientStatus.SENT)])
    same()
    # A batch claimed by another connection (a run that died) is settled by key.
    other = Ledger(tmp_path / "ledger.sqlite3")
    held, rows = other.claim("one", 5, provider="postmark")
    other.close()
    ledger.settle("one", held, [Settlement(r.key, RecipientStatus.SENT, "m") for r in rows[:3]])
    same()
    assert ledger.recover_inflight() == {"one": 2}
    same()
    abandoned, rows = ledger.claim("one", 4, provider="postmark")
    assert ledger.abandon_batch("one", abandoned, "stopped") == 4
    same()
    replay, rows = ledger.claim_unknown_batch("one", "postmark")
    assert rows
    same()
    ledger.settle("one", replay, [Settlement(r.key, RecipientStatus.SENT, "m") for r in rows])
    same()
    unknown, rows = ledger.claim("one", 3, RecipientStatus.UNKNOWN, "postmark")
    same()
    ledger.settle("one", unknown, [Settlement(r.key, RecipientStatus.UNKNOWN) for r in rows])
    same()
    keys = [k for (k,) in ledger.db.execute("SELECT key FROM recipients WHERE status = 'unknown'")]
    settle_asked(ledger, "one", {keys[0]: "m"}, keys[1:2], "postmark")
    same()
    assert ledger.requeue_unknown("one") > 0
    same()
    assert ledger.withdraw("two", ["p0@example.org", "p1@example.org"]) == 2
    same()
    change = ledger.refresh_audience(
        "two", people(25, start=1) + people(3, start=40), ["p26@example.org"], include_new=True
    )
    # p1 withdrawn before and back (returned, not added); p26-p29 withdrawn now; p40-p42
    # added.
    assert (change.withdrawn, change.returned, change.added) == (4, 1, 3)
    same()
    # A hand edit is counted right from the next send's start (recover_inflight).
    ledger.db.execute("UPDATE recipients SET status = 'unknown' WHERE issue = 'two'")
    assert ledger.counts("two") != counted_from_rows(ledger, "two")
    ledger.recover_inflight()
    same()
    ledger.close()


def test_a_ledger_from_the_schema_before_carries_on(tmp_path: Path) -> None:
    """A ledger written by schema 6 with a send half done: counts, the order of claiming, the
    batches already settled and the unknown rows to replay are all as they were."""
    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:6]:
        for statement in migration:
            db.execute(statement)
    db.execute("PRAGMA user_version = 6")
    db.execute(
        "INSERT INTO issues (slug, content_hash, provider, status, started_at)"
        " VALUES ('old', 'hash', 'postmark', 'sending', '2026-11-01T10:00:00+00:00')"
    )
    db.executemany(
        "INSERT INTO batches (id, issue, size, started_at, settled_at, provider)"
        " VALUES (?, 'old', 4, '2026-11-01T10:00:00+00:00', ?, 'postmark')",
        [(1, "2026-11-01T10:00:01+00:00"), (2, None)],
    )
    states = ["sent", "failed", "sent", "sent", "unknown", "unknown", "inflight", "withdrawn"]
    states += ["pending"] * 6
    db.executemany(
        "INSERT INTO recipients (issue, key, email, line, fields, status, batch, provider_id)"
        " VALUES ('old', ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                f"p{i}@example.org",
                f"p{i}@example.org",
                i + 2,
                '{"first_name": "P"}',
                state,
                1 if i < 4 else 2 if i < 7 else None,
                f"id-{i}" if state == "sent" else None,
            )
            for i, state in enumerate(states)
        ],
    )
    db.close()

    ledger = Ledger(path)
    assert ledger.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert ledger.counts("old") == Counts(13, 3, 1, 2, 7)  # in flight counts as pending
    assert ledger.counts("old") == counted_from_rows(ledger, "old")
    settled = dict(ledger.db.execute("SELECT id, settled FROM batches").fetchall())
    assert settled == {1: 4, 2: 0}
    assert ledger.recover_inflight() == {"old": 1}
    assert ledger.counts("old") == Counts(13, 3, 1, 3, 6)
    batch, rows = ledger.claim("old", 4, provider="postmark")
    assert [r.key for r in rows] == [f"p{i}@example.org" for i in range(8, 12)]
    assert rows[0].fields == {"first_name": "P"}
    ledger.settle("old", batch, [Settlement(r.key, RecipientStatus.SENT, "m") for r in rows])
    query = "SELECT settled, settled_at IS NOT NULL FROM batches WHERE id = ?"
    assert ledger.db.execute(query, (batch,)).fetchone() == (4, 1)
    replay, rows = ledger.claim_unknown_batch("old", "postmark")
    assert (replay, [r.key for r in rows]) != (0, [])
    assert {r.key for r in rows} == {"p4@example.org", "p5@example.org", "p6@example.org"}
    assert ledger.counts("old") == counted_from_rows(ledger, "old")
    ledger.close()


def test_a_batch_is_settled_once_every_row_it_holds_is(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.start_issue("issue", "hash", "postmark")
    ledger.add_recipients("issue", people(4))
    batch, rows = ledger.claim("issue", 4, provider="postmark")

    def settled_at() -> object:
        query = "SELECT settled_at FROM batches WHERE id = ?"
        return ledger.db.execute(query, (batch,)).fetchone()[0]

    ledger.settle("issue", batch, [Settlement(rows[0].key, RecipientStatus.SENT, "a")])
    ledger.settle("issue", batch, [Settlement(rows[0].key, RecipientStatus.SENT, "a")])  # again
    ledger.settle("issue", batch, [Settlement(r.key, RecipientStatus.PENDING) for r in rows[1:3]])
    assert settled_at() is None  # one still in flight
    ledger.settle("issue", batch, [Settlement(rows[3].key, RecipientStatus.FAILED)])
    assert settled_at() is not None
    ledger.close()


def test_a_webhook_finds_its_issue_by_provider_id_without_an_index(tmp_path: Path) -> None:
    """The provider-id index is gone (each settle wrote it): an event that names no issue
    is matched through the issues and the (issue, key) key, never by reading every row."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    for slug in ("a", "b"):
        ledger.start_issue(slug, "hash", "postmark")
        ledger.add_recipients(slug, people(3))
        batch, rows = ledger.claim(slug, 3, provider="postmark")
        ledger.settle(
            slug, batch, [Settlement(r.key, RecipientStatus.SENT, f"{slug}-{r.key}") for r in rows]
        )

    def event(message_id: str) -> ProviderEvent:
        return ProviderEvent(
            "postmark", "e1", EventType.BOUNCED, "P1@example.org", None, message_id
        )

    assert find_issue(ledger.db, event("b-p1@example.org")) == "b"
    assert find_issue(ledger.db, event("a-p1@example.org")) == "a"
    assert find_issue(ledger.db, event("a-p2@example.org")) is None  # another reader's id
    query = (
        "EXPLAIN QUERY PLAN SELECT r.issue FROM issues i CROSS JOIN recipients r"
        " ON r.issue = i.slug AND r.key = ? WHERE r.provider_id = ? LIMIT 1"
    )
    plan = " ".join(row[3] for row in ledger.db.execute(query, ("k", "m")))
    assert "SEARCH r USING INDEX sqlite_autoindex_recipients_1" in plan, plan
    ledger.close()


def test_the_report_reads_the_kept_counts_and_counts_an_older_ledgers_rows(
    tmp_path: Path,
) -> None:
    """`newsletter report` opens the ledger read-only, so a ledger from before migration 7
    is not migrated by it: its rows are counted; a newer one's kept counts are read."""
    root = write_project(tmp_path / "project")
    settings = load_settings(root / "newsletter.toml")
    path = settings.state_dir / LEDGER_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:6]:
        for statement in migration:
            db.execute(statement)
    db.execute("PRAGMA user_version = 6")
    db.execute(
        "INSERT INTO issues (slug, content_hash, provider, status, started_at)"
        " VALUES ('2025-07-21-hip-rotation', 'h', 'outbox', 'complete',"
        " '2026-11-01T10:00:00+00:00')"
    )
    db.executemany(
        "INSERT INTO recipients (issue, key, email, line, fields, status)"
        " VALUES ('2025-07-21-hip-rotation', ?, ?, 2, '{}', ?)",
        [
            (f"p{i}@example.org", f"p{i}@example.org", s)
            for i, s in enumerate(["sent", "sent", "failed"])
        ],
    )
    db.close()
    [old] = issue_outcomes(settings)
    assert (old.audience, old.sent, old.failed) == (3, 2, 1)
    Ledger(path).close()  # migrated: the counts are kept from now on
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE recipient_counts SET n = 7 WHERE status = 'sent'")  # tells them apart
    db.close()
    [new] = issue_outcomes(settings)
    assert (new.audience, new.sent, new.failed) == (8, 7, 1)
