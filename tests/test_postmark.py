"""The postmark provider against a local server speaking Postmark's batch API, with faults."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import load_settings
from pipeline.delivery.providers import create_provider
from pipeline.sending import SendReport, open_ledger, send_issue

from .conftest import SAMPLE_ISSUE
from .fake_providers import POSTMARK_TOKEN, CallFault, FakePostmark

ENV = {"POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN}


@pytest.fixture
def postmark() -> Iterator[FakePostmark]:
    server = FakePostmark()
    try:
        yield server
    finally:
        server.close()


def list_of(count: int) -> str:
    rows = [f"reader{i:04d}@example.org,Reader{i},,," for i in range(count)]
    return "email,first_name,last_name,status,tags\n" + "\n".join(rows) + "\n"


def project(
    make_project: Callable[..., Path], server: FakePostmark, count: int, extra: str = ""
) -> Path:
    return make_project(
        provider=f'name = "postmark"\nbase_url = "{server.url}"\ntimeout = 2\n{extra}',
        csv=list_of(count),
    )


def send(root: Path, sleeps: list[float] | None = None, **kwargs: Any) -> SendReport:
    settings = load_settings(root / "newsletter.toml")
    provider = create_provider(settings, ENV)
    try:
        report = send_issue(
            root / SAMPLE_ISSUE,
            settings,
            provider,
            environ=ENV,
            sleep=(sleeps.append if sleeps is not None else lambda s: None),
            **kwargs,
        )
    finally:
        provider.close()
    assert report is not None
    return report


def test_batches_follow_the_documented_shape(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    root = project(make_project, postmark, 1200)
    report = send(root)
    assert len(postmark.requests) == 5  # default batches of 250
    postmark.requests.clear()
    postmark.delivered.clear()
    root = project(make_project, postmark, 1200, "batch_size = 500")
    report = send(root)
    assert report.counts.sent == 1200 and report.exit_code == 0
    assert sorted(len(r.body) for r in postmark.requests) == [200, 500, 500]
    request = next(r for r in postmark.requests if r.body[0]["To"].startswith("Reader0 "))
    assert request.path == "/email/batch"
    assert request.headers["X-Postmark-Server-Token"] == POSTMARK_TOKEN
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"
    first = request.body[0]
    assert first["From"] == "Dr. Connie Hutchins <connie@movementsolutions.example>"
    assert first["To"] == "Reader0 <reader0000@example.org>"
    assert first["ReplyTo"] == "connie@movementsolutions.example"
    assert first["Subject"] == "Why Hip Rotation Matters More Than You Think"
    assert first["MessageStream"] == "broadcast"
    assert first["TrackOpens"] is False and first["TrackLinks"] == "None"
    assert "Hi Reader0," in first["TextBody"] and "Hi Reader0," in first["HtmlBody"]
    # Broadcast stream: Postmark's own unsubscribe link and headers, none of ours.
    names = [h["Name"] for h in first["Headers"]]
    assert "List-Unsubscribe" not in names and "List-Unsubscribe-Post" not in names
    assert "X-Newsletter-Issue" in names and "Message-ID" in names
    assert 'href="{{{ pm:unsubscribe }}}"' in first["HtmlBody"]
    assert "Unsubscribe with one click: {{{ pm:unsubscribe }}}" in first["TextBody"]
    assert all(n == 1 for n in postmark.delivered.values()) and len(postmark.delivered) == 1200


def test_own_unsubscribe_on_a_stream_that_allows_it(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    root = project(
        make_project, postmark, 2, 'message_stream = "newsletter"\nmanaged_unsubscribe = false'
    )
    send(root)
    first = postmark.requests[0].body[0]
    headers = {h["Name"]: h["Value"] for h in first["Headers"]}
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<https://movementsolutions.example/unsubscribe")
    assert first["MessageStream"] == "newsletter"


def test_inactive_and_invalid_recipients_fail_alone(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    root = project(make_project, postmark, 10)
    postmark.recipient_errors = {"reader0003@example.org": 406, "reader0007@example.org": 300}
    report = send(root)
    assert (report.counts.sent, report.counts.failed) == (8, 2)
    reasons = dict(report.failures)
    assert reasons["reader0003@example.org"].startswith("inactive recipient (Postmark 406)")
    assert reasons["reader0007@example.org"].startswith("invalid email request (Postmark 300)")
    assert report.exit_code == 1


def test_429_is_retried_after_retry_after(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    root = project(make_project, postmark, 10)
    postmark.faults = [
        CallFault(
            status=429,
            headers={"Retry-After": "7"},
            body={"ErrorCode": 429, "Message": "Rate limit exceeded"},
        ),
    ]
    sleeps: list[float] = []
    report = send(root, sleeps)
    assert report.counts.sent == 10
    assert len(sleeps) == 1 and sleeps[0] >= 7
    assert all(n == 1 for n in postmark.delivered.values())


@pytest.mark.parametrize(
    "when",
    [
        "Sun Nov  6 08:49:37 2094",  # asctime: no zone written, GMT by definition
        "Sat, 06 Nov 2094 08:49:37 -0000",  # "-0000": email.utils reads it as no zone
    ],
)
def test_a_429_whose_retry_after_date_has_no_zone_is_still_retried(
    make_project: Callable[..., Path], postmark: FakePostmark, when: str
) -> None:
    """RFC 9110 section 5.6.7: a recipient MUST accept all three HTTP-date formats, and the
    asctime one writes no zone (it is GMT).  Read as a date without a zone, it could not be
    compared with now: the 429 became 'the postmark provider failed', its batch ``unknown``
    (certainly not sent, yet left for the operator) and the send stopped."""
    root = project(make_project, postmark, 10)
    postmark.faults = [
        CallFault(
            status=429,
            headers={"Retry-After": when},
            body={"ErrorCode": 429, "Message": "Rate limit exceeded"},
        ),
    ]
    sleeps: list[float] = []
    report = send(root, sleeps)
    assert (report.counts.sent, report.counts.unknown) == (10, 0)
    assert report.this_run.stopped is None
    # A date decades away: waited as long as a retry may (max_retry_seconds), not forever.
    assert len(sleeps) == 1 and sleeps[0] == 300
    assert all(n == 1 for n in postmark.delivered.values())


def test_5xx_is_retried_with_backoff(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    root = project(make_project, postmark, 10)
    postmark.faults = [CallFault(status=500), CallFault(status=503)]
    sleeps: list[float] = []
    report = send(root, sleeps)
    assert report.counts.sent == 10 and len(sleeps) == 2
    assert all(0 <= s <= 60 for s in sleeps)


def test_a_timeout_is_unknown_never_blindly_resent(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    root = project(make_project, postmark, 10, "batch_size = 5\nconcurrency = 1")
    # The first call is processed but answered too late: the client cannot know.
    postmark.faults = [CallFault(delay=3.0, accept=True)]
    report = send(root)
    assert (report.counts.sent, report.counts.unknown) == (5, 5)
    assert "got no answer from Postmark" in report.unknown[0][1]
    assert report.exit_code == 1
    # The server finishes the late call after the client gave up on it.
    deadline = time.monotonic() + 10
    while sum(postmark.delivered.values()) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(postmark.delivered.values()) == 10

    # The next run asks Postmark's search before sending anything: all five were accepted.
    again = send(root)
    assert again.asked is not None and (again.asked.found, again.asked.resent) == (5, 0)
    assert again.this_run.sent == 0 and again.counts.unknown == 0 and again.counts.sent == 10
    assert sum(postmark.delivered.values()) == 10 and again.exit_code == 0
    ids = {row["provider_id"] for row in ledger_rows(root)}
    assert len(ids) == 10 and all(i.startswith("pm-") for i in ids)


def test_unknown_never_accepted_is_sent_once_the_search_grace_has_passed(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    root = project(make_project, postmark, 10, "batch_size = 5\nconcurrency = 1")
    # The first call reaches Postmark but is never processed, and gets no answer in time.
    postmark.faults = [CallFault(delay=3.0, accept=False)]
    assert send(root).counts.unknown == 5
    # Too soon to tell (Postmark's search may lag): they wait, nothing is sent.
    waiting = send(root)
    assert waiting.asked is not None and waiting.asked.waiting == 5
    assert waiting.counts.unknown == 5 and sum(postmark.delivered.values()) == 5
    # Past the grace period, not found means never accepted: sent now, once.
    config = root / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + "search_grace = 0\n", encoding="utf-8")
    settled = send(root)
    assert settled.asked is not None and settled.asked.resent == 5
    assert settled.counts.sent == 10 and settled.counts.unknown == 0
    assert max(postmark.delivered.values()) == 1 and sum(postmark.delivered.values()) == 10


def test_a_search_that_fails_leaves_unknown_for_later(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    root = project(make_project, postmark, 10, "batch_size = 5\nconcurrency = 1\nsearch_grace = 0")
    postmark.faults = [CallFault(delay=3.0, accept=False)]
    assert send(root).counts.unknown == 5
    settings = load_settings(root / "newsletter.toml")
    provider = create_provider(settings, ENV)
    provider.api.session.headers["X-Postmark-Server-Token"] = "revoked"  # type: ignore[attr-defined]
    try:
        report = send_issue(
            root / SAMPLE_ISSUE, settings, provider, environ=ENV, sleep=lambda s: None
        )
    finally:
        provider.close()
    assert report is not None and report.asked is not None
    assert report.asked.problem and "HTTP 401" in report.asked.problem
    assert report.counts.unknown == 5 and sum(postmark.delivered.values()) == 5


def ledger_rows(root: Path) -> list[dict[str, Any]]:
    ledger = open_ledger(load_settings(root / "newsletter.toml"))
    try:
        return ledger.history("2025-07-21-hip-rotation")
    finally:
        ledger.close()


def test_a_bad_token_stops_the_send(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    root = project(make_project, postmark, 10)
    settings = load_settings(root / "newsletter.toml")
    provider = create_provider(settings, {"POSTMARK_SERVER_TOKEN": "wrong"})
    report = send_issue(root / SAMPLE_ISSUE, settings, provider, environ={}, sleep=lambda s: None)
    assert report is not None
    assert report.this_run.stopped == (
        "Postmark refused the request (HTTP 401, error 10: Bad or missing Server API token.):"
        " check POSTMARK_SERVER_TOKEN in the environment"
    )
    assert report.counts.pending == 10 and report.exit_code == 2
    assert "wrong" not in report.this_run.stopped  # never print a secret
    assert send(root).counts.sent == 10  # fixed token: resumes


def test_an_account_error_mid_batch_keeps_what_was_sent(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    root = project(make_project, postmark, 6)
    postmark.recipient_errors = {"reader0004@example.org": 412}
    report = send(root)
    assert report.this_run.stopped and "account is pending (error 412)" in report.this_run.stopped
    assert (report.counts.sent, report.counts.pending) == (5, 1)


def test_many_failures_in_a_row_pause_the_send(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    root = project(
        make_project, postmark, 20, "batch_size = 2\nmax_consecutive_failures = 4\nconcurrency = 1"
    )
    postmark.recipient_errors = {f"reader{i:04d}@example.org": 406 for i in range(2, 20)}
    report = send(root)
    assert report.this_run.paused and "4 recipients in a row failed" in report.this_run.paused
    assert (report.counts.sent, report.counts.failed, report.counts.pending) == (2, 4, 14)


def test_unreachable_api_pauses_without_losing_anyone(make_project: Callable[..., Path]) -> None:
    root = make_project(
        provider='name = "postmark"\nbase_url = "http://127.0.0.1:9"\nmax_attempts = 3',
        csv=list_of(4),
    )
    sleeps: list[float] = []
    report = send(root, sleeps)
    assert report.this_run.paused and "could not reach Postmark" in report.this_run.paused
    # In words, not requests' class name.
    assert "ConnectionError" not in report.this_run.paused
    assert "(the connection failed or was refused: check the internet connection)" in (
        report.this_run.paused
    )
    assert report.counts.pending == 4 and len(sleeps) == 2


def test_several_batches_are_in_flight_at_once(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    # Answers within slow_answer: the window opens to full concurrency (tests/test_window.py).
    root = project(make_project, postmark, 80, "batch_size = 10\nconcurrency = 4\nslow_answer = 30")
    postmark.latency = 0.2
    report = send(root)
    assert report.counts.sent == 80 and len(postmark.requests) == 8
    assert postmark.most_at_once == 4
    assert all(n == 1 for n in postmark.delivered.values())


def test_prebuilt_json_decodes_to_exactly_the_message(make_project: Callable[..., Path]) -> None:
    import json

    from pipeline.audience.subscribers import Subscriber, scan
    from pipeline.content.issue import load_issue
    from pipeline.delivery.providers.postmark import PostmarkProvider
    from pipeline.messages.compose import MessageFactory
    from pipeline.render.compile import compile_issue

    hostile = (
        "email,first_name,last_name\n"
        'q@example.org,"Quote "" back\\\\slash </script> \u2028 é 🏃",Tab\tX\n'
    )
    root = make_project(provider='name = "postmark"', csv=hostile)
    settings = load_settings(root / "newsletter.toml")
    compiled = compile_issue(load_issue(root / SAMPLE_ISSUE, settings.timezone), settings)
    provider = create_provider(settings, ENV)
    assert isinstance(provider, PostmarkProvider)
    factory = MessageFactory(compiled, settings, b"k", managed_unsubscribe=None)
    (person,) = [s for s in scan(settings.subscribers) if isinstance(s, Subscriber)]
    message = factory.build(person.key, person.email, person.fields)
    (decoded,) = json.loads(provider.batch_body([message]))
    assert decoded == {
        **provider.payload(message),
        "HtmlBody": message.html,
        "TextBody": message.text,
    }
    assert "Quote &#34; back\\\\slash &lt;/script&gt;" in decoded["HtmlBody"]
    provider.close()


def test_json_bytes_is_utf8_json_and_keeps_a_lone_surrogate_as_an_escape() -> None:
    """Request heads are encoded by orjson (UTF-8); a lone surrogate, which UTF-8 cannot
    hold and orjson refuses, is written as json.dumps writes it, not an error mid-send."""
    import json

    from pipeline.delivery.providers.http import json_bytes

    value = {"To": "Zoë 🏃 <z@example.org>", "Subject": 'a "quoted" \\ </script>'}
    assert json_bytes(value).decode("utf-8") != json.dumps(value)  # UTF-8, not escapes
    assert json.loads(json_bytes(value)) == value
    odd = {"Subject": "half \ud83c of a pair"}
    assert json_bytes(odd) == json.dumps(odd).encode("ascii")
    assert json.loads(json_bytes(odd)) == odd
