"""Numbered schema migrations; ``PRAGMA user_version`` records the last one applied.

Each migration runs in one transaction with its version bump, so a ledger is never half
migrated.  Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[tuple[str, ...]] = [
    # 1: issues and their recipients.
    (
        """
        CREATE TABLE issues (
            slug TEXT PRIMARY KEY,
            content_hash TEXT NOT NULL,      -- of the compiled email: an edited issue is refused
            provider TEXT NOT NULL,
            status TEXT NOT NULL,            -- IssueStatus
            audience_loaded INTEGER NOT NULL DEFAULT 0,
            note TEXT,                       -- why it paused or stopped
            started_at TEXT NOT NULL,
            finished_at TEXT
        )
        """,
        """
        CREATE TABLE recipients (
            issue TEXT NOT NULL REFERENCES issues (slug),
            key TEXT NOT NULL,               -- lower-cased address: one message per key
            email TEXT NOT NULL,
            line INTEGER NOT NULL,           -- in subscribers.csv when the send began
            fields TEXT NOT NULL,            -- the row, as JSON, for merge fields
            status TEXT NOT NULL,            -- RecipientStatus
            batch INTEGER,                   -- the batch that last held it in flight
            provider_id TEXT,
            reason TEXT,
            updated_at TEXT,
            PRIMARY KEY (issue, key)
        )
        """,
        "CREATE INDEX recipients_by_status ON recipients (issue, status)",
        """
        CREATE TABLE batches (
            id INTEGER PRIMARY KEY,
            issue TEXT NOT NULL,
            size INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            settled_at TEXT
        )
        """,
    ),
    # 2: settling a batch looks its rows up by batch; without this index every settle
    # scanned the whole table (bench/scale.py: 156 us a recipient at 100k, 338 at 1M).
    ("CREATE INDEX recipients_by_batch ON recipients (batch)",),
    # 3: which provider each batch was handed to: only that provider can settle a batch
    # left unknown by replaying its idempotency key.
    ("ALTER TABLE batches ADD COLUMN provider TEXT",),
    # 4: proof of consent: every fact about a subscriber's consent, with its cause, never
    # updated or deleted (pipeline/ledger/consent.py).
    (
        """
        CREATE TABLE consent_history (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,               -- lower-cased address, as in recipients
            email TEXT NOT NULL,             -- as the person gave it
            at TEXT NOT NULL,                -- UTC, ISO 8601 with milliseconds
            action TEXT NOT NULL,            -- ConsentAction
            cause TEXT NOT NULL,             -- ConsentCause
            ip TEXT,
            user_agent TEXT,
            source_url TEXT,                 -- the page the form was on
            detail TEXT
        )
        """,
        "CREATE INDEX consent_history_by_key ON consent_history (key, at)",
    ),
    # 5: the web app's durable queue of list changes (an opt-out is answered once it is here;
    # one rewrite of subscribers.csv applies many), and the mail it sends one address at a
    # time (confirmations: at most one an hour; the welcome: once, ever).
    (
        """
        CREATE TABLE list_changes (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            email TEXT NOT NULL,
            status TEXT,                     -- the new status, or NULL to leave it
            fields TEXT NOT NULL,            -- JSON: columns to set
            create_row INTEGER NOT NULL,     -- 1: append a row if the address has none
            queued_at TEXT NOT NULL,
            applied_at TEXT                  -- NULL while queued
        )
        """,
        "CREATE INDEX list_changes_queued ON list_changes (id) WHERE applied_at IS NULL",
        """
        CREATE TABLE mail_once (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            kind TEXT NOT NULL,              -- confirmation | welcome
            at TEXT NOT NULL,
            outcome TEXT NOT NULL,           -- sending | sent | failed
            provider_id TEXT,
            reason TEXT
        )
        """,
        "CREATE INDEX mail_once_by_key ON mail_once (key, kind, at)",
        "CREATE UNIQUE INDEX mail_once_welcome ON mail_once (key) WHERE kind = 'welcome'",
    ),
    # 6: provider events (webhooks, suppression lists), each stored once by its provider's
    # id (providers retry, so the same event arrives twice), then applied once; the
    # one-time tokens a signature covers (Mailgun's), so a captured one cannot be reused;
    # and what the provider last said about each recipient's message.
    (
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            provider TEXT NOT NULL,
            event_id TEXT NOT NULL,          -- the provider's, or a hash of the raw event
            type TEXT NOT NULL,              -- EventType
            bounce TEXT,                     -- hard | soft, for bounces
            email TEXT NOT NULL,
            key TEXT NOT NULL,               -- lower-cased address, as recipients.key
            issue TEXT,                      -- our slug, when the event carries it
            message_id TEXT,                 -- the provider's message id
            reason TEXT,
            occurred_at TEXT,
            received_at TEXT NOT NULL,
            applied_at TEXT,                 -- NULL until its effects are made
            effect TEXT,                     -- what it changed, in words
            raw TEXT NOT NULL,
            UNIQUE (provider, event_id)
        )
        """,
        "CREATE INDEX events_unapplied ON events (applied_at) WHERE applied_at IS NULL",
        "CREATE INDEX events_by_key ON events (key)",
        """
        CREATE TABLE webhook_nonces (
            provider TEXT NOT NULL,
            nonce TEXT NOT NULL,
            body_hash TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            PRIMARY KEY (provider, nonce)
        )
        """,
        "ALTER TABLE recipients ADD COLUMN delivery TEXT",  # Delivery, from provider events
        "ALTER TABLE recipients ADD COLUMN delivery_at TEXT",
        "CREATE INDEX recipients_by_provider_id ON recipients (provider_id)",
    ),
    # 7: claiming and settling write less (bench/ledger.py: 15 us a recipient before).  Every
    # index on a column a claim or a settle changes is rewritten for every row, twice a
    # send: the full (issue, status) index (both), the batch index (the claim) and the
    # provider-id index (the settle) cost more than the rows themselves.  In their place:
    # partial indexes holding only the rows a send looks for (pending ones, to claim in list
    # order; unknown ones, to replay or ask about), which a settle does not touch; a batch
    # counts its settled rows instead of searching its rows for one still in flight; and
    # each issue's count of recipients per status is kept in recipient_counts (updated in
    # the same transaction as the rows, by the ledger's code), since the send reads the
    # counts after every batch and counting 1M rows each time took 70-110 ms.  A webhook finds
    # its issue by provider id through the (issue, key) key instead (a few issues).
    (
        "DROP INDEX recipients_by_status",
        "DROP INDEX recipients_by_batch",
        "DROP INDEX recipients_by_provider_id",
        "CREATE INDEX recipients_pending ON recipients (issue) WHERE status = 'pending'",
        "CREATE INDEX recipients_unknown ON recipients (issue, batch) WHERE status = 'unknown'",
        "ALTER TABLE batches ADD COLUMN settled INTEGER NOT NULL DEFAULT 0",
        "UPDATE batches SET settled = size WHERE settled_at IS NOT NULL",
        """
        CREATE TABLE recipient_counts (
            issue TEXT NOT NULL,
            status TEXT NOT NULL,            -- RecipientStatus; in flight counts as pending
            n INTEGER NOT NULL,
            PRIMARY KEY (issue, status)
        ) WITHOUT ROWID
        """,
        """
        INSERT INTO recipient_counts (issue, status, n)
        SELECT issue, CASE status WHEN 'inflight' THEN 'pending' ELSE status END, count(*)
        FROM recipients GROUP BY 1, 2
        """,
    ),
    # 8: an opt-out asks for the address's last queued change (``_already_leaving``), and
    # the queue's only index was by id: every opt-out read every change still queued, so a
    # burst of 200 cost 200 x 100 rows on average, and a list that could not be rewritten
    # (its changes stay queued) made each opt-out slower than the last (63 us a query at 400
    # queued; 7 with this index).
    ("CREATE INDEX list_changes_queued_by_key ON list_changes (key, id) WHERE applied_at IS NULL",),
    # 9: a recipient's address, list line and fields move to recipient_data, written once
    # when the audience is recorded and only read after; recipients keeps what a claim and a
    # settlement change.  Both rewrite every row of the batch, twice a send, and SQLite
    # rewrites a row whole: with the address and fields (JSON, about 150 bytes) in it, 250
    # rows took about 20 pages to write to the WAL at each commit, and to the file again at
    # each checkpoint; narrow, about 7 (bench/ledger.py's rows).  Each row keeps its rowid,
    # now a column (id): the list order and the key of its data (an implicit rowid may be
    # renumbered by a VACUUM).  The index of pending rows goes too: a claim removed every
    # row it marked from it; claims read the rows in id order from where the last one
    # stopped instead (pipeline/ledger/store.py, ``Ledger._pending``).
    (
        "ALTER TABLE recipients RENAME TO recipients_old",
        """
        CREATE TABLE recipients (
            id INTEGER PRIMARY KEY,          -- list order; recipient_data.id
            issue TEXT NOT NULL REFERENCES issues (slug),
            key TEXT NOT NULL,               -- lower-cased address: one message per key
            status TEXT NOT NULL,            -- RecipientStatus
            batch INTEGER,                   -- the batch that last held it in flight
            provider_id TEXT,
            reason TEXT,
            updated_at TEXT,
            delivery TEXT,                   -- Delivery, from provider events
            delivery_at TEXT,
            UNIQUE (issue, key)
        )
        """,
        """
        CREATE TABLE recipient_data (
            id INTEGER PRIMARY KEY REFERENCES recipients (id),
            email TEXT NOT NULL,
            line INTEGER NOT NULL,           -- in subscribers.csv when the send began
            fields TEXT NOT NULL             -- the row, as JSON, for merge fields
        )
        """,
        """
        INSERT INTO recipients (id, issue, key, status, batch, provider_id, reason, updated_at,
            delivery, delivery_at)
        SELECT rowid, issue, key, status, batch, provider_id, reason, updated_at, delivery,
            delivery_at FROM recipients_old ORDER BY rowid
        """,
        """
        INSERT INTO recipient_data (id, email, line, fields)
        SELECT rowid, email, line, fields FROM recipients_old ORDER BY rowid
        """,
        "DROP TABLE recipients_old",
        "CREATE INDEX recipients_unknown ON recipients (issue, batch) WHERE status = 'unknown'",
    ),
]


def migrate(db: sqlite3.Connection) -> int:
    """Apply what is missing; returns the schema version.  ``db`` is in autocommit mode."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the ledger has schema version {version}, newer than this program "
            f"({len(MIGRATIONS)}): upgrade newsletter-pipeline"
        )
    while version < len(MIGRATIONS):
        db.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process (the web app and a send
            # opening a new ledger together) may have applied it meanwhile.
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version < len(MIGRATIONS):
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (I/O error, full disk)
                db.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)
