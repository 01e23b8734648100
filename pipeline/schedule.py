"""Which issues cron may send now, in which order, and which are too late.

Input: the drafts' ``send_at`` (aware datetimes), what the ledger knows, the time now (a
parameter, so tests move the clock), and ``max_lateness``.  Output: one ``Plan`` per draft.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from pipeline.ledger.store import IssueRecord, IssueStatus


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
) -> list[Plan]:
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
            plans.append(Plan(draft, Decision.NOT_YET, f"due {_local(draft)}"))
        elif now - send_at > max_lateness:
            late = now - send_at
            plans.append(
                Plan(
                    draft,
                    Decision.TOO_LATE,
                    f"send_at {_local(draft)} passed {_human(late)} ago, more than "
                    f"max_lateness ({_human(max_lateness)}); send it by hand if it should still go",
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


def _local(draft: Draft) -> str:
    return draft.send_at.isoformat() if draft.send_at else "(none)"


def _human(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"
