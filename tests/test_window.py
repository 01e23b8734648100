"""The kill window: how many batches the delivery loop keeps in flight (``Window``).

A batch in flight at a SIGKILL ends ``unknown``; so the loop starts with one batch in flight,
opens one more after each fast answer (up to ``concurrency``) and halves them after a slow
one.  Checked through a real local server speaking Postmark's batch API: the server counts
the calls it is answering at once, so "readers in flight" is calls at once x batch size.
No timing is asserted: the server's latency is set well on one side of ``slow_answer``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from pipeline.config import load_settings
from pipeline.delivery.loop import SLOW_ANSWER, DeliveryPolicy, Window
from pipeline.delivery.providers import create_provider
from pipeline.errors import ConfigError
from pipeline.sending import SendReport, send_issue

from .conftest import SAMPLE_ISSUE
from .fake_providers import POSTMARK_TOKEN, CallFault, FakePostmark
from .test_smtp import Relay, free_port

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


def send(
    make_project: Callable[..., Path], server: FakePostmark, count: int, extra: str
) -> SendReport:
    root = make_project(
        provider=f'name = "postmark"\nbase_url = "{server.url}"\ntimeout = 5\n{extra}',
        csv=list_of(count),
    )
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


def test_slow_answers_keep_one_batch_in_flight(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    # Every answer takes 0.3 s, twice the default slow_answer: one batch of 10 at a time,
    # so a kill could leave 10 readers unknown, not 40.
    postmark.latency = 2 * SLOW_ANSWER
    report = send(make_project, postmark, 60, "batch_size = 10\nconcurrency = 4")
    assert report.counts.sent == 60 and len(postmark.requests) == 6
    assert postmark.most_at_once == 1
    assert all(n == 1 for n in postmark.delivered.values())


def test_fast_answers_open_up_to_full_concurrency(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    # 0.2 s a call, well under a slow_answer of 30 s: after three answers four are in flight.
    postmark.latency = 0.2
    report = send(make_project, postmark, 120, "batch_size = 10\nconcurrency = 4\nslow_answer = 30")
    assert report.counts.sent == 120
    assert postmark.most_at_once == 4
    assert all(n == 1 for n in postmark.delivered.values())


def test_a_provider_pushing_back_keeps_one_batch_in_flight(
    make_project: Callable[..., Path], postmark: FakePostmark
) -> None:
    # Answers well within slow_answer, but each batch's first call is refused with 429 (then
    # retried and accepted): a provider pushing back counts as slow, so one batch at a time.
    postmark.latency = 0.2
    postmark.faults = [CallFault(429, {"Retry-After": "1"}), CallFault()] * 6
    report = send(make_project, postmark, 60, "batch_size = 10\nconcurrency = 4\nslow_answer = 30")
    assert report.counts.sent == 60 and len(postmark.requests) == 6
    assert postmark.most_at_once == 1
    assert all(n == 1 for n in postmark.delivered.values())


class SlowRelay(Relay):
    """An SMTP relay taking ``per_message`` seconds over each message, counting how many
    messages it is taking at once (one per connection: SMTP has one in flight each)."""

    def __init__(self, per_message: float) -> None:
        super().__init__()
        self.per_message = per_message
        self.at_once = self.most_at_once = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.at_once += 1
        self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            await asyncio.sleep(self.per_message)
            return await super().handle_DATA(server, session, envelope)
        finally:
            self.at_once -= 1


@pytest.mark.parametrize(("per_message", "most"), [(0.02, 4), (0.3, 1)])
def test_smtp_is_timed_per_message_not_per_batch(
    make_project: Callable[..., Path], per_message: float, most: int
) -> None:
    """SMTP sends a batch as one transaction per message: a batch of 10 at 0.02 s each takes
    0.2 s, over a slow_answer of 0.1 s, yet the relay is fast; each message is timed, so the
    window opens (4 connections at once).  At 0.3 s a message the relay is slow: one."""
    relay = SlowRelay(per_message)
    port = free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        root = make_project(
            provider=f'name = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
            "timeout = 10\nbatch_size = 10\nconcurrency = 4\nslow_answer = 0.1",
            csv=list_of(120 if most > 1 else 20),
        )
        settings = load_settings(root / "newsletter.toml")
        provider = create_provider(settings, {})
        try:
            report = send_issue(
                root / SAMPLE_ISSUE, settings, provider, environ={}, sleep=lambda s: None
            )
        finally:
            provider.close()
    finally:
        controller.stop()
    assert report is not None and report.counts.sent == (120 if most > 1 else 20)
    if most == 1:
        assert relay.most_at_once == 1
    else:  # four workers each in a message of its own: at least two overlap, in practice 4
        assert relay.most_at_once >= 2


def test_the_window_rule() -> None:
    window = Window(most=4, slow=0.15)
    assert window.open == 1  # a send starts with one batch in flight
    for expected in (2, 3, 4, 4):
        window.answered(0.05)
        assert window.open == expected
    window.answered(0.5)  # one slow answer halves it
    assert window.open == 2
    window.answered(0.05)
    assert window.open == 3
    window.answered(0.5)
    window.answered(0.5)
    assert window.open == 1  # steady slow answers: one batch at a time
    window.answered(0.5)
    assert window.open == 1 and window.widest == 4
    for _ in range(3):
        window.answered(0.05)
    assert window.open == 4
    window.answered(0.05, struggled=True)  # retried or lost: slow, whatever its time
    assert window.open == 2
    assert Window(most=1, slow=0.15).open == 1


def test_slow_answer_is_a_setting_with_a_clear_error(make_project: Callable[..., Path]) -> None:
    from pipeline.delivery.provider import Options

    root = make_project(provider='name = "postmark"\nslow_answer = "fast"')
    settings = load_settings(root / "newsletter.toml")
    provider = create_provider(settings, ENV)
    try:
        with pytest.raises(ConfigError, match="slow_answer"):
            DeliveryPolicy.from_options(Options(settings, {}), provider)
        # TOML's nan is not below 0: it was taken, and then no answer was ever slow.
        for odd in ("nan", "inf", "-inf"):
            bad = make_project(provider=f'name = "postmark"\nslow_answer = {odd}')
            with pytest.raises(ConfigError, match=r"\[provider\] slow_answer: must be a number"):
                DeliveryPolicy.from_options(
                    Options(load_settings(bad / "newsletter.toml"), {}), provider
                )
        ok = make_project(provider='name = "postmark"\nslow_answer = 2.5')
        policy = DeliveryPolicy.from_options(
            Options(load_settings(ok / "newsletter.toml"), {}), provider
        )
        assert policy.slow_answer == 2.5
    finally:
        provider.close()
