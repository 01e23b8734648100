"""Proof of consent: facts appended per address, read back oldest first, printed by the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import Settings
from pipeline.ledger.consent import (
    ConsentAction,
    ConsentCause,
    consent_history,
    last_event,
    record_consent,
)
from pipeline.sending import open_ledger


def test_history_is_per_address_in_any_case_and_oldest_first(settings: Settings) -> None:
    ledger = open_ledger(settings)
    db = ledger.db
    record_consent(
        db,
        "Ada.Runner@Example.org",
        "signup_requested",
        "form",
        at=datetime(2026, 1, 2, 9, 0, tzinfo=UTC),
        ip="203.0.113.7",
        user_agent="Mozilla/5.0\x1b[2J\x00",
        source_url="https://movementsolutions.example/",
    )
    record_consent(db, "someone.else@example.org", "added", "by-hand")
    record_consent(
        db,
        "ada.runner@example.org",
        ConsentAction.CONFIRMED,
        ConsentCause.FORM,
        at=datetime(2026, 1, 2, 9, 5, tzinfo=UTC),
    )
    record_consent(
        db,
        "ada.runner@example.org",
        "unsubscribed",
        "one-click",
        at=datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC),
    )
    events = consent_history(db, "ADA.RUNNER@example.org")
    assert [e.action for e in events] == ["signup_requested", "confirmed", "unsubscribed"]
    assert events[0].ip == "203.0.113.7" and events[0].user_agent == "Mozilla/5.0 [2J "
    assert events[2].at == "2026-03-01T12:00:00.250+00:00"
    last = last_event(db, "ada.runner@example.org", (ConsentAction.CONFIRMED,))
    assert last is not None and last.at.startswith("2026-01-02T09:05")
    with pytest.raises(ValueError):
        record_consent(db, "ada.runner@example.org", "vanished", "form")
    with pytest.raises(ValueError):
        record_consent(db, "ada.runner@example.org", "confirmed", "magic")
    ledger.close()


def test_the_cli_prints_the_history(project: Path, settings: Settings) -> None:
    runner = CliRunner()
    config = str(project / "newsletter.toml")
    result = runner.invoke(cli, ["--config", config, "subscribers", "history", "x@example.org"])
    assert result.exit_code == 0
    assert "x@example.org: nothing recorded, and not in " in result.output
    assert result.output.rstrip().endswith("subscribers.csv")
    # On the sample list since before the history was kept: not "nothing" as if unknown.
    result = runner.invoke(
        cli, ["--config", config, "subscribers", "history", "ada.runner@example.org"]
    )
    assert result.exit_code == 0
    assert (
        "ada.runner@example.org: nothing recorded; subscribed in " in result.output
        and "subscribers.csv, from before the history was kept" in result.output
    )
    ledger = open_ledger(settings)
    record_consent(
        ledger.db,
        "x@example.org",
        "signup_requested",
        "form",
        ip="198.51.100.2",
        source_url="https://movementsolutions.example/join",
    )
    ledger.close()
    result = runner.invoke(cli, ["--config", config, "subscribers", "history", "X@example.org"])
    assert result.exit_code == 0, result.output
    assert "X@example.org: 1 event\n" in result.output
    assert (
        "signup requested (form) from 198.51.100.2 on https://movementsolutions.example/join"
        in result.output
    )


def test_changes_by_hand_are_in_the_history(project: Path, settings: Settings) -> None:
    runner = CliRunner()
    config = ["--config", str(project / "newsletter.toml")]
    for args in (
        ["subscribers", "add", "hand@example.org", "--first-name", "Hana"],
        ["unsubscribe", "hand@example.org"],
        ["subscribers", "resubscribe", "hand@example.org"],
        ["subscribers", "remove", "hand@example.org"],
    ):
        result = runner.invoke(cli, [*config, *args])
        assert result.exit_code == 0, result.output
    ledger = open_ledger(settings)
    events = consent_history(ledger.db, "HAND@example.org")
    ledger.close()
    assert [(e.action.value, e.cause.value) for e in events] == [
        ("added", "by-hand"),
        ("unsubscribed", "by-hand"),
        ("resubscribed", "by-hand"),
        ("removed", "by-hand"),
    ]
    assert events[0].detail == "newsletter subscribers add"
