"""Migration 9: a recipient's address, line and fields live in recipient_data, apart from the
columns a claim and a settlement change.  A ledger written by schema 7 or 8 in the middle of
a send (rows pending, in flight, sent, unknown) must carry on where it was, nobody mailed
twice; the migration is one transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.audience.subscribers import Subscriber
from pipeline.config import load_settings
from pipeline.ledger import store
from pipeline.ledger.migrations import MIGRATIONS
from pipeline.ledger.settle import settle_asked, unknown_rows
from pipeline.ledger.store import Counts, Ledger, LedgerError, RecipientStatus, Settlement
from pipeline.sending import LEDGER_NAME

from .conftest import SAMPLE_ISSUE
from .test_ledger_counts import counted_from_rows
from .test_send import newsletter, outbox_files

# The schema just before migration 9 (8: an index of queued list changes), and 7, the one
# before that, which a ledger may also come from.
BEFORE = next(i for i, m in enumerate(MIGRATIONS) if any("recipient_data" in s for s in m))
assert BEFORE == 8
STATES = ["sent", "failed", "sent", "sent", "unknown", "unknown", "inflight", "inflight"]
STATES += ["withdrawn"] + ["pending"] * 6


def mid_send(path: Path, version: int = BEFORE) -> None:
    """A ledger as schema ``version`` left it when a run died: batch 1 settled, batch 2
    (Resend's) answered for one row and in doubt for two, batch 3 in flight, the rest
    pending."""
    db = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:version]:
        for statement in migration:
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {version}")
    db.execute(
        "INSERT INTO issues (slug, content_hash, provider, status, started_at)"
        " VALUES ('old', 'hash', 'resend', 'sending', '2026-11-01T10:00:00+00:00')"
    )
    db.executemany(
        "INSERT INTO batches (id, issue, size, started_at, settled_at, provider, settled)"
        " VALUES (?, 'old', 4, '2026-11-01T10:00:00+00:00', ?, 'resend', ?)",
        [(1, "2026-11-01T10:00:01+00:00", 4), (2, None, 1), (3, None, 0)],
    )
    # Rowids with gaps (another issue's rows leave them): ids and order must survive.
    db.executemany(
        "INSERT INTO recipients (rowid, issue, key, email, line, fields, status, batch,"
        " provider_id, reason) VALUES (?, 'old', ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                10 + 2 * i,
                f"p{i}@example.org",
                f"P{i}@Example.org",
                i + 2,
                json.dumps({"first_name": f"Zoë {i}"}, ensure_ascii=False),
                state,
                1 if i < 4 else 2 if i < 7 else 3 if i < 8 else None,
                f"id-{i}" if state == "sent" else None,
                "inactive" if state == "failed" else None,
            )
            for i, state in enumerate(STATES)
        ],
    )
    db.execute(
        "INSERT INTO recipient_counts (issue, status, n) SELECT issue, CASE status WHEN"
        " 'inflight' THEN 'pending' ELSE status END, count(*) FROM recipients GROUP BY 1, 2"
    )
    db.close()


@pytest.mark.parametrize("version", [7, BEFORE])
def test_a_ledger_mid_send_carries_on_after_migrating(tmp_path: Path, version: int) -> None:
    path = tmp_path / "ledger.sqlite3"
    mid_send(path, version)
    ledger = Ledger(path)
    db = ledger.db
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"recipients", "recipient_data"} <= tables and "recipients_old" not in tables
    columns = [row[1] for row in db.execute("PRAGMA table_info(recipients)")]
    assert not {"email", "line", "fields"} & set(columns)
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    # Every row kept its rowid, status, batch and provider id; its data is beside it.
    ids = [row[0] for row in db.execute("SELECT id FROM recipients ORDER BY id")]
    assert ids == [10 + 2 * i for i in range(len(STATES))]
    assert [row["status"] for row in ledger.history("old")] == STATES
    assert ledger.history("old")[0] == {
        "key": "p0@example.org",
        "email": "P0@Example.org",
        "status": "sent",
        "provider_id": "id-0",
        "reason": None,
    }
    assert ledger.recipients("old", RecipientStatus.FAILED) == [("P1@Example.org", "inactive")]
    assert ledger.counts("old") == Counts(14, 3, 1, 2, 8)  # in flight counts as pending
    assert ledger.counts("old") == counted_from_rows(ledger, "old")

    # The next run: what was in flight is in doubt, Resend's batch goes again as it was.
    assert ledger.recover_inflight() == {"old": 2}
    assert ledger.counts("old") == Counts(14, 3, 1, 4, 6)
    batch, rows = ledger.claim_unknown_batch("old", "resend")
    assert [r.key for r in rows] == ["p4@example.org", "p5@example.org", "p6@example.org"]
    assert rows[0] == ("p4@example.org", "P4@Example.org", {"first_name": "Zoë 4"})
    ledger.settle("old", batch, [Settlement(r.key, RecipientStatus.SENT, "again") for r in rows])
    # Then the pending rows, in list order, each once.
    claimed: list[str] = []
    while True:
        batch, rows = ledger.claim("old", 4, provider="resend")
        if not rows:
            break
        claimed += [r.key for r in rows]
        assert all(r.fields == {"first_name": f"Zoë {r.key[1:-12]}"} for r in rows)
        ledger.settle("old", batch, [Settlement(r.key, RecipientStatus.SENT, r.key) for r in rows])
    assert claimed == [f"p{i}@example.org" for i in range(9, 15)]
    # Batch 3's row, asked about (the way Postmark's are), was not there: sent again once.
    [left] = unknown_rows(ledger, "old", "resend")
    assert (left.key, left.email, left.fields) == (
        "p7@example.org",
        "P7@Example.org",
        {"first_name": "Zoë 7"},
    )
    settle_asked(ledger, "old", {}, [left.key], "resend")
    batch, rows = ledger.claim("old", 4, provider="resend")
    assert [r.key for r in rows] == ["p7@example.org"]
    ledger.settle("old", batch, [Settlement(rows[0].key, RecipientStatus.SENT, "p7")])
    assert ledger.claim("old", 4) == (0, [])
    assert ledger.counts("old") == Counts(14, 13, 1, 0, 0)
    assert ledger.counts("old") == counted_from_rows(ledger, "old")
    ledger.close()


def test_migration_9_is_one_transaction(tmp_path: Path) -> None:
    """A migration that fails half way (here: a table in the way of the one it makes)
    leaves the ledger exactly as it was, then applies once the way is clear."""
    path = tmp_path / "ledger.sqlite3"
    mid_send(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE recipient_data (x)")
    db.close()
    with pytest.raises(LedgerError, match="recipient_data already exists"):
        Ledger(path)
    db = sqlite3.connect(path, isolation_level=None)
    assert db.execute("PRAGMA user_version").fetchone()[0] == BEFORE
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "recipients_old" not in tables
    assert db.execute("SELECT count(*), count(fields) FROM recipients").fetchone() == (15, 15)
    db.execute("DROP TABLE recipient_data")
    db.close()
    ledger = Ledger(path)
    assert ledger.counts("old") == counted_from_rows(ledger, "old")
    assert len(ledger.history("old")) == 15
    ledger.close()


def _back_to(path: Path, version: int) -> None:
    """Rewrite a ledger made by this program as schema ``version`` (7 or 8) kept it: one wide
    recipients table (migration 1's, with migration 6's columns and migration 7's indexes)."""
    [create] = [s for s in MIGRATIONS[0] if "CREATE TABLE recipients" in s]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.execute("ALTER TABLE recipients RENAME TO r8")
    db.execute("ALTER TABLE recipient_data RENAME TO d8")
    db.execute(create)
    db.execute("ALTER TABLE recipients ADD COLUMN delivery TEXT")
    db.execute("ALTER TABLE recipients ADD COLUMN delivery_at TEXT")
    db.execute(
        "INSERT INTO recipients (rowid, issue, key, email, line, fields, status, batch,"
        " provider_id, reason, updated_at, delivery, delivery_at) SELECT r.id, r.issue, r.key,"
        " d.email, d.line, d.fields, r.status, r.batch, r.provider_id, r.reason, r.updated_at,"
        " r.delivery, r.delivery_at FROM r8 r JOIN d8 d ON d.id = r.id ORDER BY r.id"
    )
    db.execute("DROP TABLE d8")
    db.execute("DROP TABLE r8")
    db.execute("CREATE INDEX recipients_pending ON recipients (issue) WHERE status = 'pending'")
    db.execute(
        "CREATE INDEX recipients_unknown ON recipients (issue, batch) WHERE status = 'unknown'"
    )
    if version < 8:
        db.execute("DROP INDEX list_changes_queued_by_key")
    db.execute(f"PRAGMA user_version = {version}")
    db.execute("COMMIT")
    db.close()


@pytest.mark.parametrize("version", [7, BEFORE])
def test_a_send_cut_short_under_an_older_schema_is_finished_after_migrating(
    make_project: Callable[..., Path], version: int
) -> None:
    """The whole command: a send that died under schema 7 or 8 (two rows pending, one in
    flight whose message was written, one in flight whose message was not) is finished by
    the next `newsletter send`, which migrates first: every reader has exactly one message."""
    root = make_project()
    settings = load_settings(root / "newsletter.toml")
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
    folder = root / "outbox" / "2025-07-21-hip-rotation"
    everyone = outbox_files(root)
    assert len(everyone) == 9
    path = settings.state_dir / LEDGER_NAME
    _back_to(path, version)
    db = sqlite3.connect(path, isolation_level=None)
    keys = [row[0] for row in db.execute("SELECT key FROM recipients ORDER BY rowid")]
    states = {keys[-1]: "pending", keys[-2]: "pending", keys[-3]: "inflight", keys[-4]: "inflight"}
    for key, state in states.items():
        db.execute("UPDATE recipients SET status = ? WHERE key = ?", (state, key))
    db.execute("UPDATE issues SET status = 'sending'")
    db.execute("DELETE FROM recipient_counts")
    db.execute(
        "INSERT INTO recipient_counts (issue, status, n) SELECT issue, CASE status WHEN"
        " 'inflight' THEN 'pending' ELSE status END, count(*) FROM recipients GROUP BY 1, 2"
    )
    db.close()
    for key in (keys[-1], keys[-2], keys[-4]):  # never written; keys[-3]'s was
        (folder / f"{key}.eml").unlink()
    (root / "newsletters" / ".sent" / "2025-07-21-hip-rotation.json").unlink()

    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0, out
    assert "audience 9: sent 9, failed 0, unknown 0, pending 0" in out
    assert outbox_files(root) == everyone
    ledger = Ledger(path)
    assert ledger.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert {row["status"] for row in ledger.history("2025-07-21-hip-rotation")} == {"sent"}
    ledger.close()


def test_a_claimed_row_without_its_data_stops_the_claim(tmp_path: Path) -> None:
    """A row whose recipient_data is gone (a hand edit, damage) is never claimed without its
    address and fields, nor silently left out: the claim fails, nothing is marked."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.start_issue("issue", "hash", "postmark")
    ledger.add_recipients(
        "issue", [Subscriber(i + 2, f"p{i}@example.org", f"p{i}@example.org", {}) for i in range(3)]
    )
    ledger.db.execute("DELETE FROM recipient_data WHERE id = 2")
    with pytest.raises(sqlite3.DatabaseError, match="damaged"):
        ledger.claim("issue", 3)
    assert ledger.counts("issue") == counted_from_rows(ledger, "issue")
    assert {row["status"] for row in ledger.history("issue")} == {"pending"}
    ledger.close()


@pytest.mark.parametrize("fields", ["not json", "[1, 2]", '"text"', "{", "{}, {}"])
def test_a_claimed_row_whose_fields_are_not_a_json_object_stops_the_claim(
    tmp_path: Path, fields: str
) -> None:
    """A claim reads its batch as one JSON text that SQLite joins from each row's fields: a
    row whose fields were edited into something else (not JSON, not an object, or text that
    would pass for two readers' data) stops the claim as damage; nothing is marked, and no
    other reader's data is taken for it."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.start_issue("issue", "hash", "postmark")
    ledger.add_recipients(
        "issue",
        [
            Subscriber(i + 2, f"p{i}@example.org", f"p{i}@example.org", {"n": str(i)})
            for i in range(3)
        ],
    )
    ledger.db.execute("UPDATE recipient_data SET fields = ? WHERE id = 2", (fields,))
    with pytest.raises(sqlite3.DatabaseError, match="damaged"):
        ledger.claim("issue", 3)
    assert ledger.counts("issue") == counted_from_rows(ledger, "issue")
    assert {row["status"] for row in ledger.history("issue")} == {"pending"}
    ledger.close()


def test_a_claim_hands_back_each_row_with_its_own_data_in_list_order(tmp_path: Path) -> None:
    """The batch read as one text keeps each reader's address and fields with their key,
    awkward values (quotes, commas, brackets, non-ASCII, a NUL) included, in list order."""
    awkward = ['a "quoted", value', "[1, 2]", "{not: json}", "ümlaut ☃", "nul\x00inside", ""]
    people = [
        Subscriber(
            i + 2, f"P{i}@example.org", f"p{i}@example.org", {"v": awkward[i % 6], "i": str(i)}
        )
        for i in range(20)
    ]
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.start_issue("issue", "hash", "postmark")
    ledger.add_recipients("issue", people)
    _, first = ledger.claim("issue", 7)
    _, rest = ledger.claim("issue", 50)
    assert [(r.key, r.email, r.fields) for r in first + rest] == [
        (p.key, p.email, p.fields) for p in people
    ]
    ledger.close()


def test_a_batch_read_out_of_order_is_put_in_rowid_order_with_each_row_its_own_data(
    tmp_path: Path,
) -> None:
    """group_concat keeps the order its rows come in, which SQLite does not promise: rows
    that come out of order are sorted by rowid, each keeping its own key, address and
    fields (the columns are moved together)."""
    people = [
        Subscriber(i + 2, f"P{i}@example.org", f"p{i}@example.org", {"i": str(i)}) for i in range(9)
    ]
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.start_issue("issue", "hash", "postmark")
    ledger.add_recipients("issue", people)
    batch = store._batch_of(ledger.db, "SELECT id, key FROM recipients ORDER BY id DESC", ())
    assert batch.ids == sorted(batch.ids)
    assert list(zip(batch.keys, batch.emails, batch.fields, strict=True)) == [
        (p.key, p.email, p.fields) for p in people
    ]
    ledger.close()


def test_the_audience_keeps_rows_already_recorded_and_the_first_of_a_key(tmp_path: Path) -> None:
    """Recording the audience again (a load cut short, continued) adds only the new rows,
    each with its data under its own id; a key twice in one load is recorded once."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.start_issue("issue", "hash", "postmark")

    def reader(i: int, name: str) -> Subscriber:
        return Subscriber(i + 2, f"P{i}@example.org", f"p{i}@example.org", {"name": name})

    assert ledger.add_recipients("issue", [reader(i, "first") for i in range(3)], chunk=2) == 3
    again = [reader(i, "again") for i in range(5)] + [reader(4, "twice")]
    assert ledger.add_recipients("issue", again, chunk=4) == 2
    rows = ledger.db.execute(
        "SELECT r.key, d.email, d.fields FROM recipients r JOIN recipient_data d"
        " ON d.id = r.id ORDER BY r.id"
    ).fetchall()
    assert rows == [
        (f"p{i}@example.org", f"P{i}@example.org", json.dumps({"name": name}))
        for i, name in enumerate(["first"] * 3 + ["again"] * 2)
    ]
    assert ledger.counts("issue") == counted_from_rows(ledger, "issue")
    ledger.close()


def people(count: int, slug: str = "p") -> list[Subscriber]:
    return [
        Subscriber(i + 2, f"{slug}{i}@example.org", f"{slug}{i}@example.org", {"n": str(i)})
        for i in range(count)
    ]


def test_claims_find_pending_rows_without_an_index_of_them(tmp_path: Path) -> None:
    """Claims read pending rows in list order from where the last one stopped: a row settled
    back to pending, requeued, or made pending by another connection is still claimed, in
    list order, before a claim says there are none; another issue's rows are never taken."""
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    for slug in ("a", "b"):
        ledger.start_issue(slug, "hash", "postmark")
    ledger.add_recipients("a", people(6))
    ledger.add_recipients("b", people(3, "q"))
    ledger.add_recipients("a", people(8))  # two more for "a", after "b"'s rows

    def keys(rows: list[Any]) -> list[str]:
        return [r.key for r in rows]

    first, rows = ledger.claim("a", 3)
    assert keys(rows) == ["p0@example.org", "p1@example.org", "p2@example.org"]
    ledger.settle("a", first, [Settlement(r.key, RecipientStatus.PENDING) for r in rows[1:]])
    ledger.settle("a", first, [Settlement(rows[0].key, RecipientStatus.SENT, "m")])
    batch, rows = ledger.claim("a", 3)  # the two back to pending first, in list order
    assert keys(rows) == ["p1@example.org", "p2@example.org", "p3@example.org"]
    ledger.settle(
        "a",
        batch,
        [Settlement(rows[0].key, RecipientStatus.UNKNOWN, "m-1", "lost: 'a' \"b\" é")]
        + [Settlement(r.key, RecipientStatus.UNKNOWN) for r in rows[1:]],
    )
    assert ledger.recipients("a", RecipientStatus.UNKNOWN) == [
        ("p1@example.org", "lost: 'a' \"b\" é"),
        ("p2@example.org", ""),
        ("p3@example.org", ""),
    ]
    assert [row["provider_id"] for row in ledger.history("a")[1:4]] == ["m-1", None, None]
    batch, rows = ledger.claim("a", 10)
    assert keys(rows) == [f"p{i}@example.org" for i in (4, 5, 6, 7)]  # across "b"'s rows
    ledger.settle("a", batch, [Settlement(r.key, RecipientStatus.SENT, "m") for r in rows])
    assert ledger.claim("a", 10) == (0, [])
    assert ledger.requeue_unknown("a") == 3
    batch, rows = ledger.claim("a", 10)
    assert keys(rows) == ["p1@example.org", "p2@example.org", "p3@example.org"]
    ledger.settle("a", batch, [Settlement(r.key, RecipientStatus.SENT, "m") for r in rows])
    # Another connection (or a hand edit) makes a row pending that this one never saw.
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("UPDATE recipients SET status = 'pending' WHERE key = 'p0@example.org'")
    other.close()
    batch, rows = ledger.claim("a", 10)
    assert keys(rows) == ["p0@example.org"]
    ledger.settle("a", batch, [Settlement(rows[0].key, RecipientStatus.SENT, "m")])
    assert ledger.claim("a", 10) == (0, [])
    assert keys(ledger.claim("b", 10)[1]) == ["q0@example.org", "q1@example.org", "q2@example.org"]
    ledger.close()
    # A new connection, and one whose send starts (recover_inflight), claim the same way.
    for recover in (False, True):
        ledger = Ledger(path)
        ledger.db.execute("UPDATE recipients SET status = 'pending' WHERE key LIKE 'p%'")
        if recover:
            ledger.recover_inflight()
        assert keys(ledger.claim("a", 10)[1]) == [f"p{i}@example.org" for i in range(8)]
        ledger.close()


def test_claims_and_settlements_find_rows_by_rowid(tmp_path: Path) -> None:
    """The plans that keep a claim and a settlement to the batch's own rows: by rowid, never
    a scan of the issue's rows (what a planner's other choice would cost at 1,000,000)."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")

    def plan(sql: str, *args: object) -> str:
        return " / ".join(row[3] for row in ledger.db.execute(f"EXPLAIN QUERY PLAN {sql}", args))

    read = plan(store._BATCH_OF.format(rows=store._PENDING), 1, "a", 250)
    assert "SEARCH recipients USING INTEGER PRIMARY KEY (rowid>?)" in read, read
    assert "SEARCH d USING INTEGER PRIMARY KEY (rowid=?)" in read, read
    claim = plan(store._MARK.format(status="pending"), "inflight", 1, "now", "[]", "a")
    assert "SEARCH recipients USING INTEGER PRIMARY KEY (rowid=?)" in claim, claim
    for sql in (store._SETTLE, store._SETTLE_WITH_REASONS):
        settle = plan(sql.format(status="sent"), "now", "{}", 1)
        assert settle.index("SCAN j") < settle.index("SEARCH recipients USING INTEGER PRIMARY KEY")
    ledger.close()


def test_a_provider_id_with_a_nul_is_stored_whole_and_found_by_webhooks(tmp_path: Path) -> None:
    """The settlement's JSON object (json_each) cut a provider id at a NUL, and the webhook
    carrying the whole id then found no issue; the bound parameter keeps it whole."""
    from pipeline.audience.subscribers import Subscriber
    from pipeline.events.base import EventType, ProviderEvent
    from pipeline.ledger.events import find_issue
    from pipeline.ledger.store import Ledger, RecipientStatus, Settlement

    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.start_issue("i", "h", "postmark")
    ledger.add_recipients(
        "i",
        [Subscriber(n + 2, f"r{n}@x.org", f"r{n}@x.org", {"email": f"r{n}@x.org"}) for n in (0, 1)],
    )
    ledger.recover_inflight()
    batch, rows = ledger.claim("i", 2)
    ids = ["plain-id", "nul\x00inside"]
    ledger.settle(
        "i",
        batch,
        [Settlement(r.key, RecipientStatus.SENT, i) for r, i in zip(rows, ids, strict=True)],
    )
    assert [row["provider_id"] for row in ledger.history("i")] == ids
    event = ProviderEvent("postmark", "e1", EventType.DELIVERED, rows[1].email, None, ids[1])
    assert find_issue(ledger.db, event) == "i"
    ledger.close()


def test_a_provider_id_with_a_lone_surrogate_does_not_stop_the_settlement(
    tmp_path: Path,
) -> None:
    """A provider's JSON may escape half a UTF-16 pair ("\\ud800"), which json.loads turns
    into a lone surrogate: no UTF-8 can hold it, and the settlement raised (orjson, and
    SQLite's binding), leaving the batch in flight, to be reported unknown.  It is stored
    with the half pair replaced; the rest of the batch as it came."""
    from pipeline.audience.subscribers import Subscriber
    from pipeline.ledger.store import Ledger, RecipientStatus, Settlement

    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.start_issue("i", "h", "postmark")
    ledger.add_recipients(
        "i",
        [
            Subscriber(n + 2, f"r{n}@x.org", f"r{n}@x.org", {"email": f"r{n}@x.org"})
            for n in range(4)
        ],
    )
    ledger.recover_inflight()
    batch, rows = ledger.claim("i", 4)
    ledger.settle(
        "i",
        batch,
        [
            Settlement(rows[0].key, RecipientStatus.SENT, "plain-id"),
            Settlement(rows[1].key, RecipientStatus.SENT, "half-\ud800-pair"),
            Settlement(rows[2].key, RecipientStatus.FAILED, "", "bad \udfff reason"),
            Settlement("not-claimed@x.org", RecipientStatus.SENT, "other-\ud800"),
        ],
    )
    history = {row["email"]: row for row in ledger.history("i")}
    assert history["r0@x.org"]["provider_id"] == "plain-id"
    assert history["r1@x.org"]["status"] == "sent"
    assert history["r1@x.org"]["provider_id"] == "half-\ufffd-pair"
    assert history["r2@x.org"]["status"] == "failed"
    assert history["r2@x.org"]["reason"] == "bad \ufffd reason"
    assert history["r3@x.org"]["status"] == "inflight"  # not settled: still held
    counts = ledger.counts("i")
    assert (counts.sent, counts.failed) == (2, 1)
    ledger.close()
