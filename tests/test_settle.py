"""SIGKILL a real send through Postmark and through Mailgun at random moments, as
tests/test_kill.py does, and let the runs that follow ask the provider about what a kill
left ``unknown``: every recipient ends sent, exactly once, with nobody for the operator to
decide about.  (``search_grace = 1``: a message the provider's search does not show one
second after its batch was handed over was never accepted.)"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import load_settings
from pipeline.delivery.providers import create_provider
from pipeline.sending import open_ledger, send_issue

from .conftest import SAMPLE_ISSUE
from .fake_providers import (
    MAILGUN_KEY,
    POSTMARK_TOKEN,
    CallFault,
    FakeApi,
    FakeMailgun,
    FakePostmark,
)
from .test_kill import list_of, run

RECIPIENTS = 400
ROUNDS = 3
GRACE = 1.0


def kill_then_settle(
    make_project: Callable[..., Path],
    provider: str,
    fake: type[FakeApi],
    secrets: dict[str, str],
    extra: str = "",
) -> tuple[int, int]:
    """Returns (kills, searches the provider answered)."""
    seed = int(os.environ.get("KILL_SEED", time.time()))
    chance = random.Random(seed)
    kills = searches = 0
    for round_number in range(ROUNDS):
        server = fake()
        server.latency = 0.1
        where = f"{provider}, seed {seed}, round {round_number}"
        try:
            root = make_project(
                provider=f'name = "{provider}"\nbase_url = "{server.url}"\nbatch_size = 20\n'
                f"concurrency = 2\nsearch_grace = {GRACE}\n{extra}",
                csv=list_of(RECIPIENTS),
            )
            for attempt in range(40):
                code = run(root, chance.uniform(0.2, 1.4) if attempt < 5 else None, secrets)
                if code is None:
                    kills += 1
                    continue
                # Unknown rows too recent to settle wait for a later run, as cron's would.
                ledger = open_ledger(load_settings(root / "newsletter.toml"))
                unknown = ledger.counts("2025-07-21-hip-rotation").unknown
                ledger.close()
                if unknown == 0:
                    break
                time.sleep(GRACE + 0.2)
            else:
                raise AssertionError(f"{where}: never settled")
            ledger = open_ledger(load_settings(root / "newsletter.toml"))
            rows = ledger.history("2025-07-21-hip-rotation")
            counts = ledger.counts("2025-07-21-hip-rotation")
            ledger.close()
            time.sleep(0.2)  # a call a killed run left behind is finished by now
        finally:
            server.close()
        searches += server.searches
        assert counts.sent == RECIPIENTS and counts.unknown == 0 and counts.pending == 0, where
        assert len(server.delivered) == RECIPIENTS, where  # nobody lost
        assert max(server.delivered.values()) == 1, where  # nobody twice
        assert all(row["status"] == "sent" and row["provider_id"] for row in rows), where
    print(f"{provider}, seed {seed}: {kills} kills, {searches} searches, 0 unknown at the end")
    assert kills >= ROUNDS, f"seed {seed}: the test killed too rarely to mean anything"
    return kills, searches


def test_postmark_kills_end_with_nobody_unknown_and_nobody_twice(
    make_project: Callable[..., Path],
) -> None:
    _, searches = kill_then_settle(
        make_project, "postmark", FakePostmark, {"POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN}
    )
    assert searches > 0, "no kill landed while a batch was in flight: nothing was asked"


def test_mailgun_kills_end_with_nobody_unknown_and_nobody_twice(
    make_project: Callable[..., Path],
) -> None:
    _, searches = kill_then_settle(
        make_project,
        "mailgun",
        FakeMailgun,
        {"MAILGUN_API_KEY": MAILGUN_KEY},
        f'domain = "{FakeMailgun.domain}"',
    )
    assert searches > 0, "no kill landed while a batch was in flight: nothing was asked"


def test_brevo_after_its_key_expired_is_asked_not_replayed(
    make_project: Callable[..., Path],
) -> None:
    from pipeline.delivery.providers import create_provider
    from pipeline.sending import send_issue

    from .conftest import SAMPLE_ISSUE
    from .fake_providers import BREVO_KEY, CallFault, FakeBrevo

    server = FakeBrevo()
    env = {"BREVO_API_KEY": BREVO_KEY}
    try:
        root = make_project(
            provider=f'name = "brevo"\nbase_url = "{server.url}"\ntimeout = 1\nbatch_size = 5'
            "\nconcurrency = 1",
            csv=list_of(10),
        )
        settings = load_settings(root / "newsletter.toml")

        def send(key_expired: bool) -> Any:
            provider = create_provider(settings, env)
            if key_expired:  # as if the batch were older than Brevo's 30 minutes
                provider.search_after = 0  # type: ignore[attr-defined]
            try:
                return send_issue(
                    root / SAMPLE_ISSUE, settings, provider, environ=env, sleep=lambda s: None
                )
            finally:
                provider.close()

        # The first batch is accepted, but its answer is lost.
        server.faults = [CallFault(delay=2.0, accept=True)]
        first = send(key_expired=False)
        assert first.counts.unknown == 5
        deadline = time.monotonic() + 10
        while sum(server.delivered.values()) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        # The key has expired: replaying it would send again.  Brevo's list is asked.
        second = send(key_expired=True)
        assert second.asked is not None and second.asked.found == 5
        assert second.counts.sent == 10 and second.counts.unknown == 0
        assert server.replayed == 0 and max(server.delivered.values()) == 1
    finally:
        server.close()


@pytest.mark.parametrize(
    ("name", "fake", "env", "extra", "days_ago", "longer"),
    [
        # Mailgun keeps events at least 2 days on a free plan, 30 on paid ones.
        (
            "mailgun",
            FakeMailgun,
            {"MAILGUN_API_KEY": MAILGUN_KEY},
            f'domain = "{FakeMailgun.domain}"',
            3,
            "events_days = 30",
        ),
        # Postmark keeps messages 45 days by default (7 to 365 with its Retention Add-on).
        (
            "postmark",
            FakePostmark,
            {"POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN},
            "",
            46,
            "retention_days = 90",
        ),
    ],
)
def test_a_message_older_than_the_search_remembers_is_never_taken_as_not_sent(
    make_project: Callable[..., Path],
    name: str,
    fake: type[FakeApi],
    env: dict[str, str],
    extra: str,
    days_ago: int,
    longer: str,
) -> None:
    """A row handed over longer ago than the provider keeps what it accepted is not asked
    about (not found would prove nothing) and stays unknown, never sent again; with a
    longer history set, it is asked, and what the provider never had is sent once.
    (Before, Postmark's and Mailgun's searches were taken to remember forever: a send
    resumed days after a lost answer sent again what they had accepted and forgotten.)"""
    server = fake()
    try:
        root = make_project(
            provider=f'name = "{name}"\nbase_url = "{server.url}"\ntimeout = 1\n{extra}\n'
            "batch_size = 10\nconcurrency = 1\nsearch_grace = 0",
            csv=list_of(30),
        )

        def send() -> Any:
            settings = load_settings(root / "newsletter.toml")
            chosen = create_provider(settings, env)
            try:
                return send_issue(
                    root / SAMPLE_ISSUE, settings, chosen, environ=env, sleep=lambda s: None
                )
            finally:
                chosen.close()

        server.faults = [CallFault(), CallFault(delay=2.0)]  # never processed; answer lost
        first = send()
        assert first.counts.unknown == 10 and len(server.delivered) == 20
        ledger = open_ledger(load_settings(root / "newsletter.toml"))
        try:
            then = time.strftime(
                "%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - days_ago * 86400)
            )
            with ledger.transaction() as db:
                db.execute("UPDATE batches SET started_at = ?", (then,))
        finally:
            ledger.close()
        second = send()
        assert second.asked is not None and second.asked.too_old == 10
        assert second.counts.unknown == 10 and len(server.delivered) == 20
        config = root / "newsletter.toml"
        config.write_text(config.read_text(encoding="utf-8") + longer + "\n")
        third = send()
        assert third.asked is not None and third.asked.resent == 10
        assert third.counts.sent == 30 and third.counts.unknown == 0
        assert len(server.delivered) == 30 and max(server.delivered.values()) == 1
    finally:
        server.close()


def brevo_lost_answer(make_project: Callable[..., Path], server: Any) -> tuple[Path, Any]:
    """Five readers; the first batch of five is accepted by Brevo but its answer is lost."""
    from .fake_providers import BREVO_KEY

    env = {"BREVO_API_KEY": BREVO_KEY}
    root = make_project(
        provider=f'name = "brevo"\nbase_url = "{server.url}"\ntimeout = 1\nbatch_size = 5'
        "\nconcurrency = 1",
        csv=list_of(5),
    )
    settings = load_settings(root / "newsletter.toml")

    def send() -> Any:
        provider = create_provider(settings, env)
        try:
            return send_issue(
                root / SAMPLE_ISSUE, settings, provider, environ=env, sleep=lambda s: None
            )
        finally:
            provider.close()

    server.faults = [CallFault(delay=2.0, accept=True)]
    first = send()
    assert first.counts.unknown == 5
    deadline = time.monotonic() + 10
    while sum(server.delivered.values()) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    handed_over(root, days=1 / 24)  # an hour ago: its key (30 minutes) has expired
    return root, send


def handed_over(root: Path, days: float) -> None:
    """As if every batch had been handed over ``days`` ago."""
    ledger = open_ledger(load_settings(root / "newsletter.toml"))
    try:
        then = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - days * 86400))
        with ledger.transaction() as db:
            db.execute("UPDATE batches SET started_at = ?", (then,))
    finally:
        ledger.close()


def test_brevo_finds_an_issue_behind_a_page_of_the_readers_newer_emails(
    make_project: Callable[..., Path],
) -> None:
    """Brevo lists a reader's emails newest first, a page at a time.  The practice's other
    mail through the same account (appointment reminders) can fill the first page: only
    that page was read, so the issue was "not found" and sent a second time."""
    from .fake_providers import FakeBrevo

    server = FakeBrevo()
    try:
        _, send = brevo_lost_answer(make_project, server)
        for n in range(120):  # newer emails to the first reader, of other kinds
            server.accepted.append(
                {
                    "email": "reader0000@example.org",
                    "subject": f"Your appointment reminder {n}",
                    "messageId": f"<other-{n}@smtp-relay.mailin.fr>",
                    "tags": ["reminders"],
                }
            )
        second = send()
        assert second.asked is not None and second.asked.found == 5, second.asked
        assert second.counts.sent == 5 and second.counts.unknown == 0
        assert max(server.delivered.values()) == 1
    finally:
        server.close()


def test_brevo_never_takes_an_email_older_than_its_list_as_not_sent(
    make_project: Callable[..., Path],
) -> None:
    """Brevo's list shows the past 30 days: a row handed over longer ago is not asked
    about, stays unknown, and is never sent again."""
    from .fake_providers import FakeBrevo

    server = FakeBrevo()
    try:
        root, send = brevo_lost_answer(make_project, server)
        server.accepted.clear()  # as Brevo's list no longer shows it
        handed_over(root, days=31)
        second = send()
        assert second.asked is not None and second.asked.too_old == 5
        # Not replayed either: its key expired long ago, and Brevo would send it again.
        assert second.counts.unknown == 5 and server.replayed == 0
        assert max(server.delivered.values()) == 1 and second.unknown_replayable == 0
    finally:
        server.close()


def test_brevo_never_replays_a_batch_whose_key_expired_when_its_list_cannot_be_asked(
    make_project: Callable[..., Path],
) -> None:
    """A batch older than Brevo's 30-minute key is asked about, not replayed; when the
    asking failed (Brevo answered 500), its rows stayed unknown and the loop then replayed
    them under the expired key, which Brevo no longer recognises: sent a second time."""
    from .fake_providers import FakeBrevo

    server = FakeBrevo()
    try:
        _, send = brevo_lost_answer(make_project, server)
        server.search = lambda *_: (500, {}, {"code": "internal_error", "message": "down"})  # type: ignore[method-assign]
        second = send()
        assert second.asked is not None and second.asked.problem
        assert second.counts.unknown == 5 and server.replayed == 0
        assert second.unknown_replayable == 0
        assert max(server.delivered.values()) == 1
    finally:
        server.close()
