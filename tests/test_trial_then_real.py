"""An issue only ever written to the outbox (a trial: it emailed nobody) is sent for real
once a provider that emails is chosen: recorded complete, the trial kept the real send from
ever starting ("complete ... 0 sent via postmark"), and cron from sending it by its send_at.
Only a pure trial: once anyone went through a provider that emails, it stays complete."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def postmark(root: Path) -> Iterator[FakePostmark]:
    """The project sending through a local server speaking Postmark's API, while in use."""
    server = FakePostmark()
    try:
        use_provider(root, f'name = "postmark"\nbase_url = "{server.url}"')
        yield server
    finally:
        server.close()


def delivered(server: FakePostmark) -> list[str]:
    return sorted(str(m["To"]) for m in server.accepted)


def test_a_trial_in_the_outbox_then_a_real_send(make_project: Callable[..., Path]) -> None:
    root = make_project()
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0  # README's first command
    assert len(list((root / "outbox" / SLUG).glob("*.eml"))) == 9
    with postmark(root) as server:
        code, out, _ = newsletter(root, "status", SAMPLE_ISSUE)
        assert out.startswith(f"{SLUG}: missed, only written to the outbox (a trial), emailed")
        code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--dry-run")
        assert code == 0 and "would start a new send" in out and "would resume" not in out
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


def test_a_trial_of_a_scheduled_issue_goes_out_by_cron_once_a_provider_emails(
    make_project: Callable[..., Path],
) -> None:
    root = make_project()
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0  # the trial, early
    with postmark(root) as server:
        settings = load_settings(root / "newsletter.toml")
        when = datetime(2025, 7, 21, 7, 5, tzinfo=LA)
        environ = {"POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN}
        (row,) = [r for r in status_rows(settings, now=when).rows if r.issue == SLUG]
        assert row.state == "due" and row.counts is None
        run = send_due(settings, environ, now=when)
        assert [r.slug for r in run.reports] == [SLUG] and len(delivered(server)) == 9
        assert send_due(settings, environ, now=when).reports == []  # nothing twice
        assert len(delivered(server)) == 9


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
    with postmark(root) as server:
        code, _, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
        assert code == 0 and delivered(server) == []
        assert "only written to the outbox" not in newsletter(root, "status")[1]


def test_a_copy_of_a_sent_issue_under_a_new_name_is_refused(
    make_project: Callable[..., Path],
) -> None:
    """A sent issue copied to a new file name (its date fixed, or the start of the next one
    forgotten) is a new issue to the ledger: it went to the whole list again.  Trailing
    spaces, which no reader sees, do not make it another issue."""
    root = make_project()
    with postmark(root) as server:
        assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
        assert len(delivered(server)) == 9
        text = (root / SAMPLE_ISSUE).read_text(encoding="utf-8")
        copy = root / "newsletters" / "2025-07-22-hip-rotation.md"
        copy.write_text(text.replace("\n", "  \n"), encoding="utf-8")
        for how in ("--yes", "--dry-run"):
            code, _, err = newsletter(root, "send", "newsletters/2025-07-22-hip-rotation.md", how)
            assert code == 2, err
            assert (
                "subject and text are word for word newsletters/2025-07-21-hip-rotation.md's" in err
            )
        assert "so it would mail the same email to the same list again" in err
        assert "re-run with --force to send it anyway" in err
        settings = load_settings(root / "newsletter.toml")
        when = datetime(2025, 7, 21, 8, tzinfo=LA)
        rows = {row.issue: row for row in status_rows(settings, now=when).rows}
        assert "but cron will not send it now: its subject and text are word for word" in (
            rows["2025-07-22-hip-rotation"].detail
        )
        assert "word for word" in status_rows(settings, copy, now=when).rows[0].detail
        assert len(delivered(server)) == 9
        copy.write_text(text.replace("Hi ", "Hello ", 1), "utf-8")  # edited: a new issue
        code, _, err = newsletter(root, "send", "newsletters/2025-07-22-hip-rotation.md", "--yes")
        assert code == 0, err
        assert len(delivered(server)) == 18
        again = root / "newsletters" / "2025-07-23-hip-rotation.md"
        again.write_text(text, encoding="utf-8")
        code, _, err = newsletter(
            root, "send", "newsletters/2025-07-23-hip-rotation.md", "--yes", "--force"
        )
        assert code == 0, err
        assert len(delivered(server)) == 27


def test_two_trials_of_one_text_do_not_both_go_out(make_project: Callable[..., Path]) -> None:
    """Each trial restarted afresh skipped the copy check (its own slug was in the ledger),
    so two trials of the same text both went out, and everyone got it twice."""
    root = make_project()
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
    copy = root / "newsletters" / "2025-07-28-hip-rotation.md"
    copy.write_text((root / SAMPLE_ISSUE).read_text(encoding="utf-8"), encoding="utf-8")
    assert newsletter(root, "send", "newsletters/2025-07-28-hip-rotation.md", "--yes")[0] == 0
    with postmark(root) as server:
        assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
        code, _, err = newsletter(root, "send", "newsletters/2025-07-28-hip-rotation.md", "--yes")
        assert code == 2 and "word for word" in err
        assert len(delivered(server)) == len(set(delivered(server))) == 9


def test_a_killed_trial_is_still_a_trial(make_project: Callable[..., Path]) -> None:
    """Rows a killed trial left in flight became "unknown", which made it no trial: the real
    send then counted the readers written to files as sent, and never emailed them."""
    root = make_project()
    settings = load_settings(root / "newsletter.toml")
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
    ledger = open_ledger(settings)
    try:  # as a kill leaves it: some rows in flight, some still to go
        ledger.db.execute(
            "UPDATE recipients SET status = 'inflight' WHERE id IN"
            " (SELECT id FROM recipients ORDER BY id LIMIT 2)"
        )
        ledger.db.execute(
            "UPDATE recipients SET status = 'pending' WHERE id IN"
            " (SELECT id FROM recipients ORDER BY id DESC LIMIT 3)"
        )
        ledger.db.execute("UPDATE issues SET status = 'sending', finished_at = NULL")
    finally:
        ledger.close()
    with postmark(root) as server:
        code, out, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
        assert code == 0, out + err
        assert len(delivered(server)) == len(set(delivered(server))) == 9


def test_a_send_begun_through_postmark_is_not_finished_through_the_outbox(
    make_project: Callable[..., Path],
) -> None:
    """Finished through the outbox, the rest were written to files, the issue marked complete,
    and they never got it."""
    root = make_project()
    settings = load_settings(root / "newsletter.toml")
    with postmark(root):
        assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
    ledger = open_ledger(settings)
    try:  # as a Ctrl-C leaves it: some still to send
        ledger.db.execute(
            "UPDATE recipients SET status = 'pending' WHERE id IN"
            " (SELECT id FROM recipients ORDER BY id DESC LIMIT 4)"
        )
        ledger.db.execute("UPDATE recipient_counts SET n = n - 4 WHERE status = 'sent'")
        ledger.db.execute("UPDATE recipient_counts SET n = n + 4 WHERE status = 'pending'")
        ledger.db.execute("UPDATE issues SET status = 'paused', finished_at = NULL")
    finally:
        ledger.close()
    # The record beside the drafts of a run stopped there says 5, not the 9 set back above.
    (root / "newsletters" / ".sent" / f"{SLUG}.json").unlink()
    use_provider(root, 'name = "outbox"')
    code, out, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2, out + err
    assert "its sending began through postmark (5 sent)" in err
    assert "set [provider] back to postmark to finish it" in err
    assert not (root / "outbox" / SLUG).exists()
