"""One contract for every HTTP provider: the same issue, the same messy list, the same
faults, and the ledger must end the same way.  Each provider is driven against a local server
speaking its documented wire format (``tests/fake_providers.py``)."""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import load_settings
from pipeline.delivery.providers import create_provider
from pipeline.sending import SendReport, send_issue, send_test

from .conftest import MESSY_AUDIENCE, MESSY_CSV, SAMPLE_ISSUE
from .fake_providers import (
    BREVO_KEY,
    MAILGUN_KEY,
    POSTMARK_TOKEN,
    RESEND_KEY,
    SENDGRID_KEY,
    SES_KEY_ID,
    CallFault,
    FakeApi,
    FakeBrevo,
    FakeMailgun,
    FakePostmark,
    FakeResend,
    FakeSendGrid,
    FakeSes,
)


@dataclass
class Spec:
    name: str
    fake: type[FakeApi]
    env: dict[str, str]
    settings: str = ""  # [provider] lines besides name, base_url and timeout
    idempotent: bool = False
    per_recipient_failures: bool = False  # the API refuses one recipient and sends the rest
    # A 429 as this provider sends it: headers that say how long to wait (3 s).
    throttle: Callable[[], CallFault] = field(default=lambda: CallFault(429, {"Retry-After": "3"}))


SPECS = [
    Spec(
        "postmark",
        FakePostmark,
        {"POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN},
        'message_stream = "outbound"',
        per_recipient_failures=True,
    ),
    Spec(
        "sendgrid",
        FakeSendGrid,
        {"SENDGRID_API_KEY": SENDGRID_KEY},
        # X-RateLimit-Reset is a Unix time.
        throttle=lambda: CallFault(
            429,
            {"X-RateLimit-Reset": str(int(time.time()) + 4)},
            {"errors": [{"message": "too many requests"}]},
        ),
    ),
    Spec("mailgun", FakeMailgun, {"MAILGUN_API_KEY": MAILGUN_KEY}),
    Spec(
        "ses",
        FakeSes,
        {"AWS_ACCESS_KEY_ID": SES_KEY_ID, "AWS_SECRET_ACCESS_KEY": "secret"},
        'region = "us-east-1"',
        per_recipient_failures=True,
        throttle=lambda: CallFault(
            429,
            {"X-Amzn-ErrorType": "TooManyRequestsException", "Retry-After": "3"},
            {"message": "Maximum sending rate exceeded."},
        ),
    ),
    Spec(
        "resend",
        FakeResend,
        {"RESEND_API_KEY": RESEND_KEY},
        idempotent=True,
        per_recipient_failures=True,
        throttle=lambda: CallFault(
            429,
            {"ratelimit-reset": "3"},
            {"statusCode": 429, "name": "rate_limit_exceeded", "message": "Too many requests"},
        ),
    ),
    Spec(
        "brevo",
        FakeBrevo,
        {"BREVO_API_KEY": BREVO_KEY},
        idempotent=True,
        throttle=lambda: CallFault(
            429, {"x-sib-ratelimit-reset": "3"}, {"code": "too_many_requests", "message": "x"}
        ),
    ),
]
EXTRA = 180  # more readers than fit one batch, so faults hit some batches and not others
READERS = [f"reader{i:03d}@example.org" for i in range(EXTRA)]
AUDIENCE = MESSY_AUDIENCE + READERS


def messy_list() -> str:
    rows = "".join(f"{a},Reader {i},,,\r\n" for i, a in enumerate(READERS))
    return MESSY_CSV + rows


@pytest.fixture(params=SPECS, ids=lambda s: s.name)
def spec(request: pytest.FixtureRequest) -> Spec:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def server(spec: Spec) -> Iterator[FakeApi]:
    fake = spec.fake()
    try:
        yield fake
    finally:
        fake.close()


def project(
    make_project: Callable[..., Path], spec: Spec, server: FakeApi, timeout: int = 2
) -> Path:
    provider = (
        f'name = "{spec.name}"\nbase_url = "{server.url}"\ntimeout = {timeout}\n'
        f"batch_size = 50\n{spec.settings}"
    )
    return make_project(provider=provider, csv=messy_list())


def send(
    root: Path, env: dict[str, str], sleeps: list[float] | None = None, **kw: Any
) -> SendReport:
    settings = load_settings(root / "newsletter.toml")
    provider = create_provider(settings, env)
    try:
        report = send_issue(
            root / SAMPLE_ISSUE,
            settings,
            provider,
            environ=env,
            sleep=(sleeps.append if sleeps is not None else lambda s: None),
            **kw,
        )
    finally:
        provider.close()
    assert report is not None
    return report


def assert_whole(report: SendReport) -> None:
    """Nothing is silently lost: audience = sent + failed + unknown + pending."""
    c = report.counts
    assert c.audience == len(AUDIENCE)
    assert c.sent + c.failed + c.unknown + c.pending == c.audience


def test_transient_faults_end_with_everyone_sent_once(
    make_project: Callable[..., Path], spec: Spec, server: FakeApi
) -> None:
    root = project(make_project, spec, server)
    server.faults = [spec.throttle(), CallFault(503, {}, {"message": "down"})]
    sleeps: list[float] = []
    report = send(root, spec.env, sleeps)
    assert_whole(report)
    assert report.counts.sent == len(AUDIENCE), report.failures
    assert server.delivered == Counter({a: 1 for a in AUDIENCE})
    assert max(sleeps) >= 2.5  # the 429's own wait was honoured
    # The messy rows never reached the provider: invalid, unsubscribed, duplicate, suppressed.
    assert len(report.invalid) == 3 and sum(report.skipped.values()) == 9
    assert send(root, spec.env).counts.sent == len(AUDIENCE)  # a re-run sends nothing
    assert sum(server.delivered.values()) == len(AUDIENCE)


# Providers answering a refused key with 401 ("Fix it" alone told her nothing).
KEY_NAMED = {
    "postmark": "POSTMARK_SERVER_TOKEN",
    "mailgun": "MAILGUN_API_KEY",
    "sendgrid": "SENDGRID_API_KEY",
    "brevo": "BREVO_API_KEY",
}


def test_a_refused_key_stops_the_send_and_a_fixed_one_finishes_it(
    make_project: Callable[..., Path], spec: Spec, server: FakeApi
) -> None:
    root = project(make_project, spec, server)
    wrong = {name: value + "-wrong" for name, value in spec.env.items()}
    if spec.name == "ses":
        wrong["AWS_ACCESS_KEY_ID"] = "AKIDWRONG"
    report = send(root, wrong)
    assert report.status == "stopped" and report.exit_code != 0
    assert report.counts.pending == len(AUDIENCE) and not server.delivered
    assert report.this_run.stopped
    for value in wrong.values():
        assert value not in report.this_run.stopped  # the secret is never echoed
    if spec.name in KEY_NAMED:  # the key is what she can fix: its variable is named
        assert report.this_run.stopped.endswith(
            f": check {KEY_NAMED[spec.name]} in the environment"
        )
    report = send(root, spec.env)
    assert report.status == "complete" and report.counts.sent == len(AUDIENCE)
    assert server.delivered == Counter({a: 1 for a in AUDIENCE})


# Providers whose API can say what they accepted (pipeline.delivery.provider.Searching).
# (SendGrid can be, with its Email Activity add-on; its fake here has none, so this test sees
# what an account without it gets: tests/test_settle_sendgrid.py has the rest.)
SEARCHING = {"postmark", "mailgun"}


def test_an_answer_lost_after_the_provider_accepted(
    make_project: Callable[..., Path], spec: Spec, server: FakeApi
) -> None:
    """The provider processed a batch but the answer never came back.  Idempotent providers
    (Resend, Brevo) re-send the batch with the same key and settle it exactly once; those
    that can search what they accepted (Postmark, Mailgun) are asked, and settle it exactly
    once; the others leave it ``unknown`` for the operator, never re-sent behind their back."""
    root = project(make_project, spec, server, timeout=1)
    server.faults = [CallFault(delay=2.0, accept=True)]
    first = send(root, spec.env)
    assert_whole(first)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (server.in_progress or server.at_once):
        time.sleep(0.05)  # until the delayed request has been processed
    second = send(root, spec.env)
    assert_whole(second)
    assert max(server.delivered.values()) == 1  # nobody twice, ever
    assert first.counts.unknown >= 1  # the lost answer left its batch in doubt
    if spec.idempotent:
        assert second.counts.sent == len(AUDIENCE) and second.counts.unknown == 0
        assert server.delivered == Counter({a: 1 for a in AUDIENCE})
        assert server.replayed >= 1  # settled from the key, not sent again
    elif spec.name in SEARCHING:
        assert second.asked is not None and second.asked.found == first.counts.unknown
        assert second.counts.sent == len(AUDIENCE) and second.counts.unknown == 0
        assert server.delivered == Counter({a: 1 for a in AUDIENCE})
    else:
        assert second.counts.unknown == first.counts.unknown
        assert second.counts.sent == len(AUDIENCE) - first.counts.unknown


def test_one_refused_recipient_fails_alone(
    make_project: Callable[..., Path], spec: Spec, server: FakeApi
) -> None:
    if not spec.per_recipient_failures:
        pytest.skip(f"{spec.name} accepts or refuses a whole request; bounces come later")
    root = project(make_project, spec, server)
    server.recipient_errors = {"reader007@example.org": 406}
    report = send(root, spec.env)
    assert_whole(report)
    assert report.counts.failed == 1 and report.counts.sent == len(AUDIENCE) - 1
    ((email, reason),) = report.failures
    assert email == "reader007@example.org" and reason
    assert "reader007@example.org" not in server.delivered


def test_headers_and_personal_content_arrive_for_each_recipient(
    make_project: Callable[..., Path], spec: Spec, server: FakeApi
) -> None:
    """What each recipient gets, as the provider would assemble it: their own name, their
    own unsubscribe link in the body and in List-Unsubscribe, escaped HTML."""
    root = project(make_project, spec, server)
    send(root, spec.env)
    seen = dict(received_messages(spec.name, server))
    assert set(seen) == set(AUDIENCE)
    hax = seen["hax@example.org"]
    assert "&lt;script&gt;" in hax["html"] and "<script>alert" not in hax["html"]
    for address, message in seen.items():
        unsubscribe = message["headers"].get("List-Unsubscribe", "")
        if spec.name == "postmark":
            continue  # checked in test_postmark.py (broadcast streams manage it)
        url = re.search(r"<(https://[^>]+)>", unsubscribe)
        assert url, (address, message["headers"])
        assert unsubscribe == f"<{url.group(1)}>"  # no mailto: unless one is configured
        assert url.group(1) in message["html"] and url.group(1) in message["text"]
        assert message["headers"].get("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert "Reader 7" in seen["reader007@example.org"]["text"]


def test_a_dedicated_unsubscribe_mailbox_arrives_in_list_unsubscribe(
    make_project: Callable[..., Path], spec: Spec, server: FakeApi
) -> None:
    """With [newsletter] unsubscribe_mailto, every provider carries both targets, each
    recipient's own token in each."""
    if spec.name == "postmark":
        pytest.skip("Postmark's broadcast stream writes its own List-Unsubscribe")
    root = project(make_project, spec, server)
    config = root / "newsletter.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "[newsletter]\n",
            '[newsletter]\nunsubscribe_mailto = "optout@movementsolutions.example"\n',
        ),
        encoding="utf-8",
    )
    send(root, spec.env)
    seen = dict(received_messages(spec.name, server))
    assert set(seen) == set(AUDIENCE)
    for address, message in seen.items():
        unsubscribe = message["headers"].get("List-Unsubscribe", "")
        match = re.fullmatch(
            r"<(https://movementsolutions\.example/unsubscribe\?token=([\w.-]+))>, "
            r"<mailto:optout@movementsolutions\.example\?subject=unsubscribe%20([\w.-]+)>",
            unsubscribe,
        )
        assert match and match[2] == match[3], (address, unsubscribe)
        assert match[1] in message["text"]
        assert message["headers"].get("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"


def received_messages(name: str, server: FakeApi) -> Iterator[tuple[str, dict[str, Any]]]:
    """(address, {html, text, headers}) for every message the fake server received."""
    for request in server.requests:
        body = request.body
        if name == "postmark":
            for m in body:
                headers = {h["Name"]: h["Value"] for h in m["Headers"]}
                yield (
                    parseaddr(m["To"])[1],
                    {"html": m["HtmlBody"], "text": m["TextBody"], "headers": headers},
                )
        elif name == "sendgrid":
            html = body["content"][1]["value"]
            text = body["content"][0]["value"]
            for person in body["personalizations"]:
                subs = person["substitutions"]

                def fill(s: str, subs: dict[str, str] = subs) -> str:
                    for k, v in subs.items():
                        s = s.replace(k, v)
                    return s

                yield (
                    person["to"][0]["email"],
                    {
                        "html": fill(html),
                        "text": fill(text),
                        # As SendGrid assembles them: a personalization's over the request's.
                        "headers": {**body.get("headers", {}), **person["headers"]},
                    },
                )
        elif name == "mailgun":
            assert isinstance(server, FakeMailgun)
            for to in [v for k, v in body if k == "to"]:
                address = parseaddr(to)[1]
                filled = server.expand(request, address)
                headers = {k[2:]: v for k, v in filled.items() if k.startswith("h:")}
                yield address, {"html": filled["html"], "text": filled["text"], "headers": headers}
        elif name == "resend":
            for m in body:
                yield (
                    parseaddr(m["to"][0])[1],
                    {"html": m["html"], "text": m["text"], "headers": m["headers"]},
                )
        elif name == "brevo":
            for v in body["messageVersions"]:
                yield (
                    v["to"][0]["email"],
                    {"html": v["htmlContent"], "text": v["textContent"], "headers": v["headers"]},
                )
        elif name == "ses":
            raw = base64.b64decode(body["Content"]["Raw"]["Data"])
            mime = message_from_bytes(raw, policy=policy.default)
            text = mime.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            html = mime.get_body(("html",)).get_content()  # type: ignore[union-attr]
            headers = {k: str(v) for k, v in mime.items()}
            yield (
                body["Destination"]["ToAddresses"][0],
                {"html": html, "text": text, "headers": headers},
            )
        else:
            raise AssertionError(name)


def test_a_test_copy_goes_through_each_provider(
    make_project: Callable[..., Path], spec: Spec, server: FakeApi
) -> None:
    root = project(make_project, spec, server)
    settings = load_settings(root / "newsletter.toml")
    provider = create_provider(settings, spec.env)
    try:
        for _ in range(2):  # twice: a test copy is never mistaken for a replay
            message, result = send_test(
                root / SAMPLE_ISSUE, settings, provider, "connie@example.org", spec.env
            )
            assert result.outcome == "sent" and message.subject.startswith("[Test] ")
    finally:
        provider.close()
    assert server.delivered == Counter({"connie@example.org": 2})
    assert send(root, spec.env).counts.sent == len(AUDIENCE)  # outside the ledger


def test_dry_run_names_the_missing_secret(
    make_project: Callable[..., Path], spec: Spec, server: FakeApi
) -> None:
    root = project(make_project, spec, server)
    result = CliRunner().invoke(
        cli,
        ["--config", str(root / "newsletter.toml"), "send", "--dry-run", str(root / SAMPLE_ISSUE)],
        env={name: "" for name in spec.env},
    )
    assert result.exit_code == 2, result.output
    assert next(iter(spec.env)) in result.output
    assert not server.requests


ACCOUNT_REFUSALS = [
    (
        "ses",
        CallFault(
            400,
            {"X-Amzn-ErrorType": "AccountSuspendedException"},
            {"message": "Your account has been suspended."},
        ),
    ),
    (
        "ses",
        CallFault(
            400,
            {"X-Amzn-ErrorType": "SendingPausedException"},
            {"message": "Sending is paused for this account."},
        ),
    ),
    (
        "resend",
        CallFault(
            429,
            {},
            {
                "statusCode": 429,
                "name": "daily_quota_exceeded",
                "message": "You have reached your daily email quota.",
            },
        ),
    ),
    ("mailgun", CallFault(403, {}, {"message": "Domain is disabled"})),
    (
        "sendgrid",
        CallFault(
            403,
            {},
            {
                "errors": [
                    {"message": "The from address does not match a verified Sender Identity."}
                ]
            },
        ),
    ),
    ("brevo", CallFault(402, {}, {"code": "not_enough_credits", "message": "Not enough credits"})),
    ("postmark", CallFault(422, {}, {"ErrorCode": 412, "Message": "Account is pending"})),
]


@pytest.mark.parametrize(
    ("name", "fault"), ACCOUNT_REFUSALS, ids=[f"{n}-{f.status}" for n, f in ACCOUNT_REFUSALS]
)
def test_an_account_refusal_mid_send_stops_it_and_loses_nobody(
    make_project: Callable[..., Path], name: str, fault: CallFault
) -> None:
    spec = next(s for s in SPECS if s.name == name)
    server = spec.fake()
    try:
        root = project(make_project, spec, server)
        # The first call goes through; the second is refused for the whole account.
        server.faults = [CallFault(), fault]
        with_one_in_flight = root / "newsletter.toml"
        with_one_in_flight.write_text(
            with_one_in_flight.read_text() + "concurrency = 1\n", encoding="utf-8"
        )
        report = send(root, spec.env)
        assert report.status == "stopped" and report.exit_code == 2
        assert report.this_run.stopped
        assert_whole(report)
        assert report.counts.unknown == 0 and report.counts.failed == 0
        assert 1 <= report.counts.sent < len(AUDIENCE)
        assert sum(server.delivered.values()) == report.counts.sent
        report = send(root, spec.env)  # fixed: the next run finishes the rest
        assert report.status == "complete"
        assert server.delivered == Counter({a: 1 for a in AUDIENCE})
    finally:
        server.close()


def test_unknown_left_by_another_provider_is_not_replayed(
    make_project: Callable[..., Path],
) -> None:
    """Resend never saw Postmark's batch, so no key of ours can settle it: it stays unknown."""
    postmark_spec, resend_spec = SPECS[0], next(s for s in SPECS if s.name == "resend")
    postmark, resend = FakePostmark(), FakeResend()
    try:
        root = project(make_project, postmark_spec, postmark, timeout=1)
        postmark.faults = [CallFault(delay=2.0, accept=True)]
        first = send(root, postmark_spec.env)
        assert first.counts.unknown == 50
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and postmark.at_once:
            time.sleep(0.05)  # Postmark has processed the batch whose answer was lost
        assert sum(postmark.delivered.values()) == len(AUDIENCE)
        config = root / "newsletter.toml"
        config.write_text(
            config.read_text()
            .replace('name = "postmark"', 'name = "resend"')
            .replace(postmark.url, resend.url)
            .replace('message_stream = "outbound"', ""),
            encoding="utf-8",
        )
        second = send(root, resend_spec.env)
        assert second.counts.unknown == 50 and not second.unknown_resent_by_key
        assert not set(resend.delivered) & set(postmark.delivered)
    finally:
        postmark.close()
        resend.close()


def test_switching_provider_and_back_never_replays_the_other_ones_batch(
    make_project: Callable[..., Path],
) -> None:
    """Started on Resend, continued on Postmark (which lost an answer), back on Resend: the
    batch Postmark left unknown is not Resend's to replay, although the issue began there."""
    resend_spec = next(s for s in SPECS if s.name == "resend")
    postmark, resend = FakePostmark(), FakeResend()
    config: Path | None = None

    def use(server: FakeApi, name: str) -> None:
        assert config is not None
        text = re.sub(r'name = "\w+"', f'name = "{name}"', config.read_text(), count=1)
        # Only the provider's base_url: [newsletter] base_url is in every email (its signup link).
        head, provider = text.split("[provider]")
        provider = re.sub(r'base_url = "[^"]+"', f'base_url = "{server.url}"', provider)
        config.write_text(head + "[provider]" + provider, encoding="utf-8")

    try:
        root = project(make_project, resend_spec, resend, timeout=1)
        config = root / "newsletter.toml"
        config.write_text(config.read_text() + "concurrency = 1\n", encoding="utf-8")
        resend.faults = [
            CallFault(),
            CallFault(429, {}, {"name": "daily_quota_exceeded", "message": "quota"}),
        ]
        assert send(root, resend_spec.env).status == "stopped"  # Resend sent one batch

        use(postmark, "postmark")
        postmark.faults = [CallFault(delay=2.0, accept=True)]
        second = send(root, {"POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN})
        assert second.counts.unknown == 50 and not second.unknown_resent_by_key
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and postmark.at_once:
            time.sleep(0.05)  # Postmark has processed the batch whose answer was lost

        use(resend, "resend")
        third = send(root, resend_spec.env)
        assert third.counts.unknown == 50 and not third.unknown_resent_by_key
        both = Counter(resend.delivered) + Counter(postmark.delivered)
        assert both == Counter({a: 1 for a in AUDIENCE})  # everyone once, nobody twice
    finally:
        postmark.close()
        resend.close()


GARBLED_200 = {
    "postmark": {"Message": "OK"},  # not one result per message
    "mailgun": {"message": "Queued. Thank you."},  # no id
    "ses": {"Status": "ok"},  # no MessageId
    "resend": {"object": "batch"},  # no data
    "brevo": {"messageId": "<one@x>"},  # not one id per version
}


def test_an_unreadable_success_is_never_taken_for_sent(
    make_project: Callable[..., Path], spec: Spec, server: FakeApi
) -> None:
    """A 200 whose body does not say what was sent: unknown, never re-sent blindly; an
    idempotent provider asks again under the same key and gets a real answer."""
    if spec.name not in GARBLED_200:
        pytest.skip("SendGrid's success is an empty 202: there is no body to misread")
    root = project(make_project, spec, server)
    server.faults = [CallFault(200, {}, GARBLED_200[spec.name])]
    first = send(root, spec.env)
    assert_whole(first)
    assert max(server.delivered.values()) == 1
    if spec.idempotent:
        assert first.counts.sent == len(AUDIENCE) and first.counts.unknown == 0
    else:
        expected = 1 if spec.name == "ses" else 50  # SES: one message a call
        assert first.counts.unknown == expected
        assert first.counts.sent == len(AUDIENCE) - expected
        assert all(reason for _, reason in first.unknown)
        second = send(root, spec.env)
        assert second.counts.unknown == expected  # not re-sent behind the operator's back
        assert sum(server.delivered.values()) == len(AUDIENCE) - expected


BAD_SETTINGS = [
    ("ses", "", {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}, "[provider] region"),
    ("mailgun", 'domian = "x"', {"MAILGUN_API_KEY": "k"}, "[provider] domian"),
    ("resend", 'timeout = "soon"', {"RESEND_API_KEY": "k"}, "[provider] timeout"),
    ("brevo", "batch_size = 5000", {"BREVO_API_KEY": "k"}, "[provider] batch_size"),
    ("sendgrid", "", {}, "SENDGRID_API_KEY"),
]


@pytest.mark.parametrize(("name", "extra", "env", "named"), BAD_SETTINGS)
def test_a_bad_provider_setting_is_one_line_naming_it(
    make_project: Callable[..., Path], name: str, extra: str, env: dict[str, str], named: str
) -> None:
    root = make_project(provider=f'name = "{name}"\n{extra}', csv=messy_list())
    result = CliRunner().invoke(
        cli,
        ["--config", str(root / "newsletter.toml"), "send", "--dry-run", str(root / SAMPLE_ISSUE)],
        env={"AWS_REGION": "", **{k: "" for k in ("SENDGRID_API_KEY",)}, **env},
    )
    assert result.exit_code == 2, result.output
    assert named in result.output and "Traceback" not in result.output
    if named.startswith("[provider]"):
        assert "newsletter.toml" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_no_netrc_is_read_for_an_api_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API key is a header of ours: requests must not look up ~/.netrc per request (4 ms
    a call), nor add credentials from it to a call to the provider."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from pipeline.delivery.providers.http import HttpApi

    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password leaked\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    api = HttpApi("Postmark", f"http://127.0.0.1:{server.server_port}", {"X-Token": "t"})
    try:
        answer = api.post("/email/batch", data=b"[]")
    finally:
        api.close()
        server.shutdown()
    assert getattr(answer, "status_code", None) == 200
    assert seen == [None]
