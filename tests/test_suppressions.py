"""``newsletter suppressions sync`` against local servers speaking each provider's documented
suppression-list API, with its paging and its rate limits; and ``send --due`` running it
first, so that cron alone keeps the list clean."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from pipeline.cli import cli
from pipeline.config import Settings, load_settings, setting_line
from pipeline.delivery.providers.outbox import OutboxProvider
from pipeline.errors import ConfigError
from pipeline.events.suppressions import run_sync
from pipeline.events.sync import ListClient, SyncError
from pipeline.ledger.consent import consent_history
from pipeline.sending import open_ledger, send_due

ADA, BEN, CARLA = "ada.runner@example.org", "ben.lifter@example.org", "carla.mobility@example.org"
ENV = {
    "POSTMARK_SERVER_TOKEN": "pm-token",
    "SENDGRID_API_KEY": "SG.key",
    "MAILGUN_API_KEY": "mg-key",
    "AWS_ACCESS_KEY_ID": "AKIDLOCAL",
    "AWS_SECRET_ACCESS_KEY": "local/secret+key",
    "BREVO_API_KEY": "xkeysib-local",
}


def configure(project: Path, provider: str, base_url: str, extra: str = "") -> Settings:
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace(
        '[provider]\nname = "outbox"',
        f'[provider]\nname = "{provider}"\nbase_url = "{base_url}"\n{extra}',
    )
    config.write_text(text, encoding="utf-8")
    return load_settings(config)


def status_of(settings: Settings, email: str) -> str:
    for line in settings.subscribers.read_text(encoding="utf-8").splitlines():
        if line.lower().lstrip('"').startswith(email):
            return line.split(",")[3] or "subscribed"
    raise AssertionError(email)


def history(settings: Settings, email: str) -> list[tuple[str, str]]:
    ledger = open_ledger(settings)
    try:
        return [(e.action.value, e.cause.value) for e in consent_history(ledger.db, email)]
    finally:
        ledger.close()


def strangers(count: int, start: int = 0) -> list[str]:
    return [f"gone{i:04d}@example.net" for i in range(start, start + count)]


def sync_twice_is_idempotent(settings: Settings, sleeps: list[float] | None = None) -> Any:
    first = run_sync(
        settings, ENV, sleep=(sleeps.append if sleeps is not None else None) or (lambda s: None)
    )
    before = settings.subscribers.read_bytes()
    second = run_sync(settings, ENV, sleep=lambda s: None)
    assert second.new == 0 and second.applied.changed == []
    assert settings.subscribers.read_bytes() == before
    return first


def expect_statuses(settings: Settings) -> None:
    assert status_of(settings, ADA) == "bounced"
    assert status_of(settings, BEN) == "complained"
    assert status_of(settings, CARLA) == "unsubscribed"
    assert status_of(settings, "dev.trail@example.org") == "subscribed"
    assert history(settings, ADA) == [("bounced", "bounce")]
    assert history(settings, BEN) == [("complained", "complaint")]
    assert history(settings, CARLA) == [("unsubscribed", "provider")]


# Postmark ----------------------------------------------------------------------------------


def postmark_dump(httpserver: HTTPServer, stream: str = "broadcast") -> None:
    # https://postmarkapp.com/developer/api/suppressions-api#suppression-dump
    def handler(request: Request) -> Response:
        if request.headers.get("X-Postmark-Server-Token") != "pm-token":
            return Response(json.dumps({"ErrorCode": 10, "Message": "bad token"}), 401)
        body = {
            "Suppressions": [
                {"EmailAddress": ADA, "SuppressionReason": "HardBounce", "Origin": "Recipient",
                 "CreatedAt": "2025-07-01T08:58:33-05:00"},
                {"EmailAddress": BEN.upper(), "SuppressionReason": "SpamComplaint",
                 "Origin": "Recipient", "CreatedAt": "2025-07-02T08:58:33-05:00"},
                {"EmailAddress": CARLA, "SuppressionReason": "ManualSuppression",
                 "Origin": "Recipient", "CreatedAt": "2025-07-03T08:58:33-05:00"},
                {"EmailAddress": "stranger@example.net", "SuppressionReason": "HardBounce",
                 "Origin": "Recipient", "CreatedAt": "2025-07-03T09:00:00-05:00"},
            ]
        }  # fmt: skip
        return Response(json.dumps(body), 200, content_type="application/json")

    httpserver.expect_request(f"/message-streams/{stream}/suppressions/dump").respond_with_handler(
        handler
    )


def test_postmark_stream_suppressions(project: Path, httpserver: HTTPServer) -> None:
    settings = configure(project, "postmark", httpserver.url_for("").rstrip("/"))
    postmark_dump(httpserver)
    report = sync_twice_is_idempotent(settings)
    assert report.read == 4 and report.new == 4
    assert report.applied.not_on_list == ["stranger@example.net"]
    expect_statuses(settings)


def test_postmark_429_waits_as_retry_after_says(project: Path, httpserver: HTTPServer) -> None:
    settings = configure(project, "postmark", httpserver.url_for("").rstrip("/"))
    path = "/message-streams/broadcast/suppressions/dump"
    httpserver.expect_oneshot_request(path).respond_with_data(
        '{"ErrorCode": 429, "Message": "Rate limit exceeded"}', 429, {"Retry-After": "7"}
    )
    postmark_dump(httpserver)
    sleeps: list[float] = []
    report = run_sync(settings, ENV, sleep=sleeps.append)
    assert sleeps == [7.0] and report.read == 4


def test_postmark_refused_token_is_one_clear_error(project: Path, httpserver: HTTPServer) -> None:
    settings = configure(project, "postmark", httpserver.url_for("").rstrip("/"))
    postmark_dump(httpserver)
    before = settings.subscribers.read_bytes()
    with pytest.raises(SyncError, match=r"Postmark refused .* \(HTTP 401") as refused:
        run_sync(settings, {**ENV, "POSTMARK_SERVER_TOKEN": "wrong"}, sleep=lambda s: None)
    # ... naming the one thing she can change, never the token itself.
    assert str(refused.value).endswith(
        ": check POSTMARK_SERVER_TOKEN in the environment (and that the key may read suppressions)"
    )
    assert "wrong" not in str(refused.value)
    assert settings.subscribers.read_bytes() == before


# SendGrid ----------------------------------------------------------------------------------


def test_sendgrid_lists_paged_by_offset_with_a_rate_limit(
    project: Path, httpserver: HTTPServer
) -> None:
    settings = configure(project, "sendgrid", httpserver.url_for("").rstrip("/"))
    # https://www.twilio.com/docs/sendgrid/api-reference/bounces-api/retrieve-all-bounces
    lists = {
        "bounces": [ADA, *strangers(620)],  # two pages of 500
        "blocks": ["dev.trail@example.org"],  # a block alone changes nobody
        "spam_reports": [BEN],
        "invalid_emails": [],
        "unsubscribes": [CARLA],
    }
    limited = {"once": True}

    def handler(request: Request) -> Response:
        if request.headers.get("Authorization") != "Bearer SG.key":
            return Response("{}", 401)
        if limited["once"]:
            limited["once"] = False
            return Response('{"errors": [{"message": "too many requests"}]}', 429,
                            headers={"X-RateLimit-Reset": "0"})  # fmt: skip
        name = request.path.rsplit("/", 1)[1]
        limit, offset = int(request.args["limit"]), int(request.args["offset"])
        assert limit <= 500
        page = [
            {"created": 1751360000 + i, "email": email, "reason": "550 5.1.1 unknown user",
             "status": "5.1.1"}
            for i, email in enumerate(lists[name][offset : offset + limit])
        ]  # fmt: skip
        return Response(json.dumps(page), 200, content_type="application/json")

    for name in lists:
        httpserver.expect_request(f"/v3/suppression/{name}").respond_with_handler(handler)
    sleeps: list[float] = []
    report = sync_twice_is_idempotent(settings, sleeps)
    assert report.read == 624 and report.by_type["bounced"] == 622
    assert sleeps == [0.0]  # waited as told, then went on
    offsets = [r.args.get("offset") for r, _ in httpserver.log if r.path.endswith("/bounces")]
    assert offsets[:3] == ["0", "0", "500"]  # the 429, its retry, the second page
    expect_statuses(settings)
    assert status_of(settings, "dev.trail@example.org") == "subscribed"


# Mailgun -----------------------------------------------------------------------------------


def test_mailgun_lists_follow_paging_next(project: Path, httpserver: HTTPServer) -> None:
    base = httpserver.url_for("").rstrip("/")
    settings = configure(project, "mailgun", base, 'domain = "mg.movementsolutions.example"')
    # https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Bounces/
    lists = {
        "bounces": [*strangers(3), ADA, *strangers(2, 10)],
        "complaints": [BEN],
        "unsubscribes": [CARLA],
    }

    def handler(request: Request) -> Response:
        if request.authorization is None or request.authorization.password != "mg-key":
            return Response("{}", 401)
        name = request.path.rsplit("/", 1)[1]
        page = int(request.args.get("page", "0"))
        items = lists[name][page * 2 : page * 2 + 2]  # Mailgun may give fewer than asked
        body = {
            "items": [
                {"address": a, "code": "550", "error": "No such mailbox",
                 "created_at": "Fri, 21 Oct 2011 11:02:55 UTC", "tags": ["*"]}
                for a in items
            ],
            "paging": {
                "first": f"{base}{request.path}?limit=2",
                "next": f"{base}{request.path}?page={page + 1}&limit=2",
                "previous": f"{base}{request.path}?page={max(page - 1, 0)}&limit=2",
                "last": f"{base}{request.path}?page=last&limit=2",
            },
        }  # fmt: skip
        return Response(json.dumps(body), 200, content_type="application/json")

    for name in lists:
        path = f"/v3/mg.movementsolutions.example/{name}"
        httpserver.expect_request(path).respond_with_handler(handler)
    report = sync_twice_is_idempotent(settings)
    assert report.read == 8
    expect_statuses(settings)


def test_a_next_page_on_another_host_is_not_followed() -> None:
    client = ListClient("Mailgun", "https://api.mailgun.net", auth=("api", "secret"))
    with pytest.raises(SyncError, match="another host"):
        client.url("https://collector.example/v3/x/bounces?page=next")
    assert client.url("https://api.mailgun.net/v3/x/bounces?page=2").startswith("https://api")


# Amazon SES ----------------------------------------------------------------------------------


def test_ses_suppressed_destinations_paged_by_token_and_signed(
    project: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = httpserver.url_for("").rstrip("/")
    settings = configure(project, "ses", base, 'region = "us-east-1"')
    # https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_ListSuppressedDestinations.html
    entries = [
        {"EmailAddress": ADA, "Reason": "BOUNCE", "LastUpdateTime": 1751360000},
        {"EmailAddress": "x1@example.net", "Reason": "BOUNCE", "LastUpdateTime": 1751360001},
        {"EmailAddress": BEN, "Reason": "COMPLAINT", "LastUpdateTime": 1751360002},
    ]
    # A token with the characters that break a careless signer: + / =
    tokens = {None: ("a+b/c==", 0), "a+b/c==": (None, 2)}
    moment: list[datetime] = []
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment[0])

    def handler(request: Request) -> Response:
        # Check the signature as AWS would: botocore signs what we received, at its time.
        moment[:] = [datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")]
        sent = f"{base}{request.path}?{request.query_string.decode()}"
        mirror = AWSRequest("GET", sent, headers={})
        SigV4Auth(BotoCredentials("AKIDLOCAL", "local/secret+key"), "ses", "us-east-1").add_auth(
            mirror
        )
        if mirror.headers["Authorization"] != request.headers.get("Authorization"):
            return Response('{"message": "signature mismatch"}', 403)
        token = request.args.get("NextToken")
        following, start = tokens[token]
        body: dict[str, Any] = {"SuppressedDestinationSummaries": entries[start : start + 2]}
        if following:
            body["NextToken"] = following
        return Response(json.dumps(body), 200, content_type="application/json")

    httpserver.expect_request("/v2/email/suppression/addresses").respond_with_handler(handler)
    report = sync_twice_is_idempotent(settings)
    assert report.read == 3
    assert status_of(settings, ADA) == "bounced"
    assert status_of(settings, BEN) == "complained"
    tokens_seen = [parse_qs(urlsplit(r.url).query).get("NextToken") for r, _ in httpserver.log]
    assert ["a+b/c=="] in tokens_seen


# Brevo -------------------------------------------------------------------------------------


def test_brevo_blocked_contacts_paged_by_offset(project: Path, httpserver: HTTPServer) -> None:
    settings = configure(project, "brevo", httpserver.url_for("").rstrip("/"))
    # https://developers.brevo.com/reference/get-transac-blocked-contacts
    bounced = {"code": "hardBounce", "message": "Hard bounce"}
    contacts = [
        *({"email": e, "reason": bounced} for e in strangers(150)),
        {"email": ADA, "reason": {"code": "hardBounce", "message": "Hard bounce"}},
        {"email": BEN, "reason": {"code": "contactFlaggedAsSpam", "message": "Spam"}},
        {"email": CARLA, "reason": {"code": "unsubscribedViaEmail", "message": "Unsubscribed"}},
        {"email": "dev.trail@example.org", "reason": {"code": "adminBlocked", "message": "Admin"}},
    ]  # fmt: skip
    for i, contact in enumerate(contacts):
        contact.update(senderEmail="connie@movementsolutions.example",
                       blockedAt=f"2025-07-01T12:{i // 60:02d}:{i % 60:02d}.000Z")  # fmt: skip

    def handler(request: Request) -> Response:
        if request.headers.get("api-key") != "xkeysib-local":
            return Response("{}", 401)
        limit, offset = int(request.args["limit"]), int(request.args["offset"])
        assert limit <= 100
        body = {"count": len(contacts), "contacts": contacts[offset : offset + limit]}
        return Response(json.dumps(body), 200, content_type="application/json")

    httpserver.expect_request("/v3/smtp/blockedContacts").respond_with_handler(handler)
    report = sync_twice_is_idempotent(settings)
    assert report.read == 154
    expect_statuses(settings)
    assert status_of(settings, "dev.trail@example.org") == "subscribed"


# Resend, and cron ------------------------------------------------------------------------------


def test_resend_has_no_list_to_read_and_says_so(project: Path) -> None:
    settings = configure(project, "resend", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="Resend's API offers no way"):
        run_sync(settings, {"RESEND_API_KEY": "re_x"})


def due_project(project: Path, httpserver: HTTPServer, extra: str = "") -> Settings:
    return configure(project, "postmark", httpserver.url_for("").rstrip("/"), extra)


SEND_TIME = datetime(2025, 7, 21, 7, 5, tzinfo=ZoneInfo("America/Los_Angeles"))


def outbox(settings: Settings) -> Callable[[], OutboxProvider]:
    return lambda: OutboxProvider(settings.root / "outbox")


def sent_to(settings: Settings) -> set[str]:
    folder = settings.root / "outbox" / "2025-07-21-hip-rotation"
    found = set()
    for path in folder.glob("*.eml"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("To:"):
                found.add(line.rsplit("<", 1)[-1].rstrip(">").strip().lower())
    return found


def test_send_due_reads_the_suppression_lists_first(project: Path, httpserver: HTTPServer) -> None:
    settings = due_project(project, httpserver)
    postmark_dump(httpserver)
    run = send_due(
        settings, ENV, now=SEND_TIME, provider_factory=outbox(settings), sleep=lambda s: None
    )
    assert run.suppressions is not None and len(run.suppressions.applied.changed) == 3
    assert run.reports and run.reports[0].counts.sent > 0
    recipients = sent_to(settings)
    assert "dev.trail@example.org" in recipients
    assert not {ADA, BEN, CARLA} & recipients


def test_send_due_without_sync_when_turned_off(project: Path, httpserver: HTTPServer) -> None:
    settings = due_project(project, httpserver, "suppressions_sync = false")
    postmark_dump(httpserver)
    run = send_due(
        settings, ENV, now=SEND_TIME, provider_factory=outbox(settings), sleep=lambda s: None
    )
    assert run.suppressions is None and httpserver.log == []
    assert ADA in sent_to(settings)


def test_send_due_goes_on_when_the_provider_cannot_be_asked(
    project: Path, httpserver: HTTPServer
) -> None:
    settings = due_project(project, httpserver)
    httpserver.expect_request("/message-streams/broadcast/suppressions/dump").respond_with_data(
        "down", status=503
    )
    run = send_due(
        settings, ENV, now=SEND_TIME, provider_factory=outbox(settings), sleep=lambda s: None
    )
    assert run.suppressions is None and run.suppressions_problem
    assert "Postmark" in run.suppressions_problem and "503" in run.suppressions_problem
    assert run.reports and run.reports[0].counts.sent > 0


def test_suppressions_sync_command(project: Path, httpserver: HTTPServer) -> None:
    settings = due_project(project, httpserver)
    postmark_dump(httpserver)
    runner = CliRunner()
    args = ["--config", str(settings.config_path), "suppressions", "sync"]
    result = runner.invoke(cli, args, env=ENV)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        "postmark: 4 entries read from suppressions of the broadcast stream"
        " (2 bounced, 1 complained, 1 unsubscribed), 4 new"
    )
    assert lines[1] == "  subscribers.csv: 3 addresses changed"
    assert f"    {ADA}: bounced - postmark: hard bounce: on Postmark's suppression list:" in (
        result.output
    )
    assert lines[-1] == "  1 address not on the list (unchanged)"
    again = runner.invoke(cli, args, env=ENV)
    assert "0 new" in again.output and "0 addresses changed" in again.output
    resend = runner.invoke(cli, ["--config", str(settings.config_path), "suppressions", "sync"],
                           env={})  # fmt: skip
    assert resend.exit_code == 2 and "POSTMARK_SERVER_TOKEN" in resend.output
    assert "Traceback" not in resend.output


# Hostile or broken list APIs ---------------------------------------------------------------


def endless(kind: str, base: str) -> Callable[[Request], Response]:
    """A server whose paging never ends: full pages whatever the offset (SendGrid, Brevo),
    the same NextToken forever (SES), a new `next` link each time (Mailgun).  It answers 500
    after 40 pages, so that a reader that does not stop itself still ends (with another error)."""
    calls = {"n": 0}

    def handler(request: Request) -> Response:
        calls["n"] += 1
        if calls["n"] > 40:
            return Response("{}", 500)
        page = calls["n"]
        body: Any
        if kind == "sendgrid":
            body = [{"email": e, "created": 1751360000} for e in strangers(500)]
        elif kind == "brevo":
            body = {
                "contacts": [
                    {"email": e, "reason": {"code": "hardBounce"}, "blockedAt": "2025-07-01"}
                    for e in strangers(100)
                ]
            }
        elif kind == "ses":
            body = {
                "SuppressedDestinationSummaries": [
                    {"EmailAddress": e, "Reason": "BOUNCE", "LastUpdateTime": 1751360000}
                    for e in strangers(3)
                ],
                "NextToken": "again",
            }
        else:
            body = {
                "items": [{"address": e, "created_at": "Fri, 21 Oct 2011 11:02:55 UTC"}
                          for e in strangers(2)],
                "paging": {"next": f"{base}{request.path}?page={page}"},
            }  # fmt: skip
        return Response(json.dumps(body), 200, content_type="application/json")

    return handler


@pytest.mark.parametrize(
    ("provider", "path", "extra"),
    [
        ("sendgrid", "/v3/suppression/bounces", ""),
        ("brevo", "/v3/smtp/blockedContacts", ""),
        ("ses", "/v2/email/suppression/addresses", 'region = "us-east-1"'),
        ("mailgun", "/v3/mg.example/bounces", 'domain = "mg.example"'),
    ],
)
def test_endless_paging_is_stopped_with_one_clear_error(
    project: Path, httpserver: HTTPServer, provider: str, path: str, extra: str
) -> None:
    base = httpserver.url_for("").rstrip("/")
    settings = configure(project, provider, base, extra)
    httpserver.expect_request(path).respond_with_handler(endless(provider, base))
    before = settings.subscribers.read_bytes()
    with pytest.raises(SyncError, match="the same page of its list again; stopped there"):
        run_sync(settings, ENV, sleep=lambda s: None)
    assert len(httpserver.log) == 2  # the first page, then the same one again: stopped
    assert settings.subscribers.read_bytes() == before
    runner = CliRunner()
    result = runner.invoke(
        cli, ["--config", str(settings.config_path), "suppressions", "sync"], env=ENV
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "sent the same page of its list again" in result.output


def test_a_list_that_never_ends_is_stopped_after_the_page_limit(httpserver: HTTPServer) -> None:
    served = {"n": 0}

    def handler(request: Request) -> Response:
        served["n"] += 1  # every page new, so only the limit can stop it
        return Response(json.dumps([{"email": f"n{served['n']}@example.net"}]), 200,
                        content_type="application/json")  # fmt: skip

    httpserver.expect_request("/v3/suppression/bounces").respond_with_handler(handler)
    client = ListClient("SendGrid", httpserver.url_for("").rstrip("/"), max_pages=5)
    for offset in range(5):
        client.get("/v3/suppression/bounces", {"offset": offset})
    with pytest.raises(SyncError, match=r"kept sending pages \(5 read\); stopped there"):
        client.get("/v3/suppression/bounces", {"offset": 5})
    assert served["n"] == 5


def test_a_misspelt_provider_is_named_with_the_one_meant(project: Path) -> None:
    # `send` said "unknown provider 'postmarc' (did you mean 'postmark'? ...)"; `suppressions
    # sync` said the postmarc provider "has no suppression list this tool can read".
    settings = configure(project, "postmarc", "http://127.0.0.1:9")
    result = CliRunner().invoke(
        cli, ["--config", str(settings.config_path), "suppressions", "sync"], env=ENV
    )
    assert result.exit_code == 2
    line = setting_line(settings.config_path, "provider", "name")
    assert result.output == (
        f"error: {settings.config_path}:{line}: [provider] name: unknown provider 'postmarc'"
        " (did you mean 'postmark'? choose from: brevo, mailgun, outbox, postmark, resend,"
        " sendgrid, ses, smtp)\n"
    )


def test_cron_with_the_provider_unreachable_says_so_in_plain_words(project: Path) -> None:
    # Nothing listens on a port just released: the provider is down (or the internet is).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = configure(project, "postmark", f"http://127.0.0.1:{port}")
    run = send_due(
        settings, ENV, now=SEND_TIME, provider_factory=outbox(settings), sleep=lambda s: None
    )
    assert run.suppressions is None
    assert run.suppressions_problem == (
        f"could not reach Postmark after 6 tries (no connection to 127.0.0.1:{port}): check this"
        " computer's internet connection and the provider's status page, then run again"
    )
    assert run.reports and run.reports[0].counts.sent > 0  # the send went on
