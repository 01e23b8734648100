"""The list over time: subscribers by status, week by week, and who joined, left or bounced.

Two sources, both optional, neither required: ``subscribers.csv`` (its ``status`` and, where
present, ``subscribed_at`` and ``unsubscribed_at``/``bounced_at``/``complained_at`` dates, as
the signup form writes them) and the ledger's consent history (every signup, confirmation and
opt-out with its time, when the web app keeps one).  The consent history is the more exact,
so for an address it has, it wins; the list's current status always has the last word.  A
row with no date at all counts from the first week: it was there before the records.

The list is streamed (one row at a time), so a report on a large list stays small in memory.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from pipeline.audience.address_set import AddressSet
from pipeline.audience.csv_source import read_rows
from pipeline.audience.subscribers import Status, address_key, normalise_address
from pipeline.config import Settings
from pipeline.ledger.readonly import has_table, read_ledger
from pipeline.wording import count

STATUSES = tuple(Status)
# No list this report reads began before email newsletters did: an older date is a typo.
EARLIEST = date(1990, 1, 1)
# Consent actions (the web app's ledger table) -> the status they leave an address in;
# None: off the list.
_CONSENT_STATUS: dict[str, Status | None] = {
    "confirmed": Status.SUBSCRIBED,
    "resubscribed": Status.SUBSCRIBED,
    "added": Status.SUBSCRIBED,
    "unsubscribed": Status.UNSUBSCRIBED,
    "bounced": Status.BOUNCED,
    "complained": Status.COMPLAINED,
    "removed": None,
}


@dataclass(frozen=True)
class Week:
    start: date  # a Monday
    counts: dict[Status, int]  # at the end of the week
    joined: int
    left: int  # unsubscribed
    bounced: int
    complained: int


@dataclass
class ListHistory:
    weeks: list[Week] = field(default_factory=list)
    undated: int = 0  # addresses with no date anywhere: counted from the first week
    sources: list[str] = field(default_factory=list)  # what it was made from, in words
    missing: str = ""  # the list's file name, when it is not there (not an empty list)
    # Dates in the list that are not dates ("last tuesday"): how many, and the first's
    # line, column and text; those rows count as having no date, and she is told.
    bad_dates: int = 0
    first_bad_date: tuple[int, str, str] | None = None

    @property
    def now(self) -> dict[Status, int]:
        return self.weeks[-1].counts if self.weeks else dict.fromkeys(STATUSES, 0)


def week_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _parse_day(text: str, zone: tzinfo) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(zone)
    if moment.date() < EARLIEST:
        return None  # a typo ("0202-01-05"): as no date, not a chart of 95,000 weeks
    return moment.date()


def _read_day(history: ListHistory, line: int, column: str, text: str, zone: tzinfo) -> date | None:
    """``_parse_day``, keeping count of the cells that hold something other than a date."""
    day = _parse_day(text, zone)
    if day is None and text.strip():
        history.bad_dates += 1
        if history.first_bad_date is None:
            history.first_bad_date = (line, column, text.strip())
    return day


def _status(text: str) -> Status | None:
    text = text.strip().lower()
    if not text:
        return Status.SUBSCRIBED
    try:
        return Status(text)
    except ValueError:
        return None  # an invalid status: `subscribers check` reports it; not on the list


def _key(email: str) -> str:
    try:
        return address_key(normalise_address(email.strip()))
    except ValueError:
        return email.strip().lower()


def _consent(settings: Settings) -> dict[str, list[tuple[date, Status | None]]]:
    with read_ledger(settings.state_dir) as db:
        if db is None or not has_table(db, "consent_history"):
            return {}
        return _consent_rows(db, settings.timezone)


def _consent_rows(
    db: sqlite3.Connection, zone: tzinfo
) -> dict[str, list[tuple[date, Status | None]]]:
    history: dict[str, list[tuple[date, Status | None]]] = {}
    for key, at, action in db.execute(
        "SELECT key, at, action FROM consent_history ORDER BY at, id"
    ):
        if action not in _CONSENT_STATUS:
            continue  # a request not yet confirmed changes nothing
        day = _parse_day(str(at), zone)
        if day is not None:
            history.setdefault(str(key), []).append((day, _CONSENT_STATUS[action]))
    return history


class _Tally:
    """Per-week changes, added up into the weekly counts at the end."""

    def __init__(self) -> None:
        self.start: Counter[Status] = Counter()  # before the first dated change
        self.delta: dict[date, Counter[Status]] = {}
        self.flows: dict[date, Counter[str]] = {}

    def follow(
        self, changes: list[tuple[date, Status | None]], final: Status | None, today: date
    ) -> None:
        """One address: its dated changes in order, then its status on the list now."""
        state: Status | None = None
        for day, status in sorted(changes, key=lambda change: change[0]):
            # A date ahead of today (a typo, a wrong clock) is this week: a later week is
            # never added up, so the address would be missing from every count.
            state = self._move(week_of(min(day, today)), state, status)
        if final != state:
            # A change of unknown date: in this week's totals, but not counted as a join or
            # a leave of this week, which it may not be.
            self._move(week_of(today) if changes else None, state, final, flow=False)

    def _move(
        self, week: date | None, old: Status | None, new: Status | None, flow: bool = True
    ) -> Status | None:
        if old == new:
            return new
        if week is None:
            if new is not None:
                self.start[new] += 1
            return new
        delta = self.delta.setdefault(week, Counter())
        if old is not None:
            delta[old] -= 1
        if new is not None:
            delta[new] += 1
        if new is not None and flow:
            kind = {
                Status.SUBSCRIBED: "joined",
                Status.UNSUBSCRIBED: "left",
                Status.BOUNCED: "bounced",
                Status.COMPLAINED: "complained",
            }[new]
            self.flows.setdefault(week, Counter())[kind] += 1
        return new

    def weeks(self, today: date) -> list[Week]:
        last = week_of(today)
        first = min(self.delta, default=last)
        counts: Counter[Status] = Counter(self.start)
        weeks = []
        week = first
        while week <= last:
            counts.update(self.delta.get(week, Counter()))
            flows = self.flows.get(week, Counter())
            weeks.append(
                Week(
                    start=week,
                    counts={status: counts[status] for status in STATUSES},
                    joined=flows["joined"],
                    left=flows["left"],
                    bounced=flows["bounced"],
                    complained=flows["complained"],
                )
            )
            week += timedelta(days=7)
        return weeks


def list_history(settings: Settings, today: date) -> ListHistory:
    consent = _consent(settings)
    tally = _Tally()
    history = ListHistory()
    if consent:
        history.sources.append(
            f"the consent history ({count(len(consent), 'address', 'addresses')})"
        )
    dated_columns: set[str] = set()
    seen = AddressSet()  # on disk: memory stays flat on a large list
    zone = settings.timezone
    if not settings.subscribers.exists():
        history.missing = settings.subscribers.name
    else:
        for row in read_rows(settings.subscribers):
            values = row.values
            if not values.get("email", "").strip():
                continue
            key = _key(values["email"])
            if not seen.add(key):
                continue  # the same address twice: the list sends it one message
            final = _status(values.get("status", ""))
            changes = list(consent.pop(key, []))
            if not changes:
                joined = _read_day(
                    history, row.line, "subscribed_at", values.get("subscribed_at", ""), zone
                )
                if joined is not None:
                    dated_columns.add("subscribed_at")
                    changes.append((joined, Status.SUBSCRIBED))
                if final is not None and final is not Status.SUBSCRIBED:
                    column = f"{final.value}_at"
                    left = _read_day(history, row.line, column, values.get(column, ""), zone)
                    if left is not None:
                        dated_columns.add(column)
                        changes.append((left, final))
            if not changes:
                history.undated += 1
            tally.follow(changes, final, today)
        history.sources.append(
            f"{settings.subscribers.name}"
            + (f" (dates from {', '.join(sorted(dated_columns))})" if dated_columns else "")
        )
    seen.close()
    for changes in consent.values():  # addresses the list no longer has
        last = changes[-1][1] if changes else None
        if last is Status.SUBSCRIBED and not history.missing:
            # Taken off the list by hand (a row deleted in Excel): nobody sends to them, so
            # they are not subscribed now; a leaver still counts as having left.
            last = None
        tally.follow(changes, last, today)
    history.weeks = tally.weeks(today)
    return history
