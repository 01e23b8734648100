"""What Dr. Hutchins reads around a send: refusals before anything goes, status, wording.

Each test is something seen in her first month: a send to nobody recorded complete forever,
a scheduled issue sent early without a word, an internal field token in the confirmation,
the outbox saying "sent", "1 subscribers", a port in use ending in a traceback.
"""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import load_settings
from pipeline.delivery.providers import create_provider
from pipeline.ledger.store import IssueStatus, Ledger, RecipientStatus, Settlement
from pipeline.sending import SendPlan, open_ledger, send_issue, status_rows

from .conftest import SAMPLE_ISSUE

SLUG = "2025-07-21-hip-rotation"
TOKEN = re.compile(r"MFX\d+XFM")
LA = ZoneInfo("America/Los_Angeles")


def newsletter(root: Path, *args: str) -> tuple[int, str, str]:
    old = Path.cwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(cli, list(args), obj={})
    finally:
        os.chdir(old)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def set_front(root: Path, key: str, value: str | None) -> None:
    """Set (or remove, with None) one front matter line of the sample issue."""
    path = root / SAMPLE_ISSUE
    text = path.read_text(encoding="utf-8")
    text = re.sub(rf"(?m)^{key}:.*\n", "", text)
    if value is not None:
        text = text.replace("---\n", f"---\n{key}: {value}\n", 1)
    path.write_text(text, encoding="utf-8")


def header_only(root: Path) -> bytes:
    full = (root / "subscribers.csv").read_bytes()
    (root / "subscribers.csv").write_bytes(full.split(b"\n", 1)[0] + b"\n")
    return full


def nothing_recorded(root: Path) -> bool:
    settings = load_settings(root / "newsletter.toml")
    if not (settings.state_dir / "ledger.sqlite3").exists():
        return not (root / "outbox").exists()
    ledger = open_ledger(settings)
    try:
        return ledger.issue(SLUG) is None and not (root / "outbox").exists()
    finally:
        ledger.close()


# Sending to nobody ------------------------------------------------------------------------


def test_a_list_with_only_its_header_refuses_to_start(make_project: Callable[..., Path]) -> None:
    root = make_project()
    full = header_only(root)
    for args in (("--yes",), ("--dry-run",)):
        code, out, err = newsletter(root, "send", SAMPLE_ISSUE, *args)
        assert code == 2, out
        assert err.count("\n") == 1 and "nobody to send to" in err
        assert "only its header row" in err and "subscribers.csv" in err
    assert nothing_recorded(root)
    (root / "subscribers.csv").write_bytes(full)
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "audience 9: sent 9" in out


def test_a_list_where_nobody_is_subscribed_says_so(make_project: Callable[..., Path]) -> None:
    root = make_project(
        csv="email,first_name,status\na@example.org,A,unsubscribed\nb@example.org,B,bounced\n"
    )
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2
    assert "none of the list's 2 rows is a subscribed reader (bounced 1, unsubscribed 1)" in err
    assert nothing_recorded(root)


def test_a_tag_nobody_has_is_refused_and_named(make_project: Callable[..., Path]) -> None:
    root = make_project()
    set_front(root, "tags", "[runner]")
    code, out, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2, out
    assert err.count("\n") == 1
    assert "no subscribed reader has the tag 'runner'" in err
    assert (
        "tags: cyclists, lifting, marathon, office, runners, seniors, swimmers, trail)" in err
        and "did you mean 'runners'" in err
    )
    assert nothing_recorded(root)
    # check says the same, with the line, before she ever tries to send
    code, out, _ = newsletter(root, "check", SAMPLE_ISSUE)
    assert code == 1
    assert f"{SAMPLE_ISSUE}:2: tags: no subscribed reader has the tag 'runner'" in out
    set_front(root, "tags", "[runners]")
    assert newsletter(root, "check", SAMPLE_ISSUE)[0] == 0
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "complete" in out


def test_a_tag_only_opted_out_readers_have_is_caught_by_check(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(
        csv="email,status,tags\na@example.org,unsubscribed,knees\nb@example.org,,hips\n"
    )
    set_front(root, "tags", "[knees]")
    code, out, _ = newsletter(root, "check", SAMPLE_ISSUE)
    assert code == 1 and "no subscribed reader has the tag 'knees' (the list's tags: hips)" in out


@pytest.mark.parametrize(
    ("csv", "said"),
    [
        ("email,tags\n", "nobody on the list is subscribed yet: add readers to it"),
        (
            "email,status,tags\na@example.org,unsubscribed,knees\n",
            "nobody on the list is subscribed yet: add readers to it",
        ),
        ("email,tags\na@example.org,\n", "no subscribed reader has any tag"),
    ],
)
def test_check_says_why_a_tag_reaches_nobody_without_blaming_the_tags_column(
    make_project: Callable[..., Path], csv: str, said: str
) -> None:
    # Once, an empty list (or one where the tagged reader had left) was told that "nobody on
    # the list has any tag", sending her to a column that was not the problem.
    root = make_project(csv=csv)
    set_front(root, "tags", "[knees]")
    code, out, _ = newsletter(root, "check", SAMPLE_ISSUE)
    assert code == 1
    assert f"{SAMPLE_ISSUE}:2: tags: no subscribed reader has the tag 'knees' ({said}" in out
    assert "nobody on the list has any tag" not in out


def test_an_old_complete_record_with_nobody_in_it_does_not_block_a_send(
    make_project: Callable[..., Path],
) -> None:
    """What the previous version left behind: `complete / audience 0`, forever."""
    root = make_project()
    settings = load_settings(root / "newsletter.toml")
    ledger = open_ledger(settings)
    ledger.start_issue(SLUG, "hash-of-the-version-sent-to-nobody", "outbox")
    ledger.add_recipients(SLUG, [])
    ledger.set_status(SLUG, IssueStatus.COMPLETE)
    ledger.close()
    (row,) = status_rows(settings).rows
    assert row.state == "missed" and row.counts is None  # never started, not complete
    for args in (("--yes",), ("--yes", "--force")):
        code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, *args)
        assert code == 0, out
        assert "complete" in out and "audience 9: sent 9" in out
    assert len(list((root / "outbox" / SLUG).glob("*.eml"))) == 9


def test_a_restart_cut_short_while_loading_the_audience_is_continued(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restarting an old `complete / audience 0` issue, killed after part of the audience
    was recorded: the next run loads the rest, never sends to the part only."""
    root = make_project()
    settings = load_settings(root / "newsletter.toml")
    ledger = open_ledger(settings)
    ledger.start_issue(SLUG, "old", "outbox")
    ledger.add_recipients(SLUG, [])
    ledger.set_status(SLUG, IssueStatus.COMPLETE)
    ledger.close()
    original = Ledger.add_recipients

    def killed_after_one_chunk(
        self: Ledger, slug: str, subscribers: Any, chunk: int = 0, **options: Any
    ) -> int:
        def then_killed() -> Any:
            for number, subscriber in enumerate(subscribers):
                if number == 4:
                    raise KeyboardInterrupt
                yield subscriber

        return original(self, slug, then_killed(), chunk=3, **options)

    monkeypatch.setattr(Ledger, "add_recipients", killed_after_one_chunk)
    with pytest.raises(KeyboardInterrupt):
        send_issue(root / SAMPLE_ISSUE, settings, create_provider(settings, {}), environ={})
    monkeypatch.undo()
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "audience 9: sent 9" in out, out


def test_an_audience_that_empties_before_loading_is_never_complete(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list is emptied between the look and the load: refused, and not recorded done."""
    root = make_project()
    header_only(root)
    monkeypatch.setattr("pipeline.sending.has_audience", lambda *args: True)
    monkeypatch.setattr("pipeline.sending.check_issue", lambda path, settings: [])
    settings = load_settings(root / "newsletter.toml")
    with pytest.raises(Exception, match="nobody to send to"):
        send_issue(root / SAMPLE_ISSUE, settings, create_provider(settings, {}), environ={})
    ledger = open_ledger(settings)
    record = ledger.issue(SLUG)
    ledger.close()
    assert record is None or record.status is not IssueStatus.COMPLETE


# A scheduled issue sent by hand -----------------------------------------------------------


def test_a_scheduled_issue_needs_now_to_go_early(make_project: Callable[..., Path]) -> None:
    root = make_project()
    set_front(root, "send_at", "2099-03-02 07:00")
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2 and err.count("\n") == 1
    assert "scheduled for Mon 2 Mar 2099, 07:00 PST" in err and "--now" in err
    assert nothing_recorded(root)
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--dry-run")
    assert code == 0 and "scheduled for Mon 2 Mar 2099, 07:00 PST" in out
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE)  # no terminal to ask on
    assert code == 2 and "It is scheduled for Mon 2 Mar 2099" in err and "--yes --now" in err
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes", "--now")
    assert code == 0 and "audience 9: sent 9" in out


def test_the_confirmation_says_it_is_early(make_project: Callable[..., Path]) -> None:
    root = make_project()
    set_front(root, "send_at", "2025-07-28 07:00")
    settings = load_settings(root / "newsletter.toml")
    plans: list[SendPlan] = []

    def decline(plan: SendPlan) -> bool:
        plans.append(plan)
        return False

    before = lambda: datetime(2025, 7, 27, 9, 0, tzinfo=LA)  # noqa: E731
    provider = create_provider(settings, {})
    assert (
        send_issue(
            root / SAMPLE_ISSUE, settings, provider, environ={}, confirm=decline, clock=before
        )
        is None
    )
    assert plans[0].early == datetime(2025, 7, 28, 7, 0, tzinfo=LA)
    after = lambda: datetime(2025, 7, 28, 7, 1, tzinfo=LA)  # noqa: E731
    send_issue(root / SAMPLE_ISSUE, settings, provider, environ={}, confirm=decline, clock=after)
    assert plans[1].early is None
    assert nothing_recorded(root)


# No internal token reaches a person -------------------------------------------------------


def test_no_field_token_in_anything_she_reads(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project()
    set_front(root, "subject", "\"{{ subscriber.first_name | default('Friend') }}, knee pain?\"")
    seen: list[str] = []
    for args in (
        ("send", SAMPLE_ISSUE, "--dry-run"),
        ("send", SAMPLE_ISSUE),  # the confirmation, refused without a terminal
        ("build", SAMPLE_ISSUE),
        ("check", SAMPLE_ISSUE),
        ("send", SAMPLE_ISSUE, "--to", "ada.runner@example.org"),
        ("status",),
    ):
        _, out, err = newsletter(root, *args)
        seen.append(out + err)
    assert 'Send "Ada, knee pain?" to 9 subscribers via outbox?' in seen[1]
    assert '"Ada, knee pain?" via outbox (dry run)' in seen[0]
    for path in (root / "build").rglob("*"):
        if path.is_file():
            seen.append(path.read_text(encoding="utf-8"))
    assert any("Hi Ada," in text for text in seen[6:])  # the MJML, filled as Ada gets it
    for path in (root / "outbox").rglob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        seen.append(str(message["Subject"]))
    leaks = [TOKEN.findall(text) for text in seen]
    assert not any(leaks), leaks

    # The confirmation a person answers at a terminal
    settings = load_settings(root / "newsletter.toml")
    plans: list[SendPlan] = []
    send_issue(
        root / SAMPLE_ISSUE,
        settings,
        create_provider(settings, {}),
        environ={},
        confirm=lambda plan: plans.append(plan) or False,
    )
    assert plans[0].subject == "Ada, knee pain?"


def test_check_quotes_merge_fields_as_written(make_project: Callable[..., Path]) -> None:
    root = make_project()
    issue = root / SAMPLE_ISSUE
    issue.write_text(
        issue.read_text(encoding="utf-8")
        + "\n[Book {{ subscriber.first_name }}]{.button}\n\n![]({{ subscriber.city }}.png)\n",
        encoding="utf-8",
    )
    code, out, _ = newsletter(root, "check", SAMPLE_ISSUE)
    assert code == 1 and not TOKEN.search(out), out
    assert "button 'Book {{ subscriber.first_name }}' has no URL" in out
    assert "image '{{ subscriber.city }}.png' has no alt text" in out


# status -----------------------------------------------------------------------------------


def add_issue(root: Path, slug: str, send_at: str | None) -> Path:
    text = (root / SAMPLE_ISSUE).read_text(encoding="utf-8")
    text = re.sub(r"(?m)^send_at:.*\n", f"send_at: {send_at}\n" if send_at else "", text)
    text += f"\nThis one is {slug}.\n"  # its own issue, not a copy of a sent one
    path = root / "newsletters" / f"{slug}.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_status_lists_every_issue_with_its_state(make_project: Callable[..., Path]) -> None:
    root = make_project()
    add_issue(root, "2025-07-20-by-hand", None)
    add_issue(root, "2099-01-05-future", "2099-01-05 07:00")
    add_issue(root, "2020-01-06-missed", "2020-01-06 07:00")
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
    code, out, _ = newsletter(root, "status")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("2020-01-06-missed: missed, its send_at, Mon 6 Jan 2020, 07:00 PST")
    assert "so cron will not send it; to send it anyway: newsletter send " in lines[0]
    assert lines[0].endswith("newsletters/2020-01-06-missed.md")
    assert lines[1].startswith("2025-07-20-by-hand: draft, no send_at")
    assert lines[2].startswith(f"{SLUG}: complete, finished ")
    assert lines[2].endswith(
        ("PDT; written to the outbox, emailed nobody", "PST; written to the outbox, emailed nobody")
    )
    assert lines[3] == "  audience 9: sent 9, failed 0, unknown 0, pending 0"
    assert lines[4] == "2099-01-05-future: scheduled, for Mon 5 Jan 2099, 07:00 PST"
    assert lines[5] == "4 issues: missed 1, draft 1, complete 1, scheduled 1"

    code, out, _ = newsletter(root, "status", "--json")
    rows = {row["issue"]: row for row in json.loads(out)}
    keys = {"issue", "audience", "sent", "failed", "unknown", "pending", "when"}
    assert all(set(row) == keys | {"state", "send_at", "provider_says"} for row in rows.values())
    assert rows[SLUG]["state"] == "complete" and rows[SLUG]["sent"] == 9
    assert rows["2099-01-05-future"]["send_at"] == "2099-01-05T07:00:00-08:00"
    assert rows["2025-07-20-by-hand"] == {
        "issue": "2025-07-20-by-hand",
        "audience": 0,
        "sent": 0,
        "failed": 0,
        "unknown": 0,
        "pending": 0,
        "when": None,
        "state": "draft",
        "send_at": None,
        "provider_says": {},
    }
    code, out, _ = newsletter(root, "status", "newsletters/2099-01-05-future.md", "--json")
    assert [row["issue"] for row in json.loads(out)] == ["2099-01-05-future"]


def test_status_shows_times_in_her_zone(make_project: Callable[..., Path]) -> None:
    root = make_project()
    add_issue(root, "2099-02-01-offset", "2099-02-01T15:00:00+00:00")
    code, out, _ = newsletter(root, "status", "newsletters/2099-02-01-offset.md")
    assert out == "2099-02-01-offset: scheduled, for Sun 1 Feb 2099, 07:00 PST\n"
    code, out, _ = newsletter(root, "status", "newsletters/2099-02-01-offset.md", "--json")
    assert code == 0
    assert json.loads(out)[0]["send_at"] == "2099-02-01T07:00:00-08:00"


def test_status_due_is_within_max_lateness(make_project: Callable[..., Path]) -> None:
    root = make_project()
    settings = load_settings(root / "newsletter.toml")
    send_at = datetime(2025, 7, 21, 7, 0, tzinfo=LA)
    states = {
        hours: status_rows(settings, now=send_at + timedelta(hours=hours)).rows[0].state
        for hours in (-1, 1, 25)
    }
    assert states == {-1: "scheduled", 1: "due", 25: "missed"}


def test_status_says_when_cron_will_refuse_a_due_or_scheduled_issue(
    make_project: Callable[..., Path],
) -> None:
    """Cron sends nothing of an issue with problems, and says why only in its log: status,
    which she reads, said "the next cron run sends it" of one."""
    root = make_project()
    for slug, when in (
        ("2025-07-22-broken", "2025-07-22 07:00"),
        ("2099-01-05-later", "2099-01-05 07:00"),
    ):
        path = add_issue(root, slug, when)
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("subscriber.first_name", "subscriber.frist_name"), "utf-8")
    settings = load_settings(root / "newsletter.toml")
    now = datetime(2025, 7, 22, 8, 0, tzinfo=LA)
    rows = {row.issue: row for row in status_rows(settings, now=now).rows}
    due, later = rows["2025-07-22-broken"], rows["2099-01-05-later"]
    assert due.state == "due" and later.state == "scheduled"
    code, problems, _ = newsletter(root, "check", "newsletters/2025-07-22-broken.md")
    assert code == 1 and len(problems.splitlines()) == 1
    assert due.detail.startswith(
        "send_at Tue 22 Jul 2025, 07:00 PDT has passed, but cron will not send it now: 1 problem"
        " to fix first (see them with: newsletter check "
    )
    assert due.detail.endswith("newsletters/2025-07-22-broken.md)")
    assert later.detail.startswith("for Mon 5 Jan 2099, 07:00 PST, but cron will not send it then")
    add_issue(root, "2025-07-22-fine", "2025-07-22 07:00")
    rows = {row.issue: row for row in status_rows(settings, now=now).rows}
    assert rows["2025-07-22-fine"].detail.endswith(": the next cron run sends it")


def test_a_test_copy_that_did_not_go_says_so_in_words(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a provider that could not be reached: "retry", the delivery loop's word."""
    root = make_project(provider='name = "postmark"\nbase_url = "http://127.0.0.1:9"')
    monkeypatch.setenv("POSTMARK_SERVER_TOKEN", "a-test-token")
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--to", "me@example.net")
    assert code == 1
    assert out.splitlines()[0] == "test copy to me@example.net: not sent: try again later"
    assert out.splitlines()[1].startswith("  could not reach Postmark")
    assert "retry" not in out


def test_status_of_a_missing_issue_is_an_error(make_project: Callable[..., Path]) -> None:
    root = make_project()
    code, out, err = newsletter(root, "status", "newsletters/missing.md")
    assert code == 2 and out == ""
    assert err == (
        "error: newsletters/missing.md: no such issue: not a file, and not in newsletters/ "
        "or the ledger\n"
    )


def test_status_failed_and_unknown_list_everyone(make_project: Callable[..., Path]) -> None:
    rows = "".join(f"r{i:03}@example.org,R{i},,subscribed,,\n" for i in range(120))
    root = make_project(csv="email,first_name,last_name,status,tags,city\n" + rows)
    settings = load_settings(root / "newsletter.toml")
    ledger = open_ledger(settings)
    # A send whose 70 first recipients failed and 3 are unknown (as a dead run leaves them)
    from pipeline.audience.subscribers import Subscriber, scan

    ledger.start_issue(SLUG, "h", "outbox")
    ledger.add_recipients(
        SLUG, (s for s in scan(settings.subscribers) if isinstance(s, Subscriber))
    )
    batch, claimed = ledger.claim(SLUG, 73)
    settlements = [
        Settlement(row.key, RecipientStatus.FAILED, reason=f"mailbox {row.key} full")
        for row in claimed[:70]
    ] + [Settlement(row.key, RecipientStatus.UNKNOWN) for row in claimed[70:]]
    ledger.settle(SLUG, batch, settlements)
    ledger.set_status(SLUG, IssueStatus.PAUSED, "too many failures in a row")
    ledger.close()

    code, out, _ = newsletter(root, "status", SAMPLE_ISSUE, "--failed")
    lines = out.splitlines()
    assert code == 0 and lines[0] == f"{SLUG}: failed 70" and len(lines) == 71
    assert lines[70] == "  r069@example.org: mailbox r069@example.org full"
    code, out, _ = newsletter(root, "status", SAMPLE_ISSUE, "--unknown")
    assert out.splitlines() == [
        f"{SLUG}: unknown 3",
        "  r070@example.org",
        "  r071@example.org",
        "  r072@example.org",
    ]
    code, out, _ = newsletter(root, "status", SAMPLE_ISSUE)
    assert f"{SLUG}: paused, started " in out and "too many failures in a row" in out
    code, _, err = newsletter(root, "status", "--failed")
    assert code == 2 and err.count("\n") == 1 and "give the ISSUE" in err


def test_status_failed_of_an_issue_not_sent_yet(make_project: Callable[..., Path]) -> None:
    root = make_project()
    code, out, err = newsletter(root, "status", SAMPLE_ISSUE, "--failed")
    assert (code, out) == (2, "")
    assert err == f"error: {SLUG} has not been sent (missed), so nobody has failed\n"


# Outbox words, test copies ----------------------------------------------------------------


def test_the_outbox_says_written_and_keeps_test_copies_apart(
    make_project: Callable[..., Path],
) -> None:
    root = make_project()
    code, out, _ = newsletter(
        root, "send", SAMPLE_ISSUE, "--to", "me@example.net", "--to", "Ada.Runner@example.org"
    )
    assert code == 0
    assert re.search(
        rf"^test copy to me@example.net: written to outbox/{SLUG}/tests/\S+-me@example.net\.eml$",
        out,
        re.M,
    )
    assert (
        f"test copy to Ada Runner <ada.runner@example.org>: written to outbox/{SLUG}/tests/" in out
    )
    tests = sorted((root / "outbox" / SLUG / "tests").glob("*.eml"))
    assert len(tests) == 2
    assert not list((root / "outbox" / SLUG).glob("*.eml"))  # nothing among the real ones
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0
    assert f"  this run: 9 written to outbox/{SLUG}/, failed 0, unknown 0" in out
    assert " sent 9," not in out.split("this run")[1]
    assert len(list((root / "outbox" / SLUG).glob("*.eml"))) == 9
    assert len(list((root / "outbox" / SLUG / "tests").glob("*.eml"))) == 2


# Plurals, help, init ----------------------------------------------------------------------


def test_counts_of_one_are_singular(make_project: Callable[..., Path]) -> None:
    root = make_project(
        csv="email,first_name,status\nada@example.org,Ada,\nbob@example.org,Bob,unsubscribed\n"
    )
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--dry-run")
    assert "audience: 1 subscriber\n" in out and "skipped 1 row: unsubscribed 1" in out
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE)
    assert "to 1 subscriber via outbox?" in err
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "skipped 1 row: unsubscribed 1" in out
    assert not re.search(r"\b1 (subscribers|rows|issues)\b", out)


def all_commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((prefix + name, command))
        if isinstance(command, click.Group):
            found += all_commands(command, prefix + name + " ")
    return found


@pytest.mark.parametrize("group", [(), ("subscribers",)])
def test_the_command_list_shows_whole_summaries(group: tuple[str, ...]) -> None:
    code, out, _ = newsletter(Path.cwd(), *group, "--help")
    listing = out.split("Commands:\n", 1)[1]
    assert code == 0 and not re.search(r"\w\.\.\.$", listing, re.M)  # click's cut-off
    command = cli
    for name in group:
        command = cli.commands[name]
    assert isinstance(command, click.Group)
    for name, sub in command.commands.items():
        summary = sub.short_help or (sub.help or "").split(".")[0]  # a short_help is chosen whole
        assert " ".join(summary.split()) in " ".join(listing.split()), name


def test_every_command_has_a_summary_and_an_example() -> None:
    for name, command in [("", cli), *all_commands(cli)]:
        summary = command.get_short_help_str(limit=200)
        assert summary and not summary.endswith("..."), name
        assert len(summary) > 20, (name, summary)
        help_text = command.help or ""
        if not isinstance(command, click.Group) or name == "":
            assert f"newsletter {name}".strip() in help_text, f"{name!r} help has no example"
        for param in command.params:
            if isinstance(param, click.Option) and param.name not in ("help", "version"):
                assert param.help, f"{name} {param.opts} has no help"


def test_help_examples_name_files_a_project_made_by_init_has(tmp_path: Path) -> None:
    """The examples in `--help` are what she copies: their files must exist in her project
    (after the group help's own first example, `newsletter new "Why hip rotation matters"`)."""
    assert newsletter(tmp_path, "init", "mine")[0] == 0
    root = tmp_path / "mine"
    assert newsletter(root, "new", "Why hip rotation matters")[0] == 0
    checked = 0
    for name, command in [("", cli), *all_commands(cli)]:
        for line in (command.help or "").splitlines():
            words = line.strip().split()
            if words[:1] != ["newsletter"]:
                continue
            for word in words:
                if word.startswith("newsletters/"):
                    assert list(root.glob(word)), f"{name!r} example names {word}: not in {root}"
                    checked += 1
    assert checked >= 5


def fill_in_like_her(root: Path) -> None:
    """What she does after `init`: her details in newsletter.toml, her words in the draft."""
    config = root / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    for placeholder, hers in {
        "Your Practice": "Movement Solutions",
        "Your Name": "Dr. Connie Hutchins",
        "you@example.com": "connie@movementsolutions.example",
        "REPLACE with your postal address": "123 Example Street, Springfield, ST 00000",
        "https://example.com": "https://movementsolutions.example",
    }.items():
        text = text.replace(placeholder, hers)
    config.write_text(text, encoding="utf-8")
    for draft in (root / "newsletters").glob("*.md"):
        text = draft.read_text(encoding="utf-8")
        for example, hers in {
            "Write the issue here in Markdown.": "Stairs hurt? Try these.",
            "## A drill": "## The step-down drill",
            "First step.": "Stand on the bottom stair.",
            "Second step.": "Lower one heel slowly.",
            "one sentence to remember.": "slow and steady wins.",
            "https://example.com/": "https://movementsolutions.example/",
        }.items():
            text = text.replace(example, hers)
        draft.write_text(text, encoding="utf-8")


def test_help_examples_run_in_a_project_made_by_init(tmp_path: Path) -> None:
    """Each example of build, check, send and status, pasted into a shell in her project."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "newsletter").exists():
        pytest.skip("the newsletter script is not installed next to this Python")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    assert newsletter(tmp_path, "init", "mine")[0] == 0
    root = tmp_path / "mine"
    fill_in_like_her(root)
    ran = 0
    for name in ("build", "check", "send", "status"):
        for line in (cli.commands[name].help or "").splitlines():
            example = line.strip()
            if not example.startswith("newsletter "):
                continue
            result = subprocess.run(
                ["sh", "-c", example], cwd=root, env=env, capture_output=True, text=True
            )
            assert result.returncode == 0, (example, result.stdout, result.stderr)
            ran += 1
    assert ran >= 9


def test_inits_next_steps_work_as_printed(tmp_path: Path) -> None:
    """Paste init's "next:" lines into a shell in an empty folder: every command runs."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "newsletter").exists():
        pytest.skip("the newsletter script is not installed next to this Python")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    init = subprocess.run(
        ["newsletter", "init", "my newsletter"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    steps = init.stdout.split("next:\n", 1)[1].splitlines()
    commands = [line.strip() for line in steps if not line.strip().startswith("edit ")]
    assert commands[0] == "cd 'my newsletter'"
    script = "set -e\n" + "\n".join(
        cmd + (" --help >/dev/null" if " preview " in cmd else "") for cmd in commands[:-1]
    )
    # preview serves until stopped: it is run with --help, and its file must exist
    ran = subprocess.run(
        ["sh", "-c", script + "\n" + commands[-1].replace("newsletter preview", "test -f")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    # `check` runs (exit 1: it lists what init left for her to fill in), never a usage error
    assert ran.returncode in (0, 1), ran.stderr
    assert "Usage:" not in ran.stderr and "Traceback" not in ran.stderr
    assert "postal_address is still the placeholder" in ran.stdout


def test_check_of_a_misspelt_draft_suggests_the_one_she_meant(
    make_project: Callable[..., Path],
) -> None:
    root = make_project()
    code, out, _ = newsletter(root, "check", SAMPLE_ISSUE.replace("rotation", "rotaton"))
    assert code == 1
    assert out == (
        f"{SAMPLE_ISSUE.replace('rotation', 'rotaton')}: no such file; did you mean "
        f"{SAMPLE_ISSUE}?\n"
    )


def test_init_asks_her_to_set_her_time_zone(tmp_path: Path) -> None:
    # The starter's zone is New York: left as it is in Portland, every send_at would go out
    # three hours early, and nothing would ever say so (it is a valid zone).
    code, out, _ = newsletter(tmp_path, "init", "mine")
    assert code == 0
    edit = next(line for line in out.splitlines() if "edit newsletter.toml" in line)
    assert "timezone" in edit
    config = (tmp_path / "mine" / "newsletter.toml").read_text(encoding="utf-8")
    line = next(line for line in config.splitlines() if line.startswith("timezone"))
    assert "send_at" in line and "America/Los_Angeles" in line


def test_the_starter_send_at_is_in_the_future(tmp_path: Path) -> None:
    code, _, _ = newsletter(tmp_path, "init", "mine")
    assert code == 0
    (draft,) = (tmp_path / "mine" / "newsletters").glob("*.md")
    example = re.search(r"(?m)^# send_at: (\S+ \S+)$", draft.read_text(encoding="utf-8"))
    assert example is not None
    assert datetime.fromisoformat(example[1]) > datetime.now() + timedelta(days=6)


# preview ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["send", "build", "preview"])
def test_a_draft_named_without_its_folder_gets_a_hint(
    make_project: Callable[..., Path], command: str
) -> None:
    root = make_project()
    code, out, err = newsletter(root, command, "hip-rotation.md")
    assert (code, out) == (2, "")
    assert err == (
        "error: hip-rotation.md: no such file; did you mean "
        "newsletters/2025-07-21-hip-rotation.md?\n"
    )


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (("send", SAMPLE_ISSUE, "--to"), "send"),
        (("subscribers", "list", "--tag"), "subscribers list"),
        (("status", "--bogus"), "status"),
    ],
)
def test_a_usage_mistake_names_the_commands_own_help(
    make_project: Callable[..., Path], args: tuple[str, ...], where: str
) -> None:
    # "'--to' requires an argument" once pointed at `newsletter --help`, which does not list it.
    code, _, err = newsletter(make_project(), *args)
    assert code == 2 and err.endswith(f" {where} --help shows how)\n"), err


@pytest.mark.parametrize(
    "args",
    [
        ("send",),
        ("send", "--due", "--dry-run"),
        ("preview", SAMPLE_ISSUE, "--port", "70000"),
        ("status", "--failed", "--json", "--bogus"),
        ("bogus",),
    ],
)
def test_a_usage_mistake_is_one_line(make_project: Callable[..., Path], args: tuple[str]) -> None:
    code, out, err = newsletter(make_project(), *args)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("error: ") and "--help shows how" in err


def test_preview_on_a_busy_port_is_one_line(make_project: Callable[..., Path]) -> None:
    root = make_project()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = newsletter(root, "preview", SAMPLE_ISSUE, "--port", str(port), "--no-open")
    assert code == 2 and out == ""
    assert err == (
        f"error: --port: port {port} is already in use (another preview, or another program); "
        "try --port 0 for any free port\n"
    )


@pytest.mark.parametrize("command", ["serve", "unsubscribe-server"])
def test_serve_on_a_busy_port_is_one_line_with_port_0(
    make_project: Callable[..., Path], command: str
) -> None:
    root = make_project()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = newsletter(root, command, "--port", str(port))
    assert code == 2
    assert "serving" not in out
    lines = err.splitlines()
    assert lines[-1] == (
        f"error: --port: port {port} is already in use (another newsletter serve, or another "
        "program); try --port 0 for any free port"
    )


def test_status_with_no_issues_says_how_to_start(make_project: Callable[..., Path]) -> None:
    root = make_project()
    shutil.rmtree(root / "newsletters")
    code, out, _ = newsletter(root, "status")
    assert (
        code == 0
        and out == 'no issues in newsletters/ yet: start one with newsletter new "Title"\n'
    )


def test_the_welcome_email_is_never_offered_or_sent_as_an_issue(project: Path) -> None:
    """newsletters/welcome.md goes to each new subscriber once, from the web app.  `status`
    once listed it as a draft with "send it by hand: newsletter send newsletters/welcome.md",
    which mails the welcome to the whole list; and a send_at on it would have let cron do so."""
    due = (datetime.now(LA) - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    set_front(project, "send_at", "2020-01-01 07:00")  # the sample issue is long past: missed
    welcome = project / "newsletters" / "welcome.md"
    welcome.write_text(
        f"---\nsubject: Welcome!\nsend_at: {due}\n---\n\nHi, glad you are here.\n",
        encoding="utf-8",
    )
    code, out, err = newsletter(project, "status")
    assert "welcome" not in out + err
    code, out, err = newsletter(project, "status", "newsletters/welcome.md")
    assert "each new subscriber" in out and "send it by hand" not in out and "cron" not in out
    code, out, err = newsletter(project, "send", "--due")
    assert not (project / "outbox" / "welcome").exists()

    code, out, err = newsletter(project, "send", "newsletters/welcome.md", "--yes")
    assert code == 2 and not (project / "outbox" / "welcome").exists()
    assert "welcome email" in err and "--to" in err and "Traceback" not in err
    code, out, err = newsletter(project, "send", "newsletters/welcome.md", "--dry-run")
    assert code == 2 and "welcome email" in err

    code, out, err = newsletter(project, "send", "newsletters/welcome.md", "--to", "me@example.org")
    assert code == 0 and len(list((project / "outbox" / "welcome" / "tests").glob("*.eml"))) == 1
