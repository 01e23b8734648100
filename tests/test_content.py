"""Draft -> Issue: front matter, send_at, merge-field extraction, and errors with file:line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipeline.content.issue import load_issue, parse_send_at
from pipeline.errors import InputError, InputErrors

LA = ZoneInfo("America/Los_Angeles")


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InputError) as caught:
        load_issue(path, LA)
    error = caught.value
    items = error.problems if isinstance(error, InputErrors) else [error]
    return [p.location_message() for p in items]


def test_sample_issue_loads(project: Path) -> None:
    issue = load_issue(project / "newsletters/2025-07-21-hip-rotation.md", LA)
    assert issue.slug == "2025-07-21-hip-rotation"
    assert issue.subject == "Why Hip Rotation Matters More Than You Think"
    assert issue.title == issue.subject
    assert issue.send_at == datetime(2025, 7, 21, 7, 0, tzinfo=LA)
    assert [f.source for f in issue.merge_fields.fields] == [
        'subscriber.first_name | default("there")'
    ]
    assert issue.merge_fields.fields[0].line == 7
    assert "{{" not in issue.body and "MFX0XFM" in issue.body


def test_all_front_matter_fields(write_issue: Callable[..., Path]) -> None:
    path = write_issue(
        "Body",
        front=(
            "subject: 'Hi {{ subscriber.first_name }}'\n"
            "title: A title\n"
            "preheader: Short preview\n"
            "send_at: 2025-08-01T07:00:00+02:00\n"
            "tags: [runners, seniors]\n"
        ),
    )
    issue = load_issue(path, LA)
    assert issue.subject == "Hi MFX0XFM"
    assert issue.title == "A title"
    assert issue.preheader == "Short preview"
    assert issue.send_at is not None and issue.send_at.utcoffset() == timedelta(hours=2)
    assert issue.tags == ("runners", "seniors")


def test_missing_subject_names_the_field(write_issue: Callable[..., Path]) -> None:
    path = write_issue("Body", front="preheader: x\n")
    assert problems_of(path) == [f"{path}:1: subject: missing: every issue needs a subject line"]


def test_malformed_yaml_gives_file_and_line(write_issue: Callable[..., Path]) -> None:
    path = write_issue("Body", front="subject: ok\npreheader: [unclosed\n")
    (message,) = problems_of(path)
    assert message.startswith(f"{path}:")
    line = int(message.split(":")[1])
    assert line in (3, 4)
    assert "not valid YAML" in message


def test_bad_send_at_and_unknown_key_are_both_reported(write_issue: Callable[..., Path]) -> None:
    path = write_issue("Body", front="subject: ok\nsend_at: next tuesday\nsubjet: typo\n")
    messages = problems_of(path)
    assert f"{path}:3: send_at: 'next tuesday' is not a date and time" in messages[1]
    assert messages[0] == f"{path}:4: subjet: unknown key (did you mean 'subject'?)"


def test_no_front_matter(project: Path) -> None:
    path = project / "newsletters" / "bare.md"
    path.write_text("# Just markdown\n", encoding="utf-8")
    assert "starts with front matter" in problems_of(path)[0]


def test_merge_field_syntax_error_points_at_its_line(write_issue: Callable[..., Path]) -> None:
    path = write_issue("Hello\n\nThere {{ subscriber.first_name | }}\n")
    (message,) = problems_of(path)
    assert message.startswith(f"{path}:7: merge field")


def test_block_tags_are_refused(write_issue: Callable[..., Path]) -> None:
    path = write_issue("{% if x %}hi{% endif %}\n")
    assert "only {{ expressions }}" in problems_of(path)[0]


def test_send_at_local_time_and_offset() -> None:
    assert parse_send_at("2025-07-21 07:00", LA) == datetime(2025, 7, 21, 7, tzinfo=LA)
    moment = parse_send_at("2025-07-21T07:00:00Z", LA)
    assert moment == datetime(2025, 7, 21, 0, tzinfo=LA)
    with pytest.raises(ValueError):
        parse_send_at("2025-07-21", LA)


def test_send_at_in_a_daylight_saving_gap_moves_forward() -> None:
    # 2025-03-09 02:30 does not exist in Los Angeles: clocks go from 02:00 to 03:00.
    moment = parse_send_at("2025-03-09 02:30", LA)
    assert moment.astimezone(ZoneInfo("UTC")) == datetime(
        2025, 3, 9, 10, 30, tzinfo=ZoneInfo("UTC")
    )
    assert (moment.hour, moment.minute) == (3, 30)


def test_send_at_in_a_repeated_hour_takes_the_first() -> None:
    # 2025-11-02 01:30 happens twice in Los Angeles; the first is PDT (UTC-7).
    moment = parse_send_at("2025-11-02 01:30", LA)
    assert moment.utcoffset() == timedelta(hours=-7)
