"""Provider events in the ledger: each stored once, applied once, and what they say about a
recipient's message.

Events are facts: ``store`` inserts each by (provider, event id) and ignores one already
there, so a webhook the provider retries, or a suppression list read twice, is a no-op.  An
event's effects (on the list, on the recipient row) are made by ``pipeline.events.apply``,
which marks it applied in the same step; one stored but not yet applied (a crash between)
is applied by the next request or run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pipeline.events.base import Bounce, EventType, Nonce, ProviderEvent
from pipeline.ledger.store import Ledger, RecipientStatus


class Delivery(StrEnum):
    """What the provider last said about one recipient's message, by rank: a later event
    replaces an earlier one only if it says more (a late ``delivered`` never hides a
    complaint, a deferral never hides a delivery)."""

    DEFERRED = "deferred"
    SOFT_BOUNCED = "soft-bounced"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    COMPLAINED = "complained"


# Longer than any webhook signature's tolerance (Mailgun: 15 minutes).
NONCE_KEPT = timedelta(days=1)


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


RANK = {delivery: rank for rank, delivery in enumerate(Delivery, start=1)}


def delivery_of(event: ProviderEvent) -> Delivery:
    if event.type is EventType.BOUNCED:
        return Delivery.BOUNCED if event.bounce is Bounce.HARD else Delivery.SOFT_BOUNCED
    if event.type in (EventType.OPENED, EventType.CLICKED):
        return Delivery.DELIVERED  # opened means it arrived
    return Delivery(event.type.value)


@dataclass(frozen=True)
class StoredEvent:
    row: int
    event: ProviderEvent


def claim_nonce(ledger: Ledger, provider: str, nonce: Nonce) -> bool:
    """Record a one-time token; False if it was seen before with another body (a replay).
    The same token with the same body is the provider retrying: accepted, and the events'
    own ids make it a no-op."""
    now = ledger.clock().astimezone(UTC)
    with ledger.transaction() as db:
        # Tokens older than any signature still accepted can go: a stale one is refused anyway.
        db.execute(
            "DELETE FROM webhook_nonces WHERE seen_at < ?",
            (_text(now - NONCE_KEPT),),
        )
        row = db.execute(
            "SELECT body_hash FROM webhook_nonces WHERE provider = ? AND nonce = ?",
            (provider, nonce.value),
        ).fetchone()
        if row is not None:
            return bool(row[0] == nonce.body_hash)
        db.execute(
            "INSERT INTO webhook_nonces (provider, nonce, body_hash, seen_at) VALUES (?, ?, ?, ?)",
            (provider, nonce.value, nonce.body_hash, _text(now)),
        )
        return True


def store(ledger: Ledger, events: Sequence[ProviderEvent]) -> int:
    """Insert the events not stored before; returns how many were new."""
    now = _text(ledger.clock())
    with ledger.transaction() as db:
        before = db.total_changes
        db.executemany(
            "INSERT OR IGNORE INTO events (provider, event_id, type, bounce, email, key, issue,"
            " message_id, reason, occurred_at, received_at, raw)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.provider,
                    e.event_id,
                    e.type,
                    e.bounce,
                    e.email,
                    e.key,
                    e.issue,
                    e.message_id,
                    e.reason or None,
                    e.occurred_at.isoformat(timespec="seconds") if e.occurred_at else None,
                    now,
                    e.raw,
                )
                for e in events
            ],
        )
        return db.total_changes - before


def unapplied(ledger: Ledger, limit: int = 5000) -> list[StoredEvent]:
    rows = ledger.db.execute(
        "SELECT id, provider, event_id, type, bounce, email, issue, message_id, reason, raw,"
        " occurred_at FROM events WHERE applied_at IS NULL ORDER BY id LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        StoredEvent(
            row[0],
            ProviderEvent(
                provider=row[1],
                event_id=row[2],
                type=EventType(row[3]),
                bounce=Bounce(row[4]) if row[4] else None,
                email=row[5],
                issue=row[6],
                message_id=row[7],
                reason=row[8] or "",
                raw=row[9],
                occurred_at=datetime.fromisoformat(row[10]) if row[10] else None,
            ),
        )
        for row in rows
    ]


def find_issue(db: sqlite3.Connection, event: ProviderEvent) -> str | None:
    """The issue an event is about: the one it names, else the one whose ledger row has its
    message id (Postmark, SES: one per message; Mailgun, SendGrid: one per request)."""
    if event.issue:
        return event.issue
    if not event.message_id:
        return None
    # Through the (issue, key) primary key, one search per issue (a few dozen), rather than
    # an index of provider ids that every settle would have to write (bench/ledger.py).
    # CROSS JOIN makes SQLite go through the issues first, whatever its guess of the sizes.
    row = db.execute(
        "SELECT r.issue FROM issues i CROSS JOIN recipients r ON r.issue = i.slug"
        " AND r.key = ? WHERE r.provider_id = ? LIMIT 1",
        (event.key, event.message_id),
    ).fetchone()
    return str(row[0]) if row else None


def record_delivery(db: sqlite3.Connection, event: ProviderEvent, issue: str, now: str) -> bool:
    """Update the recipient row of that issue if the event says more than it has."""
    new = delivery_of(event)
    row = db.execute(
        "SELECT delivery FROM recipients WHERE issue = ? AND key = ?", (issue, event.key)
    ).fetchone()
    if row is None:
        return False
    old = Delivery(row[0]) if row[0] else None
    if old is not None and RANK[old] > RANK[new]:
        return False
    db.execute(
        "UPDATE recipients SET delivery = ?, delivery_at = ? WHERE issue = ? AND key = ?",
        (new, now, issue, event.key),
    )
    return True


def soft_bounce_streak(db: sqlite3.Connection, key: str, length: int) -> bool:
    """Did the reader's last ``length`` issues (those sent to them) all soft-bounce?"""
    rows = db.execute(
        "SELECT r.delivery FROM recipients r JOIN issues i ON i.slug = r.issue"
        " WHERE r.key = ? AND r.status = ? ORDER BY i.started_at DESC, i.slug DESC LIMIT ?",
        (key, RecipientStatus.SENT, length),
    ).fetchall()
    return len(rows) == length and all(row[0] == Delivery.SOFT_BOUNCED for row in rows)


def mark_applied(db: sqlite3.Connection, row: int, effect: str, now: str) -> None:
    db.execute(
        "UPDATE events SET applied_at = ?, effect = ? WHERE id = ?", (now, effect or None, row)
    )


def delivery_counts(ledger: Ledger, issue: str) -> dict[str, int]:
    """For ``status``: how many recipients of an issue each delivery state has, in the
    order of ``Delivery``."""
    found = dict(
        ledger.db.execute(
            "SELECT delivery, count(*) FROM recipients WHERE issue = ? AND delivery IS NOT NULL"
            " GROUP BY delivery",
            (issue,),
        ).fetchall()
    )
    return {state.value: int(found[state]) for state in Delivery if state in found}
