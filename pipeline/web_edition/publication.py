"""Which issues the public may see, and since when.

An issue is published once the ledger shows it went to someone, or once its ``send_at`` has
passed.  A draft (no ``send_at``, never sent) and a scheduled issue (``send_at`` still ahead)
are never published: only a ``--drafts`` preview shows them, marked as such.  What went to
the outbox went to nobody (it writes files, a trial): an issue only ever written there is
not published by the ledger, only by its ``send_at``, as one never sent is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from pipeline.config import Settings
from pipeline.content.issue import WELCOME_DRAFT, Issue, load_issue
from pipeline.errors import InputError
from pipeline.ledger.readonly import OUTBOX, ledger_time, read_ledger
from pipeline.ledger.store import RecipientStatus


class Visibility(StrEnum):
    PUBLISHED = "published"  # sent, or its send_at has passed
    SCHEDULED = "scheduled"  # send_at still ahead: private
    DRAFT = "draft"  # no send_at and never sent: private
    TRIAL = "trial"  # only written to the outbox, its send_at not passed (or none): private


@dataclass(frozen=True)
class Entry:
    issue: Issue
    visibility: Visibility
    published_at: datetime | None  # aware; the send_at, or when the ledger first sent it
    trial: bool = False  # the ledger shows it only written to the outbox: emailed to nobody

    @property
    def public(self) -> bool:
        return self.visibility is Visibility.PUBLISHED


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str
    gone: bool = False  # sent, but its draft is no longer in newsletters/


@dataclass(frozen=True)
class Sends:
    """What the ledger shows went out: each issue sent to anyone, with its first sending time,
    and the issues only ever written to the outbox (a trial), which went to nobody."""

    first: dict[str, datetime]
    trials: frozenset[str]


def ledger_sends(state_dir: Path) -> Sends:
    """Each issue the ledger shows as sent through a real provider, with its first sending
    time; and those whose only sends were written to the outbox.

    A recipient's provider is its batch's (a send begun under one provider may be finished
    under another); an older ledger's batches that do not say are the issue's.  Opened
    read-only: building the archive never creates or migrates a ledger.
    """
    with read_ledger(state_dir) as db:
        if db is None:
            return Sends({}, frozenset())
        batch_provider = any(
            column[1] == "provider" for column in db.execute("PRAGMA table_info(batches)")
        )
        provider = "coalesce(b.provider, i.provider)" if batch_provider else "i.provider"
        join = " LEFT JOIN batches b ON b.id = r.batch" if batch_provider else ""
        rows = db.execute(
            f"SELECT r.issue, min(CASE WHEN {provider} <> ? THEN"
            " coalesce(r.updated_at, i.started_at) END) FROM recipients r"
            f" JOIN issues i ON i.slug = r.issue{join} WHERE r.status = ? GROUP BY r.issue",
            (OUTBOX, RecipientStatus.SENT),
        ).fetchall()
        return Sends(
            first={
                str(slug): ledger_time(when, "the time it was sent")
                for slug, when in rows
                if when is not None
            },
            trials=frozenset(str(slug) for slug, when in rows if when is None),
        )


def classify(issue: Issue, sent_at: datetime | None, now: datetime, trial: bool = False) -> Entry:
    if sent_at is not None:
        # The send_at is the date she chose; the ledger's time when there is none, or when it
        # went out before it (sent early by hand), so the date never moves once it is public.
        when = issue.send_at if issue.send_at is not None and issue.send_at <= sent_at else sent_at
        return Entry(issue, Visibility.PUBLISHED, when)
    if issue.send_at is not None and issue.send_at <= now:
        # Public by its date, sent or not (README: The web edition); one only written to the
        # outbox is marked, so the archive can say nobody was emailed it.
        return Entry(issue, Visibility.PUBLISHED, issue.send_at, trial=trial)
    if trial:
        return Entry(issue, Visibility.TRIAL, None, trial=True)
    if issue.send_at is not None:
        return Entry(issue, Visibility.SCHEDULED, None)
    return Entry(issue, Visibility.DRAFT, None)


def collect(settings: Settings, now: datetime) -> tuple[list[Entry], list[Skipped]]:
    """Every draft in ``newsletters/``, classified, newest first (then drafts, scheduled).

    A draft that does not load is skipped with its reason, unless the ledger shows it was
    sent: then it is published and must load, so its error stops the build.
    """
    sends = ledger_sends(settings.state_dir)
    sent = sends.first
    entries: list[Entry] = []
    skipped: list[Skipped] = []
    for path in sorted(settings.newsletters_dir.glob("*.md")):
        if path.is_dir():
            continue  # a folder named like a draft ("old.md/") holds no issue
        if path.name == WELCOME_DRAFT:
            continue  # the web app's welcome for each new subscriber: not an issue, no page
        if path.name.startswith("."):
            # Not hers: a Mac's "._name.md" beside each file on a shared drive, an editor's
            # lock; and a name of dots would make the page "issues/../index.html", the index.
            continue
        try:
            issue = load_issue(path, settings.timezone)
        except InputError as exc:
            if path.stem in sent:
                raise
            skipped.append(Skipped(path, _first_problem(exc)))
            continue
        entry = classify(issue, sent.get(issue.slug), now, issue.slug in sends.trials)
        if entry.public and issue.slug not in sent:
            # Public by its date alone: a draft cron refused for its problems (a misspelt
            # merge field shown as "Hi ,", a literal {.button}) went on the site as it was.
            from pipeline.render.checks import check_issue  # what a send refuses

            problems = check_issue(path, settings)
            if problems:
                first = _first_problem(problems[0])
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                skipped.append(Skipped(path, first + more))
                continue
        entries.append(entry)
    loaded = {entry.issue.slug for entry in entries}
    for slug in sorted(set(sent) - loaded):
        # Sent, then its draft moved or deleted: its page goes, and she should know why.
        gone = settings.newsletters_dir / f"{slug}.md"
        skipped.append(
            Skipped(
                gone,
                f"{gone}: was sent, but the file is gone, so its page is not on the site",
                gone=True,
            )
        )

    def order(entry: Entry) -> tuple[int, float, str]:
        rank = 0 if entry.public else 1
        moment = entry.published_at or entry.issue.send_at
        return (rank, -(moment.timestamp() if moment else float("inf")), entry.issue.slug)

    entries.sort(key=order)
    return entries, skipped


def _first_problem(exc: InputError) -> str:
    lines = exc.location_message().splitlines()
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    return lines[0] + more
