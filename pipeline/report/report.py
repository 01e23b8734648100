"""The report's data in one value: each issue's outcome and the list over time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from pipeline.config import Settings
from pipeline.report.list_history import ListHistory, list_history
from pipeline.report.outcomes import IssueOutcome, issue_outcomes


@dataclass(frozen=True)
class Report:
    name: str  # the newsletter's
    made_at: datetime  # aware, in her time zone
    issues: list[IssueOutcome]  # oldest first
    history: ListHistory

    @property
    def events_recorded(self) -> bool:
        """Whether the ledger has a provider events table at all."""
        return any(issue.events is not None for issue in self.issues)

    @property
    def nothing_comes_back(self) -> bool:
        """Every issue went to the outbox, which emails nobody: no provider will ever report."""
        return bool(self.issues) and all(issue.emailed_nobody for issue in self.issues)

    @property
    def some_written(self) -> bool:
        """Some readers' messages went only to the outbox: nothing comes back for those."""
        return any(issue.written for issue in self.issues)


def make_report(settings: Settings, now: datetime, slug: str | None = None) -> Report:
    local = now.astimezone(settings.timezone)
    today: date = local.date()
    return Report(
        name=settings.name,
        made_at=local,
        issues=issue_outcomes(settings, slug),
        history=list_history(settings, today),
    )
