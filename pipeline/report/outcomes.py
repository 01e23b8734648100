"""Per issue, from the ledger: who it went to and what happened, with rates.

Read-only: a report never creates, migrates or locks the ledger.  The provider's events
(delivered, bounced, opened...) come from the ledger's ``events`` table, filled by the
webhooks of ``newsletter serve``; where that table does not exist (an older ledger, or a
practice without the web app) those columns are "not known", never zero.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.config import Settings
from pipeline.content.issue import load_issue
from pipeline.errors import InputError
from pipeline.ledger.readonly import OUTBOX, has_table, ledger_time, read_ledger
from pipeline.ledger.store import RecipientStatus
from pipeline.web_edition.page import public_title

# What the provider said, in the order a person reads it.
EVENT_KINDS = ("delivered", "bounced", "complained", "unsubscribed", "opened", "clicked")


@dataclass(frozen=True)
class IssueOutcome:
    slug: str
    title: str
    started_at: datetime  # aware, UTC
    audience: int
    sent: int
    failed: int
    unknown: int
    pending: int
    # Distinct recipients per provider event kind; None when no events are recorded at all.
    events: dict[str, int] | None = field(default=None)
    provider: str = ""  # the one its send began with ("outbox": written to files, emailed nobody)
    # How many of the sent went through each provider, in the order each was first used
    # (a send paused under one provider may be finished under another); None: all of them
    # through ``provider``.
    via: dict[str, int] | None = field(default=None)

    @property
    def sent_via(self) -> dict[str, int]:
        """The sent, per provider they went through (the outbox's only written to files)."""
        if self.via is not None:
            return self.via
        return {self.provider: self.sent} if self.sent else {}

    @property
    def written(self) -> int:
        """Those "sent" to the outbox: written to a file, emailed to nobody."""
        return self.sent_via.get(OUTBOX, 0)

    @property
    def emailed(self) -> int:
        """Those sent through a real provider: the only ones a reader can have got."""
        return self.sent - self.written

    @property
    def emailed_nobody(self) -> bool:
        """Only ever written to the outbox (a trial): no reader got it, and no provider will
        ever report on it."""
        return self.emailed == 0 and (self.written > 0 or self.provider == OUTBOX)

    @property
    def base(self) -> int:
        """What rates are out of: the delivered when known, else the sent.

        More readers opening (or clicking...) than were reported delivered means the
        delivery reports are incomplete (webhooks set up after the send began, a provider
        that does not report deliveries): then out of the sent, never "opened by 500%".
        """
        events = self.events or {}
        delivered = events.get("delivered", 0)
        engaged = max(events.get(kind, 0) for kind in EVENT_KINDS[2:])
        return delivered if delivered and delivered >= engaged else self.emailed

    def rate(self, kind: str) -> float | None:
        """``kind`` as a share: delivered and bounced of the sent, the rest of the delivered.
        The sent are those emailed: what was only written to the outbox can never arrive."""
        if not self.events:  # no events table, or nothing heard back for this issue
            return None
        count = self.events.get(kind, 0)
        base = self.emailed if kind in ("delivered", "bounced") else self.base
        return count / base if base else None


def provider_event_counts(db: sqlite3.Connection) -> dict[str, dict[str, int]] | None:
    """Per issue, how many recipients each kind of provider event concerned (each reader
    counted once per kind: two opens by one reader are one "opened").

    The one place the report reads the ``events`` table (schema: the webhooks' migration:
    type, bounce, key, issue, message_id).  None if the table does not exist.  An event
    that does not name its issue is matched to it by the provider's message id.  Soft
    bounces are left out: the provider retries, and most arrive.  An event about an address
    the issue was not sent to (a test copy) is left out.
    """
    if not has_table(db, "events") or db.execute("SELECT 1 FROM events LIMIT 1").fetchone() is None:
        # No event ever recorded: the provider reports none here (the outbox, SMTP, no
        # webhook set up), so opens and bounces are not known, rather than zero.
        return None
    # Only the issue's own recipients count: a [Test] copy carries the issue's name too, so
    # her own opens of the test copies would otherwise be readers' opens (and deliveries
    # could outnumber the sent).
    rows = db.execute(
        "SELECT ev.slug, ev.type, count(DISTINCT ev.key) FROM ("
        "  SELECT coalesce(e.issue, r.issue) AS slug, e.type AS type, e.key AS key,"
        "   e.bounce AS bounce FROM events e LEFT JOIN recipients r"
        "   ON e.issue IS NULL AND e.message_id IS NOT NULL AND r.provider_id = e.message_id"
        " ) AS ev"
        " WHERE NOT (ev.type = 'bounced' AND coalesce(ev.bounce, '') = 'soft')"
        " AND EXISTS (SELECT 1 FROM recipients x WHERE x.issue = ev.slug AND x.key = ev.key)"
        " GROUP BY ev.slug, ev.type"
    ).fetchall()
    counts: dict[str, dict[str, int]] = {}
    for slug, kind, count in rows:
        if slug is not None and kind in EVENT_KINDS:
            counts.setdefault(str(slug), {})[str(kind)] = int(count)
    return counts


def _sent_via(db: sqlite3.Connection, slug: str, provider: str, sent: int) -> dict[str, int]:
    """How many of the issue's ``sent`` went through each provider, first used first.

    Each batch records the provider it was handed to (an older ledger's batches may not: then
    the issue's own).  Nearly always one provider sent every batch, and the batches say so
    without reading the issue's rows; only a send finished under another provider than it
    began with (postmark paused, then the outbox) has its sent rows counted by batch.
    """
    has_provider = any(
        column[1] == "provider" for column in db.execute("PRAGMA table_info(batches)")
    )
    if not has_provider:
        return {provider: sent} if sent else {}
    used = [
        str(name)
        for (name,) in db.execute(
            "SELECT coalesce(provider, ?) FROM batches WHERE issue = ? GROUP BY 1 ORDER BY min(id)",
            (provider, slug),
        )
    ]
    if len(used) <= 1:
        return {(used or [provider])[0]: sent} if sent else {}
    rows = db.execute(
        "SELECT coalesce(b.provider, ?), count(*) FROM recipients r"
        " LEFT JOIN batches b ON b.id = r.batch WHERE r.issue = ? AND r.status = ?"
        " GROUP BY 1 ORDER BY min(coalesce(b.id, 0))",
        (provider, slug, RecipientStatus.SENT),
    ).fetchall()
    return {str(name): int(count) for name, count in rows}


def _title(settings: Settings, slug: str) -> str:
    """The issue's title as its web page shows it, else (no draft any more) its file name."""
    try:
        return public_title(load_issue(settings.newsletters_dir / f"{slug}.md", settings.timezone))
    except InputError:  # a deleted or broken draft still has a report: by its name
        return slug


def issue_outcomes(settings: Settings, slug: str | None = None) -> list[IssueOutcome]:
    """Every issue the ledger knows (or just ``slug``), oldest first."""
    with read_ledger(settings.state_dir) as db:
        if db is None:
            return []
        events = provider_event_counts(db)
        query = "SELECT slug, started_at, provider FROM issues"
        params: tuple[str, ...] = ()
        if slug is not None:
            query += " WHERE slug = ?"
            params = (slug,)
        issues = db.execute(query + " ORDER BY started_at, slug", params).fetchall()
        # The ledger's kept counts (schema 7 on), as `status` shows them: counting the rows
        # reads the whole table since no index holds every row's status (0.4 s at 1M).  A
        # ledger without its rows is damaged, counts or not: counting them then says so.
        counted = (
            "SELECT status, n FROM recipient_counts WHERE issue = ?"
            if has_table(db, "recipient_counts") and has_table(db, "recipients")
            else "SELECT status, count(*) FROM recipients WHERE issue = ? GROUP BY status"
        )
        outcomes = []
        for name, started, provider in issues:
            by_status = dict(db.execute(counted, (name,)).fetchall())
            sent = by_status.get(RecipientStatus.SENT, 0)
            failed = by_status.get(RecipientStatus.FAILED, 0)
            unknown = by_status.get(RecipientStatus.UNKNOWN, 0)
            pending = by_status.get(RecipientStatus.PENDING, 0) + by_status.get(
                RecipientStatus.INFLIGHT, 0
            )
            outcomes.append(
                IssueOutcome(
                    slug=name,
                    title=_title(settings, name),
                    started_at=ledger_time(started, f"started_at of {name}"),
                    audience=sent + failed + unknown + pending,
                    sent=sent,
                    failed=failed,
                    unknown=unknown,
                    pending=pending,
                    events=None if events is None else events.get(name, {}),
                    provider=str(provider),
                    via=_sent_via(db, name, str(provider), sent),
                )
            )
        return outcomes
