"""``unknown`` rows settled by asking the provider: which are there, and what it said.

A row is ``unknown`` when its batch was in flight at a kill, or its answer was lost.  For a
provider that can search what it accepted (``Searching``), the send asks before anything is
re-sent: found -> ``sent`` with the provider's id; not found long enough after the batch was
handed over -> ``pending``, sent again by this run; not found yet -> left ``unknown`` for the
next run.  Only rows in batches that same provider was handed are asked about.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.ledger.store import Ledger, RecipientStatus, move_counts


@dataclass(frozen=True)
class UnknownRow:
    rowid: int
    key: str
    email: str
    fields: dict[str, str]
    handed_over: datetime  # when its batch was handed to the provider


def unknown_rows(
    ledger: Ledger, slug: str, provider: str, after: int = 0, limit: int = 200
) -> list[UnknownRow]:
    """The next ``limit`` unknown rows (by rowid, after ``after``) that ``provider`` had."""
    rows = ledger.db.execute(
        "SELECT r.id, r.key, d.email, d.fields, b.started_at FROM recipients r"
        " JOIN recipient_data d ON d.id = r.id JOIN batches b ON b.id = r.batch"
        # 'unknown' in the SQL, not bound, so that the partial index of unknown rows is used.
        " WHERE r.issue = ? AND r.status = 'unknown' AND b.provider = ? AND r.id > ?"
        " ORDER BY r.id LIMIT ?",
        (slug, provider, after, limit),
    ).fetchall()
    return [
        UnknownRow(int(rowid), key, email, json.loads(fields), datetime.fromisoformat(started))
        for rowid, key, email, fields, started in rows
    ]


def settle_asked(
    ledger: Ledger,
    slug: str,
    found: dict[str, str],
    not_there: Sequence[str],
    provider: str,
) -> None:
    """Record what the provider said, for rows still ``unknown``, in one transaction."""
    now = ledger.clock().astimezone(UTC).isoformat(timespec="seconds")
    with ledger.transaction() as db:
        found_sent = db.executemany(
            "UPDATE recipients SET status = ?, provider_id = ?, reason = ?, updated_at = ?"
            " WHERE issue = ? AND key = ? AND status = ?",
            [
                (
                    RecipientStatus.SENT,
                    message_id,
                    f"found at {provider} after its answer was lost",
                    now,
                    slug,
                    key,
                    RecipientStatus.UNKNOWN,
                )
                for key, message_id in found.items()
            ],
        ).rowcount
        resent = db.executemany(
            "UPDATE recipients SET status = ?, reason = ?, updated_at = ?"
            " WHERE issue = ? AND key = ? AND status = ?",
            [
                (
                    RecipientStatus.PENDING,
                    f"{provider} never accepted it: sent again",
                    now,
                    slug,
                    key,
                    RecipientStatus.UNKNOWN,
                )
                for key in not_there
            ],
        ).rowcount
        move_counts(
            db,
            slug,
            {
                RecipientStatus.UNKNOWN: -found_sent - resent,
                RecipientStatus.SENT: found_sent,
                RecipientStatus.PENDING: resent,
            },
        )
    ledger.pending_again(slug)
