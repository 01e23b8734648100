"""An issue only ever written to the outbox (a trial: it emailed nobody) is sent for real
once a provider that emails is chosen: recorded complete, the trial kept the real send from
ever starting ("complete ... 0 sent via postmark"), and cron from sending it by its send_at.
Only a pure trial: once anyone went through a provider that emails, it stays complete."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import load_settings
from pipeline.sending import open_ledger, send_due, status_rows

from .conftest import SAMPLE_ISSUE
from .fake_providers import POSTMARK_TOKEN, FakePostmark

LA = ZoneInfo("America/Los_Angeles")
SLUG = "2025-07-21-hip-rotation"


def newsletter(root: Path, *args: str) -> tuple[int, str, str]:
    old = Path.cwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(
            cli, list(args), obj={}, env={"POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN}
        )
    finally:
        os.chdir(old)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def use_provider(root: Path, provider: str) -> None:
    config = root / "newsletter.toml"
    text = re.sub(r"(?ms)^\[provider\]\n.*\Z", f"[provider]\n{provider}\n", config.read_text())
    config.write_text(text, encoding="utf-8")


def delivered(server: FakePostmark) -> list[str]:
    return sorted(str(m["To"]) for m in server.accepted)


def test_a_trial_in_the_outbox_then_a_real_send(make_project: Callable[..., Path]) -> None:
    root = make_project()
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0  # README's first command
    assert len(list((root / "outbox" / SLUG).glob("*.eml"))) == 9
    server = FakePostmark()
    try:
        use_provider(root, f'name = "postmark"\nbase_url = "{server.url}"')
        code, out, _ = newsletter(root, "status", SAMPLE_ISSUE)
        assert out.startswith(f"{SLUG}: missed, only written to the outbox (a trial), emailed")
        code, out, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
        assert code == 0, out + err
        assert f"{SLUG}: complete" in out and "sent 9" in out
        assert len(delivered(server)) == 9
        # Once sent for real, it is not sent again, whichever provider comes next.
        code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
        assert code == 0 and len(delivered(server)) == 9
        use_provider(root, 'name = "outbox"')
        assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
        use_provider(root, f'name = "postmark"\nbase_url = "{server.url}"')
        code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
        assert code == 0 and len(delivered(server)) == 9
        assert "only written to the outbox" not in newsletter(root, "status")[1]
    finally:
        server.close()


def test_a_trial_of_a_scheduled_issue_goes_out_by_cron_once_a_provider_emails(
    make_project: Callable[..., Path],
) -> None:
    root = make_project()
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0  # the trial, early
    server = FakePostmark()
    try:
        use_provider(root, f'name = "postmark"\nbase_url = "{server.url}"')
        settings = load_settings(root / "newsletter.toml")
        when = datetime(2025, 7, 21, 7, 5, tzinfo=LA)
        environ = {"POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN}
        (row,) = [r for r in status_rows(settings, now=when).rows if r.issue == SLUG]
        assert row.state == "due" and row.counts is None
        run = send_due(settings, environ, now=when)
        assert [r.slug for r in run.reports] == [SLUG] and len(delivered(server)) == 9
        assert send_due(settings, environ, now=when).reports == []  # nothing twice
        assert len(delivered(server)) == 9
    finally:
        server.close()


def test_a_send_partly_through_a_real_provider_is_no_trial(
    make_project: Callable[..., Path],
) -> None:
    root = make_project()
    settings = load_settings(root / "newsletter.toml")
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
    ledger = open_ledger(settings)
    try:
        assert ledger.trial_only(SLUG)
        # One batch recorded as handed to Postmark: someone may have been emailed.
        ledger.db.execute(
            "UPDATE batches SET provider = 'postmark' WHERE id = (SELECT min(id) FROM batches)"
        )
        assert not ledger.trial_only(SLUG)
    finally:
        ledger.close()
    server = FakePostmark()
    try:
        use_provider(root, f'name = "postmark"\nbase_url = "{server.url}"')
        code, _, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
        assert code == 0 and delivered(server) == []
        assert "only written to the outbox" not in newsletter(root, "status")[1]
    finally:
        server.close()
