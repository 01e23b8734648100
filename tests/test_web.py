"""The web app (``newsletter serve``) served for real by waitress on 127.0.0.1, driven with
``requests``: one-click unsubscribe (moved here from the old unsubscribe server, behaviour
kept), signup with double opt-in, abuse, limits, and the list under load."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from flask import Flask
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from pipeline.audience.subscribers import check_list
from pipeline.cli import cli
from pipeline.config import Settings
from pipeline.delivery.providers import create_provider
from pipeline.ledger.consent import consent_history
from pipeline.messages.secret import load_secret
from pipeline.messages.unsubscribe import make_token
from pipeline.sending import open_ledger, send_issue
from pipeline.web import create_app, from_config
from pipeline.web.app import subscriptions_of
from pipeline.web.server import make_server, stop_server
from pipeline.web.tokens import CONFIRM_SALT, Signer, SignupRequest

from .conftest import SAMPLE_ISSUE
from .fake_providers import POSTMARK_TOKEN, FakePostmark
from .web_helpers import (
    SIGNUP_CONFIG,
    Served,
    confirm_link,
    outbox_mail,
    rows,
    rows_for,
    serve,
    text_part,
    with_signup,
)

ONE_CLICK = {"List-Unsubscribe": "One-Click"}  # RFC 8058: the body a mail client posts


def statuses(settings: Settings) -> dict[str, str]:
    return {row["email"]: row["status"] for row in rows(settings)}


@pytest.fixture
def served(project: Path) -> Served:  # type: ignore[misc]
    settings = with_signup(project)
    with serve(settings) as running:
        yield running


def history(settings: Settings, address: str) -> list[str]:
    ledger = open_ledger(settings)
    try:
        return [f"{e.action.value}/{e.cause.value}" for e in consent_history(ledger.db, address)]
    finally:
        ledger.close()


def start_serve(project: Path, command: str = "serve") -> tuple[subprocess.Popen[str], str]:
    """`newsletter serve` in its own process; returns it and its URL once it listens (the
    lines before "serving" are what the start applied from the queue)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline", command, "--port", "0"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert server.stdout is not None
    seen = []
    for line in server.stdout:
        found = re.search(r"at (http://127\.0\.0\.1:\d+)/subscribe", line)
        if found:
            return server, found.group(1)
        seen.append(line)
    server.wait()
    raise AssertionError(f"the server did not start: {''.join(seen)}")


# Leaving: the one-click endpoint, moved in ----------------------------------------------


def test_the_link_in_a_sent_email_unsubscribes_in_one_click(project: Path, served: Served) -> None:
    settings = served.settings
    provider = create_provider(settings, {})
    send_issue(project / SAMPLE_ISSUE, settings, provider, environ={}, sleep=lambda s: None)
    eml = project / "outbox" / "2025-07-21-hip-rotation" / "ben.lifter@example.org.eml"
    message = message_from_bytes(eml.read_bytes())
    link = re.search(r"<(https://[^>]+)>", message["List-Unsubscribe"])
    assert link and message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    local = link.group(1).replace(settings.base_url, served.url)
    before = check_list(settings.subscribers).audience

    page = requests.get(local, timeout=5)  # a link scanner, or the reader's browser
    assert page.status_code == 200 and '<form method="post"' in page.text
    assert "b***@example.org" in page.text and "ben.lifter" not in page.text
    # Nothing is done yet, and the page must not read as if it were (she would close it).
    assert "<p>Press the button and b***@example.org will get no more emails" in page.text
    served.settle()
    assert statuses(settings)["ben.lifter@example.org"] == ""  # a GET changes nothing
    assert history(settings, "ben.lifter@example.org") == []

    done = requests.post(local, data=ONE_CLICK, timeout=5)  # what Gmail does
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert "no-referrer" in done.headers["Referrer-Policy"]
    served.settle()
    assert statuses(settings)["ben.lifter@example.org"] == "unsubscribed"
    assert check_list(settings.subscribers).audience == before - 1
    assert history(settings, "ben.lifter@example.org") == ["unsubscribed/one-click"]
    again = requests.post(local, data=ONE_CLICK, timeout=5)  # twice is harmless
    assert again.status_code == 200
    served.settle()
    assert statuses(settings)["ben.lifter@example.org"] == "unsubscribed"
    assert len(rows_for(settings, "ben.lifter@example.org")) == 1


def test_a_forged_or_altered_token_changes_nothing(served: Served) -> None:
    settings = served.settings
    before = settings.subscribers.read_bytes()
    forged = make_token(b"not the secret", "ada.runner@example.org")
    real = make_token(served.secret, "ada.runner@example.org")
    altered = real[:-2] + ("AA" if not real.endswith("AA") else "BB")
    for path in (
        f"/unsubscribe?token={forged}",
        f"/unsubscribe?token={altered}",
        "/unsubscribe?token=",
        "/unsubscribe",
    ):
        answer = requests.post(served.url + path, data=ONE_CLICK, timeout=5)
        assert answer.status_code == 400 and "not valid" in answer.text
        assert requests.get(served.url + path, timeout=5).status_code == 400
    assert requests.post(served.url + "/", data=ONE_CLICK, timeout=5).status_code in (404, 405)
    served.settle()
    assert settings.subscribers.read_bytes() == before
    assert history(settings, "ada.runner@example.org") == []


def test_an_address_not_on_the_list_gets_the_same_answer(served: Served) -> None:
    """No answer reveals who is on the list: a valid token for a stranger reads the same."""
    settings = served.settings
    before = settings.subscribers.read_bytes()
    answers = []
    for address in ("ada.runner@example.org", "stranger@example.org"):
        token = make_token(served.secret, address)
        answer = requests.post(f"{served.url}/unsubscribe?token={token}", data=ONE_CLICK)
        answers.append(answer.text.replace(address[0] + "***@example.org", "X"))
    assert answers[0] == answers[1]
    served.settle()
    assert statuses(settings)["ada.runner@example.org"] == "unsubscribed"
    after = settings.subscribers.read_bytes()
    assert after.replace(b"ada.runner@example.org,Ada,Runner,unsubscribed", b"") == before.replace(
        b"ada.runner@example.org,Ada,Runner,subscribed", b""
    )


def test_a_broken_list_keeps_the_opt_out_queued_until_it_is_fixed(served: Served) -> None:
    """The opt-out is recorded (and answered) even when the list cannot be written; the list
    is left as it was, the operator is told which file and line, and it lands once fixed."""
    settings = served.settings
    good = settings.subscribers.read_bytes()
    broken = b"name,status\r\nAda,subscribed\r\n"  # someone renamed the email column
    settings.subscribers.write_bytes(broken)
    token = make_token(served.secret, "ada.runner@example.org")
    answer = requests.post(f"{served.url}/unsubscribe?token={token}", data=ONE_CLICK, timeout=5)
    assert answer.status_code == 200
    served.subscriptions._flush_logged()
    assert settings.subscribers.read_bytes() == broken
    (line,) = [line for line in served.log if "NOT updated" in line]
    assert "subscribers.csv:1" in line and "email" in line  # file and line named
    health = requests.get(f"{served.url}/healthz", timeout=5)
    assert health.status_code == 503 and health.json()["queued"] == 1
    assert "subscribers.csv:1" in health.json()["problem"]
    settings.subscribers.write_bytes(good)
    served.subscriptions._flush_logged()
    assert requests.get(f"{served.url}/healthz", timeout=5).json() == {"status": "ok", "queued": 0}
    assert statuses(settings)["ada.runner@example.org"] == "unsubscribed"


def test_healthz_never_shows_a_reader_or_a_server_path(served: Served) -> None:
    """/healthz is public (the proxy passes it): when the list has lost its header row, the
    problem's full text names the first reader ("it has: ada.runner@..., Ada, ..."); that,
    and the server's folders, stay in the log.  The check still says which file and line."""
    settings = settings_ = served.settings
    headless = b"ada.runner@example.org,Ada,Runner,subscribed,,Springfield\r\n"
    settings.subscribers.write_bytes(headless)
    token = make_token(served.secret, "ben.lifter@example.org")
    requests.post(f"{served.url}/unsubscribe?token={token}", data=ONE_CLICK, timeout=5)
    served.subscriptions._flush_logged()
    (line,) = [line for line in served.log if "NOT updated" in line]
    assert "ada.runner@example.org" in line  # the operator's log has it all
    health = requests.get(f"{served.url}/healthz", timeout=5)
    assert health.status_code == 503
    shown = health.text
    assert "subscribers.csv:1" in shown and health.json()["queued"] == 1
    for private in ("ada.runner", "Runner", "Springfield", str(settings_.root)):
        assert private not in shown


def test_a_send_applies_opt_outs_still_queued(project: Path, served: Served) -> None:
    settings = served.settings
    token = make_token(served.secret, "ada.runner@example.org")
    requests.post(f"{served.url}/unsubscribe?token={token}", data=ONE_CLICK, timeout=5)
    # No applier ran: the opt-out is only in the ledger's queue when the send starts.
    assert statuses(settings)["ada.runner@example.org"] == "subscribed"
    provider = create_provider(settings, {})
    report = send_issue(project / SAMPLE_ISSUE, settings, provider, environ={}, sleep=lambda s: 0)
    assert report is not None
    sent = {p.name for p in (project / "outbox" / "2025-07-21-hip-rotation").glob("*.eml")}
    assert "ada.runner@example.org.eml" not in sent and "ben.lifter@example.org.eml" in sent
    assert statuses(settings)["ada.runner@example.org"] == "unsubscribed"


# Joining: double opt-in -------------------------------------------------------------------


def leave_url(served: Served, address: str) -> str:
    return f"{served.url}/unsubscribe?token={make_token(served.secret, address)}"


def signup(served: Served, email: str, **extra: str | list[str]) -> requests.Response:
    data: dict[str, str | list[str]] = {"email": email, "first_name": "Pat", **extra}
    return requests.post(f"{served.url}/subscribe", data=data, timeout=10)


def test_signup_confirm_and_welcome_once(project: Path, served: Served) -> None:
    settings = served.settings
    (project / "newsletters" / "welcome.md").write_text(
        "---\nsubject: Welcome, {{ subscriber.first_name }}\n---\n\nGlad you are here.\n",
        encoding="utf-8",
    )
    page = requests.get(f"{served.url}/subscribe", timeout=5)
    assert page.status_code == 200 and 'name="email"' in page.text and "Runners" in page.text

    answer = signup(served, "Pat.New@Example.org", tags=["runners", "not-offered"])
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    served.settle()
    assert rows_for(settings, "pat.new@example.org") == []  # nothing until confirmed
    (mail,) = outbox_mail(settings, "confirmation")
    assert mail["To"] == "Pat <Pat.New@example.org>"
    assert "List-Unsubscribe" not in mail  # not on any list yet
    link = confirm_link(mail, settings, served.url)

    shown = requests.get(link, timeout=5)  # what a link scanner does
    assert shown.status_code == 200 and ">Confirm</button>" in shown.text
    served.settle()
    assert rows_for(settings, "pat.new@example.org") == []  # GET changed nothing

    token = link.split("token=")[1]
    done = requests.post(f"{served.url}/confirm", data={"token": token}, timeout=5)
    assert done.status_code == 200 and "You are subscribed" in done.text
    again = requests.post(f"{served.url}/confirm", data={"token": token}, timeout=5)
    assert again.status_code == 200  # a double click
    served.settle()
    (row,) = rows_for(settings, "pat.new@example.org")
    assert row["status"] == "subscribed" and row["first_name"] == "Pat"
    assert row["tags"] == "runners" and row["subscribed_at"].startswith("20")
    assert len(outbox_mail(settings, "welcome")) == 1
    assert history(settings, "pat.new@example.org") == [
        "signup_requested/form",
        "confirmed/form",
    ]
    assert check_list(settings.subscribers).invalid == []


@pytest.mark.parametrize("where", ["footer", "top"])
def test_the_confirmation_and_welcome_have_no_view_in_browser_link(
    project: Path, where: str
) -> None:
    """Neither is a page of the web edition: their "View in browser" pointed at
    <archive url>confirmation/ and welcome/, pages that do not exist (a 404 from her site)."""
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^view_in_browser = .*$", f'view_in_browser = "{where}"', text)
    config.write_text(text, encoding="utf-8")
    (project / "newsletters" / "welcome.md").write_text(
        "---\nsubject: Welcome\n---\n\nGlad you are here.\n", encoding="utf-8"
    )
    with serve(with_signup(project)) as served:
        settings = served.settings
        assert settings.archive.url  # the sample has a web edition, so issues do have the link
        signup(served, "pat.browser@example.org")
        served.settle()
        (mail,) = outbox_mail(settings, "confirmation")
        token = confirm_link(mail, settings, served.url).split("token=")[1]
        requests.post(f"{served.url}/confirm", data={"token": token}, timeout=5)
        served.settle()
        (welcome,) = outbox_mail(settings, "welcome")
    for message in (mail, welcome):
        for part in message.walk():
            if part.get_content_maintype() == "text":
                body = part.get_payload(decode=True)
                assert isinstance(body, bytes)
                assert b"View in browser" not in body
                assert settings.archive.url.encode() not in body
                # The confirmation's button subscribes whoever presses it: not to be passed
                # on, so it has no "Forwarded this? Sign up" (the welcome keeps it).
                assert (b"Forwarded this?" in body) is (message is welcome)


def test_the_signup_page_says_what_this_newsletter_is_in_its_own_words(project: Path) -> None:
    """The page said "Practical tips to move well, stay strong and train for life." to every
    practice, whatever it sends; it now says [archive] signup_text, as the web edition does."""
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^signup_text = .*$", 'signup_text = "Fresh sourdough news, Fridays."', text)
    config.write_text(text, encoding="utf-8")
    with serve(with_signup(project)) as served:
        page = requests.get(f"{served.url}/subscribe", timeout=5).text
    assert "Fresh sourdough news, Fridays." in page and "move well" not in page
    config.write_text(re.sub(r"(?m)^signup_text = .*\n", "", text), encoding="utf-8")
    with serve(with_signup(project, "")) as served:
        page = requests.get(f"{served.url}/subscribe", timeout=5).text
    assert "move well" not in page and "We will send you one email to confirm" in page


def test_same_address_again_no_second_row_and_no_second_email(served: Served) -> None:
    settings = served.settings
    signup(served, "twice@example.org")
    served.settle()
    signup(served, "TWICE@example.org")  # within the hour: no second confirmation
    served.settle()
    assert len(outbox_mail(settings, "confirmation")) == 1
    (mail,) = outbox_mail(settings, "confirmation")
    token = confirm_link(mail, settings, served.url).split("token=")[1]
    requests.post(f"{served.url}/confirm", data={"token": token}, timeout=5)
    served.settle()
    before = list(served.log)
    signup(served, "twice@example.org")  # already subscribed: none
    served.settle()
    assert len(rows_for(settings, "twice@example.org")) == 1
    assert any("already subscribed, no confirmation" in line for line in served.log[len(before) :])


def test_an_already_subscribed_address_gets_the_same_answer_and_no_mail(served: Served) -> None:
    on_list = signup(served, "ada.runner@example.org")
    stranger = signup(served, "nobody.yet@example.org")
    assert on_list.status_code == stranger.status_code == 200
    assert on_list.text == stranger.text
    served.settle()
    names = {m["To"] for m in outbox_mail(served.settings, "confirmation")}
    assert names == {"Pat <nobody.yet@example.org>"}


def test_coming_back_after_unsubscribing_needs_a_new_confirmation(served: Served) -> None:
    settings = served.settings
    signup(served, "eve.gone@example.org")  # unsubscribed on the list: she may come back
    served.settle()
    (mail,) = outbox_mail(settings, "confirmation")
    old_token = confirm_link(mail, settings, served.url).split("token=")[1]
    ok = requests.post(f"{served.url}/confirm", data={"token": old_token}, timeout=5)
    assert ok.status_code == 200
    served.settle()
    assert [r["status"] for r in rows_for(settings, "eve.gone@example.org")] == ["subscribed"]
    unsubscribe = make_token(served.secret, "eve.gone@example.org")
    requests.post(f"{served.url}/unsubscribe?token={unsubscribe}", data=ONE_CLICK, timeout=5)
    served.settle()
    stale = requests.post(f"{served.url}/confirm", data={"token": old_token}, timeout=5)
    assert stale.status_code == 400 and "out of date" in stale.text
    served.settle()
    assert [r["status"] for r in rows_for(settings, "eve.gone@example.org")] == ["unsubscribed"]
    assert history(settings, "eve.gone@example.org") == [
        "signup_requested/form",
        "resubscribed/form",
        "unsubscribed/one-click",
    ]


@pytest.mark.parametrize("edit", ["unsubscribed by hand", "row deleted"])
def test_a_used_confirmation_link_never_puts_back_a_reader_taken_off_by_hand(
    served: Served, edit: str
) -> None:
    """She takes a reader off by editing subscribers.csv (a reply saying "stop", an erasure
    request): no history records it.  The confirmation link, still within its 7 days, must
    not put them back: it was used once already."""
    settings = served.settings
    signup(served, "once.only@example.org")
    served.settle()
    (mail,) = outbox_mail(settings, "confirmation")
    token = confirm_link(mail, settings, served.url).split("token=")[1]
    assert requests.post(f"{served.url}/confirm", data={"token": token}, timeout=5).ok
    served.settle()
    text = settings.subscribers.read_text(encoding="utf-8")
    (line,) = [row for row in text.splitlines() if row.startswith("once.only@")]
    if edit == "row deleted":
        text = text.replace(line + "\n", "")
    else:
        text = text.replace(line, line.replace(",subscribed,", ",unsubscribed,"))
    settings.subscribers.write_text(text, encoding="utf-8")
    before = settings.subscribers.read_bytes()
    again = requests.post(f"{served.url}/confirm", data={"token": token}, timeout=5)
    assert again.status_code == 400 and "out of date" in again.text
    served.settle()
    assert settings.subscribers.read_bytes() == before
    assert history(settings, "once.only@example.org") == ["signup_requested/form", "confirmed/form"]
    # A new signup, and its new link, still bring them back.
    ledger = open_ledger(settings)
    try:  # the hourly limit on confirmations is not what this test is about
        ledger.db.execute("DELETE FROM mail_once")
    finally:
        ledger.close()
    signup(served, "once.only@example.org")
    served.settle()
    newest = outbox_mail(settings, "confirmation")[-1]
    fresh = confirm_link(newest, settings, served.url).split("token=")[1]
    assert fresh != token
    assert requests.post(f"{served.url}/confirm", data={"token": fresh}, timeout=5).ok
    served.settle()
    assert [r["status"] for r in rows_for(settings, "once.only@example.org")] == ["subscribed"]


def test_coming_back_within_the_hour_of_leaving_gets_a_new_confirmation(
    served: Served,
) -> None:
    """Unsubscribed by mistake, she signs up again at once: the confirmation sent before she
    left is out of date, so the hourly limit must not count it, or no working link arrives
    for an hour while the page says "check your inbox"."""
    settings = served.settings
    signup(served, "oops@example.org")
    served.settle()
    (mail,) = outbox_mail(settings, "confirmation")
    first = confirm_link(mail, settings, served.url).split("token=")[1]
    requests.post(f"{served.url}/confirm", data={"token": first}, timeout=5)
    unsubscribe = make_token(served.secret, "oops@example.org")
    requests.post(f"{served.url}/unsubscribe?token={unsubscribe}", data=ONE_CLICK, timeout=5)
    served.settle()
    assert [r["status"] for r in rows_for(settings, "oops@example.org")] == ["unsubscribed"]

    signup(served, "oops@example.org")  # minutes later, within the hour
    served.settle()
    (mail,) = outbox_mail(settings, "confirmation")  # the outbox keeps the newest
    second = confirm_link(mail, settings, served.url).split("token=")[1]
    assert second != first
    back = requests.post(f"{served.url}/confirm", data={"token": second}, timeout=5)
    assert back.status_code == 200 and "You are subscribed" in back.text
    served.settle()
    assert [r["status"] for r in rows_for(settings, "oops@example.org")] == ["subscribed"]

    signup(served, "oops@example.org")  # subscribed again: none, as before
    signup(served, "oops@example.org")
    served.settle()
    sent = [line for line in served.log if "o***@example.org: confirmation sent" in line]
    assert len(sent) == 2


def test_forged_expired_and_altered_confirmations_change_nothing(served: Served) -> None:
    settings = served.settings
    before = settings.subscribers.read_bytes()
    request = SignupRequest("mallory@example.org", "M", (), "2026-01-01T00:00:00.000+00:00")
    forged = Signer(b"another key", timedelta(days=7)).confirmation_token(request)
    real = Signer(served.secret, timedelta(days=7)).confirmation_token(request)
    payload, _, signature = real.rpartition(".")
    altered = payload.replace(payload[3], "A" if payload[3] != "A" else "B", 1) + "." + signature
    # Expired: signed 8 days ago (itsdangerous reads the time from the token itself).
    eight_days_ago = int((datetime.now(UTC) - timedelta(days=8)).timestamp())

    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return eight_days_ago

    expired_signer = Signer(served.secret, timedelta(days=7))
    expired_signer.confirm = URLSafeTimedSerializer(served.secret, CONFIRM_SALT, signer=Past)
    expired = expired_signer.confirmation_token(request)
    for token, words in (
        (forged, "not valid"),
        (altered, "not valid"),
        (real[:20], "not valid"),
        ("", "not valid"),
        (expired, "expired"),
    ):
        shown = requests.get(f"{served.url}/confirm", params={"token": token}, timeout=5)
        pressed = requests.post(f"{served.url}/confirm", data={"token": token}, timeout=5)
        assert shown.status_code == pressed.status_code == 400, token
        assert words in shown.text and words in pressed.text
        # "Please sign up again" comes with the way there.
        again = f'href="{settings.base_url}/subscribe"'
        assert again in shown.text and again in pressed.text and "Sign up again" in shown.text
    served.settle()
    assert settings.subscribers.read_bytes() == before
    assert history(settings, "mallory@example.org") == []


def test_bots_are_silently_ignored(project: Path) -> None:
    settings = with_signup(project, "\n[signup]\nmin_fill_seconds = 30\n")
    with serve(settings) as served:
        page = requests.get(f"{served.url}/subscribe", timeout=5).text
        stamp = re.search(r'name="stamp" value="([^"]+)"', page)
        assert stamp
        honeypot = signup(served, "bot1@example.org", website="http://spam.example")
        too_fast = signup(served, "bot2@example.org", stamp=stamp.group(1))
        forged_stamp = signup(served, "bot3@example.org", stamp="123.abc")
        script_fast = signup(served, "bot4@example.org", elapsed="0.4")
        for answer in (honeypot, too_fast, forged_stamp, script_fast):
            assert answer.status_code == 200 and "Check your inbox" in answer.text
        human = signup(served, "human@example.org", elapsed="41.5")  # the snippet's script
        assert human.status_code == 200
        served.settle()
        names = [m["To"] for m in outbox_mail(settings, "confirmation")]
        assert names == ["Pat <human@example.org>"]
        for n in range(1, 5):
            assert history(settings, f"bot{n}@example.org") == []


def test_bad_addresses_are_shown_back_and_header_injection_goes_nowhere(served: Served) -> None:
    for bad in ("not-an-address", "a@b", "jürgen@example.org", "x@example.org\r\nBcc: v@e.org"):
        answer = signup(served, bad)
        assert answer.status_code == 400 and "does not look right" in answer.text
    # With an address in it the name is left out (form spam); without, it stays one header.
    for n, evil in enumerate(("Eve\r\nBcc: victim@example.net\x00", "Eve\r\nBcc: victim\x00")):
        evil += "x" * 5000
        assert signup(served, f"header.test{n}@example.org", first_name=evil).status_code == 200
    served.settle()
    for mail in outbox_mail(served.settings, "confirmation"):
        assert mail["Bcc"] is None and "victim" not in str(mail["To"]).rpartition("<")[2]
        assert len(mail["To"]) < 200
    assert "Bcc: victim" in str(outbox_mail(served.settings, "confirmation")[1]["To"])


@pytest.mark.parametrize(
    "name",
    [
        "You won! Claim at https://prize.example/x",
        "Visit www.cheap-pills.example",
        "Contact winner@prize.example now",
        "bit.ly/3xYz claim",
    ],
)
def test_a_link_typed_as_a_first_name_never_reaches_the_confirmation(
    served: Served, name: str
) -> None:
    """Form spam: a program types a stranger's address and a link as the "first name", and
    the practice's own domain mails that link to them ("Hi <link>,").  A name that carries a
    link or an address is not used; the person still gets a plain confirmation."""
    settings = served.settings
    assert signup(served, "stranger@example.org", first_name=name).status_code == 200
    served.settle()
    (mail,) = outbox_mail(settings, "confirmation")
    assert mail["To"] == "stranger@example.org"
    body = text_part(mail)
    assert "Hi there," in body
    for word in ("prize", "cheap-pills", "bit.ly"):
        assert word not in body and word not in str(mail)
    token = confirm_link(mail, settings, served.url).split("token=")[1]
    assert requests.post(f"{served.url}/confirm", data={"token": token}, timeout=5).ok
    served.settle()
    (row,) = rows_for(settings, "stranger@example.org")
    assert row["first_name"] == ""


def test_ordinary_names_are_kept(served: Served) -> None:
    names = ["Mary-Ann", "J. R.", "Zoë", "O'Connor", "Dr. Lee", "Ann.Marie"]
    for n, name in enumerate(names):
        signup(served, f"person{n}@example.org", first_name=name)
    served.settle()
    bodies = [text_part(m) for m in outbox_mail(served.settings, "confirmation")]
    greeted = [re.search(r"Hi (.*?),\s", body) for body in bodies]
    assert sorted(found.group(1) for found in greeted if found) == sorted(names)


def test_rate_limits_answer_429_with_retry_after(project: Path) -> None:
    settings = with_signup(
        project, "\n[signup]\nmin_fill_seconds = 0\nper_ip_per_hour = 4\nper_address_per_hour = 2\n"
    )
    with serve(settings) as served:
        assert [signup(served, "same@example.org").status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        codes = [signup(served, f"other{n}@example.org") for n in range(3)]
        assert [c.status_code for c in codes] == [200, 429, 429]  # 4 posts from this IP
        assert int(codes[-1].headers["Retry-After"]) > 0
        served.settle()
        assert len(outbox_mail(settings, "confirmation")) == 2  # same@ once, other0@


def test_plus_addressed_variants_of_one_inbox_get_one_confirmation_an_hour(
    served: Served,
) -> None:
    """victim+1@, victim+2@... all land in one inbox (Gmail, Fastmail, Outlook): a form
    posted with each, from many IPs, would bury that person in confirmations.  The hourly
    limit is per inbox; the variants are still different addresses for the list."""
    settings = served.settings
    variants = ["victim@example.org", *(f"Victim+{n}@example.org" for n in range(1, 6))]
    for address in variants:
        assert signup(served, address).status_code in (200, 429)
    served.settle()
    sent = [m["To"] for m in outbox_mail(settings, "confirmation")]
    assert sent == ["Pat <victim@example.org>"]
    assert any("a confirmation went out within the hour" in line for line in served.log)
    # Another inbox is not held back by it.
    signup(served, "victim.two+news@example.org")
    served.settle()
    assert len(outbox_mail(settings, "confirmation")) == 2


def test_limits_on_the_request_itself(served: Served) -> None:
    big = requests.post(f"{served.url}/subscribe", data={"email": "x" * 100_000}, timeout=5)
    assert big.status_code == 413
    for length in (b"-1", b"abc"):
        with socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1]))) as s:
            s.settimeout(10)
            s.sendall(b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: " + length)
            s.sendall(b"\r\n\r\nemail=a%40example.org")
            assert s.recv(100).startswith(b"HTTP/1.1 400")
    health = requests.get(f"{served.url}/healthz", timeout=5)
    assert health.status_code == 200 and health.json() == {"status": "ok", "queued": 0}


def test_the_background_applier_writes_the_list(project: Path) -> None:
    settings = with_signup(project)
    with serve(settings, background=True) as served:
        token = make_token(served.secret, "ada.runner@example.org")
        requests.post(f"{served.url}/unsubscribe?token={token}", data=ONE_CLICK, timeout=5)
        for _ in range(200):  # bounded wait for the thread, not a timing assertion
            if statuses(settings)["ada.runner@example.org"] == "unsubscribed":
                break
            threading.Event().wait(0.05)
        assert statuses(settings)["ada.runner@example.org"] == "unsubscribed"
    assert any("list updated: 1 queued change applied" in line for line in served.log)


# Together, under load ---------------------------------------------------------------------


def test_fifty_signups_and_opt_outs_at_once_all_land(project: Path) -> None:
    settings = with_signup(project, SIGNUP_CONFIG + "per_ip_per_hour = 1000\n")
    with settings.subscribers.open("a", encoding="utf-8") as f:
        f.write("".join(f"old{n}@example.org,Old,{n},subscribed,,\n" for n in range(20)))
    leaving = [r["email"] for r in rows(settings) if r["status"] in ("", "subscribed")][:25]
    assert len(leaving) == 25
    with serve(settings, background=True) as served:
        joining = [f"new{n}@example.org" for n in range(25)]

        def join(address: str) -> int:
            return signup(served, address).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(join, joining))
        served.subscriptions.drain()
        links = [
            confirm_link(m, settings, served.url) for m in outbox_mail(settings, "confirmation")
        ]
        assert len(links) == 25 and set(codes) == {200}

        def confirm(link: str) -> int:
            token = link.split("token=")[1]
            return requests.post(f"{served.url}/confirm", data={"token": token}).status_code

        def leave(address: str) -> int:
            token = make_token(served.secret, address)
            url = f"{served.url}/unsubscribe?token={token}"
            return requests.post(url, data=ONE_CLICK, timeout=10).status_code

        with ThreadPoolExecutor(max_workers=25) as pool:
            futures = [pool.submit(confirm, link) for link in links]
            futures += [pool.submit(leave, address) for address in leaving]
            assert {f.result() for f in futures} == {200}
        served.settle()
    report = check_list(settings.subscribers)
    assert report.invalid == [] and report.duplicates == []
    final = statuses(settings)
    assert all(final[a] == "unsubscribed" for a in leaving)
    assert all(final[a] == "subscribed" for a in joining)


def test_a_send_while_people_join_and_leave_is_unaffected(project: Path) -> None:
    settings = with_signup(project, SIGNUP_CONFIG + "per_ip_per_hour = 1000\n")
    many = "".join(f"reader{n}@example.org,Reader,{n},subscribed,,\n" for n in range(400))
    with settings.subscribers.open("a", encoding="utf-8") as f:
        f.write(many)
    with serve(settings, background=True) as served:
        stop = threading.Event()
        broken: list[str] = []

        def watch() -> None:
            while not stop.is_set():
                try:
                    report = check_list(settings.subscribers)
                except Exception as exc:  # the file must never be caught half-written
                    broken.append(str(exc))
                    return
                if report.invalid:
                    broken.append(str(report.invalid[0]))

        watcher = threading.Thread(target=watch)
        watcher.start()
        sender = ThreadPoolExecutor(max_workers=1)
        provider = create_provider(settings, {})
        sending = sender.submit(
            send_issue, project / SAMPLE_ISSUE, settings, provider, environ={}, sleep=lambda s: 0
        )
        with ThreadPoolExecutor(max_workers=10) as pool:
            leaves = [
                pool.submit(
                    requests.post, leave_url(served, f"reader{n}@example.org"), data=ONE_CLICK
                )
                for n in range(0, 400, 20)
            ]
            joins = [pool.submit(signup, served, f"joiner{n}@example.org") for n in range(10)]
            assert {f.result().status_code for f in leaves + joins} == {200}
        report = sending.result(timeout=120)
        stop.set()
        watcher.join()
        served.settle()
    assert broken == []
    assert report is not None and report.counts.pending == 0 and report.counts.failed == 0
    final = statuses(settings)
    assert all(final[f"reader{n}@example.org"] == "unsubscribed" for n in range(0, 400, 20))
    assert check_list(settings.subscribers).invalid == []


# The command ------------------------------------------------------------------------------


def test_serve_snippet_prints_a_form_for_any_page(project: Path) -> None:
    with_signup(project)
    result = CliRunner().invoke(
        cli, ["--config", str(project / "newsletter.toml"), "serve", "--snippet"]
    )
    assert result.exit_code == 0, result.output
    assert 'action="https://movementsolutions.example/subscribe"' in result.output
    assert 'name="website"' in result.output and 'value="seniors"' in result.output
    assert result.output.strip().endswith("</script>")


def test_an_opt_out_the_ledger_cannot_record_is_a_503_and_says_so(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills inside the ledger's transaction: the front door's answer (a mail
    client's one-click) and the view's (the page's button) both say so."""

    def full_disk(*args: object) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("pipeline.web.subscriptions.queue_change", full_disk)
    for body in (ONE_CLICK, {**ONE_CLICK, "from": "page"}):
        answer = requests.post(leave_url(served, "ada.runner@example.org"), data=body)
        assert answer.status_code == 503 and "Nothing was changed" in answer.text
    lines = [line for line in served.log if "a***@example.org: opt-out NOT recorded" in line]
    assert len(lines) == 2 and "disk is full" in lines[0]


def test_half_open_connections_do_not_hold_the_workers(project: Path) -> None:
    """Issue 10: 300 half-open connections held 301 threads of the old server."""
    settings = with_signup(project)
    with serve(settings, threads=2) as served:
        port = int(served.url.rsplit(":", 1)[1])
        stalled = []
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /unsubscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
            stalled.append(sock)
        try:
            answer = requests.get(f"{served.url}/healthz", timeout=10)
            assert answer.status_code == 200
        finally:
            for sock in stalled:
                sock.close()


def test_a_request_trickled_in_byte_by_byte_is_dropped_at_the_deadline(project: Path) -> None:
    """Slowloris: a byte every half second is never idle, so waitress's idle timeout never
    closed it, and 500 such clients held every connection the server accepts (issue 10)."""
    settings = with_signup(project)
    app = create_app(settings, environ={}, background=False)
    server = make_server(app, "127.0.0.1", 0, deadline=1.5)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    port = server.effective_port  # type: ignore[union-attr]
    try:
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(b"POST /unsubscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n")
        sent = 0
        while sent < 40 and not _closed_by_server(slow):  # up to 20 s of trickling
            slow.sendall(b"a")
            sent += 1
            time.sleep(0.5)
        slow.close()
        assert sent < 20, f"still open after {sent} bytes"  # dropped after about 1.5 + 2 s
        fast = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert fast.status_code == 200
    finally:
        stop_server(server)
        subscriptions_of(app).close()
        thread.join(timeout=10)


@contextmanager
def deadline_server(project: Path, deadline: float) -> Iterator[int]:
    app = create_app(with_signup(project), environ={}, background=False)
    server = make_server(app, "127.0.0.1", 0, deadline=deadline)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server.effective_port  # type: ignore[union-attr]
    finally:
        stop_server(server)
        subscriptions_of(app).close()
        thread.join(timeout=10)


def test_blank_lines_do_not_hold_a_connection(project: Path) -> None:
    """Blank lines are no request (waitress drops them, RFC 7230 3.5), so the request deadline
    never applied, and they kept the connection from being idle: ``\\r\\n\\r\\n`` every few
    seconds held it for good (500 such clients: every connection the server accepts)."""
    with deadline_server(project, 1.5) as port:
        for payload in (b"\r\n\r\n", b"\r\n"):
            blank = socket.create_connection(("127.0.0.1", port), timeout=10)
            sent = 0
            while sent < 40 and not _closed_by_server(blank):  # up to 20 s of blank lines
                blank.sendall(payload)
                sent += 1
                time.sleep(0.5)
            blank.close()
            assert sent < 20, f"still open after {sent} blank lines"  # about 1.5 + 2 s


def test_a_keep_alive_client_that_keeps_asking_keeps_its_connection(project: Path) -> None:
    """The other side of the rule above: a connection lives on past the deadline as long as
    it brings requests."""
    with deadline_server(project, 1.5) as port:
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        reader = client.makefile("rb")
        for _ in range(10):  # about 5 s: past the deadline three times over
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert reader.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert b'"status":"ok"' in reader.read(length)
            time.sleep(0.5)
        reader.close()
        client.close()


def _closed_by_server(sock: socket.socket) -> bool:
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def test_the_factory_for_other_wsgi_servers(project: Path) -> None:
    settings = with_signup(project)
    app = from_config(str(project / "newsletter.toml"), proxies=1)
    try:
        client = app.test_client()
        answer = client.get("/healthz")
        assert answer.status_code == 200 and answer.json == {"status": "ok", "queued": 0}
        token = make_token(subscriptions_of(app).mailer.secret, "ada.runner@example.org")
        client.post(
            f"/unsubscribe?token={token}",
            data=ONE_CLICK,
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
    finally:
        subscriptions_of(app).close()  # applies the queue, as at exit
    assert statuses(settings)["ada.runner@example.org"] == "unsubscribed"
    ledger = open_ledger(settings)
    (event,) = consent_history(ledger.db, "ada.runner@example.org")
    ledger.close()
    assert event.ip == "203.0.113.9"  # from the one trusted proxy's header


@pytest.mark.parametrize("command", ["serve", "unsubscribe-server"])
def test_the_command_serves_and_stops_cleanly_on_sigterm(project: Path, command: str) -> None:
    settings = with_signup(project)
    server, url = start_serve(project, command)
    try:
        assert requests.get(f"{url}/subscribe", timeout=10).status_code == 200
        secret = load_secret(settings.state_dir, {})
        token = make_token(secret, "ada.runner@example.org")
        answer = requests.post(f"{url}/unsubscribe?token={token}", data=ONE_CLICK, timeout=10)
        assert answer.status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    assert "stopped" in output and "Traceback" not in output
    assert statuses(settings)["ada.runner@example.org"] == "unsubscribed"


def test_an_answered_opt_out_survives_a_kill_of_the_server(project: Path) -> None:
    """Recorded durably before the answer: SIGKILL right after it, and the next start of the
    app (or the next send) still writes it into the list."""
    settings = with_signup(project)
    server, url = start_serve(project)
    try:
        token = make_token(load_secret(settings.state_dir, {}), "ada.runner@example.org")
        answer = requests.post(f"{url}/unsubscribe?token={token}", data=ONE_CLICK, timeout=10)
        assert answer.status_code == 200
    finally:
        server.kill()  # SIGKILL: no chance to apply anything on the way out
        server.communicate(timeout=30)
    with serve(settings, background=True):
        pass  # starting applies what an earlier run left queued
    assert statuses(settings)["ada.runner@example.org"] == "unsubscribed"
    assert len(rows_for(settings, "ada.runner@example.org")) == 1


def test_serve_refuses_a_provider_without_its_secret(project: Path) -> None:
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace('name = "outbox"', 'name = "postmark"')
    config.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "POSTMARK_SERVER_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "serve", "--port", "0"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2 and "POSTMARK_SERVER_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_on_postmark_the_confirmation_goes_through_the_transactional_stream(
    make_project: Callable[..., Path],
) -> None:
    """Broadcast streams are for newsletters; a confirmation is asked for, one at a time:
    https://postmarkapp.com/support/article/1207-how-to-create-and-send-through-message-streams
    (the stream is the batch message's ``MessageStream``; no List-Unsubscribe of ours)."""
    postmark = FakePostmark()
    try:
        root = make_project(
            provider=f'name = "postmark"\nbase_url = "{postmark.url}"\ntimeout = 2\n'
            'confirm_stream = "signups"'
        )
        settings = with_signup(root)
        app = create_app(settings, environ={"POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN})
        try:
            answer = app.test_client().post(
                "/subscribe", data={"email": "pm.reader@example.org", "first_name": "Pem"}
            )
            assert answer.status_code == 200
            subscriptions_of(app).drain()
        finally:
            subscriptions_of(app).close()
        (request,) = postmark.requests
        (message,) = request.body
        assert message["MessageStream"] == "signups"
        assert message["To"] == "Pem <pm.reader@example.org>"
        names = {header["Name"] for header in message["Headers"]}
        assert "List-Unsubscribe" not in names
        assert "/confirm?token=" in message["TextBody"]
        ledger = open_ledger(settings)
        sent = ledger.db.execute("SELECT kind, outcome, provider_id FROM mail_once").fetchall()
        ledger.close()
        assert [(kind, outcome) for kind, outcome, _ in sent] == [("confirmation", "sent")]
    finally:
        postmark.close()


def test_unsubscribe_by_hand_lands_after_a_queued_confirmation(served: Served) -> None:
    """The command goes through the same queue: a confirmation the app queued a moment
    before cannot be applied after it and undo it."""
    settings = served.settings
    signup(served, "late.mind@example.org")
    served.subscriptions.drain()
    (mail,) = outbox_mail(settings, "confirmation")
    token = confirm_link(mail, settings, served.url).split("token=")[1]
    assert requests.post(f"{served.url}/confirm", data={"token": token}).status_code == 200
    # Queued, not applied (no applier in this fixture); now she changes her mind by mail.
    link = leave_url(served, "late.mind@example.org")
    result = CliRunner().invoke(
        cli, ["--config", str(settings.config_path), "unsubscribe", link.replace(served.url, "")]
    )
    assert result.exit_code == 0, result.output
    served.subscriptions.flush()
    assert [r["status"] for r in rows_for(settings, "late.mind@example.org")] == ["unsubscribed"]
    assert history(settings, "late.mind@example.org") == [
        "signup_requested/form",
        "confirmed/form",
        "unsubscribed/by-hand",
    ]


def test_an_unforeseen_fault_is_one_log_line_and_a_plain_page(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(served.subscriptions, "request_signup", broken)
    answer = signup(served, "pat@example.org")
    assert answer.status_code == 500 and "Something went wrong" in answer.text
    assert "Traceback" not in answer.text and "nobody foresaw" not in answer.text
    assert served.log[-1] == (
        "error answering POST /subscribe: RuntimeError: something nobody foresaw"
    )


def test_a_project_template_overrides_one_page(project: Path) -> None:
    settings = with_signup(project)
    custom = project / "templates" / "web"
    custom.mkdir(parents=True)
    (custom / "check_inbox.html").write_text(
        '{% extends "base.html" %}{% set title = "Almost there" %}'
        "{% block content %}<h1>Almost there, {{ settings.name }}</h1>{% endblock %}",
        encoding="utf-8",
    )
    with serve(settings) as served:
        answer = signup(served, "pat@example.org")
        form = requests.get(f"{served.url}/subscribe", timeout=5)
    assert "Almost there, Movement Solutions" in answer.text
    assert "Sign up for emails" in form.text  # the pages not overridden are the built-in ones


def test_a_list_saved_by_excel_keeps_the_opt_out_queued_and_says_why(served: Served) -> None:
    """A Windows-1252 list used to raise UnicodeDecodeError in the old handler: no answer at
    all.  Now the opt-out is answered and kept; the log names the line; the list is as it was."""
    settings = served.settings
    latin = b"email,first_name\r\nada.runner@example.org,Ada\r\njose@example.org,Jos\xe9\r\n"
    settings.subscribers.write_bytes(latin)
    answer = requests.post(leave_url(served, "ada.runner@example.org"), data=ONE_CLICK)
    assert answer.status_code == 200
    served.subscriptions._flush_logged()
    assert settings.subscribers.read_bytes() == latin
    (line,) = [line for line in served.log if "NOT updated" in line]
    assert "subscribers.csv:3: the list is not saved as UTF-8" in line
    signup(served, "new.one@example.org")  # the signup's list lookup says the same
    served.subscriptions.drain()
    assert "subscribers.csv:3: the list is not saved as UTF-8" in served.log[-1]
    assert outbox_mail(settings, "confirmation") == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('tags = "runners"', "[signup] tags"),
        ('tags = ["a;b"]', "[signup] tags"),
        ('confirm_expiry = "soon"', "[signup] confirm_expiry"),
        ("min_fill_seconds = -1", "[signup] min_fill_seconds"),
        ("per_ip_per_hour = 0", "[signup] per_ip_per_hour"),
        ("taggs = []", "[signup] taggs"),
    ],
)
def test_bad_signup_settings_are_one_line_naming_the_key(
    project: Path, body: str, named: str
) -> None:
    with_signup(project, "")  # the config as it is
    config = project / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + f"\n[signup]\n{body}\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "serve", "--snippet"])
    assert result.exit_code == 2
    assert named in result.output and "Traceback" not in result.output


def test_kills_during_bursts_lose_no_answered_opt_out(project: Path) -> None:
    """SIGKILL `newsletter serve` at a random moment of a burst of 80 opt-outs (while it
    answers, commits, or rewrites the list), five times: every opt-out that was answered 200
    is in the list after the next start, the list is intact, and no temp file is left
    (``KILL_SEED=n`` replays a run)."""
    import random

    from pipeline.audience.list_writer import stale_temp_files

    settings = with_signup(project)
    with settings.subscribers.open("a", encoding="utf-8") as f:
        f.write("".join(f"burst{n}@example.org,B,{n},subscribed,,\n" for n in range(3000)))
    secret = load_secret(settings.state_dir, {})
    seed = int(os.environ.get("KILL_SEED", random.randrange(1_000_000)))
    chance = random.Random(seed)
    answered: set[str] = set()
    for round_ in range(5):
        server, url = start_serve(project)
        addresses = [f"burst{round_ * 400 + n}@example.org" for n in range(80)]

        def leave(address: str, url: str = url) -> str | None:
            token = make_token(secret, address)
            try:
                answer = requests.post(
                    f"{url}/unsubscribe?token={token}", data=ONE_CLICK, timeout=10
                )
            except requests.RequestException:
                return None  # killed before it answered: the reader sees an error, and retries
            return address if answer.status_code == 200 else None

        with ThreadPoolExecutor(max_workers=20) as pool:
            futures = [pool.submit(leave, a) for a in addresses]
            # Mid-burst (answers and commits in flight), or when the burst is over and the
            # applier is rewriting the list.
            early = chance.random() < 0.5
            threading.Event().wait(chance.uniform(0.0, 0.1) if early else chance.uniform(0.3, 0.7))
            server.kill()
            answered |= {address for f in futures if (address := f.result())}
        server.communicate(timeout=30)
    with serve(settings, background=True):
        pass  # a start applies what the killed runs left queued
    final = statuses(settings)
    lost = sorted(a for a in answered if final[a] != "unsubscribed")
    assert lost == [], f"seed {seed}: answered 200 but not in the list: {lost}"
    report = check_list(settings.subscribers)
    assert report.invalid == [] and report.duplicates == [], f"seed {seed}"
    assert stale_temp_files(settings.subscribers) == [], f"seed {seed}"
    print(
        f"seed {seed}: {len(answered)} of 400 opt-outs answered before the kills, all in the list"
    )


def test_the_confirmation_email_can_be_rewritten_by_the_practice(project: Path) -> None:
    settings = with_signup(project)
    custom = project / "templates" / "web"
    custom.mkdir(parents=True)
    (custom / "confirmation.md").write_text(
        "---\nsubject: One click to join Connie's list\n---\n\n"
        "Hello {{ subscriber.first_name }}!\n\n"
        "[Count me in]({{ subscriber.confirm_url }}){.button}\n",
        encoding="utf-8",
    )
    with serve(settings) as served:
        signup(served, "own.words@example.org")
        served.settle()
        (mail,) = outbox_mail(settings, "confirmation")
        assert mail["Subject"] == "One click to join Connie's list"
        assert "Count me in" in text_part(mail)
        link = confirm_link(mail, settings, served.url)
        token = link.split("token=")[1]
        assert requests.post(f"{served.url}/confirm", data={"token": token}).status_code == 200
        served.settle()
    assert len(rows_for(settings, "own.words@example.org")) == 1


def test_the_per_ip_limit_takes_an_ipv6_network_as_one_visitor(project: Path) -> None:
    """One IPv6 customer is given a /64: 18 billion billion addresses.  Counted one by one,
    the per-IP limit would never be reached; counted per /64, it is (IPv4: per address)."""
    from pipeline.web.subscriptions import Answer, SignupForm, Visitor

    settings = with_signup(
        project, "\n[signup]\nmin_fill_seconds = 0\nper_ip_per_hour = 3\nper_address_per_hour = 5\n"
    )
    with serve(settings) as served:
        subscriptions = served.subscriptions

        def post(n: int, ip: str) -> Answer:
            form = SignupForm(email=f"v6.{n}@example.org")
            return subscriptions.request_signup(form, Visitor(ip=ip)).answer

        same_64 = [post(n, f"2001:db8:1:2::{n:x}") for n in range(4)]
        assert same_64 == [Answer.CHECK_INBOX] * 3 + [Answer.TOO_MANY]
        assert post(10, "2001:db8:1:3::1") is Answer.CHECK_INBOX  # the next /64
        ipv4 = [post(20 + n, f"198.51.100.{n}") for n in range(4)]
        assert ipv4 == [Answer.CHECK_INBOX] * 4  # IPv4 addresses are one each


def test_the_io_loop_leaves_a_connection_alone_while_its_answer_is_being_written(
    project: Path,
) -> None:
    """waitress polled a connection as writable while its worker was still answering it
    (output in the buffer, the worker holding it): poll() returned at once, the buffer was
    busy, and the loop went round again, over every connection, taking the interpreter from
    the very workers it waited for.  In a burst of 200 opt-outs: 2.5-8 ms of CPU an answer
    instead of 0.5, the last answered after 0.5-1.3 s (bench/optout_load.py).  Now such a
    connection is not polled for writing until its task ends (which wakes the loop)."""
    from waitress.channel import HTTPChannel

    from pipeline.web.server import PatientChannel

    app = Flask("answers")
    server = make_server(app, "127.0.0.1", 0)
    ours, theirs = socket.socketpair()
    try:
        channel = PatientChannel(server, ours, ("127.0.0.1", 0), server.adj, map={})
        channel.requests = [object()]  # a worker is answering it
        channel.total_outbufs_len = 2_000  # and has written part of the answer
        assert HTTPChannel.writable(channel)  # waitress: poll it, again and again
        assert not channel.writable()  # now: wait for the task's end
        channel.total_outbufs_len = server.adj.outbuf_high_watermark + 1
        assert channel.writable()  # a worker waiting for room is never left waiting
        channel.total_outbufs_len = 2_000
        channel.close_when_flushed = True
        assert channel.writable()  # closing: flushed as before
        channel.close_when_flushed = False
        channel.requests = []  # the task is done: its answer goes out
        assert channel.writable()
    finally:
        theirs.close()
        ours.close()
        stop_server(server)


def test_an_answer_written_in_parts_arrives_whole_once_its_task_ends(project: Path) -> None:
    release = threading.Event()

    def slow(environ: dict[str, object], start_response: Callable[..., object]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first part, "
        release.wait(5)  # the answer is half written: its worker is still at it
        yield b"the rest"

    app = Flask("slow")
    app.wsgi_app = slow  # type: ignore[method-assign, assignment]
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    port = server.effective_port  # type: ignore[union-attr]
    try:
        answer: list[bytes] = []
        client = threading.Thread(
            target=lambda: answer.append(
                requests.get(f"http://127.0.0.1:{port}/", timeout=10).content
            )
        )
        client.start()
        time.sleep(0.3)
        release.set()
        client.join(timeout=10)
        assert answer == [b"first part, the rest"]
    finally:
        stop_server(server)
        thread.join(timeout=10)


def test_serve_refuses_a_thread_count_that_could_answer_nobody(project: Path) -> None:
    # --threads 0 started a server that accepted every request and answered none.
    for bad in ("0", "-3", "100000"):
        result = CliRunner().invoke(
            cli, ["--config", str(project / "newsletter.toml"), "serve", "--threads", bad]
        )
        assert result.exit_code == 2, result.output
        assert "'--threads'" in result.output and "1<=x<=256" in result.output
        assert "serving" not in result.output


def test_serve_refuses_a_port_no_address_can_have(project: Path) -> None:
    # --port 99999 served on 34463 (99999 - 65536), with no word of it.
    for command in ("serve", "unsubscribe-server"):
        result = CliRunner().invoke(
            cli, ["--config", str(project / "newsletter.toml"), command, "--port", "99999"]
        )
        assert result.exit_code == 2, result.output
        assert "'--port'" in result.output and "0<=x<=65535" in result.output
        assert "serving" not in result.output


def test_serve_on_ipv6_names_a_url_that_opens(project: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--host", "::1", "--port", "0"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if "serving" in line or "error" in line:
                break
        if "cannot listen" in line:
            pytest.skip("no IPv6 loopback here")
        found = re.search(r"at (http://\[::1\]:\d+)/subscribe", line)
        assert found, line  # was http://::1:8026, which no browser opens
        assert requests.get(f"{found.group(1)}/healthz", timeout=10).status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
