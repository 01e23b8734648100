"""Attacks on the report's numbers: a figure must never say more than the ledger does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.report.outcomes import IssueOutcome
from pipeline.report.words import percent


@pytest.mark.parametrize(
    ("rate", "shown"),
    [
        (996 / 1000, "99%"),  # once "100%", hiding four bounces
        (9999 / 10000, "99%"),
        (1.0, "100%"),
        (1 / 100_000, "under 0.1%"),  # once "0.0%": not none
        (0.0, "0%"),
        (2.9999 / 1000, "0.2%"),  # once "0.3%", the spam limit, with no warning beside it
        (3 / 1000, "0.3%"),
        (0.0995, "10%"),  # once "10.0%": one decimal only below 10%
        (0.0994, "9.9%"),
        (10 / 18, "56%"),
        (1 / 18, "5.6%"),
        (0.29, "29%"),  # 0.29 * 100 is 28.999999999999996
        (None, "-"),
    ],
)
def test_percent_never_rounds_onto_an_untrue_figure(rate: float | None, shown: str) -> None:
    assert percent(rate) == shown


def outcome(events: dict[str, int]) -> IssueOutcome:
    return IssueOutcome(
        slug="s",
        title="t",
        started_at=datetime(2025, 7, 21, tzinfo=UTC),
        audience=20,
        sent=20,
        failed=0,
        unknown=0,
        pending=0,
        events=events,
    )


def test_rates_are_out_of_the_sent_when_delivery_reports_are_incomplete() -> None:
    """2 deliveries heard of, 10 opens: once "opened by 500%"."""
    partial = outcome({"delivered": 2, "opened": 10, "clicked": 3})
    assert partial.rate("opened") == 10 / 20
    assert percent(partial.rate("clicked")) == "15%"
    complete = outcome({"delivered": 18, "opened": 10})
    assert complete.rate("opened") == 10 / 18
