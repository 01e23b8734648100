"""SIGTERM (``systemctl stop``) and SIGINT (Ctrl-C) stop a real send cleanly.

The send is a subprocess talking to a slow local server speaking Postmark's batch API.  A
signal lands while batches are in flight: the send stops claiming, waits for those answers,
records every one, and exits 75 with one line saying how to resume.  Nobody the server
answered for is left in flight or unknown, and the next run finishes with nobody twice.
(It used to be: SIGTERM killed at once; SIGINT waited, printed "Aborted!" and recorded none of
the answers, leaving 1,000 readers unknown.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import load_settings
from pipeline.delivery.providers import create_provider
from pipeline.delivery.stopping import StopRequest
from pipeline.ledger.lock import SendLock
from pipeline.sending import EXIT_INTERRUPTED, open_ledger, send_issue

from .conftest import REPO, SAMPLE_ISSUE
from .fake_providers import POSTMARK_TOKEN, CallFault, FakePostmark
from .test_kill import list_of
from .test_send import newsletter

SLUG = "2025-07-21-hip-rotation"
READERS = 400
ENV = {"POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN}


def default_signals() -> None:
    """In the child, before it runs: SIGINT and SIGHUP as a terminal gives them.  Tests run
    under `nohup` (or from a shell script's background job) inherit them ignored, and the
    sends then never saw the signals these tests send."""
    for number in (signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


def start_send(root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "send", SAMPLE_ISSUE, "--yes"],
        cwd=root,
        env={**os.environ, **ENV, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def ledger_rows(root: Path) -> list[dict[str, object]]:
    ledger = open_ledger(load_settings(root / "newsletter.toml"))
    try:
        return ledger.history(SLUG)
    finally:
        ledger.close()


def postmark_project(make_project: Callable[..., Path], server: FakePostmark) -> Path:
    return make_project(
        provider=f'name = "postmark"\nbase_url = "{server.url}"\nbatch_size = 20\nconcurrency = 2',
        csv=list_of(READERS),
    )


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_mid_send_records_every_answer_and_the_next_run_finishes(
    make_project: Callable[..., Path], signal_number: signal.Signals
) -> None:
    server = FakePostmark()
    server.latency = 0.4
    try:
        root = postmark_project(make_project, server)
        process = start_send(root)
        # Mid-send: some readers delivered, and a batch being answered right now.
        wait_for(lambda: sum(server.delivered.values()) >= 40 and server.at_once > 0, "a batch")
        process.send_signal(signal_number)
        out, err = process.communicate(timeout=60)
        assert process.returncode == EXIT_INTERRUPTED, (process.returncode, out, err)
        assert "Traceback" not in err and "Aborted" not in out + err
        name = signal.Signals(signal_number).name
        said = {
            "SIGINT": "Ctrl-C (SIGINT)",
            "SIGTERM": "SIGTERM (a shutdown, systemctl stop or kill)",
            "SIGHUP": "the terminal closing (SIGHUP)",  # she closed the window mid-send
        }
        resume = f"stopped by {said[name]}"
        assert resume in out and "every answer received was recorded" in out
        assert f"Resume with: newsletter send {SAMPLE_ISSUE} --yes" in out

        rows = ledger_rows(root)
        statuses = {str(row["status"]) for row in rows}
        assert statuses <= {"sent", "pending"}, statuses  # nothing in flight, nothing unknown
        for row in rows:
            got = server.delivered[str(row["email"])]
            assert got == (1 if row["status"] == "sent" else 0), row
        sent_before = sum(1 for row in rows if row["status"] == "sent")
        assert 40 <= sent_before < READERS

        # The next run sends the rest, and nobody twice.
        process = start_send(root)
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (out, err)
        assert f"audience {READERS}: sent {READERS}, failed 0, unknown 0, pending 0" in out
        assert len(server.delivered) == READERS and max(server.delivered.values()) == 1
    finally:
        server.close()


def test_a_second_signal_stops_waiting_and_records_the_batch_in_flight_as_unknown(
    make_project: Callable[..., Path],
) -> None:
    server = FakePostmark()
    server.latency = 0.3
    try:
        root = postmark_project(make_project, server)
        process = start_send(root)
        wait_for(lambda: sum(server.delivered.values()) >= 20, "a first batch")
        server.latency = 5  # the next answers are slow to come
        time.sleep(0.6)  # calls made before (0.3 s each) are answered by now
        wait_for(lambda: server.at_once > 0, "a slow batch")
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)  # "now"
        out, err = process.communicate(timeout=30)
        assert process.returncode == EXIT_INTERRUPTED, (out, err)
        rows = ledger_rows(root)
        unknown = [row for row in rows if row["status"] == "unknown"]
        assert unknown and (
            "the send was stopped by SIGTERM (a shutdown, systemctl stop or kill)"
            in str(unknown[0]["reason"])
        )
        assert not [row for row in rows if row["status"] == "inflight"]
        # Postmark can say which it accepted: the next run asks it (issue 12), so she is not
        # told to look each one up by hand.
        assert "may or may not have been delivered" in out
        assert "the next run asks postmark about them again" in out
        assert "look each one up" not in out
    finally:
        server.close()


def test_a_batch_waiting_to_be_retried_is_not_retried_after_a_stop(
    make_project: Callable[..., Path],
) -> None:
    """The stop comes while a batch waits out a 503: it is not tried again, and its readers
    stay pending (certainly not delivered), never unknown."""
    server = FakePostmark()
    server.faults = [CallFault(status=503)] * 3
    try:
        root = postmark_project(make_project, server)
        settings = load_settings(root / "newsletter.toml")
        stop = StopRequest()
        waits: list[float] = []

        def sleep(seconds: float) -> None:  # the wait before a retry: a signal arrives
            waits.append(seconds)
            stop.request("SIGTERM")

        provider = create_provider(settings, ENV)
        try:
            report = send_issue(
                root / SAMPLE_ISSUE, settings, provider, environ=ENV, sleep=sleep, stop=stop
            )
        finally:
            provider.close()
        assert report is not None and report.interrupted == "SIGTERM"
        assert report.exit_code == EXIT_INTERRUPTED
        assert waits  # it was waiting to retry
        assert report.counts.unknown == 0 and report.counts.sent == sum(server.delivered.values())
        assert report.counts.pending == READERS - report.counts.sent
        assert len(server.requests) == report.counts.sent // 20  # no retry went out
    finally:
        server.close()


def test_ctrl_c_at_the_question_is_a_no(make_project: Callable[..., Path]) -> None:
    """Ctrl-C at "Send ... ? [y/N]" printed click's "Aborted!": she could not tell whether
    anything had gone out.  It is a "no": "not sent", exit 1, nothing recorded."""
    import pty

    root = make_project()
    controller, terminal = pty.openpty()  # stdin is a terminal, so the question is asked
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "send", SAMPLE_ISSUE],
            cwd=root,
            env={**os.environ, **ENV, "PYTHONPATH": str(REPO)},
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=default_signals,
        )
        assert process.stdout is not None
        asked = ""
        while "[y/N]: " not in asked:  # the prompt has no newline: read it a character at once
            char = process.stdout.read(1)
            assert char, asked
            asked += char
        # A person presses Ctrl-C while it waits for the answer: a signal that arrived just
        # before the read would only be seen once the read returns (never, here).
        wchan = Path(f"/proc/{process.pid}/wchan")
        wait_for(lambda: wchan.read_text() in ("wait_woken", "n_tty_read"), "the read")
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, err = process.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    assert process.returncode == 1, (out, err)
    assert "not sent" in out and "Aborted" not in out + err and "Traceback" not in err
    assert not (root / "outbox").exists() or not list((root / "outbox").rglob("*.eml"))


def test_status_says_a_stopped_send_is_not_running_and_how_to_go_on(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # After Ctrl-C, a closed terminal or a kill, `status` said "sending" as if it still were:
    # nothing goes on until a run picks it up, so it says so, with the command.
    root = make_project(csv=list_of(30))
    settings = load_settings(root / "newsletter.toml")
    stop = StopRequest()
    stop.request("SIGINT")  # before the first batch: everyone still to send
    provider = create_provider(settings, {})
    try:
        report = send_issue(root / SAMPLE_ISSUE, settings, provider, environ={}, stop=stop)
    finally:
        provider.close()
    assert report is not None and report.counts.pending == 30
    monkeypatch.chdir(root)  # where she runs it: the draft is named as she would type it
    args = ["status", SAMPLE_ISSUE]
    result = CliRunner().invoke(cli, args)
    assert result.output.splitlines()[1:] == [
        "  audience 30: sent 0, failed 0, unknown 0, pending 30",
        f"  not running now (it was stopped): newsletter send {SAMPLE_ISSUE} --yes goes on from"
        " here (cron does, if it is due)",
    ], result.output
    # While a send holds the lock, it is running: no such line.
    with SendLock(settings.state_dir):
        running = CliRunner().invoke(cli, args)
    assert "not running now" not in running.output
    assert "sending" in running.output.splitlines()[0]


def test_a_send_under_nohup_outlives_the_terminal(make_project: Callable[..., Path]) -> None:
    # Stopping on SIGHUP must not undo `nohup`, which ignores it so the send can outlive the
    # terminal: the send goes on to the end.
    server = FakePostmark()
    server.latency = 0.2
    try:
        root = postmark_project(make_project, server)
        process = subprocess.Popen(
            ["nohup", sys.executable, "-m", "pipeline", "send", SAMPLE_ISSUE, "--yes"],
            cwd=root,
            env={**os.environ, **ENV, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: sum(server.delivered.values()) >= 40, "a batch")
        process.send_signal(signal.SIGHUP)
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (out, err)
        assert f"audience {READERS}: sent {READERS}, failed 0, unknown 0, pending 0" in out
        assert max(server.delivered.values()) == 1
    finally:
        server.close()


def test_ctrl_c_before_sending_began_says_not_sent(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the draft and a 300,000-row list were being checked (a second or two,
    before the send takes signals itself) printed click's "Aborted!", exit 1."""
    import pipeline.sending

    root = make_project()

    def checking_the_list(*args: object) -> None:
        raise KeyboardInterrupt  # what Ctrl-C raises, there

    monkeypatch.setattr(pipeline.sending, "prepare", checking_the_list)
    code, out, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == EXIT_INTERRUPTED, out + err
    assert "not sent: stopped by Ctrl-C before sending began; nothing was sent" in err
    assert "Aborted" not in out + err
    assert not (root / ".newsletter" / "ledger.sqlite3").exists()


def test_ctrl_c_while_the_command_loads_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C in the first few tenths of a second, while Python loads the CLI, was a
    KeyboardInterrupt traceback."""
    import types

    from pipeline import entry

    class Loading(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            raise KeyboardInterrupt  # what Ctrl-C raises, in the middle of an import

    monkeypatch.setitem(sys.modules, "pipeline.cli", Loading("pipeline.cli"))
    with pytest.raises(SystemExit) as exited:
        entry.main()
    assert exited.value.code == 130
    assert capsys.readouterr().err == "stopped by Ctrl-C while starting: nothing was done\n"
