"""Which issues cron sends, with an injected clock: due, not yet, too late, resumed, DST."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from pipeline.audience.subscribers import Subscriber, scan
from pipeline.cli import cli
from pipeline.config import load_settings
from pipeline.content.issue import parse_send_at
from pipeline.ledger.store import IssueRecord, IssueStatus
from pipeline.schedule import Decision, Draft, plan_due
from pipeline.sending import open_ledger, send_due

from .conftest import REPO, SAMPLE_ISSUE

LA = ZoneInfo("America/Los_Angeles")
DAY = timedelta(hours=24)


def record(slug: str, status: IssueStatus) -> IssueRecord:
    return IssueRecord(
        slug, "hash", "outbox", status, True, None, "2025-01-01T00:00:00+00:00", None
    )


def decisions(
    drafts: list[Draft], ledger: dict[str, IssueRecord], now: datetime
) -> dict[str, Decision]:
    return {p.draft.slug: p.decision for p in plan_due(drafts, ledger, now, DAY)}


def test_due_decisions_and_order() -> None:
    now = datetime(2025, 7, 21, 15, 0, tzinfo=UTC)
    drafts = [
        Draft(Path("d.md"), "due-later", now - timedelta(minutes=5)),
        Draft(Path("a.md"), "due-first", now - timedelta(hours=3)),
        Draft(Path("f.md"), "future", now + timedelta(minutes=1)),
        Draft(Path("s.md"), "stale", now - timedelta(hours=25)),
        Draft(Path("r.md"), "stale-but-started", now - timedelta(days=3)),
        Draft(Path("c.md"), "complete", now - timedelta(hours=1)),
        Draft(Path("n.md"), "no-date", None),
    ]
    ledger = {
        "stale-but-started": record("stale-but-started", IssueStatus.PAUSED),
        "complete": record("complete", IssueStatus.COMPLETE),
    }
    plans = plan_due(drafts, ledger, now, DAY)
    assert [p.draft.slug for p in plans if p.acts] == [
        "stale-but-started",
        "due-first",
        "due-later",
    ]
    assert decisions(drafts, ledger, now) == {
        "due-later": Decision.SEND,
        "due-first": Decision.SEND,
        "future": Decision.NOT_YET,
        "stale": Decision.TOO_LATE,
        "stale-but-started": Decision.RESUME,
        "complete": Decision.COMPLETE,
        "no-date": Decision.UNSCHEDULED,
    }
    stale = next(p for p in plans if p.draft.slug == "stale")
    assert "passed 25 hours ago, more than max_lateness (24 hours)" in stale.detail


def test_spring_forward_gap() -> None:
    # 02:30 on 2025-03-09 does not exist in Los Angeles; it is taken as 03:30 PDT (10:30 UTC).
    draft = Draft(Path("x.md"), "x", parse_send_at("2025-03-09 02:30", LA))
    before = datetime(2025, 3, 9, 10, 29, tzinfo=UTC)
    after = datetime(2025, 3, 9, 10, 31, tzinfo=UTC)
    assert decisions([draft], {}, before)["x"] is Decision.NOT_YET
    assert decisions([draft], {}, after)["x"] is Decision.SEND


def test_fall_back_repeated_hour_sends_at_the_first() -> None:
    # 01:30 on 2025-11-02 happens twice in Los Angeles; the first is 08:30 UTC.
    draft = Draft(Path("x.md"), "x", parse_send_at("2025-11-02 01:30", LA))
    assert decisions([draft], {}, datetime(2025, 11, 2, 8, 29, tzinfo=UTC))["x"] is Decision.NOT_YET
    assert decisions([draft], {}, datetime(2025, 11, 2, 8, 31, tzinfo=UTC))["x"] is Decision.SEND


def test_lateness_counts_real_hours_across_a_dst_change() -> None:
    # Sent at 07:00 local the day before clocks go back: 24 local hours later is 25 real hours.
    draft = Draft(Path("x.md"), "x", parse_send_at("2025-11-01 07:00", LA))
    local_next_day = datetime(2025, 11, 2, 7, 0, tzinfo=LA)
    assert decisions([draft], {}, local_next_day)["x"] is Decision.TOO_LATE
    assert decisions([draft], {}, local_next_day - timedelta(hours=1, minutes=1))["x"] is (
        Decision.SEND
    )


def add_issue(root: Path, slug: str, send_at: str | None) -> None:
    text = (REPO / SAMPLE_ISSUE).read_text(encoding="utf-8")
    line = f"send_at: {send_at}\n" if send_at else ""
    text = text.replace("send_at: 2025-07-21 07:00\n", line)
    text += f"\nThis one is {slug}.\n"  # its own issue, not a copy of a sent one
    (root / "newsletters" / f"{slug}.md").write_text(text, encoding="utf-8")


def test_send_due_end_to_end(make_project: Callable[..., Path]) -> None:
    root = make_project()
    (root / SAMPLE_ISSUE).unlink()
    add_issue(root, "2025-07-21-due", "2025-07-21 07:00")
    add_issue(root, "2025-07-28-future", "2025-07-28 07:00")
    add_issue(root, "2025-07-14-stale", "2025-07-14 07:00")
    add_issue(root, "2025-07-20-by-hand", None)
    settings = load_settings(root / "newsletter.toml")
    now = datetime(2025, 7, 21, 7, 5, tzinfo=LA)

    result = send_due(settings, {}, now=now)
    assert [r.slug for r in result.reports] == ["2025-07-21-due"]
    assert result.reports[0].counts.sent == 9 and result.exit_code == 0
    assert sorted(p.name for p in (root / "outbox").iterdir()) == ["2025-07-21-due"]

    again = send_due(settings, {}, now=now + timedelta(minutes=5))
    assert again.reports == []  # complete: nothing sent twice

    later = send_due(settings, {}, now=datetime(2025, 7, 28, 7, 0, tzinfo=LA))
    assert [r.slug for r in later.reports] == ["2025-07-28-future"]


def test_send_due_resumes_an_interrupted_stale_issue(make_project: Callable[..., Path]) -> None:
    root = make_project()
    settings = load_settings(root / "newsletter.toml")
    ledger = open_ledger(settings)
    ledger.start_issue("2025-07-21-hip-rotation", "stale-hash", "outbox")
    # Its audience recorded: a version went out (a record with nobody in it never started).
    ledger.add_recipients(
        "2025-07-21-hip-rotation",
        [s for s in scan(settings.subscribers) if isinstance(s, Subscriber)],
    )
    ledger.close()
    # The fingerprint differs from the placeholder: cron must not send a second version.
    result = send_due(settings, {}, now=datetime(2025, 8, 30, tzinfo=UTC))
    assert result.reports == [] and result.exit_code == 2
    assert "changed after its sending began" in result.problems[0].message


def test_send_due_cli_reports_stale_issues(make_project: Callable[..., Path]) -> None:
    root = make_project()
    shutil.copyfile(REPO / SAMPLE_ISSUE, root / SAMPLE_ISSUE)
    old = Path.cwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(cli, ["send", "--due"], obj={})
    finally:
        os.chdir(old)
    assert result.exit_code == 0
    assert "2025-07-21-hip-rotation: not sent: its send_at, Mon 21 Jul 2025, 07:00 PDT" in (
        result.stdout
    )
    assert "to send it anyway: newsletter send newsletters/2025-07-21-hip-rotation.md" in (
        result.stdout
    )
    assert not (root / "outbox").exists()


def test_a_max_lateness_too_long_for_a_date_is_one_line(make_project: Callable[..., Path]) -> None:
    """99999999999999h made every `status` and `send` a traceback (OverflowError)."""
    root = make_project()
    config = root / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('max_lateness = "24h"', 'max_lateness = "99999999999999h"'))
    line = config.read_text(encoding="utf-8").splitlines().index('max_lateness = "99999999999999h"')
    for command in (["status"], ["send", "--due"]):
        result = CliRunner().invoke(cli, ["--config", str(config), *command])
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert f"newsletter.toml:{line + 1}: [newsletter] max_lateness:" in result.output
        assert "longer than any such setting needs (at most '3650d')" in result.output
