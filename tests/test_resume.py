"""A resumed send reads the list as it is now.

After an interruption, rows deleted from the list were still mailed (a deletion may be an
erasure request), a corrected name was not used, and people who had joined were silently left
out.  Now: anyone no longer in the audience is withdrawn, values are the current ones, and
newcomers are reported, and sent with ``--include-new`` (also after the issue is complete)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.config import load_settings
from pipeline.delivery.providers import create_provider
from pipeline.delivery.stopping import StopRequest
from pipeline.sending import open_ledger, send_issue

from .conftest import SAMPLE_ISSUE
from .test_send import newsletter

SLUG = "2025-07-21-hip-rotation"
HEADER = "email,first_name,last_name,status,tags\n"


def row(i: int, name: str | None = None, status: str = "") -> str:
    return f"reader{i:03d}@example.org,{name or f'Reader{i}'},,{status},\n"


def hundred_readers(make_project: Callable[..., Path]) -> Path:
    """A project of 100 readers, sent through the outbox a batch of 10 at a time."""
    return make_project(
        provider='name = "outbox"\nbatch_size = 10\nconcurrency = 1',
        csv=HEADER + "".join(row(i) for i in range(100)),
    )


def interrupted_send(root: Path, after: int) -> None:
    """Send until ``after`` readers are done, then stop as a signal would."""
    settings = load_settings(root / "newsletter.toml")
    provider = create_provider(settings, {})
    stop = StopRequest()

    def progress(done: int, total: int) -> None:
        if done >= after:
            stop.request("SIGTERM")

    report = send_issue(
        root / SAMPLE_ISSUE, settings, provider, environ={}, progress=progress, stop=stop
    )
    assert report is not None and report.interrupted == "SIGTERM"
    assert report.counts.sent == after and report.counts.pending == 100 - after


def sent_to(root: Path) -> set[str]:
    return {p.stem for p in (root / "outbox" / SLUG).glob("*.eml")}


def test_a_resume_withdraws_the_deleted_uses_new_values_and_reports_newcomers(
    make_project: Callable[..., Path],
) -> None:
    root = hundred_readers(make_project)
    interrupted_send(root, after=20)
    assert len(sent_to(root)) == 20

    # While it was stopped: 10 rows deleted, one renamed, one unsubscribed, 5 joined.
    rows = [row(i) for i in range(100) if not 50 <= i < 60]
    rows = [row(70, "Corrected") if r.startswith("reader070@") else r for r in rows]
    rows = [row(80, status="unsubscribed") if r.startswith("reader080@") else r for r in rows]
    rows += [row(i) for i in range(100, 105)]
    (root / "subscribers.csv").write_text(HEADER + "".join(rows), encoding="utf-8")

    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0, out
    assert "audience 89: sent 89, failed 0, unknown 0, pending 0" in out
    assert "withdrawn: 11 left the list or unsubscribed since the send began" in out
    assert "5 people have joined the list since the send began" in out
    assert f"newsletter send {SAMPLE_ISSUE} --include-new sends it to them" in out
    got = sent_to(root)
    assert not {f"reader{i:03d}@example.org" for i in (*range(50, 60), 80)} & got
    assert not {f"reader{i:03d}@example.org" for i in range(100, 105)} & got
    renamed = (root / "outbox" / SLUG / "reader070@example.org.eml").read_bytes()
    assert b"To: Corrected <reader070@example.org>" in renamed
    assert b"Hi Corrected," in renamed

    ledger = open_ledger(load_settings(root / "newsletter.toml"))
    try:
        reasons = {r["email"]: r["reason"] for r in ledger.history(SLUG)}
    finally:
        ledger.close()
    assert reasons["reader080@example.org"] == "opted out after the send began"
    assert "no longer on the list" in str(reasons["reader055@example.org"])

    # --include-new sends the newcomers, and nobody else again.
    stamps = {p: p.stat().st_mtime_ns for p in (root / "outbox" / SLUG).glob("*.eml")}
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes", "--include-new")
    assert code == 0, out
    assert "included: 5 who joined the list since the send began" in out
    assert "audience 94: sent 94" in out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert {f"reader{i:03d}@example.org" for i in range(100, 105)} <= sent_to(root)


def test_a_complete_issue_is_served_to_later_joiners_only_when_asked(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(csv=HEADER + "".join(row(i) for i in range(10)))
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
    with (root / "subscribers.csv").open("a", encoding="utf-8") as handle:
        handle.write(row(10))
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "1 person has joined the list since the send began" in out
    assert "reader010@example.org" not in sent_to(root)
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes", "--include-new")
    assert code == 0 and "audience 11: sent 11" in out and f"{SLUG}: complete" in out
    assert len(sent_to(root)) == 11


def test_an_opt_out_or_erasure_during_the_send_is_honoured_before_their_turn(
    make_project: Callable[..., Path],
) -> None:
    # `newsletter unsubscribe` and `subscribers remove` while a send runs: 20 readers who had
    # unsubscribed (and 10 erased) were still mailed, minutes later, because the list was only
    # read when the send began.
    from pipeline.audience.list_writer import ListChange, apply_changes

    root = hundred_readers(make_project)
    settings = load_settings(root / "newsletter.toml")
    changed = False

    def progress(done: int, total: int) -> None:
        nonlocal changed
        if done >= 20 and not changed:
            changed = True
            apply_changes(
                settings.subscribers, [ListChange("reader050@example.org", status="unsubscribed")]
            )
            apply_changes(settings.subscribers, [ListChange("reader060@example.org", delete=True)])

    report = send_issue(
        root / SAMPLE_ISSUE,
        settings,
        create_provider(settings, {}),
        environ={},
        progress=progress,
        list_recheck=0,
    )
    assert report is not None and changed
    assert "reader050@example.org" not in sent_to(root)
    assert "reader060@example.org" not in sent_to(root)
    assert report.counts.sent == 98 and report.counts.pending == 0
    assert report.withdrawn == 2
    ledger = open_ledger(settings)
    try:
        rows = {r["email"]: r for r in ledger.history(SLUG)}
    finally:
        ledger.close()
    assert rows["reader050@example.org"]["status"] == "withdrawn"
    assert "opted out after the send began" in rows["reader050@example.org"]["reason"]
    assert rows["reader060@example.org"]["status"] == "withdrawn"
    assert "no longer on the list" in rows["reader060@example.org"]["reason"]


def twenty_sent_of_a_hundred(make_project: Callable[..., Path]) -> tuple[Path, str]:
    """A send of 100 stopped after 20: the project, and its list as it was."""
    root = hundred_readers(make_project)
    interrupted_send(root, after=20)
    return root, (root / "subscribers.csv").read_text(encoding="utf-8")


def test_a_resume_to_a_list_saved_empty_is_refused_and_changes_nothing(
    make_project: Callable[..., Path],
) -> None:
    # The list saved empty by accident (an export of the wrong sheet) before a resume: it
    # withdrew the 80 still to send and marked the issue complete; cron then sent nothing,
    # and putting the list back left them to --include-new, called people who "joined".
    root, full = twenty_sent_of_a_hundred(make_project)
    (root / "subscribers.csv").write_text(HEADER, encoding="utf-8")
    code, out, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2 and "nobody to send to: the list has only its header row" in err, out
    assert "withdrawn" not in out and "complete" not in out, out
    (root / "subscribers.csv").write_text(full, encoding="utf-8")
    stamps = {p: p.stat().st_mtime_ns for p in (root / "outbox" / SLUG).glob("*.eml")}
    assert len(stamps) == 20
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "audience 100: sent 100" in out and "joined" not in out, out
    assert len(sent_to(root)) == 100
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # the first 20 not again


def test_readers_withdrawn_by_rows_lost_from_the_list_come_back_with_them(
    make_project: Callable[..., Path],
) -> None:
    # The list saved with most of its rows missing: those still to send are withdrawn
    # (a deletion may be an erasure request).  Put back, they are readers of this issue
    # again, sent by the next run (cron's too), not "people who joined" left to
    # --include-new.
    root, full = twenty_sent_of_a_hundred(make_project)
    partial = HEADER + "".join(row(i) for i in range(30))  # rows 30-99 lost
    (root / "subscribers.csv").write_text(partial, encoding="utf-8")
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "withdrawn: 70" in out and len(sent_to(root)) == 30, out
    renamed = full.replace("reader077@example.org,Reader77", "reader077@example.org,Julia")
    (root / "subscribers.csv").write_text(renamed, encoding="utf-8")
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "audience 100: sent 100" in out, out
    assert "back: 70 withdrawn earlier" in out and "joined" not in out, out
    assert len(sent_to(root)) == 100
    julia = (root / "outbox" / SLUG / "reader077@example.org.eml").read_text(encoding="utf-8")
    assert "Julia" in julia  # the list's values now


def test_a_list_saved_unreadable_during_the_send_does_not_stop_it(
    make_project: Callable[..., Path],
) -> None:
    # Re-reading the list mid-send (for opt-outs) meets whatever is on disk: a list half
    # saved from Excel is skipped, and the send goes on with what it read at the start.
    root = hundred_readers(make_project)
    settings = load_settings(root / "newsletter.toml")

    def progress(done: int, total: int) -> None:
        if done == 20:
            settings.subscribers.write_bytes(b"email,first_name\nx@example.org,Caf\xe9\n")

    report = send_issue(
        root / SAMPLE_ISSUE,
        settings,
        create_provider(settings, {}),
        environ={},
        progress=progress,
        list_recheck=0,
    )
    assert report is not None and report.counts.sent == 100 and report.withdrawn == 0


def test_the_resume_question_counts_who_will_really_be_sent(
    make_project: Callable[..., Path],
) -> None:
    """The question is read before the list was: it said "80 still to send" with 10 of them
    deleted since, and "0 still to send" before --include-new sent the issue to newcomers."""
    root = hundred_readers(make_project)
    interrupted_send(root, after=20)
    rows = [row(i) for i in range(100) if not 50 <= i < 60] + [row(100), row(101)]
    (root / "subscribers.csv").write_text(HEADER + "".join(rows), encoding="utf-8")

    # Without a terminal, the question is in the refusal: nothing is sent.
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE)
    assert code == 2
    assert "20 sent, 70 still to send (2 people have joined the list since it began" in err
    assert "--include-new" in err
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--include-new")
    assert code == 2 and "20 sent, 72 still to send (with 2 people who joined since)" in err
    assert len(sent_to(root)) == 20

    # Declined, the newcomers are not queued: a plain resume still leaves them out.
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "audience 90: sent 90" in out
    assert "withdrawn: 10 left the list" in out and "2 people have joined" in out
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE)
    assert "90 sent, 0 still to send (2 people have joined" in err
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--include-new")
    assert "90 sent, 2 still to send (with 2 people who joined since)" in err


def test_status_says_what_stopped_a_send_in_her_words(make_project: Callable[..., Path]) -> None:
    """Saying "stopped by SIGINT" used a programmer's name for the Ctrl-C she pressed."""
    root = hundred_readers(make_project)
    interrupted_send(root, after=20)
    code, out, _ = newsletter(root, "status")
    assert code == 0
    assert "stopped by SIGTERM (a shutdown, systemctl stop or kill); run again" in out


def test_an_old_copy_of_the_list_never_mails_someone_who_left(
    make_project: Callable[..., Path],
) -> None:
    """An older subscribers.csv put back (a backup, another laptop) said "subscribed" for
    someone who had unsubscribed since, and the next issue went to them without a word."""
    rows = HEADER + "".join(row(i) for i in range(10))
    root = make_project(csv=rows)
    old_copy = (root / "subscribers.csv").read_bytes()
    code, out, err = newsletter(root, "unsubscribe", "reader003@example.org")
    assert code == 0, out + err
    (root / "subscribers.csv").write_bytes(old_copy)  # the old copy is back

    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--dry-run")
    assert code == 0 and "audience: 9 subscribers" in out, out
    assert "kept out: 1 row marked subscribed in the list for someone who left since" in out
    assert "subscribers.csv:5: reader003@example.org: unsubscribed " in out
    assert (
        "(by a newsletter command)" in out and "newsletter subscribers resubscribe ADDRESS" in out
    )

    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "audience 9: sent 9" in out and "left earlier 1" in out, out
    assert "reader003@example.org" not in sent_to(root)

    # When they ask to be back, the command that says so puts them back on every send.
    code, out, _ = newsletter(root, "subscribers", "resubscribe", "reader003@example.org")
    assert code == 0 and "subscribed again (the list said subscribed" in out, out
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes", "--include-new")
    assert code == 0 and "audience 10: sent 10" in out and "kept out" not in out, out
    assert "reader003@example.org" in sent_to(root)


def test_a_row_kept_out_on_resume_is_withdrawn_before_its_turn(
    make_project: Callable[..., Path],
) -> None:
    root = hundred_readers(make_project)
    old_copy = (root / "subscribers.csv").read_bytes()
    interrupted_send(root, after=20)
    assert newsletter(root, "unsubscribe", "reader090@example.org")[0] == 0
    (root / "subscribers.csv").write_bytes(old_copy)
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "audience 99: sent 99" in out and "withdrawn: 1" in out, out
    assert "joined" not in out  # a kept-out row is not a newcomer either
    assert "reader090@example.org" not in sent_to(root)


def everyone_withdrawn_before_the_first_batch(
    make_project: Callable[..., Path], readers: int
) -> tuple[Path, str]:
    """A send stopped before its first batch, then resumed with a list of someone else
    only: every reader withdrawn, nobody sent.  The project, and its list as it was."""
    root = make_project(
        provider='name = "outbox"\nbatch_size = 10\nconcurrency = 1',
        csv=HEADER + "".join(row(i) for i in range(readers)),
    )
    settings = load_settings(root / "newsletter.toml")
    stop = StopRequest()
    stop.request("SIGTERM")
    report = send_issue(
        root / SAMPLE_ISSUE, settings, create_provider(settings, {}), environ={}, stop=stop
    )
    assert report is not None and report.counts.sent == 0 and report.counts.pending == readers
    full = (root / "subscribers.csv").read_text(encoding="utf-8")
    (root / "subscribers.csv").write_text(HEADER + row(500), encoding="utf-8")
    _, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert f"withdrawn: {readers}" in out, out
    return root, full


def test_readers_withdrawn_before_anyone_was_sent_get_the_issue_when_the_list_is_back(
    make_project: Callable[..., Path],
) -> None:
    # All 100 withdrawn, nobody sent, so the next run starts afresh.  That fresh start kept
    # every withdrawn row as it was (its load skips rows already there): with the list put
    # back, "nobody to send to", for good.
    root, full = everyone_withdrawn_before_the_first_batch(make_project, 100)
    settings = load_settings(root / "newsletter.toml")
    renamed = full.replace("reader007@example.org,Reader7", "reader007@example.org,Julia")
    (root / "subscribers.csv").write_text(renamed, encoding="utf-8")
    code, out, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "audience 100: sent 100" in out, out + err
    assert len(sent_to(root)) == 100
    julia = (root / "outbox" / SLUG / "reader007@example.org.eml").read_text(encoding="utf-8")
    assert "Julia" in julia  # the list as it is now, not as it was at the first load
    ledger = open_ledger(settings)
    try:
        assert ledger.counts(SLUG).sent == 100
    finally:
        ledger.close()


def test_status_after_everyone_was_withdrawn_does_not_call_the_ledger_lost(
    make_project: Callable[..., Path],
) -> None:
    # All withdrawn, the issue in the ledger with nobody in its audience: `status` said the
    # ledger "was lost or replaced" and told her to restore a backup (exit 2).
    root, _ = everyone_withdrawn_before_the_first_batch(make_project, 10)
    code, out, err = newsletter(root, "status")
    assert code == 0 and "lost" not in err and "backup" not in err, out + err


def test_an_opt_out_during_the_send_stays_out_when_an_old_copy_is_put_back_meanwhile(
    make_project: Callable[..., Path],
) -> None:
    # Mid-send: she unsubscribes (withdrawn at the next reading of the list), then an old
    # copy of the list with her still subscribed is put back, still mid-send.  The reading
    # after that brought her back (its consent history was the send's start's) and mailed
    # her.
    root = hundred_readers(make_project)
    old_copy = (root / "subscribers.csv").read_bytes()
    settings = load_settings(root / "newsletter.toml")
    steps: list[int] = []

    def progress(done: int, total: int) -> None:
        if done == 20:
            assert newsletter(root, "unsubscribe", "reader090@example.org")[0] == 0
            steps.append(done)
        elif done == 40:
            (root / "subscribers.csv").write_bytes(old_copy + b"\n")  # a new stamp
            steps.append(done)

    report = send_issue(
        root / SAMPLE_ISSUE,
        settings,
        create_provider(settings, {}),
        environ={},
        progress=progress,
        list_recheck=0,
    )
    assert steps == [20, 40]
    assert report is not None and report.withdrawn == 1 and report.returned == 0
    assert "reader090@example.org" not in sent_to(root)
    assert len(sent_to(root)) == 99


def test_a_reader_removed_on_request_is_not_brought_back_by_an_old_copy(
    make_project: Callable[..., Path],
) -> None:
    # Removed from the list mid-way (an erasure request: `subscribers remove`), withdrawn;
    # an old copy of the list put back before the resume brought them back, and mailed.
    root, full = twenty_sent_of_a_hundred(make_project)
    assert newsletter(root, "subscribers", "remove", "reader050@example.org")[0] == 0
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "withdrawn: 1" in out, out
    (root / "subscribers.csv").write_text(full, encoding="utf-8")  # the old copy
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "back:" not in out, out
    assert "reader050@example.org" not in sent_to(root)


def test_a_reader_removed_on_request_stays_out_of_an_issue_started_again(
    make_project: Callable[..., Path],
) -> None:
    # Everyone withdrawn before the first batch, so the issue starts again from its list;
    # one reader removed on request meanwhile, then an old copy of the list put back: the
    # fresh start brought every withdrawn reader back, that one too.
    root, full = everyone_withdrawn_before_the_first_batch(make_project, 10)
    (root / "subscribers.csv").write_text(full, encoding="utf-8")
    assert newsletter(root, "subscribers", "remove", "reader003@example.org")[0] == 0
    (root / "subscribers.csv").write_text(full, encoding="utf-8")  # the old copy
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and "audience 9: sent 9" in out, out
    assert "reader003@example.org" not in sent_to(root)
