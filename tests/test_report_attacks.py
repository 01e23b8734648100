"""Attacks on the report's numbers: a figure must never say more than the ledger does."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from pipeline.audience.subscribers import Status
from pipeline.config import Settings, load_settings
from pipeline.report.list_history import list_history
from pipeline.report.outcomes import IssueOutcome
from pipeline.report.report import make_report
from pipeline.report.words import percent

from .conftest import write_project
from .test_report import FIRST, NOW, add_events, project
from .web_edition_fixtures import newsletter

__all__ = ["project"]  # the fixture: a ledger with two sends, failures and unknowns


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


def test_a_typod_or_future_date_neither_spans_centuries_nor_loses_a_reader(
    tmp_path: Path,
) -> None:
    """A joining date typed "0202-01-05" once made a report of 95,219 weeks (a 24 MB page);
    one ahead of today was never added up, so that reader was missing from "now"."""
    root = write_project(tmp_path / "project")
    (root / "subscribers.csv").write_text(
        "email,first_name,status,subscribed_at\n"
        "ada@example.org,Ada,subscribed,2025-07-01\n"
        "typo@example.org,Ty,subscribed,0202-01-05\n"
        "future@example.org,Fu,subscribed,2099-03-01\n",
        encoding="utf-8",
    )
    settings = load_settings(root / "newsletter.toml")
    history = list_history(settings, date(2025, 9, 3))
    assert history.weeks[0].start == date(2025, 6, 30)
    assert len(history.weeks) == 10
    assert history.now[Status.SUBSCRIBED] == 3
    assert history.undated == 1  # the typo: counted, from the first week
    assert history.weeks[-1].joined == 1  # the future date: this week


def test_events_of_her_test_copies_are_not_readers_events(
    project: tuple[Path, Settings],
) -> None:
    """A [Test] copy carries the issue's name, so the provider's events about it (her own
    opens and clicks, its delivery) once counted as readers': delivered could exceed sent."""
    _, settings = project
    db_path = settings.state_dir / "ledger.sqlite3"
    add_events(db_path)
    db = sqlite3.connect(db_path)
    with db:
        db.executemany(
            "INSERT INTO events (provider, event_id, type, email, key, issue, received_at, raw)"
            " VALUES ('postmark', ?, ?, ?, ?, ?, '2025-07-21T15:00:00+00:00', '{}')",
            [
                (
                    f"t{n}",
                    kind,
                    "connie@movementsolutions.example",
                    "connie@movementsolutions.example",
                    FIRST,
                )
                for n, kind in enumerate(("delivered", "opened", "clicked", "complained"))
            ],
        )
    db.close()
    first = make_report(settings, NOW).issues[0]
    assert first.events == {
        "delivered": 18,
        "bounced": 2,
        "opened": 10,
        "clicked": 3,
        "complained": 1,
        "unsubscribed": 1,
    }


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("newsletters/2025-07-21-hip-rotation.md", "name it with .html at the end"),
        ("subscribers.csv", "this file exists and is not one: it is left as it is"),
        ("newsletter.toml", "name it with .html at the end"),
        ("newsletters/report.html", "is inside newsletters/"),
        ("templates/report.html", "is inside templates/"),
    ],
)
def test_report_html_never_overwrites_her_files(tmp_path: Path, target: str, message: str) -> None:
    """`report --html newsletters/x.md` (meant: `report newsletters/x.md`) once replaced her
    draft with the report; `--html subscribers.csv` her whole list."""
    root = write_project(tmp_path / "project")
    (root / "templates").mkdir(exist_ok=True)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    code, _, err = newsletter(root, "report", "--html", target)
    assert code == 2
    assert f"{target}: --html: " in err and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
