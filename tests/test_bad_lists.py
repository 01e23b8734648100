"""Every command that reads the list, against every list a person might really have saved.

A list that cannot be read is one line naming the file and line, the same from every command,
with the right exit code, no traceback, nothing sent and the list unchanged byte for byte.
A list that is odd but readable (semicolons, a BOM and CRLF, NUL bytes, Mailchimp's headers)
is read, by every command, without a word on stderr.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli

from .conftest import SAMPLE_ISSUE

HEADER = b"email,first_name,last_name,status,tags\n"


def rows(first: int, last: int) -> bytes:
    return b"".join(b"reader%d@example.org,R%d,,subscribed,\n" % (i, i) for i in range(first, last))


@dataclass(frozen=True)
class Bad:
    name: str
    data: bytes
    line: int  # the line every command must name
    says: str  # and what it must say about it


BAD_LISTS = [
    Bad(
        "cp1252 byte at row 3",
        HEADER + b"ada@example.org,Ada,,,\njose@example.org,Jos\xe9,,,\n" + rows(0, 5),
        3,
        'not saved as UTF-8 ("José"',
    ),
    Bad(
        "cp1252 byte at row 3002",
        HEADER + rows(2, 3002) + b"jose@example.org,Jos\xe9,,,\n",
        3002,
        'CSV UTF-8 (Comma delimited)"',
    ),
    Bad("no email column", b"mail,name\nada@example.org,Ada\n", 1, "no 'email' column"),
    Bad(
        "the header row deleted",
        b"ada@example.org,Ada,Lovelace\nbob@example.org,Bob,\n",
        1,
        "the first line is a reader (ada@example.org), not the column names: add a header line"
        " above it naming each column, such as email,first_name,last_name",
    ),
    Bad(
        "a 200 KB field",
        HEADER + rows(2, 10) + b'big@example.org,"' + b"x" * 200_000 + b'",,,\n' + rows(11, 20),
        10,
        "longer than 131,072 characters",
    ),
    Bad(
        "an unclosed quote",
        HEADER + rows(2, 6) + b'ada@example.org,"Ada,,,\n' + rows(7, 9),
        6,
        'a quote (") opened in this row is never closed',
    ),
    Bad(
        "text after a closing quote",
        HEADER + rows(2, 6) + b'ada@example.org,"Ada" Lovelace,,,\n' + rows(7, 9),
        6,
        "more text after its closing quote, before the next ','",
    ),
    Bad(
        "a quote opened, closed rows later",
        HEADER + rows(2, 6) + b'ada@example.org,"Ada,,,\n' + rows(7, 9) + b'"jo@x.org",Jo,,,\n',
        6,
        "the quote opened here closes at line 9",
    ),
    Bad(
        "text after a closing quote, semicolons",
        b'email;first_name\nada@example.org;Ada\n"jo@example.org" x;Jo\n',
        3,
        "before the next ';'",
    ),
    Bad(
        "duplicated header",
        b"email,first_name,email\nada@example.org,Ada,ada@example.org\n",
        1,
        "column 'email' appears twice",
    ),
    Bad(
        "two names for one column",
        b"Email,E-mail,First Name\nada@example.org,ada@example.org,Ada\n",
        1,
        "'Email' and 'E-mail' mean the same",
    ),
    Bad("an empty file", b"", 1, "the file is empty"),
    Bad(
        "a bad byte after a sep= line",
        b"sep=;\nemail;first_name\nada@example.org;Ada\njo@example.org;Jos\xe9\n",
        4,
        '"José"',
    ),
    Bad("unclosed quote after sep=", b'sep=,\nemail\na@example.org\n"b@example.org\n', 4, "quote"),
    Bad("UTF-16", "email\tfirst_name\nada@example.org\tAda\n".encode("utf-16"), 1, "UTF-16"),
]


@dataclass(frozen=True)
class Command:
    args: tuple[str, ...]
    exit_code: int  # for a list it cannot read


COMMANDS = [
    # `check` reports the list as one of the issue's problems: exit 1, like any problem.
    Command(("check", SAMPLE_ISSUE), 1),
    Command(("send", SAMPLE_ISSUE, "--dry-run"), 2),
    Command(("send", SAMPLE_ISSUE, "--yes"), 2),
    Command(("send", SAMPLE_ISSUE, "--to", "me@example.org"), 2),
    Command(("build", SAMPLE_ISSUE), 2),
    Command(("subscribers", "check"), 2),
    Command(("subscribers", "list"), 2),
    Command(("subscribers", "export"), 2),
    Command(("subscribers", "add", "new@example.org"), 2),
    Command(("subscribers", "remove", "ada@example.org"), 2),
    Command(("subscribers", "resubscribe", "ada@example.org"), 2),
    Command(("unsubscribe", "ada@example.org"), 2),
]


@pytest.fixture
def in_project(make_project: Callable[..., Path]) -> Iterator[Path]:
    root = make_project()
    old = Path.cwd()
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(old)


def run(*args: str) -> tuple[int, str, str, BaseException | None]:
    result = CliRunner().invoke(cli, list(args), obj={})
    error = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.stdout, result.stderr, error


def nothing_sent(root: Path) -> bool:
    outbox = root / "outbox"
    return not outbox.exists() or not any(p.is_file() for p in outbox.rglob("*"))


@pytest.mark.parametrize("bad", BAD_LISTS, ids=lambda b: b.name)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c.args[:2]))
def test_a_list_that_cannot_be_read(in_project: Path, bad: Bad, command: Command) -> None:
    path = in_project / "subscribers.csv"
    path.write_bytes(bad.data)
    code, out, err, error = run(*command.args)
    assert error is None, f"{type(error).__name__}: {error}"
    where = f"{path}:{bad.line}: "
    lines = [line for line in (out + err).splitlines() if where in line]
    assert len(lines) == 1, out + err
    assert bad.says in lines[0]
    assert "Traceback" not in out + err
    assert code == command.exit_code
    if command.exit_code == 2:
        assert err.splitlines() == [f"error: {lines[0].removeprefix('error: ')}"]
        assert out == ""  # not a row printed before the bad one
    assert path.read_bytes() == bad.data
    assert not list(in_project.glob(".subscribers.csv.*.tmp"))
    assert nothing_sent(in_project)


# Readable, though not as the sample writes it.  Each has Ada subscribed, with her name.
ODD_LISTS = {
    "semicolons": b"email;first_name;last_name;status;tags\nada@example.org;Ada;R;;runners\n",
    "tabs": b"email\tfirst_name\nada@example.org\tAda\n",
    "BOM and CRLF": b"\xef\xbb\xbfemail,first_name\r\nada@example.org,Ada\r\n",
    "NUL in values": b"email,first_name\nada@example.org\x00,A\x00da\n",
    "Mailchimp headers": b"Email Address,First Name,Last Name,TAGS\nada@example.org,Ada,R,x\n",
    "Excel headers": b"E-mail,FNAME,LNAME\nada@example.org,Ada,R\n",
    "blank lines": b"email,first_name\n\nada@example.org,Ada\n\n\n",
    "old Mac line ends": b"email,first_name\rada@example.org,Ada\r",
    "no final line break": b"email,first_name\nada@example.org,Ada",
    "Excel's sep= line": b"sep=;\r\nemail;first_name\r\nada@example.org;Ada\r\n",
    "unnamed columns": b"email,first_name,,\nada@example.org,Ada,,\n,,,\n",
}
READERS = [
    ("check", SAMPLE_ISSUE),
    ("send", SAMPLE_ISSUE, "--dry-run"),
    ("send", SAMPLE_ISSUE, "--yes"),
    ("send", SAMPLE_ISSUE, "--to", "ADA@example.org"),
    ("build", SAMPLE_ISSUE),
    ("subscribers", "check"),
    ("subscribers", "list"),
    ("subscribers", "export"),
]


@pytest.mark.parametrize("data", ODD_LISTS.values(), ids=list(ODD_LISTS))
@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a[:2]))
def test_an_odd_but_readable_list(in_project: Path, data: bytes, args: tuple[str, ...]) -> None:
    path = in_project / "subscribers.csv"
    path.write_bytes(data)
    code, out, err, error = run(*args)
    assert error is None, f"{type(error).__name__}: {error}"
    assert (code, err) == (0, ""), out + err
    assert path.read_bytes() == data
    if args[0] == "build":
        text = (in_project / "build/2025-07-21-hip-rotation/email.txt").read_text("utf-8")
        assert "Hi Ada," in text  # the first name was found, whatever the header said
    if args[2:] == ("--dry-run",):
        assert "audience: 1 subscriber" in out
    if args[2:] == ("--yes",):
        assert "audience 1: sent 1" in out
        (sent,) = (in_project / "outbox" / "2025-07-21-hip-rotation").glob("*.eml")
        assert "Hi Ada," in sent.read_text("utf-8")
    if args[2:3] == ("--to",):
        assert "test copy to Ada" in out
    if args[:2] == ("subscribers", "list"):
        assert out.splitlines()[0].split() == [
            "ada@example.org",
            "subscribed",
            "Ada",
            *out.splitlines()[0].split()[3:],
        ]


@pytest.mark.parametrize("data", ODD_LISTS.values(), ids=list(ODD_LISTS))
def test_unsubscribe_on_an_odd_list_changes_one_row_in_its_own_format(
    in_project: Path, data: bytes
) -> None:
    path = in_project / "subscribers.csv"
    path.write_bytes(data)
    code, out, err, error = run("unsubscribe", "ADA@example.org")
    assert error is None and (code, err) == (0, ""), out + err
    code, out, _, _ = run("subscribers", "list", "--status", "unsubscribed")
    assert out.split()[0] == "ada@example.org"
    after = path.read_bytes()
    header_end = data.index(b"\n") if b"\n" in data else data.index(b"\r")
    assert after[: header_end - 1] == data[: header_end - 1]  # the header as written
    if data.startswith(b"email;"):
        assert b"ada@example.org;Ada;R;unsubscribed;runners" in after
    if data.startswith(b"sep=;"):
        assert after == b"sep=;\r\nemail;first_name;status\r\nada@example.org;Ada;unsubscribed\r\n"


def test_a_header_only_list_is_read_as_empty(in_project: Path) -> None:
    (in_project / "subscribers.csv").write_bytes(HEADER)
    code, out, _, error = run("subscribers", "check")
    assert error is None and code == 0 and "0 rows, 0 would get an issue" in out
    assert run("subscribers", "list")[1] == "0 rows\n"
    code, out, err, error = run("send", SAMPLE_ISSUE, "--dry-run")
    assert error is None and code == 2 and "only its header row" in err, out + err


def test_send_to_a_header_only_list_refuses(in_project: Path) -> None:
    (in_project / "subscribers.csv").write_bytes(HEADER)
    code, out, err, error = run("send", SAMPLE_ISSUE, "--yes")
    assert error is None and code == 2 and "Traceback" not in out + err


@pytest.mark.parametrize("data", ODD_LISTS.values(), ids=list(ODD_LISTS))
def test_add_and_remove_on_an_odd_list_keep_the_rest_as_it_was(
    in_project: Path, data: bytes
) -> None:
    path = in_project / "subscribers.csv"
    path.write_bytes(data)
    code, out, err, error = run("subscribers", "add", "new@example.org", "--first-name", "New")
    assert error is None and (code, err) == (0, ""), out + err
    code, out, err, error = run("subscribers", "list")
    assert [line.split()[0] for line in out.splitlines()[:-1]] == [
        "ada@example.org",
        "new@example.org",
    ]
    code, out, err, error = run("subscribers", "remove", "new@example.org")
    assert error is None and (code, err) == (0, ""), out + err
    after = path.read_bytes()
    # Only the header may have grown a status column; Ada's row is as it was.
    ada = next(line for line in data.splitlines(keepends=True) if line.startswith(b"ada@"))
    assert ada.rstrip(b"\r\n") in after
    assert b"new@example.org" not in after
