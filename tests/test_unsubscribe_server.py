"""The one-click unsubscribe endpoint, served for real on 127.0.0.1, driven by the links
that the outbox actually wrote into a sent issue."""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import pytest
import requests

from pipeline.audience.subscribers import check_list
from pipeline.audience.unsubscribe import set_status
from pipeline.config import Settings
from pipeline.delivery.providers import create_provider
from pipeline.messages.secret import load_secret
from pipeline.messages.unsubscribe import make_token
from pipeline.sending import send_issue
from pipeline.unsubscribe_server import make_server

from .conftest import SAMPLE_ISSUE

ONE_CLICK = {"List-Unsubscribe": "One-Click"}  # RFC 8058: the body a mail client posts


def statuses(settings: Settings) -> dict[str, str]:
    with settings.subscribers.open(newline="", encoding="utf-8-sig") as f:
        return {row["email"]: row["status"] for row in csv.DictReader(f)}


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[str, bytes, list[str]]]:
    secret = load_secret(settings.state_dir, {})
    lines: list[str] = []
    server = make_server(settings, secret, log=lines.append)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", secret, lines
    finally:
        server.shutdown()
        server.server_close()


def test_the_link_in_a_sent_email_unsubscribes_in_one_click(
    project: Path, settings: Settings, served: tuple[str, bytes, list[str]]
) -> None:
    url, _, lines = served
    provider = create_provider(settings, {})
    send_issue(project / SAMPLE_ISSUE, settings, provider, environ={}, sleep=lambda s: None)
    eml = project / "outbox" / "2025-07-21-hip-rotation" / "ben.lifter@example.org.eml"
    message = message_from_bytes(eml.read_bytes())
    link = re.search(r"<(https://[^>]+)>", message["List-Unsubscribe"])
    assert link and message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    local = link.group(1).replace(settings.base_url, url)
    before = check_list(settings.subscribers).audience

    page = requests.get(local, timeout=5)  # a link scanner, or the reader's browser
    assert page.status_code == 200 and '<form method="post"' in page.text
    assert "b***@example.org" in page.text and "ben.lifter" not in page.text
    assert statuses(settings)["ben.lifter@example.org"] == ""  # a GET changes nothing

    done = requests.post(local, data=ONE_CLICK, timeout=5)  # what Gmail does
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert statuses(settings)["ben.lifter@example.org"] == "unsubscribed"
    assert check_list(settings.subscribers).audience == before - 1
    assert lines == ["ben.lifter@example.org: unsubscribed (1 row changed)"]
    again = requests.post(local, data=ONE_CLICK, timeout=5)  # twice is harmless
    assert again.status_code == 200 and lines[-1].endswith("(0 rows changed)")


def test_a_forged_or_altered_token_changes_nothing(
    settings: Settings, served: tuple[str, bytes, list[str]]
) -> None:
    url, _, lines = served
    before = settings.subscribers.read_bytes()
    forged = make_token(b"not the secret", "ada.runner@example.org")
    for path in (f"/unsubscribe?token={forged}", "/unsubscribe?token=", "/unsubscribe", "/"):
        answer = requests.post(url + path, data=ONE_CLICK, timeout=5)
        assert answer.status_code == 400 and "not valid" in answer.text
        assert requests.get(url + path, timeout=5).status_code == 400
    assert settings.subscribers.read_bytes() == before and not lines


def test_opt_outs_at_the_same_time_all_land(settings: Settings) -> None:
    """Each rewrite reads the whole list and replaces it; without the lock, two at once
    would each write from the same old copy and one opt-out would vanish."""
    addresses = list(statuses(settings))
    threads = [
        threading.Thread(target=set_status, args=(settings.subscribers, a, "unsubscribed"))
        for a in addresses
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses(settings).values()) == {"unsubscribed"}


def test_a_broken_list_is_reported_and_left_as_it_was(
    settings: Settings, served: tuple[str, bytes, list[str]]
) -> None:
    url, secret, lines = served
    broken = b"name,status\r\nAda,subscribed\r\n"  # someone renamed the email column
    settings.subscribers.write_bytes(broken)
    token = make_token(secret, "ada.runner@example.org")
    answer = requests.post(f"{url}/unsubscribe?token={token}", data=ONE_CLICK, timeout=5)
    assert answer.status_code == 503 and "Nothing was changed" in answer.text
    assert settings.subscribers.read_bytes() == broken
    (line,) = lines
    assert line.startswith("ada.runner@example.org: NOT unsubscribed:")
    assert "subscribers.csv:1" in line and "'email' column" in line  # file and line named


def test_a_list_saved_by_excel_gets_an_answer_and_stays_as_it_was(
    settings: Settings, served: tuple[str, bytes, list[str]]
) -> None:
    """A Windows-1252 list used to raise UnicodeDecodeError in the handler: no answer at all."""
    url, secret, lines = served
    latin = b"email,first_name\r\nada.runner@example.org,Ada\r\njose@example.org,Jos\xe9\r\n"
    settings.subscribers.write_bytes(latin)
    token = make_token(secret, "ada.runner@example.org")
    answer = requests.post(f"{url}/unsubscribe?token={token}", data=ONE_CLICK, timeout=5)
    assert answer.status_code == 503 and "Nothing was changed" in answer.text
    assert settings.subscribers.read_bytes() == latin
    (line,) = lines
    assert "subscribers.csv:3: the list is not saved as UTF-8" in line
