"""Which issues cron may send now, in which order, and which are too late.

Input: the drafts' ``send_at`` (aware datetimes), what the ledger knows, the time now (a
parameter, so tests move the clock), and ``max_lateness``.  Output: one ``Plan`` per draft,
and for ``newsletter status`` one ``IssueState`` per issue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path

from pipeline.ledger.store import IssueRecord, IssueStatus
from pipeline.wording import duration, local_time, shown


class Decision(StrEnum):
    SEND = "send"  # due, never started
    RESUME = "resume"  # started and not complete: always resumed
    NOT_YET = "not yet"
    TOO_LATE = "too late"  # never started and send_at is older than max_lateness
    COMPLETE = "complete"
    UNSCHEDULED = "no send_at"  # only ever sent by hand


@dataclass(frozen=True)
class Draft:
    path: Path
    slug: str
    send_at: datetime | None


@dataclass(frozen=True)
class Plan:
    draft: Draft
    decision: Decision
    detail: str = ""

    @property
    def acts(self) -> bool:
        return self.decision in (Decision.SEND, Decision.RESUME)


def plan_due(
    drafts: Iterable[Draft],
    ledger: Mapping[str, IssueRecord],
    now: datetime,
    max_lateness: timedelta,
    timezone: tzinfo = UTC,
) -> list[Plan]:
    """``ledger``: the issues that have started (an audience recorded); ``timezone``: hers,
    for the times in the plans' words."""
    # In UTC: Python compares and subtracts two datetimes that share a tzinfo by wall clock,
    # which is an hour off across a daylight-saving change.
    now = now.astimezone(UTC)
    plans = []
    for draft in drafts:
        record = ledger.get(draft.slug)
        send_at = draft.send_at.astimezone(UTC) if draft.send_at is not None else None
        if send_at is None:
            plans.append(Plan(draft, Decision.UNSCHEDULED))
        elif record is not None and record.status is IssueStatus.COMPLETE:
            plans.append(Plan(draft, Decision.COMPLETE))
        elif record is not None:
            plans.append(Plan(draft, Decision.RESUME, f"interrupted ({record.status})"))
        elif send_at > now:
            plans.append(Plan(draft, Decision.NOT_YET, f"due {local_time(send_at, timezone)}"))
        elif now - send_at > max_lateness:
            plans.append(
                Plan(
                    draft,
                    Decision.TOO_LATE,
                    missed_detail(draft, send_at, now, max_lateness, timezone),
                )
            )
        else:
            plans.append(Plan(draft, Decision.SEND))
    far_future = datetime.max.replace(tzinfo=UTC)
    return sorted(
        plans,
        key=lambda p: (
            p.draft.send_at.astimezone(UTC) if p.draft.send_at else far_future,
            p.draft.slug,
        ),
    )


def missed_detail(
    draft: Draft, send_at: datetime, now: datetime, max_lateness: timedelta, timezone: tzinfo
) -> str:
    return (
        f"its send_at, {local_time(send_at, timezone)}, passed {duration(now - send_at)} ago, "
        f"more than max_lateness ({duration(max_lateness)}), so cron will not send it; to send "
        f"it anyway: newsletter send {shown(draft.path)}"
    )


class IssueState(StrEnum):
    """Where an issue stands, for ``newsletter status`` (listmonk's campaign vocabulary)."""

    DRAFT = "draft"  # no send_at: only ever sent by hand
    SCHEDULED = "scheduled"  # send_at still to come
    DUE = "due"  # send_at passed, within max_lateness: the next cron run sends it
    MISSED = "missed"  # send_at passed more than max_lateness ago and never started
    SENDING = "sending"  # started and not finished; a run resumes it
    PAUSED = "paused"
    STOPPED = "stopped"
    COMPLETE = "complete"


def issue_state(
    send_at: datetime | None,
    record: IssueRecord | None,
    now: datetime,
    max_lateness: timedelta,
) -> IssueState:
    """``record``: the ledger's, only if the issue started (has an audience)."""
    if record is not None:
        try:
            return IssueState(record.status.value)
        except ValueError:  # a ledger state this vocabulary lacks: it started, not finished
            return IssueState.SENDING
    if send_at is None:
        return IssueState.DRAFT
    late = now.astimezone(UTC) - send_at.astimezone(UTC)
    if late < timedelta(0):
        return IssueState.SCHEDULED
    return IssueState.MISSED if late > max_lateness else IssueState.DUE
