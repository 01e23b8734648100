"""Proof of consent: every fact about a subscriber's consent, in the ledger, never rewritten.

Input: what happened to an address (signed up on the form, confirmed, unsubscribed in one
click, bounced...), when, why, and from where.  Output: the address's history, oldest first,
which ``newsletter subscribers history ADDRESS`` prints.

Privacy law (GDPR art. 7(1): "the controller shall be able to demonstrate that the data subject
has consented") and the inbox providers' sender rules expect a double opt-in list to keep, per
address, when and where the person signed up, when they confirmed, and each later change with
its cause.  Rows are only ever appended: the history is the list of facts, the status in
subscribers.csv is derived from them.

``db`` is the ledger's connection (``Ledger.db``).  ``record_consent`` issues one INSERT: in
autocommit mode that is its own transaction, inside a caller's ``BEGIN`` it joins that one (so
an opt-out and its queue entry are committed together).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pipeline.audience.csv_source import address_key_fast


class ConsentAction(StrEnum):
    SIGNUP_REQUESTED = "signup_requested"  # the form was posted; a confirmation may follow
    CONFIRMED = "confirmed"  # the confirmation link's button was pressed
    UNSUBSCRIBED = "unsubscribed"
    RESUBSCRIBED = "resubscribed"  # an unsubscribed row flipped back by a new confirmation
    BOUNCED = "bounced"
    COMPLAINED = "complained"  # marked as spam
    ADDED = "added"  # put on the list by hand or by an import
    REMOVED = "removed"  # deleted from the list (an erasure request, a clean-up)


class ConsentCause(StrEnum):
    FORM = "form"  # the signup or confirmation page
    ONE_CLICK = "one-click"  # RFC 8058 POST, or the unsubscribe page's button
    BY_HAND = "by-hand"  # a person ran a command (`newsletter unsubscribe`, an import)
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    PROVIDER = "provider"  # the email provider said so (a webhook, its suppression list)


@dataclass(frozen=True)
class ConsentEvent:
    at: str  # UTC, ISO 8601
    email: str
    action: ConsentAction
    cause: ConsentCause
    ip: str | None = None
    user_agent: str | None = None
    source_url: str | None = None
    detail: str | None = None

    def describe(self) -> str:
        """One line for a person: when, what, why, and where from."""
        # "signup requested", not the stored name "signup_requested": she reads this.
        what = self.action.value.replace("_", " ")
        parts = [f"{self.at}  {what} ({self.cause.value})"]
        if self.ip:
            parts.append(f"from {self.ip}")
        if self.source_url:
            parts.append(f"on {self.source_url}")
        if self.user_agent:
            parts.append(f"with {self.user_agent!r}")
        if self.detail:
            parts.append(f"- {self.detail}")
        return " ".join(parts)


def consent_key(email: str) -> str:
    """The same identity as the list and the recipients table: what
    ``address_key(normalise_address(email))`` gives, computed without running the validator
    (``address_key_fast``, as the list writer matches rows): it is on every opt-out's path."""
    return address_key_fast(email)


def timestamp(at: datetime | None = None) -> str:
    """UTC with milliseconds: a confirmation and an unsubscribe in the same second still
    have an order (a confirmation link older than the last unsubscribe is refused)."""
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _clip(value: str | None, limit: int) -> str | None:
    """Values from the request are kept, but bounded: a 1 MB user agent is not evidence."""
    if value is None:
        return None
    # Control characters out: the history is printed to a terminal (no escape sequences).
    return _CONTROL.sub(" ", value)[:limit]


def record_consent(
    db: sqlite3.Connection,
    email: str,
    action: ConsentAction | str,
    cause: ConsentCause | str,
    *,
    at: datetime | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    source_url: str | None = None,
    detail: str | None = None,
) -> ConsentEvent:
    """Append one fact; raises ValueError for an action or cause outside the vocabulary."""
    event = ConsentEvent(
        at=timestamp(at),
        email=email.strip()[:320],
        action=ConsentAction(action),
        cause=ConsentCause(cause),
        ip=_clip(ip, 64),
        user_agent=_clip(user_agent, 512),
        source_url=_clip(source_url, 2048),
        detail=_clip(detail, 2048),
    )
    db.execute(
        "INSERT INTO consent_history"
        " (key, email, at, action, cause, ip, user_agent, source_url, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            consent_key(email),
            event.email,
            event.at,
            event.action.value,
            event.cause.value,
            event.ip,
            event.user_agent,
            event.source_url,
            event.detail,
        ),
    )
    return event


def consent_history(db: sqlite3.Connection, email: str) -> list[ConsentEvent]:
    """Every fact recorded for this address (any case), oldest first."""
    rows = db.execute(
        "SELECT at, email, action, cause, ip, user_agent, source_url, detail"
        " FROM consent_history WHERE key = ? ORDER BY at, id",
        (consent_key(email),),
    ).fetchall()
    return [
        ConsentEvent(
            at=str(at),
            email=str(address),
            action=ConsentAction(action),
            cause=ConsentCause(cause),
            ip=ip,
            user_agent=agent,
            source_url=source,
            detail=detail,
        )
        for at, address, action, cause, ip, agent, source, detail in rows
    ]


def last_event(
    db: sqlite3.Connection, email: str, actions: tuple[ConsentAction, ...]
) -> ConsentEvent | None:
    """The most recent of these actions for this address, or None."""
    marks = ", ".join("?" for _ in actions)
    row = db.execute(
        "SELECT at, email, action, cause, ip, user_agent, source_url, detail"
        f" FROM consent_history WHERE key = ? AND action IN ({marks})"
        " ORDER BY at DESC, id DESC LIMIT 1",
        (consent_key(email), *(a.value for a in actions)),
    ).fetchone()
    if row is None:
        return None
    at, address, action, cause, ip, agent, source, detail = row
    return ConsentEvent(
        str(at), str(address), ConsentAction(action), ConsentCause(cause), ip, agent, source, detail
    )


# What takes someone off the list, and what puts them back on it.
LEFT = (ConsentAction.UNSUBSCRIBED, ConsentAction.BOUNCED, ConsentAction.COMPLAINED)
BACK = (ConsentAction.CONFIRMED, ConsentAction.RESUBSCRIBED, ConsentAction.ADDED)


def removed_for_good(db: sqlite3.Connection) -> set[str]:
    """Addresses whose last word in the history is ``removed`` (an erasure request, a
    clean-up), with nothing since that put them back: a resume never brings such a reader
    back to an issue, even when an older copy of the list has them again."""
    back = ", ".join(f"'{a.value}'" for a in (*BACK, ConsentAction.REMOVED))
    rows = db.execute(
        "SELECT h.key FROM consent_history AS h WHERE h.action = ? AND NOT EXISTS (SELECT 1"
        f" FROM consent_history AS l WHERE l.key = h.key AND l.action IN ({back})"
        " AND (l.at > h.at OR (l.at = h.at AND l.id > h.id)))",
        (ConsentAction.REMOVED,),
    ).fetchall()
    return {str(key) for (key,) in rows}


def left_for_good(db: sqlite3.Connection) -> dict[str, str]:
    """Addresses whose last word in the history is an opt-out (unsubscribed, bounced,
    complained) with nothing since that put them back, each with that event in words
    (``unsubscribed 2026-11-25 (one-click)``).

    A send keeps them out even when subscribers.csv says ``subscribed``: an older copy of the
    list put back (from a backup, a laptop, an email attachment) once mailed someone who had
    unsubscribed, which the law forbids.  Coming back is recorded (a confirmation, or
    ``newsletter subscribers resubscribe``), and then they are mailed again."""
    left = ", ".join(f"'{a.value}'" for a in LEFT)
    either = ", ".join(f"'{a.value}'" for a in (*LEFT, *BACK))
    rows = db.execute(
        "SELECT h.key, h.at, h.action, h.cause FROM consent_history AS h"
        f" WHERE h.action IN ({left}) AND NOT EXISTS (SELECT 1 FROM consent_history AS l"
        f" WHERE l.key = h.key AND l.action IN ({either})"
        " AND (l.at > h.at OR (l.at = h.at AND l.id > h.id)))"
    ).fetchall()
    return {
        str(key): f"{action} {str(at)[:10]} ({CAUSE_WORDS.get(str(cause), cause)})"
        for key, at, action, cause in rows
    }


# How each cause reads in a sentence (a message for her, not the history's own token).
CAUSE_WORDS = {
    ConsentCause.FORM.value: "on the signup page",
    ConsentCause.ONE_CLICK.value: "with the one-click link",
    ConsentCause.BY_HAND.value: "by a newsletter command",
    ConsentCause.BOUNCE.value: "a bounce",
    ConsentCause.COMPLAINT.value: "a spam complaint",
    ConsentCause.PROVIDER.value: "the email provider said so",
}
