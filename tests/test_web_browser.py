"""The signup as a person does it, in headless Chromium: the app served by waitress, the form
filled and submitted, the confirmation found in the outbox, its link opened, Confirm pressed.
And the snippet, pasted into a page of another site, posting across origins."""

from __future__ import annotations

import base64
import shutil
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli

from .browser_pipe import Browser
from .conftest import ARTIFACTS
from .web_helpers import confirm_link, outbox_mail, rows_for, serve, with_signup

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
SIGNUP = '\n[signup]\ntags = ["runners", "seniors"]\nmin_fill_seconds = 1\n'


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    assert CHROMIUM is not None
    driven = Browser(CHROMIUM, tmp_path / "profile")
    try:
        yield driven
    finally:
        driven.close()


def screenshot(browser: Browser, name: str) -> None:
    shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / name).write_bytes(base64.b64decode(shot["data"]))


def test_sign_up_confirm_and_be_welcomed_in_a_browser(project: Path, browser: Browser) -> None:
    settings = with_signup(project, SIGNUP)
    (project / "newsletters" / "welcome.md").write_text(
        "---\nsubject: Welcome!\n---\n\nHi {{ subscriber.first_name }}, glad you are here.\n",
        encoding="utf-8",
    )
    with serve(settings) as served:
        browser.open(f"{served.url}/subscribe")
        screenshot(browser, "web-subscribe.png")
        assert "Sign up for emails from Movement Solutions" in browser.text()
        time.sleep(1.1)  # a person takes longer than [signup] min_fill_seconds
        browser.evaluate(
            "document.getElementById('email').value = 'Robin.Reader@example.org';"
            "document.getElementById('first_name').value = 'Robin';"
            "document.querySelector('input[value=seniors]').click();"
            "document.querySelector('button[type=submit]').click();"
        )
        browser.wait_for("document.title.startsWith('Check your inbox')")
        served.settle()
        (mail,) = outbox_mail(settings, "confirmation")
        assert mail["To"] == "Robin <Robin.Reader@example.org>"
        link = confirm_link(mail, settings, served.url)

        browser.open(link)
        assert (
            "Confirm your subscription" in browser.text() and "R***@example.org" in browser.text()
        )
        served.settle()
        assert rows_for(settings, "robin.reader@example.org") == []  # opening changed nothing

        browser.evaluate("document.querySelector('button[type=submit]').click()")
        browser.wait_for("document.title.startsWith('You are subscribed')")
        screenshot(browser, "web-confirmed.png")
        served.settle()
        (row,) = rows_for(settings, "robin.reader@example.org")
        assert row["status"] == "subscribed" and row["first_name"] == "Robin"
        assert row["tags"] == "seniors"
        (welcome,) = outbox_mail(settings, "welcome")
        assert welcome["Subject"] == "Welcome!" and welcome["List-Unsubscribe"]


def test_the_snippet_on_another_site_signs_people_up(project: Path, browser: Browser) -> None:
    settings = with_signup(project, SIGNUP)
    with serve(settings) as served:
        result = CliRunner().invoke(
            cli, ["--config", str(project / "newsletter.toml"), "serve", "--snippet"]
        )
        assert result.exit_code == 0, result.output
        form = result.output.replace(settings.base_url, served.url)
        site = project / "site"
        site.mkdir()
        (site / "index.html").write_text(
            f"<!doctype html><html><head><title>Her site</title></head><body>"
            f"<h1>Movement Solutions</h1>{form}</body></html>",
            encoding="utf-8",
        )
        handler = partial(SimpleHTTPRequestHandler, directory=str(site))
        static = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=static.serve_forever, daemon=True).start()
        try:
            page = f"http://127.0.0.1:{static.server_address[1]}/index.html"
            browser.open(page)
            time.sleep(1.1)
            browser.evaluate(
                "document.getElementById('nl-email').value = 'from.site@example.org';"
                "document.querySelector('button[type=submit]').click();"
            )
            browser.wait_for("document.title.startsWith('Check your inbox')")
        finally:
            static.shutdown()
            static.server_close()
        served.settle()
        (mail,) = outbox_mail(settings, "confirmation")
        assert "from.site@example.org" in mail["To"]
    from pipeline.ledger.consent import consent_history
    from pipeline.sending import open_ledger

    ledger = open_ledger(settings)
    (event,) = consent_history(ledger.db, "from.site@example.org")
    ledger.close()
    assert event.source_url == page and event.ip == "127.0.0.1"
    assert event.user_agent and "Chrome" in event.user_agent
