"""A lost, partial or older ledger never re-sends silently; ``newsletter backup`` is safe.

Deleting ``.newsletter/ledger.sqlite3*`` after a partial send re-sent 3,000 of 3,000;
deleting only the main file, with the data still in its WAL, gave 2,500 duplicates."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.delivery.providers import create_provider
from pipeline.delivery.stopping import StopRequest
from pipeline.errors import InputError
from pipeline.ledger.store import Ledger
from pipeline.sending import open_ledger, send_issue
from pipeline.wording import local_time

from .conftest import SAMPLE_ISSUE
from .test_send import newsletter

SLUG = "2025-07-21-hip-rotation"
HEADER = "email,first_name,last_name,status,tags\n"
READERS = 100


def partial_send(root: Path, after: int) -> None:
    settings = load_settings(root / "newsletter.toml")
    stop = StopRequest()

    def progress(done: int, total: int) -> None:
        if done >= after:
            stop.request("SIGTERM")

    report = send_issue(
        root / SAMPLE_ISSUE,
        settings,
        create_provider(settings, {}),
        environ={},
        progress=progress,
        stop=stop,
    )
    assert report is not None and report.counts.sent == after


def project(make_project: Callable[..., Path]) -> Path:
    rows = "".join(f"reader{i:03d}@example.org,R{i},,,\n" for i in range(READERS))
    return make_project(
        provider='name = "outbox"\nbatch_size = 10\nconcurrency = 1', csv=HEADER + rows
    )


def outbox_stamps(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (root / "outbox" / SLUG).glob("*.eml")}


def test_sending_begins_with_a_record_beside_the_draft(make_project: Callable[..., Path]) -> None:
    root = project(make_project)
    partial_send(root, 20)
    record = json.loads((root / "newsletters" / ".sent" / f"{SLUG}.json").read_text())
    assert record["issue"] == SLUG and record["provider"] == "outbox"
    assert record["sent"] == 20 and record["settled"] == 20


def test_a_deleted_ledger_is_refused_not_a_fresh_start(make_project: Callable[..., Path]) -> None:
    root = project(make_project)
    partial_send(root, 20)
    stamps = outbox_stamps(root)
    for path in (root / ".newsletter").glob("ledger.sqlite3*"):
        path.unlink()
    code, out, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2, out
    assert err.count("\n") == 1 and "has no record of this issue" in err
    assert "newsletter backup" in err and f".sent/{SLUG}.json" in err
    assert outbox_stamps(root) == stamps  # nobody mailed again
    code, out, err = newsletter(root, "send", SAMPLE_ISSUE, "--dry-run")
    assert code == 2 and "would start a new send" not in out
    assert "has no record of this issue" in err
    code, out, err = newsletter(root, "status")
    assert code == 2 and "nothing has been sent yet" not in out
    assert f"{SLUG} began sending" in err and "20 sent" in err and "lost" in err


def test_deleting_only_the_main_file_with_data_in_the_wal_is_refused(
    make_project: Callable[..., Path],
) -> None:
    root = project(make_project)
    ledger_path = root / ".newsletter" / "ledger.sqlite3"
    open_ledger(load_settings(root / "newsletter.toml")).close()
    # Another connection keeps the WAL from being folded back when the send closes its own.
    holder = sqlite3.connect(ledger_path)
    holder.execute("SELECT count(*) FROM sqlite_master").fetchone()
    try:
        partial_send(root, 30)
        assert (root / ".newsletter" / "ledger.sqlite3-wal").stat().st_size > 0
        trash = root / "trash.sqlite3"
        ledger_path.rename(trash)  # "deleted", to the trash
    finally:
        holder.close()
    wal = root / ".newsletter" / "ledger.sqlite3-wal"
    kept = wal.read_bytes()
    stamps = outbox_stamps(root)
    # Each refuses, and none opens it: the refusing send once made SQLite start a new, empty
    # main file and throw the -wal (the 30 sends) away, and `backup` then "backed up" that
    # empty ledger, exit 0.  Put back from the trash, the main file needs its -wal.
    # `report` and `archive` read it as "nothing ever sent" (the archive: no issue published).
    commands = [("send", SAMPLE_ISSUE, "--yes"), ("backup",), ("report",), ("archive",)]
    for command in [*commands, commands[0]]:
        code, _, err = newsletter(root, *command)
        assert code == 2 and err.count("\n") == 1, command
        assert "main file is missing" in err and "Losing the ledger" in err, command
        assert wal.read_bytes() == kept and not ledger_path.exists(), command
    assert outbox_stamps(root) == stamps
    # As the message says: the same file back beside its -wal, and the send resumes.
    trash.rename(ledger_path)
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0 and f"audience {READERS}: sent {READERS}" in out
    assert {p: t for p, t in outbox_stamps(root).items() if p in stamps} == stamps  # none again


def test_an_older_copy_of_the_ledger_is_refused(make_project: Callable[..., Path]) -> None:
    root = project(make_project)
    partial_send(root, 20)
    code, out, _ = newsletter(root, "backup", "--out", "old-ledger.sqlite3")
    assert code == 0, out
    code, out, _ = newsletter(root, "send", SAMPLE_ISSUE, "--yes")  # everyone else
    assert code == 0 and f"audience {READERS}: sent {READERS}" in out
    stamps = outbox_stamps(root)

    for path in (root / ".newsletter").glob("ledger.sqlite3*"):
        path.unlink()
    shutil.copyfile(root / "old-ledger.sqlite3", root / ".newsletter" / "ledger.sqlite3")
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2 and "is older than the last run of this issue" in err
    assert "up to 80 would be mailed again" in err
    assert outbox_stamps(root) == stamps


def test_backup_is_a_consistent_whole_copy_even_with_the_wal_unfolded(
    make_project: Callable[..., Path],
) -> None:
    root = project(make_project)
    ledger_path = root / ".newsletter" / "ledger.sqlite3"
    open_ledger(load_settings(root / "newsletter.toml")).close()
    holder = sqlite3.connect(ledger_path)  # keeps recent writes in the WAL
    holder.execute("SELECT count(*) FROM sqlite_master").fetchone()
    try:
        partial_send(root, 40)
        # What copying the main file by hand would give: the latest sends are missing.
        shutil.copyfile(ledger_path, root / "hand-copy.sqlite3")
        code, out, _ = newsletter(root, "backup")
    finally:
        holder.close()
    assert code == 0 and "backed up the ledger (1 issue," in out
    made = sorted((root / ".newsletter" / "backups").glob("ledger-*.sqlite3"))
    assert len(made) == 1 and str(made[0]) in out
    assert stat.S_IMODE(os.stat(made[0]).st_mode) == 0o600
    assert not list(made[0].parent.glob("*-wal")) and not list(made[0].parent.glob(".*tmp"))
    copy = Ledger(made[0])
    try:
        assert copy.counts(SLUG).sent == 40 and copy.counts(SLUG).audience == READERS
    finally:
        copy.close()
    hand = sqlite3.connect(root / "hand-copy.sqlite3")
    try:
        rows = hand.execute("SELECT count(*) FROM recipients WHERE status = 'sent'").fetchone()
    except sqlite3.DatabaseError:
        rows = None
    finally:
        hand.close()
    assert rows != (40,)  # why README says a copy of the file is not a backup


def test_backup_without_a_ledger_is_one_line(make_project: Callable[..., Path]) -> None:
    root = project(make_project)
    code, _, err = newsletter(root, "backup")
    assert code == 2 and "no ledger to back up yet" in err and err.count("\n") == 1


def test_backup_of_an_empty_or_foreign_ledger_refuses_and_writes_nothing(
    make_project: Callable[..., Path],
) -> None:
    """A 0-byte ledger (a full disk cut it short) once 'backed up' with only SQLite's words
    ("no such table: issues"); a copy of nothing must never pass for a backup."""
    root = project(make_project)
    ledger = root / ".newsletter" / "ledger.sqlite3"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.write_bytes(b"")
    code, _, err = newsletter(root, "backup")
    assert code == 2 and "the ledger is empty (0 bytes)" in err and "Losing the ledger" in err
    assert err.count("\n") == 1
    ledger.unlink()
    sqlite3.connect(ledger).execute("CREATE TABLE notes (x)").connection.close()
    code, _, err = newsletter(root, "backup")
    assert code == 2 and "not the newsletter's ledger" in err
    backups = root / ".newsletter" / "backups"
    assert not backups.exists() or list(backups.iterdir()) == []


def test_a_run_that_finds_the_record_missing_writes_it(make_project: Callable[..., Path]) -> None:
    root = project(make_project)
    partial_send(root, 20)
    (root / "newsletters" / ".sent" / f"{SLUG}.json").unlink()
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
    path = root / "newsletters" / ".sent" / f"{SLUG}.json"
    record = json.loads(path.read_text())
    assert record["sent"] == READERS
    # A run that changes nothing leaves the committed file as it is.
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_the_record_keeps_up_during_a_run_so_a_kill_leaves_no_false_count(
    make_project: Callable[..., Path],
) -> None:
    # A SIGKILL (or a power cut) ends a run before its last write: the record used to say
    # "0 sent" from the start of the run, with 80 delivered, and then advised deleting it
    # "only if nobody got this issue": advice that mails those 80 again.
    root = project(make_project)
    settings = load_settings(root / "newsletter.toml")
    record = root / "newsletters" / ".sent" / f"{SLUG}.json"
    seen: dict[int, bytes] = {}

    def progress(done: int, total: int) -> None:
        if done in (30, 60):  # what a kill at this moment would leave on disk
            seen[done] = record.read_bytes()

    send_issue(
        root / SAMPLE_ISSUE, settings, create_provider(settings, {}), environ={}, progress=progress
    )
    assert json.loads(seen[30])["sent"] == 30
    assert json.loads(seen[60])["sent"] == 60
    # The ledger is lost after a kill at 60: the refusal says 60, and how to know who got it.
    record.write_bytes(seen[60])
    for path in (root / ".newsletter").glob("ledger.sqlite3*"):
        path.unlink()
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2
    assert "(60 sent by" in err and "may have sent more" in err
    assert "only if nobody got" not in err and "activity" in err


def test_status_of_the_one_issue_says_the_ledger_lost_it(
    make_project: Callable[..., Path],
) -> None:
    # `status ISSUE` used to say "missed ... to send it anyway: newsletter send ...", exit 0.
    root = project(make_project)
    partial_send(root, 20)
    for path in (root / ".newsletter").glob("ledger.sqlite3*"):
        path.unlink()
    code, out, err = newsletter(root, "status", SAMPLE_ISSUE)
    assert code == 2, out
    assert "to send it anyway" not in out
    assert f"{SLUG} began sending" in err and "20 sent" in err and "lost" in err


def test_a_record_that_cannot_be_rewritten_mid_send_does_not_stop_the_send(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rewrite after each batch is a safeguard, not the send: a full disk there (root
    # ignores permissions, so the failure is injected) must not abandon batches in flight.
    from pipeline.ledger import start_record

    root = project(make_project)
    settings = load_settings(root / "newsletter.toml")
    real_write = start_record.write
    calls = 0

    def failing_after_the_first(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            real_write(*args, **kwargs)  # type: ignore[arg-type]
            return
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(start_record, "write", failing_after_the_first)
    with pytest.raises(InputError, match="could not write this record"):
        send_issue(root / SAMPLE_ISSUE, settings, create_provider(settings, {}), environ={})
    ledger = open_ledger(settings)
    try:
        counts = ledger.counts(SLUG)
    finally:
        ledger.close()
    # Every batch went out and was recorded; only the final rewrite is reported.
    assert counts.sent == READERS and counts.unknown == 0


def test_backup_never_writes_over_her_list_her_settings_or_the_ledger(
    make_project: Callable[..., Path],
) -> None:
    # `newsletter backup --out subscribers.csv` ("back up my subscribers") replaced her list
    # with a SQLite file, exit 0; so did --out newsletter.toml.
    root = project(make_project)
    partial_send(root, 20)
    kept = {
        name: (root / name).read_bytes()
        for name in ("subscribers.csv", "newsletter.toml", SAMPLE_ISSUE)
    }
    for name in (*kept, ".newsletter/ledger.sqlite3"):
        code, out, err = newsletter(root, "backup", "--out", name)
        assert code == 2, (name, out)
        assert err.count("\n") == 1 and "backup" in err, err
    assert {name: (root / name).read_bytes() for name in kept} == kept
    assert newsletter(root, "status")[0] == 0  # the ledger is whole
    # A backup made before may be refreshed in place (a nightly cron job does that).
    assert newsletter(root, "backup", "--out", "nightly.sqlite3")[0] == 0
    code, out, _ = newsletter(root, "backup", "--out", "nightly.sqlite3")
    assert code == 0 and "1 issue, 100 recipient rows" in out


def test_a_new_laptop_without_the_key_is_refused_not_given_a_new_key(
    make_project: Callable[..., Path],
) -> None:
    """Losing `.newsletter/` lost the key too, and the next command silently made a new one:
    every unsubscribe link in every issue already sent then said "This link is not valid",
    even once the ledger was put back from a backup as the refusal advised."""
    from pipeline.web import create_app

    root = project(make_project)
    partial_send(root, 20)
    state = root / ".newsletter"
    old_key = (state / "secret").read_bytes()
    shutil.copy(state / "ledger.sqlite3", root / "backup.sqlite3")  # no send running
    shutil.rmtree(state)  # the new laptop: the drafts (and .sent/) came from git

    code, out, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in out + err
    assert ".newsletter/secret" in err and "1 issue went out signed with it" in err
    assert "would break every unsubscribe link" in err and "NEWSLETTER_SECRET" in err
    assert not (state / "secret").exists()
    # The way out for a key lost for good works as printed, and makes a key only she reads.
    command = err.rsplit("make a new one: ", 1)[1].strip()
    subprocess.run(["sh", "-c", command], cwd=root, check=True)
    made = state / "secret"
    assert len(made.read_text().strip()) == 64 and stat.S_IMODE(made.stat().st_mode) == 0o600
    made.unlink()
    for command in (("send", SAMPLE_ISSUE, "--dry-run"), ("unsubscribe", "abc.def")):
        code, _, err = newsletter(root, *command)
        assert code == 2 and "key that signs unsubscribe links is missing" in err
    settings = load_settings(root / "newsletter.toml")
    with pytest.raises(InputError, match="key that signs unsubscribe links is missing"):
        create_app(settings, environ={})
    assert not (state / "secret").exists()

    # Put back as advised (key and ledger), the send goes on where it stopped.
    state.mkdir(mode=0o700, exist_ok=True)
    (state / "secret").write_bytes(old_key)
    shutil.copy(root / "backup.sqlite3", state / "ledger.sqlite3")
    code, out, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 0, out + err
    assert f"audience {READERS}: sent {READERS}" in out and "this run: 80" in out


def test_a_key_given_in_the_environment_needs_no_file(make_project: Callable[..., Path]) -> None:
    root = project(make_project)
    key = "k" * 64
    partial_send(root, 20)
    shutil.rmtree(root / ".newsletter")
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes", env={"NEWSLETTER_SECRET": key})
    assert code == 2 and "secret" not in err and "has no record of this issue" in err


def test_backup_into_a_folder_and_odd_out_values(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    """`--out /media/usb` (a folder) was refused in click's words, `--out ''` said '.: this file
    exists', and a file where the folder should be ended in a FileExistsError traceback."""
    root = project(make_project)
    partial_send(root, 20)
    stick = tmp_path / "usb"
    stick.mkdir()
    for out in (str(stick), f"{tmp_path}/new-folder/"):
        code, said, err = newsletter(root, "backup", "--out", out)
        assert code == 0, err
        (made,) = Path(out).glob("ledger-*.sqlite3")
        assert str(made) in said and "1 issue, 100 recipient rows" in said
        with sqlite3.connect(made) as db:
            assert db.execute("SELECT count(*) FROM recipients").fetchone()[0] == READERS
    code, _, err = newsletter(root, "backup", "--out", "")
    assert (
        code == 2
        and err == "error: --out is empty: give a file name, or a folder to put the backup in\n"
    )
    (tmp_path / "a-file").write_text("not a folder")
    for out in (tmp_path / "a-file" / "backup.sqlite3", tmp_path / "a-file" / "sub" / "b.sqlite3"):
        code, said, err = newsletter(root, "backup", "--out", str(out))
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in said + err, err
        assert "cannot make the folder for the backup" in err
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_a_lost_ledger_is_told_in_her_time_zone_with_the_way_back(
    make_project: Callable[..., Path],
) -> None:
    """The times were the record's ISO stamps in UTC ("2026-11-25T16:01:59+00:00"), where
    every other line she reads says "Wed 25 Nov 2026, 08:01 PST"."""
    root = project(make_project)
    partial_send(root, 20)
    record = json.loads((root / "newsletters" / ".sent" / f"{SLUG}.json").read_text())
    settings = load_settings(root / "newsletter.toml")
    began = local_time(datetime.fromisoformat(record["started_at"]), settings.timezone)
    for path in (root / ".newsletter").glob("ledger.sqlite3*"):
        path.unlink()
    code, _, err = newsletter(root, "status")
    assert code == 2 and f"{SLUG} began sending {began} (20 sent by " in err, err
    assert "+00:00" not in err and "put back the copy `newsletter backup` made" in err
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2 and f"sending began {began} via outbox" in err and "+00:00" not in err
