"""The whole job on the embedded outbox: send once, resume, refuse edits, lock, status."""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import load_settings
from pipeline.delivery.providers import create_provider
from pipeline.ledger.lock import SendLock
from pipeline.sending import open_ledger, send_issue

from .conftest import MESSY_AUDIENCE, MESSY_CSV, REPO, SAMPLE_ISSUE


def newsletter(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI from inside the project folder, as a person would."""
    old = Path.cwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(cli, list(args), obj={}, env=env)
    finally:
        os.chdir(old)
    return result.exit_code, result.stdout, result.stderr


def outbox_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "outbox" / "2025-07-21-hip-rotation").glob("*.eml"))


def test_sample_send_then_nothing_on_the_second_run(make_project: Callable[..., Path]) -> None:
    root = make_project()
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0, out
    assert "2025-07-21-hip-rotation: complete" in out
    assert "audience 9: sent 9, failed 0, unknown 0, pending 0" in out
    assert "skipped 3 rows: bounced 1, complained 1, unsubscribed 1" in out
    files = outbox_files(root)
    assert len(files) == 9 and "ada.runner@example.org.eml" in files
    stamps = {p: p.stat().st_mtime_ns for p in (root / "outbox").rglob("*.eml")}

    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0
    assert "this run: 0 written to outbox/2025-07-21-hip-rotation/, failed 0, unknown 0" in out
    assert {p: p.stat().st_mtime_ns for p in (root / "outbox").rglob("*.eml")} == stamps


def test_messy_list_through_the_outbox(make_project: Callable[..., Path]) -> None:
    root = make_project(csv=MESSY_CSV)
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0, out
    assert outbox_files(root) == sorted(f"{a}.eml" for a in MESSY_AUDIENCE)
    assert "invalid row" in out and f"{root / 'subscribers.csv'}:15: status:" in out
    raw = (root / "outbox/2025-07-21-hip-rotation/crlf@example.org.eml").read_bytes()
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["Bcc"] is None
    assert "Mallory Bcc: victim@example.net" in str(message["To"])


def test_status_json_has_exactly_the_keys(make_project: Callable[..., Path]) -> None:
    root = make_project()
    (row,) = json.loads(newsletter(root, "status", "--json")[1])
    assert (row["state"], row["audience"], row["when"]) == ("missed", 0, None)
    newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    code, out, _ = newsletter(root, "status", SAMPLE_ISSUE, "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert set(row) == {
        *("issue", "audience", "sent", "failed", "unknown", "pending", "when"),
        *("state", "send_at", "provider_says"),
    }
    assert row["provider_says"] == {}  # no provider events for the outbox
    assert (row["issue"], row["audience"], row["sent"], row["pending"]) == (
        "2025-07-21-hip-rotation",
        9,
        9,
        0,
    )
    code, out, _ = newsletter(root, "status")
    assert "2025-07-21-hip-rotation: complete" in out
    # --help names every key the JSON has
    help_text = " ".join(newsletter(root, "status", "--help")[1].split())
    assert all(key in help_text for key in row), help_text


def test_an_edited_issue_is_refused_unless_forced(make_project: Callable[..., Path]) -> None:
    root = make_project()
    settings = load_settings(root / "newsletter.toml")
    provider = create_provider(settings, {})
    # Start a send that stops after the first batch of 4: some sent, some pending.
    settings_text = (root / "newsletter.toml").read_text(encoding="utf-8")
    (root / "newsletter.toml").write_text(
        settings_text + "batch_size = 4\nmax_consecutive_failures = 1\n", encoding="utf-8"
    )
    ledger_before = []
    original = provider.send

    def fail_after_first(messages):  # type: ignore[no-untyped-def]
        ledger_before.append(len(messages))
        if len(ledger_before) > 1:
            from pipeline.delivery.provider import BatchResult, Outcome

            return BatchResult.all(messages, Outcome.FAILED, "mailbox full")
        return original(messages)

    provider.send = fail_after_first  # type: ignore[method-assign]
    report = send_issue(
        root / SAMPLE_ISSUE, load_settings(root / "newsletter.toml"), provider, environ={}
    )
    assert report is not None and report.counts.sent == 4 and report.this_run.paused

    issue = root / SAMPLE_ISSUE
    issue.write_text(
        issue.read_text(encoding="utf-8").replace("Tight hips", "Stiff hips"), encoding="utf-8"
    )
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2
    assert "changed after its sending began (4 already sent)" in err and "--force" in err
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes", "--force")
    assert "audience 9: sent 5, failed 4" in out  # 4 failed in the stopped batch, rest sent


def test_an_issue_edited_after_it_went_to_everyone_says_nobody_is_left(
    make_project: Callable[..., Path],
) -> None:
    # Once told to "re-run with --force to send the edited version to the rest": there was
    # no rest, and --force then sent nothing, without a word about why.
    root = make_project()
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
    issue = root / SAMPLE_ISSUE
    issue.write_text(issue.read_text(encoding="utf-8") + "\nP.S. One more thing.\n", "utf-8")
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2 and err.count("\n") == 1
    assert (
        "the issue changed after its sending was complete (9 sent): nobody is left to send" in err
    )
    assert 'newsletter new "Title"' in err
    assert "the rest" not in err


def test_someone_who_unsubscribes_mid_send_gets_no_more(make_project: Callable[..., Path]) -> None:
    root = make_project()
    (root / "newsletter.toml").write_text(
        (root / "newsletter.toml").read_text(encoding="utf-8")
        + "batch_size = 2\nmax_consecutive_failures = 1\n",
        encoding="utf-8",
    )
    settings = load_settings(root / "newsletter.toml")
    provider = create_provider(settings, {})
    calls = []
    original = provider.send

    def first_batch_only(messages):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) > 1:
            from pipeline.delivery.provider import BatchResult, Outcome

            return BatchResult.all(messages, Outcome.RETRY, "relay down")
        return original(messages)

    provider.send = first_batch_only  # type: ignore[method-assign]
    report = send_issue(root / SAMPLE_ISSUE, settings, provider, environ={}, sleep=lambda s: None)
    assert report is not None and report.counts.sent == 2 and report.counts.pending == 7
    assert report.this_run.paused and "could not be sent after 5 tries" in report.this_run.paused

    # Hugo (pending) opts out through his link while the send is paused.
    ledger = open_ledger(settings)
    assert ledger.issue("2025-07-21-hip-rotation") is not None
    ledger.close()
    from pipeline.messages.secret import load_secret
    from pipeline.messages.unsubscribe import make_token

    token = make_token(load_secret(settings.state_dir, {}), "hugo.desk@example.org")
    url = f"https://movementsolutions.example/unsubscribe?token={token}"
    assert newsletter(root, "unsubscribe", url)[0] == 0
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0, out
    assert "audience 8: sent 8" in out and "withdrawn: 1" in out
    assert "hugo.desk@example.org.eml" not in outbox_files(root)


def test_forged_unsubscribe_changes_nothing(make_project: Callable[..., Path]) -> None:
    root = make_project()
    before = (root / "subscribers.csv").read_bytes()
    code, _, err = newsletter(root, "unsubscribe", "YWRh.bm90LWEtc2lnbmF0dXJl")
    assert code == 2 and "not a valid unsubscribe token" in err
    assert (root / "subscribers.csv").read_bytes() == before


def test_dry_run_sends_and_records_nothing(make_project: Callable[..., Path]) -> None:
    root = make_project(csv=MESSY_CSV)
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--dry-run")
    assert code == 0
    assert "audience: 5 subscribers" in out and "would start a new send" in out
    assert "To: Ada Runner <ada@example.org>" in out
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in out
    assert "nothing was sent" in out
    assert not (root / "outbox").exists()
    assert not (root / ".newsletter" / "ledger.sqlite3").exists()


def test_test_copy_goes_outside_the_ledger(make_project: Callable[..., Path]) -> None:
    root = make_project()
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--to", "Ada.Runner@example.org")
    assert code == 0 and "test copy to Ada Runner <ada.runner@example.org>: written to" in out
    (path,) = (root / "outbox" / "2025-07-21-hip-rotation" / "tests").glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["Subject"] == "[Test] Why Hip Rotation Matters More Than You Think"
    assert not (root / ".newsletter" / "ledger.sqlite3").exists()
    assert newsletter(root, "send", SAMPLE_ISSUE, "--to", "not an address")[0] == 2


def test_confirmation_without_a_terminal_needs_yes(make_project: Callable[..., Path]) -> None:
    root = make_project()
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE)
    assert code == 2 and "Add --yes" in err
    assert not (root / "outbox").exists()


def test_an_issue_with_check_problems_is_not_sent(make_project: Callable[..., Path]) -> None:
    root = make_project()
    issue = root / SAMPLE_ISSUE
    issue.write_text(
        issue.read_text(encoding="utf-8").replace("first_name", "frist_name"), encoding="utf-8"
    )
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2 and "unknown merge field subscriber.frist_name" in err
    assert not (root / "outbox").exists()


def test_two_readers_never_share_an_outbox_file(make_project: Callable[..., Path]) -> None:
    """Addresses that differed only where a file name cannot keep them (a non-ASCII letter,
    past the 150th character) shared one file: the second message replaced the first, and
    both were counted sent."""
    domain = "x" * 60 + "." + "y" * 60 + "." + "z" * 20
    people = ["idn@bücher.example", "idn@bécher.example", f"a@{domain}1.org", f"a@{domain}2.org"]
    root = make_project(csv="email,first_name\n" + "".join(f"{a},R\n" for a in people))
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "sent 4" in out, out
    files = list((root / "outbox" / "2025-07-21-hip-rotation").glob("*.eml"))
    assert len(files) == 4
    recipients = sorted(
        email.message_from_bytes(f.read_bytes(), policy=policy.default)["To"] for f in files
    )
    assert len(set(recipients)) == 4
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")  # nothing twice
    assert code == 0 and len(list(files[0].parent.glob("*.eml"))) == 4


def test_a_full_disk_leaves_no_temp_files_in_the_outbox(
    make_project: Callable[..., Path],
) -> None:
    """Each message that could not be written (the file size limit here stands for a full
    disk) was retried, and left an empty temp file behind, for good."""
    root = make_project()
    script = textwrap.dedent(
        """
        import resource, signal, sys
        from pathlib import Path
        from pipeline.audience.subscribers import Subscriber, scan
        from pipeline.config import load_settings
        from pipeline.content.issue import load_issue
        from pipeline.delivery.providers.outbox import OutboxProvider
        from pipeline.messages.compose import MessageFactory
        from pipeline.render.compile import compile_issue

        settings = load_settings(Path("newsletter.toml"))
        compiled = compile_issue(load_issue(Path(sys.argv[1]), settings.timezone), settings)
        factory = MessageFactory(compiled, settings, b"k")
        people = [s for s in scan(settings.subscribers) if isinstance(s, Subscriber)]
        messages = [factory.build(p.key, p.email, p.fields) for p in people]
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000, resource.RLIM_INFINITY))
        result = OutboxProvider(Path("outbox")).send(messages)
        print(sorted({r.outcome.value for r in result.results}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, SAMPLE_ISSUE],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['retry']"
    folder = root / "outbox" / "2025-07-21-hip-rotation"
    assert folder.is_dir() and not list(folder.iterdir())


def test_bad_provider_config_is_one_line(make_project: Callable[..., Path]) -> None:
    root = make_project(provider='name = "postmrk"')
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2
    assert "[provider] name: unknown provider 'postmrk'" in err
    config = (root / "newsletter.toml").read_text(encoding="utf-8").splitlines()
    line = config.index('name = "postmrk"') + 1
    assert f"newsletter.toml:{line}: [provider] name: unknown provider 'postmrk'" in err
    assert "did you mean 'postmark'?" in err
    root = make_project(provider='name = "postmark"')
    code, _, err = newsletter(
        root, "send", SAMPLE_ISSUE, "--yes", env={"POSTMARK_SERVER_TOKEN": ""}
    )
    assert code == 2 and "needs POSTMARK_SERVER_TOKEN set in the environment" in err
    root = make_project(provider='name = "smtp"\nsecurity = "ssl"')
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2 and "[provider] security: must be one of starttls, tls, none" in err


@pytest.mark.parametrize(
    "token", ["supersecret-123\u2013x", "supersecret\n-123", "super secret-123", "sécret-123"]
)
def test_a_key_no_http_header_can_carry_is_refused_before_anything_is_claimed(
    make_project: Callable[..., Path], token: str
) -> None:
    """A key pasted with a dash from a word processor or a line break in it: requests refused
    it mid-send, after the batch was marked in flight, so every reader of it was "unknown"
    (or a traceback, from the search that settles them) for a request never made."""
    root = make_project(provider='name = "postmark"')
    for command in (("send", SAMPLE_ISSUE, "--yes"), ("suppressions", "sync")):
        code, out, err = newsletter(root, *command, env={"POSTMARK_SERVER_TOKEN": token})
        assert code == 2, (command, out, err)
        assert err.startswith("error: POSTMARK_SERVER_TOKEN has a character no postmark key has")
        assert "copy it again from the provider's dashboard" in err
        assert "Traceback" not in err and token.strip() not in out + err
        assert "secret" not in (out + err).replace("secrets", "")
    assert not (root / ".newsletter" / "ledger.sqlite3").exists() or not list(
        open_ledger(load_settings(root / "newsletter.toml")).issues()
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999",
        "http://[::1",
        "http://exa mple.com",
        "ftp://x.example",
        "api.postmarkapp.com",
    ],
)
def test_a_base_url_no_request_can_go_to_is_refused_naming_the_setting(
    make_project: Callable[..., Path], url: str
) -> None:
    root = make_project(provider=f'name = "postmark"\nbase_url = "{url}"')
    env = {"POSTMARK_SERVER_TOKEN": "a-good-token"}
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes", env=env)
    assert code == 2 and "Traceback" not in err
    assert "[provider] base_url: must be an http:// or https:// address with a host" in err


def test_a_request_refused_before_it_left_is_never_sent_not_unknown() -> None:
    """Whatever still gets past the settings' checks and is refused by requests while it
    prepares the request (nothing was sent) is retried, never "unknown"."""
    from pipeline.delivery.providers.http import HttpApi, NoAnswer

    for url, headers in (
        ("http://exa mple.com", {}),
        ("http://127.0.0.1:99999", {}),
        ("http://127.0.0.1:9", {"X-Postmark-Server-Token": "a\nb"}),
    ):
        answer = HttpApi("postmark", url, headers).post("/email/batch", data=b"[]")
        assert isinstance(answer, NoAnswer) and answer.never_sent, (url, answer)
        assert answer.reason.startswith("could not reach postmark (the request could not be made")


def test_a_second_run_is_refused_while_one_holds_the_lock(
    make_project: Callable[..., Path],
) -> None:
    root = make_project()
    settings = load_settings(root / "newsletter.toml")
    with SendLock(settings.state_dir):
        code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 1
    assert f"another send is running (pid {os.getpid()} on " in err
    assert " UTC: " in err and "+00:00" not in err  # a time she reads, not an ISO stamp
    assert "let it finish (newsletter status shows how far it is)" in err
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0


def test_a_killed_lock_holder_leaves_no_lock(make_project: Callable[..., Path]) -> None:
    root = make_project()
    state = root / ".newsletter"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from pipeline.ledger.lock import SendLock;"
            f"SendLock(Path({str(state)!r})).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
        assert code == 1 and f"pid {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0


@pytest.mark.parametrize("folder_name", ["outbox"])
def test_outbox_reconciles_unknown_rows_without_duplicates(
    make_project: Callable[..., Path], folder_name: str
) -> None:
    root = make_project()
    settings = load_settings(root / "newsletter.toml")
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
    # Pretend a run died with everything in flight: the ledger cannot know, the files can.
    ledger = open_ledger(settings)
    ledger.db.execute("UPDATE recipients SET status = 'unknown'")
    ledger.db.execute("UPDATE issues SET status = 'sending'")
    ledger.close()
    # A real run that died never turns "sent" back: the record beside the drafts would
    # (rightly) take this ledger for an older copy.
    (root / "newsletters" / ".sent" / "2025-07-21-hip-rotation.json").unlink()
    (root / folder_name / "2025-07-21-hip-rotation" / "iris@example.org.eml").unlink()
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0, out
    assert "this run: 1 written" in out and "8 found already delivered" in out
    assert len(outbox_files(root)) == 9
