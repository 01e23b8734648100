"""Settling SendGrid's ``unknown`` by asking its Email Activity API, where the account has
the add-on; and, where it does not, rows that stay ``unknown`` with one line saying why,
never a second send.  Against tests/fake_providers.py's FakeSendGrid, a local HTTP server
speaking the documented ``GET /v3/messages?query=&limit=`` (and its refusals)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli import _print_report, cli
from pipeline.config import load_settings
from pipeline.delivery.provider import Searching
from pipeline.delivery.providers import create_provider, sendgrid
from pipeline.delivery.providers.http import HttpApi, SearchFailed, SearchUnavailable
from pipeline.delivery.providers.sendgrid import SendGridProvider
from pipeline.sending import SendReport, open_ledger, send_issue

from .conftest import SAMPLE_ISSUE
from .fake_providers import SENDGRID_KEY, CallFault, FakeSendGrid
from .test_kill import list_of
from .test_settle import kill_then_settle

ENV = {"SENDGRID_API_KEY": SENDGRID_KEY}
ISSUE = "2025-07-21-hip-rotation"


class FakeSendGridWithActivity(FakeSendGrid):
    activity_addon = True


@pytest.fixture
def server() -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid()
    fake.activity_addon = True
    try:
        yield fake
    finally:
        fake.close()


def provider(server: FakeSendGrid) -> SendGridProvider:
    return SendGridProvider(
        HttpApi("SendGrid", server.url, {"Authorization": f"Bearer {SENDGRID_KEY}"})
    )


def message(email: str, subject: str = "Hip rotation", issue: str = ISSUE) -> Any:
    return SimpleNamespace(key=email.lower(), to_email=email, issue=issue, subject=subject)


def accepted(server: FakeSendGrid, email: str, subject: str, issue: str, msg_id: str) -> None:
    """What SendGrid's activity feed shows for a message it accepted."""
    server.accepted.insert(
        0,
        {
            "from_email": "connie@movementsolutions.example",
            "msg_id": msg_id,
            "subject": subject,
            "to_email": email,
            "status": "delivered",
            "opens_count": 0,
            "clicks_count": 0,
            "last_event_time": "2025-07-21T11:00:00Z",
            "categories": [issue],
        },
    )


def test_sendgrid_can_be_asked() -> None:
    api = HttpApi("SendGrid", "http://127.0.0.1:9", {})
    assert isinstance(SendGridProvider(api), Searching)


def test_found_only_when_issue_recipient_and_subject_all_match(server: FakeSendGrid) -> None:
    accepted(server, "Ada@Example.org", "Hip rotation", ISSUE, "xid1.filter0001.1.0")
    accepted(server, "ben@example.org", "[Test] Hip rotation", ISSUE, "xid2.filter0001.2.0")
    accepted(server, "cy@example.org", "Hip rotation", "2025-06-01-older", "xid3.filter0001.3.0")
    asked = [message("ada@example.org"), message("ben@example.org"), message("cy@example.org")]
    found = provider(server).find_accepted(asked)
    # The ledger keeps the send's X-Message-Id: the msg_id's part before the first dot.
    assert found == {"ada@example.org": "xid1"}
    assert server.searches == 1  # three readers, one request


def test_a_full_answer_is_split_until_nothing_can_be_left_out(
    server: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API has a limit and no cursor: an answer as long as the limit may have left some
    out, so the readers are asked about in halves."""
    monkeypatch.setattr(sendgrid, "ACTIVITY_LIMIT", 4)
    readers = [f"reader{i}@example.org" for i in range(8)]
    for i, email in enumerate(readers):
        accepted(server, email, "Hip rotation", ISSUE, f"x{i}.f.0")
    found = provider(server).find_accepted([message(e) for e in readers])
    assert found == {email: f"x{i}" for i, email in enumerate(readers)}
    assert server.searches == 7  # 8 readers -> 4 + 4 -> 2 + 2 + 2 + 2: every answer under 4


def test_one_reader_with_more_messages_than_an_answer_holds_is_a_failed_search(
    server: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sendgrid, "ACTIVITY_LIMIT", 2)
    for n in range(3):
        accepted(server, "ada@example.org", f"Other {n}", ISSUE, f"x{n}.f.0")
    with pytest.raises(SearchFailed, match="cannot be told which is ours"):
        provider(server).find_accepted([message("ada@example.org")])


@pytest.mark.parametrize(
    "refusal",
    [
        (400, {"errors": [{"message": "authorization required"}]}),
        (401, {"errors": [{"message": "authorization required"}]}),
        (403, {"errors": [{"field": None, "message": "access forbidden"}]}),
    ],
)
def test_an_account_without_the_add_on_cannot_search(
    server: FakeSendGrid, refusal: tuple[int, Any]
) -> None:
    server.activity_addon = False
    server.refusal = refusal
    with pytest.raises(SearchUnavailable, match="Email Activity API is not available"):
        provider(server).find_accepted([message("ada@example.org")])


def test_the_rate_limit_is_a_failed_search_asked_again_later(server: FakeSendGrid) -> None:
    server.searches_allowed = 0
    with pytest.raises(SearchFailed, match="6 searches a minute") as raised:
        provider(server).find_accepted([message("ada@example.org")])
    assert not isinstance(raised.value, SearchUnavailable)


def test_addresses_are_quoted_in_the_query(server: FakeSendGrid) -> None:
    odd = '"quoted\\local"@example.org'
    accepted(server, odd, "Hip rotation", ISSUE, "q1.f.0")
    assert provider(server).find_accepted([message(odd)]) == {odd.lower(): "q1"}


# Through a real send ---------------------------------------------------------------------


def project(make_project: Callable[..., Path], server: FakeSendGrid, count: int) -> Path:
    return make_project(
        provider=f'name = "sendgrid"\nbase_url = "{server.url}"\ntimeout = 1\n'
        "batch_size = 10\nconcurrency = 1\nsearch_grace = 0",
        csv=list_of(count),
    )


def send(root: Path) -> SendReport:
    settings = load_settings(root / "newsletter.toml")
    chosen = create_provider(settings, ENV)
    try:
        report = send_issue(
            root / SAMPLE_ISSUE, settings, chosen, environ=ENV, sleep=lambda s: None
        )
    finally:
        chosen.close()
    assert report is not None
    return report


def lose_an_answer(root: Path, server: FakeSendGrid) -> SendReport:
    """The second batch is accepted but its answer never comes back (a timeout)."""
    server.faults = [CallFault(), CallFault(delay=2.0, accept=True)]
    first = send(root)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.at_once:
        time.sleep(0.05)  # until the delayed request has been processed
    return first


def test_a_lost_answer_is_settled_by_asking_and_nobody_is_sent_twice(
    make_project: Callable[..., Path], server: FakeSendGrid
) -> None:
    root = project(make_project, server, 30)
    first = lose_an_answer(root, server)
    assert first.counts.unknown == 10
    second = send(root)
    assert second.asked is not None and second.asked.found == 10
    assert second.counts.sent == 30 and second.counts.unknown == 0
    assert len(server.delivered) == 30 and max(server.delivered.values()) == 1


def test_without_the_add_on_the_rows_stay_unknown_with_one_line_saying_why(
    make_project: Callable[..., Path], server: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.activity_addon = False
    root = project(make_project, server, 30)
    first = lose_an_answer(root, server)
    assert first.counts.unknown == 10
    monkeypatch.setenv("SENDGRID_API_KEY", SENDGRID_KEY)
    old = Path.cwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(cli, ["send", SAMPLE_ISSUE, "--yes"], obj={})
    finally:
        os.chdir(old)
    out = result.stdout + result.stderr
    assert "Traceback" not in out and SENDGRID_KEY not in out
    why = [line for line in out.splitlines() if "could not ask" in line]
    assert len(why) == 1 and "Email Activity API is not available" in why[0], out
    assert "paid add-on" in why[0] and "{" not in why[0]  # words, not SendGrid's JSON
    # Not "the next run asks again" (it cannot): the operator looks them up.
    assert "asks sendgrid about them again" not in out
    # Nor that it asked and found nothing "yet": it could not ask at all.
    assert "asked sendgrid" not in out and "not found yet" not in out, out
    assert why[0].startswith("  could not ask sendgrid about unknown recipients: SendGrid's")
    assert "look each one up in sendgrid's log" in out
    assert "unknown 10:" in out
    # Never a duplicate: the ten the lost answer left are neither resent nor settled.
    assert len(server.delivered) == 30 and max(server.delivered.values()) == 1


def test_sendgrid_kills_end_with_nobody_unknown_and_nobody_twice(
    make_project: Callable[..., Path],
) -> None:
    _, searches = kill_then_settle(make_project, "sendgrid", FakeSendGridWithActivity, ENV)
    assert searches > 0, "no kill landed while a batch was in flight: nothing was asked"


def test_a_message_older_than_the_activity_history_is_never_taken_as_not_sent(
    make_project: Callable[..., Path], server: FakeSendGrid, capsys: pytest.CaptureFixture[str]
) -> None:
    """Email Activity forgets: a row handed over longer ago than the account's history is
    not asked about (not found would prove nothing) and stays unknown, never sent again;
    with a longer history set, it is asked, and what SendGrid never had is sent once."""
    root = project(make_project, server, 30)
    server.faults = [CallFault(), CallFault(delay=2.0)]  # never processed; the answer is lost
    first = send(root)
    assert first.counts.unknown == 10 and len(server.delivered) == 20
    ledger = open_ledger(load_settings(root / "newsletter.toml"))
    try:
        four_days_ago = (datetime.now(UTC) - timedelta(days=4)).isoformat(timespec="seconds")
        with ledger.transaction() as db:
            db.execute("UPDATE batches SET started_at = ?", (four_days_ago,))
    finally:
        ledger.close()
    second = send(root)
    assert second.asked is not None and second.asked.too_old == 10
    assert second.counts.unknown == 10 and len(server.delivered) == 20
    _print_report(second, load_settings(root / "newsletter.toml"))
    out = capsys.readouterr().out
    assert "10 recipients sent longer ago than sendgrid's search remembers" in out
    assert "asks sendgrid about them again" not in out and "look each one up" in out
    config = root / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + "activity_days = 30\n")
    third = send(root)
    assert third.asked is not None and third.asked.resent == 10 and third.asked.too_old == 0
    assert third.counts.sent == 30 and third.counts.unknown == 0
    assert len(server.delivered) == 30 and max(server.delivered.values()) == 1


@pytest.mark.parametrize("days", ["nan", "inf", "1e9"])
def test_an_activity_history_no_date_can_hold_is_a_clear_error_not_a_traceback(
    make_project: Callable[..., Path],
    server: FakeSendGrid,
    monkeypatch: pytest.MonkeyPatch,
    days: str,
) -> None:
    """TOML has nan and inf, and neither is below a minimum of 0: ``activity_days = nan``
    (or inf, or a billion days) was taken, then made a traceback of every send that had
    unknown rows to settle (``timedelta``).  Refused with the file and key named, exit 2,
    and the unknown rows neither settled nor sent again."""
    root = project(make_project, server, 30)
    first = lose_an_answer(root, server)
    assert first.counts.unknown == 10
    config = root / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + f"activity_days = {days}\n")
    monkeypatch.setenv("SENDGRID_API_KEY", SENDGRID_KEY)
    old = Path.cwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(cli, ["send", SAMPLE_ISSUE, "--yes"], obj={})
    finally:
        os.chdir(old)
    out = result.stdout + result.stderr
    assert result.exit_code == 2, out
    assert "Traceback" not in out and isinstance(result.exception, SystemExit)
    # The setting's own line named, as every [provider] setting's problem names it.
    assert re.search(
        r"newsletter\.toml:\d+: \[provider\] activity_days: must be a number from 0 to 3,650", out
    )
    assert len(server.delivered) == 30 and max(server.delivered.values()) == 1
