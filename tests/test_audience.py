"""subscribers.csv -> audience: the messy list, with exact counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.audience.csv_source import column_name
from pipeline.audience.subscribers import Skipped, SkipReason, Subscriber, check_list, scan
from pipeline.audience.unsubscribe import set_status
from pipeline.cli import cli

from .conftest import MESSY_AUDIENCE, MESSY_CSV


def test_messy_list_exact_audience(make_project: Callable[..., Path]) -> None:
    root = make_project(csv=MESSY_CSV)
    items = list(scan(root / "subscribers.csv"))
    audience = [i for i in items if isinstance(i, Subscriber)]
    skipped = [i for i in items if isinstance(i, Skipped)]
    assert [s.email for s in audience] == MESSY_AUDIENCE
    assert Counter(s.reason for s in skipped) == {
        SkipReason.DUPLICATE: 1,
        SkipReason.INVALID: 3,
        SkipReason.UNSUBSCRIBED: 2,
        SkipReason.BOUNCED: 1,
        SkipReason.COMPLAINED: 1,
        SkipReason.SUPPRESSED: 1,
    }
    ben = audience[1]
    assert ben.line == 4
    assert ben.fields["first_name"] == "Ben"  # surrounding spaces gone
    assert ben.fields["city"] == "Shelby\r\nville"  # a quoted newline survives
    assert ben.name == "Ben Lifter"
    invalid = {s.line: s.detail for s in skipped if s.reason is SkipReason.INVALID}
    assert set(invalid) == {6, 7, 15}  # rows 4 and 12 each span two lines
    assert invalid[15].startswith("status: 'subscribd' is not one of")
    assert invalid[6].startswith("email: ")
    # Kim is subscribed on line 16 but unsubscribed on line 17: the opt-out wins.
    (kim,) = [s for s in skipped if s.reason is SkipReason.SUPPRESSED]
    assert kim.line == 16


def test_tags_select_the_audience(make_project: Callable[..., Path]) -> None:
    root = make_project(csv=MESSY_CSV)
    seniors = [
        i.email for i in scan(root / "subscribers.csv", ["Seniors"]) if isinstance(i, Subscriber)
    ]
    assert seniors == ["ben@example.org", "ivy@example.org"]


def test_a_tagged_duplicate_still_gets_one(make_project: Callable[..., Path]) -> None:
    csv = "email,tags\nsam@example.org,\nSAM@example.org,runners\nsam@example.org,runners\n"
    root = make_project(csv=csv)
    items = list(scan(root / "subscribers.csv", ["runners"]))
    assert [(i.line, type(i).__name__) for i in items] == [
        (2, "Skipped"),
        (3, "Subscriber"),
        (4, "Skipped"),
    ]


def test_check_list_report(make_project: Callable[..., Path]) -> None:
    report = check_list(make_project(csv=MESSY_CSV) / "subscribers.csv")
    assert report.rows == 14 and report.audience == 5
    assert report.by_status["subscribed"] == 5
    assert report.by_status["invalid"] == 3
    assert report.by_tag == {"runners": 2, "seniors": 2}
    assert [d.line for d in report.duplicates] == [3]


def test_subscribers_check_command(make_project: Callable[..., Path]) -> None:
    root = make_project(csv=MESSY_CSV)
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(root / "newsletter.toml"), "subscribers", "check"])
    assert result.exit_code == 1
    out = result.stdout
    assert "14 rows, 5 would get an issue" in out
    assert f"{root / 'subscribers.csv'}:15: invalid: status: 'subscribd'" in out
    assert f"{root / 'subscribers.csv'}:3: duplicate of an earlier row: ADA@example.org" in out
    clean = make_project()
    result = runner.invoke(
        cli, ["--config", str(clean / "newsletter.toml"), "subscribers", "check"]
    )
    assert result.exit_code == 0


def test_malformed_csv_names_file_and_line(make_project: Callable[..., Path]) -> None:
    root = make_project(csv='email,first_name\nada@example.org,"unclosed\n')
    result = CliRunner().invoke(
        cli, ["--config", str(root / "newsletter.toml"), "subscribers", "check"]
    )
    assert result.exit_code == 2
    assert f'{root / "subscribers.csv"}:2: a quote (") opened in this row is never closed' in (
        result.stderr
    )


def test_missing_email_column(make_project: Callable[..., Path]) -> None:
    root = make_project(csv="mail,name\nada@example.org,Ada\n")
    result = CliRunner().invoke(
        cli, ["--config", str(root / "newsletter.toml"), "subscribers", "check"]
    )
    assert result.exit_code == 2
    assert "subscribers.csv:1: the header row has no 'email' column" in result.stderr


def test_set_status_rewrites_atomically_and_keeps_format(make_project: Callable[..., Path]) -> None:
    root = make_project(csv=MESSY_CSV)
    path = root / "subscribers.csv"
    assert set_status(path, "ada@example.org", "unsubscribed") == 2  # both rows of Ada
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    assert b'"Shelby\r\nville"' in raw
    emails = [i.email for i in scan(path) if isinstance(i, Subscriber)]
    assert emails == MESSY_AUDIENCE[1:]
    assert not list(root.glob(".subscribers.csv.*.tmp"))  # no temp file left behind


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("email", "email"),
        ("Email", "email"),
        ("E-mail", "email"),
        ("Email Address", "email"),
        (" EMAIL_ADDRESS ", "email"),
        ("First Name", "first_name"),
        ("FNAME", "first_name"),
        ("Last Name", "last_name"),
        ("LNAME", "last_name"),
        ("Tags", "tags"),
        ("TAGS", "tags"),
        ("Zip / Postal Code", "zip_postal_code"),
        ("\ufeffcity", "city"),
    ],
)
def test_header_names_as_spreadsheets_write_them(header: str, name: str) -> None:
    assert column_name(header) == name
