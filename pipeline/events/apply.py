"""Stored provider events -> their effects, exactly once: the recipient's ledger row, the list
(subscribers.csv, through its one locked writer) and the consent history.

- a hard bounce makes the reader ``bounced``, a complaint ``complained``, an unsubscribe at
  the provider ``unsubscribed``; soft bounces on the reader's last three issues make
  ``bounced`` too;
- only a subscribed reader is changed, except that a complaint is recorded over an earlier
  opt-out (it is the strongest signal, and reports should see it); nothing here ever puts a
  reader back on the list: a late ``delivered`` or ``opened`` only updates the ledger row;
- every change to the list is written to the consent history with its cause and the event.

Applying is serialised by a lock in the state folder (web workers, a sync run), and an event
is marked applied in the same transaction as its history; one left unapplied by a crash is
applied, without doubling anything, by the next call.
"""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.audience.change_queue import apply_queued
from pipeline.audience.csv_source import address_key_fast, read_rows
from pipeline.audience.list_writer import ListChange, apply_changes
from pipeline.audience.subscribers import Status
from pipeline.config import Settings
from pipeline.events.base import Bounce, EventType, ProviderEvent
from pipeline.ledger.consent import ConsentAction, ConsentCause, last_event, record_consent
from pipeline.ledger.events import (
    StoredEvent,
    find_issue,
    mark_applied,
    record_delivery,
    soft_bounce_streak,
    unapplied,
)
from pipeline.ledger.store import Ledger

SOFT_BOUNCE_STREAK = 3
# How strongly a status keeps a reader off the list: a change only ever goes up.
OPT_OUT_RANK = {
    Status.SUBSCRIBED: 0,
    Status.UNSUBSCRIBED: 1,
    Status.BOUNCED: 2,
    Status.COMPLAINED: 3,
}
ACTIONS = {
    Status.UNSUBSCRIBED: ConsentAction.UNSUBSCRIBED,
    Status.BOUNCED: ConsentAction.BOUNCED,
    Status.COMPLAINED: ConsentAction.COMPLAINED,
}
CAUSES = {
    Status.UNSUBSCRIBED: ConsentCause.PROVIDER,
    Status.BOUNCED: ConsentCause.BOUNCE,
    Status.COMPLAINED: ConsentCause.COMPLAINT,
}


@dataclass(frozen=True)
class ListEffect:
    email: str
    status: Status
    why: str  # in words, with the provider and its event id
    provider: str


@dataclass
class Applied:
    events: int = 0
    changed: list[ListEffect] = field(default_factory=list)  # rows of the list changed
    not_on_list: list[str] = field(default_factory=list)


def _now(ledger: Ledger) -> str:
    return ledger.clock().astimezone(UTC).isoformat(timespec="seconds")


@contextmanager
def applying(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "events.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def wanted_status(event: ProviderEvent, soft_streak: bool) -> Status | None:
    if event.type is EventType.COMPLAINED:
        return Status.COMPLAINED
    if event.type is EventType.UNSUBSCRIBED:
        return Status.UNSUBSCRIBED
    if event.type is EventType.BOUNCED and (event.bounce is Bounce.HARD or soft_streak):
        return Status.BOUNCED
    return None


WHAT = {
    EventType.COMPLAINED: "marked as spam",
    EventType.UNSUBSCRIBED: "unsubscribed at the provider",
}


def describe(event: ProviderEvent, soft_streak: bool = False) -> str:
    """For the consent history: who said what, about which issue, and which event."""
    what = WHAT.get(event.type, event.type.value)
    if event.type is EventType.BOUNCED:
        what = f"{event.bounce} bounce"
        if soft_streak and event.bounce is Bounce.SOFT:
            what = f"soft bounces on {SOFT_BOUNCE_STREAK} issues in a row"
    issue = f" (issue {event.issue})" if event.issue else ""
    reason = f": {event.reason}" if event.reason else ""
    # The provider's own event id is something to look up in its dashboard; our hash (for a
    # provider that gives none) is not, and 64 hex digits read as noise: the message id is.
    if not event.event_id.startswith("sha256:"):
        ref = f" [event {event.event_id}]"
    else:
        ref = f" [message {event.message_id}]" if event.message_id else ""
    return f"{event.provider}: {what}{issue}{reason}{ref}"


def _before_consent(db: sqlite3.Connection, event: ProviderEvent) -> bool:
    """Is this event older than the reader's last confirmation?  A bounce of an issue sent
    before they signed up again says nothing about the address they just confirmed."""
    if event.occurred_at is None:
        return False
    confirmed = last_event(db, event.email, (ConsentAction.CONFIRMED, ConsentAction.RESUBSCRIBED))
    if confirmed is None:
        return False
    return event.occurred_at < datetime.fromisoformat(confirmed.at)


def list_statuses(path: Path, keys: set[str]) -> dict[str, Status]:
    """The status of each of these addresses on the list (the strongest of its rows)."""
    found: dict[str, Status] = {}
    if not keys:
        return found
    for row in read_rows(path):
        key = address_key_fast(row.values.get("email", ""))
        if key not in keys:
            continue
        try:
            status = Status(row.values.get("status", "").strip().lower() or "subscribed")
        except ValueError:
            status = Status.SUBSCRIBED  # an invalid status: the audience skips the row anyway
        if key not in found or OPT_OUT_RANK[status] > OPT_OUT_RANK[found[key]]:
            found[key] = status
    return found


def apply_pending(settings: Settings, ledger: Ledger) -> Applied:
    """Make the effects of every stored event not yet applied; returns what changed."""
    applied = Applied()
    with applying(settings.state_dir):
        while True:
            pending = unapplied(ledger)
            if not pending:
                return applied
            _apply(settings, ledger, pending, applied)


def _apply(
    settings: Settings, ledger: Ledger, pending: list[StoredEvent], applied: Applied
) -> None:
    now = _now(ledger)
    wanted: dict[str, ListEffect] = {}
    effects: dict[int, str] = {}
    with ledger.transaction() as db:
        for stored in pending:
            event = stored.event
            issue = find_issue(db, event)
            notes = []
            if issue and record_delivery(db, event, issue, now):
                notes.append(f"{issue}: {event.type}")
            streak = (
                event.type is EventType.BOUNCED
                and event.bounce is Bounce.SOFT
                and soft_bounce_streak(db, event.key, SOFT_BOUNCE_STREAK)
            )
            status = wanted_status(event, streak)
            if status is not None and _before_consent(db, event):
                notes.append("list: unchanged, older than the reader's last confirmation")
                status = None
            if status is not None:
                key = address_key_fast(event.email)
                before = wanted.get(key)
                if before is None or OPT_OUT_RANK[status] > OPT_OUT_RANK[before.status]:
                    wanted[key] = ListEffect(
                        event.email, status, describe(event, streak), event.provider
                    )
                notes.append(f"list: {status}")
            effects[stored.row] = "; ".join(notes)
    if wanted:
        # Changes the web app queued before these events land first, in their order.
        apply_queued(ledger.db, settings.subscribers, settings.state_dir)
    current = list_statuses(settings.subscribers, set(wanted))
    changes: list[ListChange] = []
    history: list[tuple[ListEffect, bool]] = []  # (effect, the list changed now)
    for key, effect in wanted.items():
        on_list = current.get(key)
        if on_list is None:
            applied.not_on_list.append(effect.email)
        elif on_list is Status.SUBSCRIBED or (
            effect.status is Status.COMPLAINED and on_list is not Status.COMPLAINED
        ):
            changes.append(ListChange(effect.email, status=effect.status.value))
            history.append((effect, True))
        elif on_list is effect.status:
            history.append((effect, False))
    if changes:
        apply_changes(settings.subscribers, changes)
    with ledger.transaction() as db:
        for effect, changed in history:
            if not changed:
                # Already so on the list: recorded unless the history says it already (a
                # crash after the rewrite, before this transaction, leaves exactly this).
                last = last_event(db, effect.email, tuple(ACTIONS.values()))
                if last is not None and last.action is ACTIONS[effect.status]:
                    continue
            record_consent(
                db, effect.email, ACTIONS[effect.status], CAUSES[effect.status], detail=effect.why
            )
            applied.changed.append(effect)
        for row, note in effects.items():
            mark_applied(db, row, note, now)
    applied.events += len(pending)
