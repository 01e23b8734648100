"""The list's one writer: byte-for-byte, permissions kept, no leftovers, nothing lost."""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import pipeline.audience.subscribers as subscribers_module
from pipeline.audience.list_writer import (
    ApplyResult,
    ListChange,
    apply_changes,
    locked,
    remove_leftovers,
    stale_temp_files,
)
from pipeline.audience.subscribers import Subscriber, scan
from pipeline.errors import InputError

from .conftest import REPO

# Quotes where none are needed, spaces around values, a blank line, a quoted line break,
# CRLF and a BOM: all as a spreadsheet or a person leaves them, all to be kept exactly.
ODD = (
    b"\xef\xbb\xbf"
    b'"email","first_name",last_name,status,tags\r\n'
    b'"ada@example.org","Ada",  Runner ,subscribed,"runners"\r\n'
    b"\r\n"
    b' ben@example.org ,Ben,"Lifter, Jr.",,"runners;seniors"\r\n'
    b'cy@example.org,"C\r\ny",,,\r\n'
    b"dee@example.org,Dee,,unsubscribed,\r\n"
)


def write(tmp_path: Path, data: bytes, mode: int = 0o644) -> Path:
    path = tmp_path / "subscribers.csv"
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_untouched_rows_are_copied_byte_for_byte(tmp_path: Path) -> None:
    path = write(tmp_path, ODD)
    result = apply_changes(path, [ListChange("BEN@example.org", status="unsubscribed")])
    assert result == ApplyResult(changed=1, added=0, unchanged=0)
    expected = ODD.replace(
        b' ben@example.org ,Ben,"Lifter, Jr.",,"runners;seniors"\r\n',
        b'ben@example.org,Ben,"Lifter, Jr.",unsubscribed,runners;seniors\r\n',
    )
    assert path.read_bytes() == expected
    assert not stale_temp_files(path)


def test_a_rewritten_row_with_a_line_break_in_a_cell_stays_one_row(tmp_path: Path) -> None:
    """A cell holding a line break (Alt+Enter in a spreadsheet), in the row rewritten or in a
    new one, is quoted: written bare (Python 3.11's csv with no line terminator), the row
    split in two on the next read, and its second line, an address, was a new subscriber."""
    path = write(
        tmp_path,
        b"email,first_name,status,notes\n"
        b'ann@example.org,Ann,subscribed,"Referred by:\nfriend@example.org"\n'
        b"bob@example.org,Bob,subscribed,\n",
    )
    apply_changes(
        path,
        [
            ListChange("ann@example.org", status="unsubscribed"),
            ListChange(
                "cy@example.org", fields={"first_name": "C\r\ny", "notes": "a\rb"}, create=True
            ),
        ],
    )
    rows = {s.key: s.fields for s in scan(path) if isinstance(s, Subscriber)}
    assert set(rows) == {"bob@example.org", "cy@example.org"}  # Ann left; no one else came
    assert rows["cy@example.org"]["first_name"] == "C\r\ny"
    assert rows["cy@example.org"]["notes"] == "a\rb"
    assert b'unsubscribed,"Referred by:\nfriend@example.org"\n' in path.read_bytes()


def test_several_changes_in_one_rewrite(tmp_path: Path) -> None:
    path = write(tmp_path, ODD)
    result = apply_changes(
        path,
        [
            ListChange("ada@example.org", status="unsubscribed"),
            ListChange("dee@example.org", status="subscribed"),
            ListChange("new@example.org", fields={"first_name": "New"}, create=True),
            ListChange("cy@example.org", fields={"First Name": "Cy"}),
            ListChange("nobody@example.org", status="unsubscribed"),
        ],
    )
    assert result == ApplyResult(
        changed=3, added=1, unchanged=0, removed=0, missing=("nobody@example.org",)
    )
    text = path.read_bytes().decode("utf-8-sig")
    assert text.startswith('"email","first_name",last_name,status,tags\r\n')
    assert "ada@example.org,Ada,Runner,unsubscribed,runners\r\n" in text
    assert "dee@example.org,Dee,,subscribed,\r\n" in text
    assert "cy@example.org,Cy,,,\r\n" in text
    assert text.endswith("new@example.org,New,,subscribed,\r\n")
    assert b"\r\n\r\n" in path.read_bytes()  # the blank line stays


def test_never_a_second_row_for_one_address(tmp_path: Path) -> None:
    path = write(tmp_path, b"email,first_name\nAda@Example.org,Ada\n")
    result = apply_changes(
        path, [ListChange("ada@EXAMPLE.org", create=True, fields={"first_name": "Ada"})]
    )
    assert result == ApplyResult(changed=0, added=0, unchanged=1)
    assert path.read_bytes() == b"email,first_name\nAda@Example.org,Ada\n"
    # Two changes for one new address in one batch: one row, the last values.
    apply_changes(
        path,
        [
            ListChange("bo@example.org", create=True, fields={"first_name": "B"}),
            ListChange("BO@example.org", create=True, fields={"first_name": "Bo"}),
        ],
    )
    assert path.read_bytes() == (
        b"email,first_name,status\nAda@Example.org,Ada\nBO@example.org,Bo,subscribed\n"
    )


def test_a_missing_column_is_added_to_the_header_only(tmp_path: Path) -> None:
    path = write(tmp_path, b'"email";"First Name"\na@example.org;A\nb@example.org;B')
    apply_changes(path, [ListChange("b@example.org", status="bounced")])
    # Header as written plus the new column; the untouched row as it was; the changed row
    # in the file's own separator, and still without a final line break.
    assert path.read_bytes() == (
        b'"email";"First Name";status\na@example.org;A\nb@example.org;B;bounced'
    )
    apply_changes(path, [ListChange("c@example.org", create=True)])
    assert path.read_bytes().endswith(b"b@example.org;B;bounced\nc@example.org;;subscribed\n")


def test_delete_removes_every_row_of_the_address(tmp_path: Path) -> None:
    path = write(tmp_path, b"email\na@example.org\nA@EXAMPLE.ORG\nb@example.org\n")
    result = apply_changes(path, [ListChange("a@example.org", delete=True)])
    assert result.removed == 2
    assert path.read_bytes() == b"email\nb@example.org\n"


def test_no_change_no_rewrite(tmp_path: Path) -> None:
    path = write(tmp_path, ODD)
    inode = path.stat().st_ino
    result = apply_changes(path, [ListChange("dee@example.org", status="unsubscribed")])
    assert result == ApplyResult(changed=0, added=0, unchanged=1)
    assert path.stat().st_ino == inode and path.read_bytes() == ODD


@pytest.mark.parametrize("mode", [0o644, 0o664, 0o600])
def test_the_list_keeps_its_permissions(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, ODD, mode)
    apply_changes(path, [ListChange("ada@example.org", status="unsubscribed")])
    assert path.stat().st_mode & 0o7777 == mode


def test_rows_it_does_not_change_are_not_validated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = "".join(f"reader{i}@example.org,R{i}\n" for i in range(500))
    path = write(tmp_path, f"email,first_name\n{rows}".encode())
    calls: list[str] = []
    real = subscribers_module.normalise

    def counting(address: str) -> str:
        calls.append(address)
        return real(address)

    monkeypatch.setattr(subscribers_module, "normalise", counting)
    apply_changes(path, [ListChange("reader250@example.org", status="unsubscribed")])
    apply_changes(path, [ListChange("new@example.org", create=True)])
    assert calls == ["new@example.org"]  # only the address being added


def test_bad_input_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, ODD)
    with pytest.raises(InputError, match="not a valid address"):
        apply_changes(path, [ListChange("not-an-address", create=True)])
    with pytest.raises(InputError, match="status 'gone' is not one of"):
        apply_changes(path, [ListChange("ada@example.org", status="gone")])
    latin = b"email,first_name\na@example.org,Ana\nb@example.org,Jos\xe9\n"
    path.write_bytes(latin)
    with pytest.raises(InputError) as caught:
        apply_changes(path, [ListChange("a@example.org", status="unsubscribed")])
    assert caught.value.line == 3 and "UTF-8" in caught.value.message
    assert path.read_bytes() == latin and not stale_temp_files(path)


def test_a_stale_temp_file_is_removed_by_the_next_rewrite(tmp_path: Path) -> None:
    path = write(tmp_path, ODD)
    stale = tmp_path / ".subscribers.csv.abc123.tmp"
    stale.write_bytes(ODD)
    apply_changes(path, [ListChange("ada@example.org", status="unsubscribed")])
    assert not stale.exists()


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from pipeline.audience.list_writer import ListChange, apply_changes

    real_fsync = os.fsync
    def stall(fd):
        real_fsync(fd)
        print("written", flush=True)  # the temp file is complete, the rename not yet done
        time.sleep(60)
    os.fsync = stall
    apply_changes(Path(sys.argv[1]), [ListChange("reader7@example.org", status="unsubscribed")])
    """
)


def test_sigkill_mid_rewrite_leaves_the_list_whole_and_the_next_run_cleans_up(
    tmp_path: Path,
) -> None:
    rows = "".join(f"reader{i}@example.org,R{i}\n" for i in range(20_000))
    original = f"email,first_name\n{rows}".encode()
    path = write(tmp_path, original, 0o640)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "written\n"
        (temp,) = stale_temp_files(path)  # the kill lands with the temp file in place
        assert temp.stat().st_size > 100_000
        assert temp.stat().st_mode & 0o777 == 0o640  # never more readable than the list
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert path.read_bytes() == original  # the list is whole: the old version
    result = apply_changes(path, [ListChange("reader9@example.org", status="unsubscribed")])
    assert result.changed == 1
    assert not stale_temp_files(path)
    assert path.stat().st_mode & 0o777 == 0o640


TWO_WRITERS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipeline.audience.list_writer import ListChange, apply_changes

    path, first, last = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    for i in range(first, last):
        apply_changes(path, [ListChange(f"reader{i}@example.org", status="unsubscribed")])
        apply_changes(path, [ListChange(f"new{i}@example.org", create=True)])
    """
)


def test_two_writers_at_once_lose_nothing(tmp_path: Path) -> None:
    rows = "".join(f"reader{i}@example.org,R{i},subscribed\n" for i in range(2_000))
    path = write(tmp_path, f"email,first_name,status\n{rows}".encode())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_WRITERS, str(path), str(a), str(a + 40)], env=env
        )
        for a in (0, 1000)
    ]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    audience = {s.email for s in scan(path) if isinstance(s, Subscriber)}
    gone = {f"reader{i}@example.org" for i in [*range(40), *range(1000, 1040)]}
    added = {f"new{i}@example.org" for i in [*range(40), *range(1000, 1040)]}
    assert not audience & gone
    assert added <= audience
    assert len(audience) == 2_000 - 80 + 80
    assert not stale_temp_files(path)


def test_a_formula_never_reaches_the_list(tmp_path: Path) -> None:
    path = write(tmp_path, b"email,first_name\n")
    apply_changes(
        path,
        [
            ListChange(
                "x@example.org", fields={"first_name": '=HYPERLINK("http://evil")'}, create=True
            )
        ],
    )
    assert (
        path.read_bytes()
        == b'email,first_name,status\nx@example.org,"HYPERLINK(""http://evil"")",subscribed\n'
    )


def test_a_symlinked_list_stays_a_symlink(tmp_path: Path) -> None:
    real = write(tmp_path, ODD)
    link = tmp_path / "elsewhere" / "subscribers.csv"
    link.parent.mkdir()
    link.symlink_to(real)
    apply_changes(link, [ListChange("ada@example.org", status="unsubscribed")])
    assert link.is_symlink() and b"ada@example.org,Ada,Runner,unsubscribed" in real.read_bytes()


def test_a_write_that_fails_changes_nothing_and_says_so(make_project: Callable[..., Path]) -> None:
    """A real write failure: the rewrite runs with a file-size limit below the list's size
    (what a full disk does to it, without filling a disk)."""
    rows = "".join(f"reader{i}@example.org,R{i}\n" for i in range(5_000))
    root = make_project(csv=f"email,first_name\n{rows}")
    path = root / "subscribers.csv"
    before = path.read_bytes()

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "unsubscribe", "reader7@example.org"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=small_files,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"error: {path}: could not rewrite the list (File too large); nothing was changed: "
        "free some space (or fix the folder's permissions) and try again\n"
    )
    assert path.read_bytes() == before and not stale_temp_files(path)


def test_a_list_in_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="subscriber list not found"):
        apply_changes(tmp_path / "nowhere" / "subscribers.csv", [ListChange("a@example.org")])


KILLED_LOOP = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipeline.audience.list_writer import ListChange, apply_changes

    path = Path(sys.argv[1])
    print("ready", flush=True)
    for i in range(int(sys.argv[2]), 10**9):
        apply_changes(path, [
            ListChange(f"reader{i % 30000}@example.org", status="unsubscribed"),
            ListChange(f"joined{i}@example.org", create=True),
        ])
    """
)


def test_sigkill_at_random_moments_never_breaks_the_list(tmp_path: Path) -> None:
    """The writer is killed at random while it loops over rewrites; after every kill the
    list reads whole (every original row there, each change all or nothing) and the next
    rewrite leaves no temp file."""
    seed = int(os.environ.get("KILL_SEED", time.time()))
    chance = random.Random(seed)
    rows = "".join(f"reader{i}@example.org,R{i},subscribed\n" for i in range(30_000))
    path = write(tmp_path, f"email,first_name,status\n{rows}".encode(), 0o640)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start, left_behind = 0, 0
    for _ in range(8):
        process = subprocess.Popen(
            [sys.executable, "-c", KILLED_LOOP, str(path), str(start)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        time.sleep(chance.uniform(0.05, 0.6))
        process.send_signal(signal.SIGKILL)
        process.wait()
        left_behind += len(stale_temp_files(path))
        cells = [line.split(",") for line in path.read_text("utf-8").splitlines()[1:]]
        emails = [row[0] for row in cells]
        joined = {e for e in emails if e.startswith("joined")}
        gone = {row[0] for row in cells if row[-1] == "unsubscribed"}
        # Both changes of a batch landed, or neither.
        assert gone == {f"reader{int(e[6:].split('@')[0])}@example.org" for e in joined}, seed
        assert emails[:30_000] == [f"reader{i}@example.org" for i in range(30_000)], seed
        assert len(emails) == 30_000 + len(joined), seed  # no row doubled, none half-written
        start = 1 + max((int(e[6:].split("@")[0]) for e in joined), default=-1)
        assert path.stat().st_mode & 0o777 == 0o640
        apply_changes(path, [])
        assert not stale_temp_files(path), seed
    # The test means something only if some kill landed mid-rewrite.
    assert left_behind > 0, f"no kill landed mid-rewrite (KILL_SEED={seed})"


def test_an_opt_out_finds_the_row_the_send_would_mail(tmp_path: Path) -> None:
    # The send folds a full-width letter in the domain (IDNA), so this row is mailed as
    # ada@example.org: an opt-out for that address must find it.
    path = write(tmp_path, "email\nADA@ＥXAMPLE.org\nben@xn--bcher-kva.de\n".encode())
    apply_changes(path, [ListChange("ada@example.org", status="unsubscribed")])
    apply_changes(path, [ListChange("ben@bücher.de", status="unsubscribed")])
    assert [s for s in scan(path) if isinstance(s, Subscriber)] == []


def test_readers_remove_leftovers_but_never_a_rewrite_in_progress(tmp_path: Path) -> None:
    path = write(tmp_path, ODD)
    stale = tmp_path / ".subscribers.csv.abc123.tmp"
    stale.write_bytes(ODD)
    with locked(path):  # a writer at work: its temp file is not a leftover
        assert remove_leftovers(path) == 0 and stale.exists()
    assert remove_leftovers(path) == 1 and not stale.exists()
    assert path.read_bytes() == ODD


def test_subscribers_check_removes_leftovers(make_project: Callable[..., Path]) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    root = make_project()
    (root / ".subscribers.csv.x1.tmp").write_text("a copy")
    (root / ".subscribers.csv.x2.tmp").write_text("a copy")
    result = CliRunner().invoke(
        cli, ["--config", str(root / "newsletter.toml"), "subscribers", "check"]
    )
    assert "  removed 2 copies of the list left by an interrupted change" in result.stdout
    assert not list(root.glob(".subscribers.csv.*.tmp"))
