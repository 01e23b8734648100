"""Provider webhooks, for real: each provider's documented payloads, signed with its own
algorithm by keys made here, posted to ``POST /webhooks/<provider>``; the list, the ledger
and the consent history read back.  Forged requests (another key, an altered body, a stale
timestamp, a replay, missing headers) must change nothing; the same event twice is applied
once; a late delivery never puts an opted-out reader back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
import trustme
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import Flask
from flask.testing import FlaskClient
from waitress.wasyncore import close_all

from pipeline.audience.subscribers import Subscriber, scan
from pipeline.cli import cli
from pipeline.config import Settings, load_settings
from pipeline.delivery.providers.resend_events import svix_key, svix_signature
from pipeline.delivery.providers.ses_events import MAX_CERTIFICATES, SesWebhook, check_sns_url
from pipeline.events.apply import apply_pending
from pipeline.events.base import Nonce, Refused, WebhookRequest
from pipeline.events.receive import WebhookReceiver
from pipeline.ledger.consent import consent_history
from pipeline.ledger.events import claim_nonce, store
from pipeline.ledger.store import RecipientStatus, Settlement
from pipeline.sending import open_ledger
from pipeline.web.server import make_server
from pipeline.web.webhooks import webhooks_blueprint

from .webhook_senders import (
    TOPIC,
    Mailgun,
    MailgunLegacy,
    Sender,
    Ses,
    SnsCertServer,
    basic,
    merged_env,
    senders,
    sns_cert_server,
)

NOW = 1764068400.0  # the receiver's clock: 2025-11-25 11:00 UTC
PROVIDERS = ["postmark", "brevo", "mailgun", "sendgrid", "resend", "ses"]
# ... and Mailgun's legacy form-encoded webhooks, posted to /webhooks/mailgun too.
SIGNED = [*PROVIDERS, "mailgun-legacy", "mailgun-multipart"]
ISSUES = ["2025-09-01-one", "2025-10-01-two", "2025-11-01-three"]
ADA = "ada.runner@example.org"
BEN = "ben.lifter@example.org"
CARLA = "carla.mobility@example.org"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def all_senders(ca: trustme.CA) -> dict[str, Sender]:
    return {
        **senders(ca),
        "mailgun-legacy": MailgunLegacy(),
        "mailgun-multipart": MailgunLegacy(multipart=True),
    }


@pytest.fixture
def sns(ca: trustme.CA, all_senders: dict[str, Sender], tmp_path: Path) -> Iterator[SnsCertServer]:
    ses = all_senders["ses"]
    assert isinstance(ses, Ses)
    with sns_cert_server(ca, ses.certificate, tmp_path) as server:
        yield server


@pytest.fixture
def events_settings(project: Path) -> Settings:
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace(
        '[provider]\nname = "outbox"',
        f'[provider]\nname = "ses"\nregion = "us-east-1"\nsns_topic_arn = "{TOPIC}"',
    )
    config.write_text(text, encoding="utf-8")
    return load_settings(config)


def message_id(provider: str, issue: str, key: str) -> str:
    digest = hashlib.sha256(f"{provider}{issue}{key}".encode()).hexdigest()
    if provider == "mailgun":
        return f"<{digest[:16]}@mg.movementsolutions.example>"
    return digest[:22]


def record_sends(settings: Settings, provider: str, issues: list[str] = ISSUES) -> None:
    """The ledger after these issues were sent through ``provider`` to the whole list."""
    audience = [s for s in scan(settings.subscribers) if isinstance(s, Subscriber)]
    for month, slug in enumerate(issues, start=9):
        ledger = open_ledger(settings, clock=lambda m=month: datetime(2025, m, 1, 14, tzinfo=UTC))
        try:
            ledger.start_issue(slug, "hash", provider)
            ledger.add_recipients(slug, audience)
            batch, rows = ledger.claim(slug, 1000, provider=provider)
            ledger.settle(
                slug,
                batch,
                [
                    Settlement(r.key, RecipientStatus.SENT, message_id(provider, slug, r.key))
                    for r in rows
                ],
            )
        finally:
            ledger.close()


@pytest.fixture
def receiver(
    events_settings: Settings, all_senders: dict[str, Sender], sns: SnsCertServer
) -> WebhookReceiver:
    return WebhookReceiver(
        events_settings, merged_env(all_senders), sns_fetch=sns.fetch, clock=lambda: NOW
    )


@pytest.fixture
def client(events_settings: Settings, receiver: WebhookReceiver) -> FlaskClient:
    app = Flask(__name__)
    app.register_blueprint(webhooks_blueprint(events_settings, receiver=receiver))
    return app.test_client()


def post(client: FlaskClient, sender: Sender, payload: Any, now: float = NOW) -> tuple[int, str]:
    headers, body = sender.signed(payload, now)
    answer = client.post(f"/webhooks/{sender.name}", data=body, headers=headers)
    return answer.status_code, answer.get_data(as_text=True)


def event(sender: Sender, kind: str, email: str = ADA, issue: str = ISSUES[-1], n: int = 1) -> Any:
    key = email.lower()
    return sender.payload(kind, email, issue, message_id(sender.name, issue, key), n)


def list_status(settings: Settings, email: str) -> str:
    for line in settings.subscribers.read_text(encoding="utf-8").splitlines():
        if line.lower().lstrip('"').startswith(email):
            cells = line.split(",")
            return cells[3] or "subscribed"
    raise AssertionError(f"{email} not on the list")


def stored_events(settings: Settings) -> int:
    ledger = open_ledger(settings)
    try:
        return int(ledger.db.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        ledger.close()


def history(settings: Settings, email: str) -> list[tuple[str, str]]:
    ledger = open_ledger(settings)
    try:
        return [(e.action.value, e.cause.value) for e in consent_history(ledger.db, email)]
    finally:
        ledger.close()


def delivery(settings: Settings, issue: str, email: str) -> str | None:
    ledger = open_ledger(settings)
    try:
        row = ledger.db.execute(
            "SELECT delivery FROM recipients WHERE issue = ? AND key = ?", (issue, email)
        ).fetchone()
        return row[0] if row else None
    finally:
        ledger.close()


# The signing schemes themselves ------------------------------------------------------------


def test_svix_signature_matches_the_standard_webhooks_test_vector() -> None:
    # https://github.com/standard-webhooks/standard-webhooks (the published test vector)
    key = svix_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = svix_signature(
        key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", b'{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


# Signed events change the right rows -------------------------------------------------------

EFFECTS = {
    "hard": ("bounced", "bounce", "bounced"),
    "complaint": ("complained", "complaint", "complained"),
    "unsubscribe": ("unsubscribed", "provider", "unsubscribed"),
}


@pytest.mark.parametrize("kind", list(EFFECTS))
@pytest.mark.parametrize("provider", SIGNED)
def test_a_signed_event_changes_that_reader_and_only_them(
    provider: str,
    kind: str,
    client: FlaskClient,
    events_settings: Settings,
    all_senders: dict[str, Sender],
) -> None:
    sender = all_senders[provider]
    if kind == "unsubscribe" and not sender.unsubscribes:
        pytest.skip(f"{provider} sends no unsubscribe events")
    record_sends(events_settings, sender.name)
    before = events_settings.subscribers.read_text(encoding="utf-8").splitlines()
    status, text = post(client, sender, event(sender, kind))
    assert status == 200, text
    status_after, cause, row_delivery = EFFECTS[kind]
    assert list_status(events_settings, ADA) == status_after
    after = events_settings.subscribers.read_text(encoding="utf-8").splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(changed) == 1 and changed[0][0].startswith(ADA)
    assert history(events_settings, ADA) == [(status_after, cause)]
    assert delivery(events_settings, ISSUES[-1], ADA) == row_delivery
    assert delivery(events_settings, ISSUES[0], ADA) is None


@pytest.mark.parametrize("provider", SIGNED)
def test_the_same_event_twice_is_applied_once(
    provider: str, client: FlaskClient, events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    sender = all_senders[provider]
    record_sends(events_settings, sender.name)
    payload = event(sender, "hard")
    headers, body = sender.signed(payload, NOW)
    for _ in range(2):  # the provider retrying the very request
        assert (
            client.post(f"/webhooks/{sender.name}", data=body, headers=headers).status_code == 200
        )
    # ...and signing it afresh (a new token, a new timestamp): still the same event.
    assert post(client, sender, payload, NOW + 30)[0] == 200
    assert stored_events(events_settings) == 1
    assert history(events_settings, ADA) == [("bounced", "bounce")]


@pytest.mark.parametrize("provider", SIGNED)
def test_forged_requests_change_nothing(
    provider: str,
    client: FlaskClient,
    events_settings: Settings,
    all_senders: dict[str, Sender],
    sns: SnsCertServer,
) -> None:
    sender = all_senders[provider]
    record_sends(events_settings, sender.name)
    before = events_settings.subscribers.read_bytes()
    forgeries = sender.forgeries(event(sender, "complaint"), NOW)
    assert forgeries
    for label, headers, body in forgeries:
        answer = client.post(f"/webhooks/{sender.name}", data=body, headers=headers)
        assert answer.status_code in (400, 401), label
    assert events_settings.subscribers.read_bytes() == before
    assert stored_events(events_settings) == 0
    assert history(events_settings, ADA) == []
    assert delivery(events_settings, ISSUES[-1], ADA) is None
    # Nothing was fetched from a host that is not SNS's.
    assert all(path.endswith(".pem") for path in sns.requests)


def test_a_mailgun_signature_cannot_be_put_on_another_body(
    client: FlaskClient, events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    sender = all_senders["mailgun"]
    assert isinstance(sender, Mailgun)
    record_sends(events_settings, "mailgun")
    headers, body = sender.signed(event(sender, "delivered"), NOW)
    assert client.post("/webhooks/mailgun", data=body, headers=headers).status_code == 200
    # A captured signature block with a forged complaint for someone else.
    block = json.loads(body)["signature"]
    forged = sender.with_block(event(sender, "complaint", email=BEN), block)
    answer = client.post("/webhooks/mailgun", data=forged, headers=headers)
    assert answer.status_code == 401
    assert list_status(events_settings, BEN) == "subscribed"
    assert stored_events(events_settings) == 1


@pytest.mark.parametrize("provider", SIGNED)
def test_a_late_delivery_never_puts_an_opted_out_reader_back(
    provider: str, client: FlaskClient, events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    sender = all_senders[provider]
    record_sends(events_settings, sender.name)
    assert post(client, sender, event(sender, "complaint", n=1))[0] == 200
    assert post(client, sender, event(sender, "delivered", n=2))[0] == 200
    assert post(client, sender, event(sender, "opened", n=3))[0] == 200
    assert list_status(events_settings, ADA) == "complained"
    assert delivery(events_settings, ISSUES[-1], ADA) == "complained"
    assert history(events_settings, ADA) == [("complained", "complaint")]
    # A delivery alone says so in the ledger, and changes nothing on the list.
    assert post(client, sender, event(sender, "delivered", email=BEN, n=4))[0] == 200
    assert delivery(events_settings, ISSUES[-1], BEN) == "delivered"
    assert list_status(events_settings, BEN) == "subscribed"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_soft_bounces_on_three_issues_in_a_row_make_bounced(
    provider: str, client: FlaskClient, events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    sender = all_senders[provider]
    record_sends(events_settings, provider)
    for n, issue in enumerate(ISSUES[:2]):
        assert post(client, sender, event(sender, "soft", issue=issue, n=n))[0] == 200
    assert list_status(events_settings, ADA) == "subscribed"
    assert delivery(events_settings, ISSUES[0], ADA) == "soft-bounced"
    # Ben soft-bounces twice, but the issue between was delivered: no streak.
    assert post(client, sender, event(sender, "soft", BEN, ISSUES[0], n=10))[0] == 200
    assert post(client, sender, event(sender, "delivered", BEN, ISSUES[1], n=11))[0] == 200
    assert post(client, sender, event(sender, "soft", BEN, ISSUES[2], n=12))[0] == 200
    assert list_status(events_settings, BEN) == "subscribed"
    assert post(client, sender, event(sender, "soft", issue=ISSUES[2], n=3))[0] == 200
    assert list_status(events_settings, ADA) == "bounced"
    assert history(events_settings, ADA) == [("bounced", "bounce")]


def test_an_event_without_our_tag_finds_its_issue_by_message_id(
    client: FlaskClient, events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    sender = all_senders["postmark"]
    record_sends(events_settings, "postmark")
    payload = event(sender, "delivered", issue=ISSUES[1])
    del payload["Tag"], payload["Metadata"]
    assert post(client, sender, payload)[0] == 200
    assert delivery(events_settings, ISSUES[1], ADA) == "delivered"


def test_a_bounce_for_someone_not_on_the_list_is_stored_and_changes_nothing(
    client: FlaskClient, events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    sender = all_senders["sendgrid"]
    before = events_settings.subscribers.read_bytes()
    assert post(client, sender, event(sender, "hard", email="stranger@example.net"))[0] == 200
    assert events_settings.subscribers.read_bytes() == before
    assert stored_events(events_settings) == 1


def test_without_its_secret_a_provider_refuses_everything(
    events_settings: Settings, all_senders: dict[str, Sender], sns: SnsCertServer
) -> None:
    bare = events_settings.root / "bare.toml"
    bare.write_text(
        (events_settings.root / "newsletter.toml")
        .read_text(encoding="utf-8")
        .replace(f'sns_topic_arn = "{TOPIC}"', ""),
        encoding="utf-8",
    )
    settings = load_settings(bare)
    app = Flask(__name__)
    # A password too short to stand between the internet and the list counts as none.
    short = {"NEWSLETTER_WEBHOOK_SECRET": "hooks:s3cret"}
    app.register_blueprint(webhooks_blueprint(settings, short))
    client = app.test_client()
    for provider in PROVIDERS:
        sender = all_senders[provider]
        status, text = post(client, sender, event(sender, "hard"))
        assert status == 401 and "not configured" in text
    assert client.post("/webhooks/sparkpost", data=b"{}").status_code == 404
    assert stored_events(settings) == 0


def test_events_stored_while_the_list_is_unreadable_are_applied_later(
    client: FlaskClient, events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    sender = all_senders["postmark"]
    record_sends(events_settings, "postmark")
    moved = events_settings.subscribers.with_suffix(".away")
    events_settings.subscribers.rename(moved)
    assert post(client, sender, event(sender, "hard"))[0] == 200  # stored: no retry needed
    moved.rename(events_settings.subscribers)
    assert list_status(events_settings, ADA) == "subscribed"
    ledger = open_ledger(events_settings)
    try:
        applied = apply_pending(events_settings, ledger)
    finally:
        ledger.close()
    assert applied.events == 1
    assert list_status(events_settings, ADA) == "bounced"
    assert history(events_settings, ADA) == [("bounced", "bounce")]


def test_a_body_over_the_limit_is_refused(client: FlaskClient) -> None:
    answer = client.post("/webhooks/sendgrid", data=b"[" + b" " * (9 * 1024 * 1024) + b"]")
    assert answer.status_code == 413


# SNS: certificates and subscriptions --------------------------------------------------------


def test_sns_confirms_a_signed_subscription_and_caches_the_certificate(
    client: FlaskClient,
    events_settings: Settings,
    all_senders: dict[str, Sender],
    sns: SnsCertServer,
) -> None:
    ses = all_senders["ses"]
    assert isinstance(ses, Ses)
    subscribe = (
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=2336"
    )
    confirmation = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic. To confirm, visit the SubscribeURL.",
        "SubscribeURL": subscribe,
        "SignatureVersion": "1",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem",
    }
    # A confirmation pointing somewhere else is refused before anything is visited.
    evil = ses.sign_message(
        {
            **confirmation,
            "SubscribeURL": "https://evil.example/?Action=ConfirmSubscription",
            "Timestamp": "2025-11-25T10:59:00.000Z",
        }
    )
    answer = client.post("/webhooks/ses", data=json.dumps(evil), headers=ses.headers(evil))
    assert answer.status_code in (400, 401)
    assert not any("ConfirmSubscription" in path for path in sns.requests)
    status, text = post(client, ses, confirmation)
    assert status == 200, text
    assert sum("Action=ConfirmSubscription" in path for path in sns.requests) == 1
    record_sends(events_settings, "ses")
    assert post(client, ses, event(ses, "delivered", n=1))[0] == 200
    assert post(client, ses, event(ses, "delivered", BEN, n=2))[0] == 200
    assert sum(path.endswith(".pem") for path in sns.requests) == 1


# Over a real server --------------------------------------------------------------------------


def test_webhooks_over_waitress_with_basic_auth_in_the_url(
    events_settings: Settings, receiver: WebhookReceiver, all_senders: dict[str, Sender]
) -> None:
    app = Flask(__name__)
    app.register_blueprint(webhooks_blueprint(events_settings, receiver=receiver))
    server = make_server(app, "127.0.0.1", 0, threads=4)  # as `newsletter serve` does
    port = server.effective_port  # type: ignore[union-attr]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        record_sends(events_settings, "postmark")
        postmark = all_senders["postmark"]
        body = json.dumps(event(postmark, "unsubscribe")).encode()
        # What Postmark is given: the credentials in the URL.
        url = f"http://hooks:s3cret-Pa55-long-enough@127.0.0.1:{port}/webhooks/postmark"
        answer = requests.post(url, data=body, timeout=10)
        assert answer.status_code == 200, answer.text
        assert list_status(events_settings, ADA) == "unsubscribed"
        ledger = open_ledger(events_settings)
        try:
            (fact,) = consent_history(ledger.db, ADA)
        finally:
            ledger.close()
        # Postmark gives a subscription change no id of its own: the history names the message
        # (which its activity page finds), not our 64-digit hash of the event.
        assert fact.detail == (
            f"postmark: unsubscribed at the provider (issue {ISSUES[-1]}): ManualSuppression"
            f" (Recipient) [message {message_id('postmark', ISSUES[-1], ADA)}]"
        )
        wrong = f"http://hooks:nope@127.0.0.1:{port}/webhooks/postmark"
        assert requests.post(wrong, data=body, timeout=10).status_code == 401
        sendgrid = all_senders["sendgrid"]
        headers, signed = sendgrid.signed(event(sendgrid, "complaint", email=BEN), NOW)
        answer = requests.post(
            f"http://127.0.0.1:{port}/webhooks/sendgrid", data=signed, headers=headers, timeout=10
        )
        assert answer.status_code == 200, answer.text
        assert list_status(events_settings, BEN) == "complained"
    finally:
        server.task_dispatcher.shutdown(timeout=1)  # type: ignore[union-attr]
        server.close()  # type: ignore[union-attr]
        close_all(server._map)  # type: ignore[union-attr]  # the loop ends with its map
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_mailgun_tokens_are_forgotten_once_no_signature_could_reuse_them(
    events_settings: Settings,
) -> None:
    ledger = open_ledger(events_settings, clock=lambda: datetime(2025, 11, 25, tzinfo=UTC))
    try:
        assert claim_nonce(ledger, "mailgun", Nonce("old-token", "hash"))
        assert not claim_nonce(ledger, "mailgun", Nonce("old-token", "other body"))
        ledger.clock = lambda: datetime(2025, 11, 27, tzinfo=UTC)
        assert claim_nonce(ledger, "mailgun", Nonce("new-token", "hash"))
        tokens = ledger.db.execute("SELECT nonce FROM webhook_nonces").fetchall()
        assert tokens == [("new-token",)]
    finally:
        ledger.close()


def test_status_says_what_the_provider_said(
    client: FlaskClient, events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    sender = all_senders["postmark"]
    record_sends(events_settings, "postmark")
    assert post(client, sender, event(sender, "delivered", email=BEN, n=1))[0] == 200
    assert post(client, sender, event(sender, "hard", n=2))[0] == 200
    assert post(client, sender, event(sender, "delivered", email=CARLA, n=3))[0] == 200
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(events_settings.config_path), "status"])
    assert result.exit_code == 0, result.output
    assert f"{ISSUES[-1]}: " in result.output
    assert "  provider says: delivered 2, bounced 1" in result.output
    as_json = runner.invoke(cli, ["--config", str(events_settings.config_path), "status", "--json"])
    rows = {row["issue"]: row for row in json.loads(as_json.output)}
    assert rows[ISSUES[-1]]["provider_says"] == {"delivered": 2, "bounced": 1}
    assert rows[ISSUES[0]]["provider_says"] == {}


def test_the_app_of_newsletter_serve_takes_webhooks_beyond_its_form_limit(
    events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    from pipeline.web import create_app

    sender = all_senders["sendgrid"]
    record_sends(events_settings, "sendgrid")
    lines: list[str] = []
    app = create_app(
        events_settings, environ=merged_env(all_senders), background=False, log=lines.append
    )
    taken = [line for line in lines if line.startswith("webhooks: ")]
    assert taken == [
        "webhooks: taking /webhooks/brevo, /webhooks/mailgun, /webhooks/postmark,"
        " /webhooks/resend, /webhooks/sendgrid, /webhooks/ses"
        " (see README: Bounces, complaints and provider events)"
    ]
    # SendGrid posts events in batches: this one is far over the app's 16 KB form limit.
    batch = [
        item
        for n in range(300)
        for item in event(sender, "delivered", email=f"reader{n}@example.net", n=n)
    ] + event(sender, "complaint", n=999)
    headers, body = sender.signed(batch, time.time())
    assert len(body) > 64 * 1024
    answer = app.test_client().post("/webhooks/sendgrid", data=body, headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert list_status(events_settings, ADA) == "complained"
    assert f"sendgrid event: {ADA} is now complained" in lines
    forged = app.test_client().post("/webhooks/sendgrid", data=body + b" ", headers=headers)
    assert forged.status_code == 401
    assert any("wrong SendGrid signature" in line for line in lines)


def test_a_status_already_on_the_list_is_recorded_once_in_the_history(
    client: FlaskClient, events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    from pipeline.audience.list_writer import ListChange, apply_changes

    sender = all_senders["postmark"]
    record_sends(events_settings, "postmark")
    # As if a run rewrote the list and died before recording it: the list says bounced,
    # the history nothing yet.
    apply_changes(events_settings.subscribers, [ListChange(ADA, status="bounced")])
    assert post(client, sender, event(sender, "hard", n=1))[0] == 200
    assert history(events_settings, ADA) == [("bounced", "bounce")]
    # Another bounce (another event) for the same reader adds nothing to the history.
    assert post(client, sender, event(sender, "hard", issue=ISSUES[0], n=2))[0] == 200
    assert stored_events(events_settings) == 2
    assert history(events_settings, ADA) == [("bounced", "bounce")]
    # A complaint is recorded over the bounce: it is the stronger signal.
    assert post(client, sender, event(sender, "complaint", n=3))[0] == 200
    assert list_status(events_settings, ADA) == "complained"
    assert history(events_settings, ADA) == [("bounced", "bounce"), ("complained", "complaint")]
    # An unsubscribe after that changes nothing on the list.
    assert post(client, sender, event(sender, "unsubscribe", n=4))[0] == 200
    assert list_status(events_settings, ADA) == "complained"


def test_events_we_have_no_use_for_are_acknowledged_and_not_stored(
    client: FlaskClient, events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    sender = all_senders["postmark"]
    for payload in (
        {"RecordType": "Bounce", "ID": 7, "Type": "AutoResponder", "Email": ADA},
        {
            "RecordType": "SubscriptionChange",
            "Recipient": ADA,
            "SuppressSending": False,
            "SuppressionReason": None,
            "ChangedAt": "2025-11-25T10:00:00Z",
        },
    ):
        status, text = post(client, sender, payload)
        assert status == 200 and "0 events received" in text
    # A reactivation at Postmark never resubscribes anyone: consent needs the reader.
    assert stored_events(events_settings) == 0
    status, text = post(client, sender, {"no": "record type"})
    assert status == 400


def test_in_the_background_the_answer_comes_first_and_the_list_follows(
    events_settings: Settings, all_senders: dict[str, Sender], sns: SnsCertServer
) -> None:
    sender = all_senders["resend"]
    record_sends(events_settings, "resend")
    # Stored by a process that stopped before applying it: the next one applies it.
    ledger = open_ledger(events_settings)
    try:
        headers, body = sender.signed(event(sender, "complaint", email=BEN), NOW)
        left = all_senders["resend"]
        parsed = WebhookReceiver(events_settings, merged_env(all_senders), clock=lambda: NOW)
        store(ledger, parsed.sources["resend"].parse(WebhookRequest.of(headers.items(), body)))  # type: ignore[union-attr]
    finally:
        ledger.close()
    assert list_status(events_settings, BEN) == "subscribed" and left
    receiver = WebhookReceiver(
        events_settings,
        merged_env(all_senders),
        sns_fetch=sns.fetch,
        clock=lambda: NOW,
        background=True,
    )
    app = Flask(__name__)
    app.register_blueprint(webhooks_blueprint(events_settings, receiver=receiver))
    assert receiver.wait_applied()
    assert list_status(events_settings, BEN) == "complained"
    headers, body = sender.signed(event(sender, "hard"), NOW)
    answer = app.test_client().post("/webhooks/resend", data=body, headers=headers)
    assert answer.status_code == 200 and "1 new" in answer.get_data(as_text=True)
    assert receiver.wait_applied()
    assert list_status(events_settings, ADA) == "bounced"
    assert history(events_settings, ADA) == [("bounced", "bounce")]


def test_a_legacy_mailgun_form_signed_with_a_guess_is_refused(
    client: FlaskClient, events_settings: Settings
) -> None:
    body = b"event=bounced&recipient=ada.runner%40example.org&timestamp=1&token=t&signature=s"
    answer = client.post(
        "/webhooks/mailgun",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 401
    assert stored_events(events_settings) == 0
    assert list_status(events_settings, ADA) == "subscribed"


@pytest.mark.parametrize("multipart", [False, True])
def test_a_legacy_mailgun_signature_cannot_be_put_on_another_body(
    multipart: bool, client: FlaskClient, events_settings: Settings
) -> None:
    sender = MailgunLegacy(multipart)
    record_sends(events_settings, "mailgun")
    headers, body = sender.signed(event(sender, "delivered"), NOW)
    assert client.post("/webhooks/mailgun", data=body, headers=headers).status_code == 200
    # The captured timestamp, token and signature, on a forged complaint for someone else.
    fields = parse_qsl(body.decode()) if not multipart else None
    block = (
        {name: value for name, value in fields if name in ("timestamp", "token", "signature")}
        if fields is not None
        else _multipart_block(body)
    )
    headers, forged = sender.form([*event(sender, "complaint", email=BEN), *block.items()])
    answer = client.post("/webhooks/mailgun", data=forged, headers=headers)
    assert answer.status_code == 401
    assert list_status(events_settings, BEN) == "subscribed"
    assert stored_events(events_settings) == 1


def _multipart_block(body: bytes) -> dict[str, str]:
    found = {}
    for name in ("timestamp", "token", "signature"):
        marker = f'name="{name}"\r\n\r\n'.encode()
        start = body.rindex(marker) + len(marker)
        found[name] = body[start : body.index(b"\r\n", start)].decode()
    return found


def test_a_legacy_mailgun_custom_variable_named_like_a_signature_field_is_not_mistaken(
    client: FlaskClient, events_settings: Settings
) -> None:
    """Mailgun merges custom variables into the form, before its own fields: a variable
    named "token" or "timestamp" comes first, Mailgun's own last (anymail reads the last)."""
    sender = MailgunLegacy()
    record_sends(events_settings, "mailgun")
    fields = [*event(sender, "hard"), ("token", "the reader's own"), ("timestamp", "yesterday")]
    assert post(client, sender, fields)[0] == 200
    assert list_status(events_settings, ADA) == "bounced"


def test_a_legacy_mailgun_event_takes_the_issue_from_its_custom_variables(
    client: FlaskClient, events_settings: Settings
) -> None:
    """An unsubscribe carries no message headers: the issue is our ``issue`` variable, a
    field of its own; a delivery's comes from X-Mailgun-Variables in ``message-headers``."""
    sender = MailgunLegacy()
    record_sends(events_settings, "mailgun")
    older = ISSUES[0]
    assert post(client, sender, event(sender, "delivered", email=BEN, issue=older))[0] == 200
    assert post(client, sender, event(sender, "unsubscribe", issue=older))[0] == 200
    assert delivery(events_settings, older, BEN) == "delivered"
    assert delivery(events_settings, older, ADA) == "unsubscribed"
    assert delivery(events_settings, ISSUES[-1], ADA) is None
    assert list_status(events_settings, ADA) == "unsubscribed"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data\r\n\r\n"),
        ("multipart/form-data", b"no boundary at all"),
        ("application/x-www-form-urlencoded", b"%ff%fe=%00&event"),
        ("application/x-www-form-urlencoded", b""),
    ],
)
def test_a_broken_legacy_mailgun_form_is_refused_cleanly(
    content_type: str, body: bytes, client: FlaskClient, events_settings: Settings
) -> None:
    answer = client.post("/webhooks/mailgun", data=body, headers={"Content-Type": content_type})
    assert 400 <= answer.status_code < 500
    assert stored_events(events_settings) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_hostile_bodies_are_refused_cleanly(
    provider: str, client: FlaskClient, events_settings: Settings
) -> None:
    """Unsigned garbage must be a 4xx, never a server error: some checks parse the body
    before they can verify it (Mailgun's signature block, SNS's fields)."""
    for body in (b"[" * 100_000, b"\xff\xfe not utf-8", b"", b"null", b'{"a": 1}', b"[]"):
        answer = client.post(f"/webhooks/{provider}", data=body)
        assert 400 <= answer.status_code < 500, (provider, body[:10], answer.status_code)
    assert stored_events(events_settings) == 0


def test_a_bounce_older_than_the_readers_last_confirmation_leaves_them_subscribed(
    client: FlaskClient, events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    from pipeline.ledger.consent import record_consent

    sender = all_senders["postmark"]
    record_sends(events_settings, "postmark")
    ledger = open_ledger(events_settings)
    try:
        # She bounced long ago, then signed up again and confirmed on 25 November, 10:30.
        record_consent(
            ledger.db, ADA, "resubscribed", "form", at=datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
        )
    finally:
        ledger.close()
    late = event(sender, "hard", n=1)
    late["BouncedAt"] = "2026-11-25T10:29:59Z"  # an old issue's bounce, reported late
    assert post(client, sender, late)[0] == 200
    assert list_status(events_settings, ADA) == "subscribed"
    assert delivery(events_settings, ISSUES[-1], ADA) == "bounced"  # the ledger still says it
    fresh = event(sender, "hard", n=2)
    fresh["BouncedAt"] = "2026-11-25T10:31:00Z"
    assert post(client, sender, fresh)[0] == 200
    assert list_status(events_settings, ADA) == "bounced"


def test_changes_the_web_app_queued_earlier_land_first(
    client: FlaskClient, events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    from pipeline.audience.change_queue import queue_change, queued_count
    from pipeline.audience.list_writer import ListChange

    sender = all_senders["sendgrid"]
    record_sends(events_settings, "sendgrid")
    ledger = open_ledger(events_settings)
    try:
        queue_change(ledger.db, ListChange(BEN, status="unsubscribed"))  # answered, not written
    finally:
        ledger.close()
    assert post(client, sender, event(sender, "hard", email=BEN))[0] == 200
    # The opt-out came first: it is what the list says; the bounce changes an opted-out
    # reader no further.
    assert list_status(events_settings, BEN) == "unsubscribed"
    ledger = open_ledger(events_settings)
    try:
        assert queued_count(ledger.db) == 0
    finally:
        ledger.close()


def test_newsletter_providers_says_what_each_webhook_needs() -> None:
    from pipeline.events.receive import WEBHOOK_SECRETS, factories

    assert set(WEBHOOK_SECRETS) == set(factories())
    result = CliRunner().invoke(cli, ["providers"])
    assert result.exit_code == 0
    assert (
        "  webhooks at /webhooks/mailgun: MAILGUN_WEBHOOK_SIGNING_KEY\n"
        "  suppression lists: newsletter suppressions sync\n"
    ) in result.output
    assert "/webhooks/resend: RESEND_WEBHOOK_SECRET" in result.output
    assert "webhooks at /webhooks/smtp" not in result.output


def test_newsletter_serve_takes_a_sendgrid_batch_over_the_form_limit(
    events_settings: Settings, receiver: WebhookReceiver, all_senders: dict[str, Sender]
) -> None:
    """Under waitress, as `newsletter serve` runs it: the server's own body limit must not be
    the form's 16 KB, or every SendGrid batch (up to 768 KB, per its Event Webhook docs:
    "batched ... every 30 seconds or when the batch size reaches 768 kilobytes") is a 413
    that SendGrid retries and then drops.  Forms are still refused over 16 KB by the app."""
    from pipeline.web import create_app

    record_sends(events_settings, "sendgrid")
    app = create_app(events_settings, environ=merged_env(all_senders), background=False)
    server = make_server(app, "127.0.0.1", 0, threads=2)
    port = server.effective_port  # type: ignore[union-attr]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        sender = all_senders["sendgrid"]
        batch = [
            item
            for n in range(300)
            for item in event(sender, "delivered", email=f"reader{n}@example.net", n=n)
        ] + event(sender, "complaint", n=999)
        headers, body = sender.signed(batch, time.time())
        assert len(body) > 64 * 1024
        url = f"http://127.0.0.1:{port}"
        answer = requests.post(f"{url}/webhooks/sendgrid", data=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        assert list_status(events_settings, ADA) == "complained"
        form = requests.post(
            f"{url}/subscribe", data={"email": "x@example.net", "first_name": "a" * 40_000}
        )
        assert form.status_code == 413
        assert "Too much data" in form.text
    finally:
        server.task_dispatcher.shutdown(timeout=1)  # type: ignore[union-attr]
        server.close()  # type: ignore[union-attr]
        close_all(server._map)  # type: ignore[union-attr]
        thread.join(timeout=10)
        from pipeline.web.app import subscriptions_of

        subscriptions_of(app).close()


@pytest.mark.parametrize("short", ["", " ", "key", "0123456789abcde"])
def test_a_mailgun_signing_key_too_short_to_guess_takes_nothing(
    events_settings: Settings, all_senders: dict[str, Sender], short: str
) -> None:
    """A placeholder key ("key", "test") would let anyone who guesses it sign events: like
    a short basic-auth password, it counts as no key (Mailgun's own are 32+ characters)."""
    record_sends(events_settings, "mailgun")
    sender = Mailgun()
    sender.env = {"MAILGUN_WEBHOOK_SIGNING_KEY": short}
    app = Flask(__name__)
    app.register_blueprint(webhooks_blueprint(events_settings, sender.env))
    status, text = post(app.test_client(), sender, event(sender, "hard"), now=time.time())
    assert status == 401 and "not configured" in text
    assert list_status(events_settings, ADA) == "subscribed"
    assert stored_events(events_settings) == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.ap-southeast-2.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.il-central-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
    ],
)
def test_sns_certificates_are_taken_from_every_sns_region(url: str) -> None:
    assert check_sns_url(url, "SigningCertURL") == url


@pytest.mark.parametrize(
    "url",
    [
        # S3 serves anyone's bucket named "sns" at these: a certificate put there by anyone
        # would sign forged bounces and complaints.
        "https://sns.s3.amazonaws.com/cert.pem",
        "https://sns.s3-us-west-2.amazonaws.com/cert.pem",
        "https://sns.s3-external-1.amazonaws.com/cert.pem",
        "https://sns.s3-website-us-east-1.amazonaws.com/cert.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/cert.pem",
    ],
)
def test_sns_certificates_are_never_taken_from_anywhere_else(url: str) -> None:
    with pytest.raises(Refused, match="not an https URL on sns"):
        check_sns_url(url, "SigningCertURL")


def test_sns_certificates_kept_in_memory_are_few_whatever_is_posted(
    events_settings: Settings,
    all_senders: dict[str, Sender],
    sns: SnsCertServer,
    receiver: WebhookReceiver,
    client: FlaskClient,
) -> None:
    """The certificate is fetched before the signature can be checked, so anyone who knows
    the topic can name a new certificate URL in each post: each is refused, and the cache of
    certificates does not grow with them (SNS signs with one certificate per region)."""
    ses = all_senders["ses"]
    assert isinstance(ses, Ses)
    message = event(ses, "hard")
    for n in range(60):
        forged = {
            **message,
            "SigningCertURL": f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{n}.pem",
            "Signature": base64.b64encode(b"x" * 256).decode(),
        }
        answer = client.post("/webhooks/ses", data=json.dumps(forged), headers=ses.headers(forged))
        assert answer.status_code == 401
    source = receiver.sources["ses"]
    assert isinstance(source, SesWebhook)
    assert len(source._keys) <= MAX_CERTIFICATES
    assert post(client, ses, event(ses, "hard"))[0] == 200  # a genuine one still goes through
    assert stored_events(events_settings) == 1


def test_a_postmark_bounce_keeps_the_receiving_servers_own_words(
    client: FlaskClient, events_settings: Settings, all_senders: dict[str, Sender]
) -> None:
    """Postmark's ``Description`` is the same sentence for every hard bounce ("The server was
    unable to deliver your message."); ``Details`` is what the reader's server said
    (https://postmarkapp.com/developer/webhooks/bounce-webhook), the part worth keeping, and
    what README's example of the history shows."""
    sender = all_senders["postmark"]
    record_sends(events_settings, "postmark")
    status, text = post(client, sender, event(sender, "hard"))
    assert status == 200, text
    ledger = open_ledger(events_settings)
    try:
        (bounced,) = consent_history(ledger.db, ADA)
    finally:
        ledger.close()
    assert bounced.detail is not None
    assert "smtp;550 5.1.1 The email account does not exist." in bounced.detail


def test_a_secret_that_is_set_but_refused_is_named_when_the_app_starts(
    events_settings: Settings,
) -> None:
    """With NEWSLETTER_WEBHOOK_SECRET set to a short password, `serve` said "webhooks: none
    configured": she had set it, so that read as a bug.  The start now says what is wrong."""
    lines: list[str] = []
    environ = {
        "NEWSLETTER_WEBHOOK_SECRET": "hooks:s3cret",
        "RESEND_WEBHOOK_SECRET": "whsec_c2hvcnQ=",
        "SENDGRID_WEBHOOK_VERIFICATION_KEY": "",  # empty: as if unset, not a mistake
    }
    webhooks_blueprint(events_settings, environ, log=lines.append, background=False)
    said = "\n".join(lines)
    assert "NEWSLETTER_WEBHOOK_SECRET" in said and "at least 16 characters" in said
    assert "RESEND_WEBHOOK_SECRET" in said
    assert "SENDGRID" not in said and "MAILGUN" not in said and "none configured" not in said
    assert "hooks:s3cret" not in said and "c2hvcnQ" not in said  # never the secret itself


def test_a_mistyped_provider_in_the_webhook_url_is_logged_with_the_right_name(
    events_settings: Settings, all_senders: dict[str, Sender], sns: SnsCertServer
) -> None:
    # Connie typed the URL into Postmark's dashboard by hand: a typo used to be answered 404
    # with nothing in the app's log, so every bounce was lost without a word on her side.
    lines: list[str] = []
    receiver = WebhookReceiver(
        events_settings,
        merged_env(all_senders),
        sns_fetch=sns.fetch,
        clock=lambda: NOW,
        log=lines.append,
    )
    app = Flask(__name__)
    app.register_blueprint(webhooks_blueprint(events_settings, receiver=receiver))
    client = app.test_client()
    answer = client.post("/webhooks/postmrk", data=b"{}")
    assert answer.status_code == 404
    assert "did you mean /webhooks/postmark?" in answer.get_data(as_text=True)
    assert lines == [
        "refused a webhook at /webhooks/postmrk: no provider named 'postmrk' (did you mean"
        " /webhooks/postmark? the webhook URLs are /webhooks/brevo, /webhooks/mailgun,"
        " /webhooks/postmark, /webhooks/resend, /webhooks/sendgrid, /webhooks/ses)"
    ]
    assert stored_events(events_settings) == 0
    # The same name with a capital letter is the same provider.
    sender = all_senders["postmark"]
    headers, body = sender.signed(event(sender, "hard"), NOW)
    answer = client.post("/webhooks/Postmark", data=body, headers=headers)
    assert answer.status_code == 200 and stored_events(events_settings) == 1


def test_a_webhook_url_without_its_password_is_logged_with_what_to_change(
    events_settings: Settings, all_senders: dict[str, Sender], sns: SnsCertServer
) -> None:
    # "no basic auth credentials" told Connie nothing she could act on: the fix is the URL she
    # gave Postmark, so the log says which URL and which variable (never the password).
    lines: list[str] = []
    receiver = WebhookReceiver(
        events_settings,
        merged_env(all_senders),
        sns_fetch=sns.fetch,
        clock=lambda: NOW,
        log=lines.append,
    )
    sender = all_senders["postmark"]
    _, body = sender.signed(event(sender, "hard"), NOW)
    bare = receiver.receive("postmark", WebhookRequest.of([], body))
    wrong = receiver.receive(
        "postmark", WebhookRequest.of(list(basic("hooks:not-the-password-at-all").items()), body)
    )
    assert bare.status == wrong.status == 401
    assert lines == [
        "refused a postmark webhook: no user:password came with it: the webhook URL at"
        " Postmark must be https://USER:PASSWORD@your-site/webhooks/postmark, with"
        " NEWSLETTER_WEBHOOK_SECRET's user and password",
        "refused a postmark webhook: its user:password is not NEWSLETTER_WEBHOOK_SECRET's:"
        " the webhook URL at Postmark must be https://USER:PASSWORD@your-site/webhooks/postmark"
        " with the same user and password",
    ]
    secret = merged_env(all_senders)["NEWSLETTER_WEBHOOK_SECRET"]
    assert not any(secret.partition(":")[2] in line for line in lines)
    assert stored_events(events_settings) == 0


def test_a_mistyped_sendgrid_or_resend_secret_says_where_to_copy_it_from(
    events_settings: Settings,
) -> None:
    # "is not a base64 public key (Incorrect padding)" was the cryptography library talking;
    # Connie needs to know the value is wrong and where the right one is.
    receiver = WebhookReceiver(
        events_settings,
        {"SENDGRID_WEBHOOK_VERIFICATION_KEY": "abc", "RESEND_WEBHOOK_SECRET": "mysecret"},
    )
    assert receiver.refused_secrets() == [
        "resend: RESEND_WEBHOOK_SECRET is too short to be a signing secret (copy it from"
        " Resend: Webhooks > your endpoint > Signing secret)",
        "sendgrid: SENDGRID_WEBHOOK_VERIFICATION_KEY is not SendGrid's verification key (copy it"
        " whole from SendGrid: Mail Settings > Event Webhook > Signed Event Webhook >"
        " verification key)",
    ]
    # A key of the wrong kind (an RSA one, say) reads the same.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = rsa_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    wrong = WebhookReceiver(
        events_settings, {"SENDGRID_WEBHOOK_VERIFICATION_KEY": base64.b64encode(der).decode()}
    )
    assert wrong.refused_secrets() == [receiver.refused_secrets()[1]]
