"""The list's one writer: byte-for-byte, permissions kept, no leftovers, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pipeline.audience.subscribers as subscribers_module
from pipeline.audience.list_writer import ApplyResult, ListChange, apply_changes, stale_temp_files
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
    real = subscribers_module.validate_email

    def counting(address: str, **options: object) -> object:
        calls.append(address)
        return real(address, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(subscribers_module, "validate_email", counting)
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
