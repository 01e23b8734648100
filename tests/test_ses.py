"""The ses provider against moto's SES v2 in server mode (a real HTTP implementation of
``SendEmail`` with raw content), and our SigV4 signer against botocore's."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import message_from_string
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from moto.server import ThreadedMotoServer

from pipeline.config import load_settings
from pipeline.delivery.providers import create_provider
from pipeline.delivery.providers.sigv4 import Credentials, sign
from pipeline.sending import SendReport, send_issue

from .conftest import MESSY_AUDIENCE, MESSY_CSV, SAMPLE_ISSUE

ENV = {"AWS_ACCESS_KEY_ID": "AKIDMOTO", "AWS_SECRET_ACCESS_KEY": "moto-secret"}
SENDER = "connie@movementsolutions.example"


def test_signature_matches_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b'{"FromEmailAddress": "a@example.org"}'
    url = "https://email.eu-west-1.amazonaws.com/v2/email/outbound-emails"
    now = datetime(2025, 7, 21, 14, 0, 5, tzinfo=UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now.replace(tzinfo=None))
    for token in ("", "session-token"):
        ours = sign(
            Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
            method="POST",
            url=url,
            body=body,
            region="eu-west-1",
            service="ses",
            now=now,
            headers={"Content-Type": "application/json"},
        )
        request = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/json"})
        boto = BotoCredentials(
            "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token or None
        )
        SigV4Auth(boto, "ses", "eu-west-1").add_auth(request)
        assert ours["Authorization"] == request.headers["Authorization"]
        assert ours["X-Amz-Date"] == request.headers["X-Amz-Date"]


@pytest.fixture
def moto() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        requests.post(f"{url}/moto-api/reset", timeout=5)
        server.stop()


def verify_sender(url: str) -> None:
    client = boto3.client(
        "sesv2",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_email_identity(EmailIdentity=SENDER)


def send(root: Path) -> SendReport:
    settings = load_settings(root / "newsletter.toml")
    provider = create_provider(settings, ENV)
    try:
        report = send_issue(
            root / SAMPLE_ISSUE, settings, provider, environ=ENV, sleep=lambda s: None
        )
    finally:
        provider.close()
    assert report is not None
    return report


def test_the_messy_list_through_moto(make_project: Callable[..., Path], moto: str) -> None:
    verify_sender(moto)
    root = make_project(
        provider=f'name = "ses"\nregion = "us-east-1"\nbase_url = "{moto}"', csv=MESSY_CSV
    )
    report = send(root)
    assert report.status == "complete", report.this_run
    assert report.counts.sent == len(MESSY_AUDIENCE)
    data = requests.get(f"{moto}/moto-api/data.json", timeout=5).json()
    messages = _all_sent(data)
    assert len(messages) == len(MESSY_AUDIENCE)
    by_address = {}
    for item in messages:
        raw = message_from_string(item["raw_data"])
        by_address[raw["To"].rsplit("<", 1)[-1].rstrip(">").lower()] = (item, raw)
    assert set(by_address) == set(MESSY_AUDIENCE)
    item, raw = by_address["ben@example.org"]
    assert item["source"] == SENDER
    assert raw["From"] == f"Dr. Connie Hutchins <{SENDER}>"
    assert raw["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert raw["List-Unsubscribe"].startswith("<https://movementsolutions.example/")
    assert raw["X-Newsletter-Issue"] == "2025-07-21-hip-rotation"
    assert raw["Message-ID"].endswith("@movementsolutions.example>")
    assert {m["id"] for m in messages} == set(_provider_ids(root))  # SES's MessageIds


def test_an_unverified_sender_stops_the_send(make_project: Callable[..., Path], moto: str) -> None:
    root = make_project(
        provider=f'name = "ses"\nregion = "us-east-1"\nbase_url = "{moto}"', csv=MESSY_CSV
    )
    report = send(root)
    assert report.status == "stopped"
    assert report.this_run.stopped and SENDER in report.this_run.stopped
    assert report.counts.pending == len(MESSY_AUDIENCE) and report.counts.sent == 0
    assert _all_sent(requests.get(f"{moto}/moto-api/data.json", timeout=5).json()) == []


def _all_sent(data: dict[str, Any]) -> list[dict[str, Any]]:
    """moto's data.json: {"ses": {"RawMessage": [...], ...}} keyed by model name."""
    found: list[dict[str, Any]] = []
    for name, items in data.get("ses", {}).items():
        if name in ("RawMessage",):
            found += items
    return found


def _provider_ids(root: Path) -> list[str]:
    with sqlite3.connect(root / ".newsletter" / "ledger.sqlite3") as db:
        return [r[0] for r in db.execute("SELECT provider_id FROM recipients WHERE status='sent'")]
