"""A damaged, unwritable or starved ledger: one line naming the file and what to do, exit 2.

``status`` on a damaged ledger once reported "audience 921" for 3,000 with exit 0, and a
read-only or full disk gave raw ``sqlite3`` errors and ``OSError: [Errno 28]``."""

from __future__ import annotations

import os
import resource
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.ledger.store import Ledger, LedgerError, ledger_errors
from pipeline.sending import open_ledger

from .conftest import REPO, SAMPLE_ISSUE
from .test_send import newsletter

SLUG = "2025-07-21-hip-rotation"
HEADER = "email,first_name,last_name,status,tags\n"


def readers(count: int) -> str:
    return HEADER + "".join(f"reader{i:04d}@example.org,R{i},,,\n" for i in range(count))


def damage(path: Path) -> None:
    """Overwrite pages in the middle of the file, as a failing disk or a bad copy would."""
    data = bytearray(path.read_bytes())
    page = 4096
    pages = len(data) // page
    for number in range(pages // 3, 2 * pages // 3, 2):
        data[number * page + 8 : number * page + 600] = os.urandom(592)
    path.write_bytes(bytes(data))


def test_status_and_send_refuse_a_damaged_ledger(make_project: Callable[..., Path]) -> None:
    root = make_project(csv=readers(1500))
    assert newsletter(root, "send", SAMPLE_ISSUE, "--yes")[0] == 0
    damage(root / ".newsletter" / "ledger.sqlite3")
    stamps = {p: p.stat().st_mtime_ns for p in (root / "outbox").rglob("*.eml")}

    code, out, err = newsletter(root, "status")
    assert code == 2, out
    assert out == "" and err.count("\n") == 1
    assert ".newsletter/ledger.sqlite3: the ledger is damaged" in err
    assert "newsletter backup" in err and "Traceback" not in err

    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2 and "the ledger is damaged" in err and err.count("\n") == 1
    assert {p: p.stat().st_mtime_ns for p in (root / "outbox").rglob("*.eml")} == stamps


def test_a_file_that_is_not_a_ledger_is_one_line(make_project: Callable[..., Path]) -> None:
    root = make_project()
    (root / ".newsletter").mkdir()
    (root / ".newsletter" / "ledger.sqlite3").write_bytes(b"this is not SQLite " * 500)
    for args in (("status",), ("send", SAMPLE_ISSUE, "--yes"), ("send", SAMPLE_ISSUE, "--dry-run")):
        code, _, err = newsletter(root, *args)
        assert code == 2, args
        assert err.count("\n") == 1 and "the ledger is damaged" in err, (args, err)


def test_a_read_only_ledger_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    # Root ignores file modes, so make SQLite itself open it read-only.
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with pytest.raises(LedgerError) as caught, ledger_errors(path):
            db.execute("CREATE TABLE t (x)")
    finally:
        db.close()
    message = caught.value.location_message()
    assert message.startswith(f"{path}: the ledger cannot be written")
    assert "writable" in message


def test_the_ledger_and_its_wal_are_private(make_project: Callable[..., Path]) -> None:
    root = make_project()
    old_umask = os.umask(0o022)
    try:
        ledger = open_ledger(load_settings(root / "newsletter.toml"))
        try:
            ledger.issues()
            for suffix in ("", "-wal", "-shm"):
                path = root / ".newsletter" / f"ledger.sqlite3{suffix}"
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, suffix
        finally:
            ledger.close()
    finally:
        os.umask(old_umask)
    # A ledger made by an older version (0644) is made private when next opened.
    path = root / ".newsletter" / "ledger.sqlite3"
    path.chmod(0o644)
    open_ledger(load_settings(root / "newsletter.toml")).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def starved_send(root: Path, max_file_bytes: int) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run(
        [sys.executable, "-m", "pipeline", "send", SAMPLE_ISSUE, "--yes"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=limit,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_full_disk_mid_send_is_one_line_and_the_next_run_finishes(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(
        provider='name = "outbox"\nbatch_size = 50\nconcurrency = 1', csv=readers(300)
    )
    result = starved_send(root, 150_000)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "ledger.sqlite3: the ledger could not be written" in result.stderr
    assert "disk full" in result.stderr
    result = starved_send(root, 100_000_000)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audience 300: sent 300, failed 0, unknown 0, pending 0" in result.stdout
    assert len(list((root / "outbox" / SLUG).glob("*.eml"))) == 300


def test_an_error_that_sqlite_already_rolled_back_is_the_error_reported(
    make_project: Callable[..., Path],
) -> None:
    # A full disk (RLIMIT_FSIZE of 40,000 bytes) failed a write mid-transaction; SQLite rolled
    # back by itself, and our own ROLLBACK then hid the cause behind "cannot rollback - no
    # transaction is active": "the ledger could not be used", with no word of the disk.
    root = make_project()
    ledger = open_ledger(load_settings(root / "newsletter.toml"))
    try:
        with (
            pytest.raises(sqlite3.OperationalError, match="disk I/O error"),
            ledger.transaction() as db,
        ):
            db.execute("ROLLBACK")  # what SQLite does on an I/O error or a full disk
            raise sqlite3.OperationalError("disk I/O error")
        with ledger.transaction():  # and the connection is still usable
            pass
    finally:
        ledger.close()
