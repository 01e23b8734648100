"""`newsletter subscribers add/remove/resubscribe/list/export/check` and `unsubscribe ADDRESS`."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.audience.subscribers import Subscriber, scan
from pipeline.cli import cli

from .conftest import SAMPLE_ISSUE

LIST = (
    b"Email Address,First Name,Last Name,status,TAGS,Zip Code\n"
    b"ada@example.org,Ada,Runner,subscribed,runners;seniors,12345\n"
    b"ben@example.org,Ben,Lifter,unsubscribed,lifting,\n"
    b'"cy@example.org","Cy",,bounced,runners,\n'
)


@pytest.fixture
def root(make_project: Callable[..., Path]) -> Iterator[Path]:
    project = make_project()
    (project / "subscribers.csv").write_bytes(LIST)
    old = Path.cwd()
    os.chdir(project)
    try:
        yield project
    finally:
        os.chdir(old)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), obj={})
    assert not (result.exception and not isinstance(result.exception, SystemExit))
    return result.exit_code, result.stdout, result.stderr


def audience(root: Path) -> list[str]:
    return [s.email for s in scan(root / "subscribers.csv") if isinstance(s, Subscriber)]


def test_check_says_which_columns_it_mapped(root: Path) -> None:
    code, out, _ = run("subscribers", "check")
    assert code == 0
    assert out.splitlines()[0].endswith("subscribers.csv: 3 rows, 1 would get an issue")
    assert (
        "columns read: 'Email Address' as email, 'First Name' as first_name, "
        "'Last Name' as last_name, 'TAGS' as tags, 'Zip Code' as zip_code"
    ) in out
    (root / "subscribers.csv").write_bytes(b"email;first_name\nada@example.org;Ada\n")
    code, out, _ = run("subscribers", "check")
    assert "1 row, 1 would get an issue" in out and "separated by semicolons" in out
    assert "columns read" not in out


def test_cells_no_column_names_are_said_and_a_new_column_goes_after_them(root: Path) -> None:
    """A phone number typed past the last column was ignored without a word, and the first
    column added to the header (a signup's subscribed_at, a CLI --last-name) named it."""
    (root / "subscribers.csv").write_bytes(
        b"email,first_name,status,\n"
        b"ann@example.org,Ann,subscribed,,555-0100,prefers mornings\n"
        b"bob@example.org,Bob,subscribed,VIP\n"
        b"cy@example.org,Cy,subscribed,,,\n"
    )
    code, out, _ = run("subscribers", "check")
    assert code == 0
    lines = [line for line in out.splitlines() if "in no column the header names" in line]
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in lines] == ["2", "3"]
    assert "2 cells in no column the header names ('555-0100', 'prefers mornings')" in lines[0]
    assert "1 cell in no column the header names ('VIP'), so nothing reads it" in lines[1]
    assert lines[0].endswith("name the column in the header (line 1), or delete the cells")
    assert run("subscribers", "add", "dee@example.org", "--last-name", "Dee")[0] == 0
    data = (root / "subscribers.csv").read_bytes()
    assert data.splitlines()[0] == b"email,first_name,status,,,,last_name"
    assert b"ann@example.org,Ann,subscribed,,555-0100,prefers mornings\n" in data
    people = {s.key: s.fields for s in scan(root / "subscribers.csv") if isinstance(s, Subscriber)}
    assert people["ann@example.org"].get("last_name") == ""
    assert people["dee@example.org"]["last_name"] == "Dee"
    assert "555-0100" not in people["ann@example.org"].values()
    assert run("unsubscribe", "ann@example.org")[0] == 0  # a rewrite keeps the cells
    assert (
        b"ann@example.org,Ann,unsubscribed,,555-0100,prefers mornings"
        in (root / "subscribers.csv").read_bytes()
    )
    code, out, _ = run("subscribers", "check")
    assert "subscribers.csv:2: 2 cells in no column the header names" in out
    code, out, err = run("subscribers", "export", "--out", "copy.csv")  # said, not dropped
    assert code == 0 and "555-0100" not in (root / "copy.csv").read_text("utf-8-sig")
    assert err == (
        "  not in the copy: cells in no column the header names, on 2 rows (line 2, 3);"
        " `newsletter subscribers check` names them\n"
    )


def test_check_counts_and_names_whom_the_consent_history_keeps_out(root: Path) -> None:
    """An older copy of the list put back: `send` kept the reader who had left out, and
    `subscribers check` counted them in, without a word (12 against the send's 11)."""
    before = (root / "subscribers.csv").read_bytes()
    assert run("unsubscribe", "ada@example.org")[0] == 0
    assert run("subscribers", "check")[1].splitlines()[0].endswith("3 rows, 0 would get an issue")
    (root / "subscribers.csv").write_bytes(before)  # the old copy, Ada subscribed again
    code, out, _ = run("subscribers", "check")
    assert code == 0
    assert out.splitlines()[0].endswith("3 rows, 0 would get an issue")
    line = next(line for line in out.splitlines() if "kept out of sends" in line)
    assert line.split(": kept out")[0].endswith("subscribers.csv:2")
    assert "ada@example.org says subscribed here, but left since: unsubscribed " in line
    assert "(by a newsletter command); if they asked to be back: newsletter subscribers" in line
    assert "by-hand" not in out


def test_merge_fields_see_the_mapped_names(root: Path) -> None:
    issue = root / SAMPLE_ISSUE
    body = issue.read_text("utf-8").replace("Hi {{", "Zip {{ subscriber.zip_code }}. Hi {{", 1)
    issue.write_text(body, "utf-8")
    code, out, _ = run("check", SAMPLE_ISSUE)
    assert code == 0, out
    assert run("build", SAMPLE_ISSUE)[0] == 0
    text = (root / "build/2025-07-21-hip-rotation/email.txt").read_text("utf-8")
    assert "Zip 12345. Hi Ada," in text


def test_list_by_a_tag_nobody_has_names_the_tags_there_are(root: Path) -> None:
    code, out, _ = run("subscribers", "list", "--tag", "runner")
    assert code == 0
    assert out.splitlines() == [
        "0 rows (tagged runner)",
        "no row has the tag 'runner' (the list's tags: lifting, runners, seniors); "
        "did you mean 'runners'?",
    ]


def test_export_makes_no_cell_a_spreadsheet_would_run(root: Path) -> None:
    """A formula already in the list (edited by hand, imported) went out as it was, live in
    the spreadsheet the export is for."""
    (root / "subscribers.csv").write_bytes(
        b"email,first_name,last_name,notes\n"
        b'=1+1@example.org,"=HYPERLINK(""http://evil.example"",""x"")",-Smith,+1 555 0100\n'
        b"ada@example.org,Ada,Runner,@home\n"
    )
    code, out, _ = run("subscribers", "export")
    assert code == 0
    rows = out.splitlines()
    assert (
        rows[1]
        == '=1+1@example.org,"\'=HYPERLINK(""http://evil.example"",""x"")",\'-Smith,\'+1 555 0100'
    )
    assert rows[2] == "ada@example.org,Ada,Runner,'@home"


def test_add_with_a_tag_close_to_one_the_list_has_says_so(root: Path) -> None:
    """'runner' for 'runners' made a group of one, which the issue tagged 'runner' then
    passed `check` for."""
    code, out, _ = run("subscribers", "add", "sam@example.org", "--tag", "runner", "--tag", "yoga")
    assert code == 0
    assert out.splitlines() == [
        "added sam@example.org: subscribed (tags: runner, yoga)",
        "  note: no one else has the tag 'runner'; the list has 'runners' (a typo? fix it in"
        " subscribers.csv)",
    ]
    code, out, _ = run("subscribers", "add", "kim@example.org", "--tag", "runner")
    assert out.splitlines() == ["added kim@example.org: subscribed (tags: runner)"]


def test_add_then_list_then_export(root: Path) -> None:
    code, out, _ = run(
        "subscribers", "add", "dee@example.org", "--first-name", "Dee", "--tag", "Runners",
        "--tag", "swim",
    )  # fmt: skip
    assert (code, out) == (0, "added dee@example.org: subscribed (tags: runners, swim)\n")
    raw = (root / "subscribers.csv").read_bytes()
    assert raw == LIST + b"dee@example.org,Dee,,subscribed,runners;swim,\n"
    code, out, _ = run("subscribers", "list", "--tag", "runners")
    assert [line.split()[0] for line in out.splitlines()[:-1]] == [
        "ada@example.org",
        "cy@example.org",
        "dee@example.org",
    ]
    assert out.splitlines()[-1] == "3 rows (tagged runners)"
    code, out, _ = run("subscribers", "list", "--status", "subscribed", "--tag", "swim")
    assert out.splitlines()[-1] == "1 row (subscribed tagged swim)"
    code, out, _ = run("subscribers", "export")
    assert out.splitlines()[0] == "email,first_name,last_name,status,tags,zip_code"
    assert out.splitlines()[2] == "ben@example.org,Ben,Lifter,unsubscribed,lifting,"
    code, out, _ = run("subscribers", "export", "--out", "copy.csv")
    assert (code, out) == (0, "exported 4 rows to copy.csv\n")
    copy = (root / "copy.csv").read_bytes()
    assert copy.startswith(b"\xef\xbb\xbfemail,first_name,") and b"\r\n" in copy
    code, _, err = run("subscribers", "export", "--out", "subscribers.csv")
    assert code == 2 and "--out is the list itself" in err
    assert (root / "subscribers.csv").read_bytes() == raw


def test_add_someone_already_there_changes_nothing(root: Path) -> None:
    code, _, err = run("subscribers", "add", "BEN@example.org", "--first-name", "B")
    assert code == 2
    assert err == (
        f"error: {root / 'subscribers.csv'}:3: BEN@example.org is already on the list "
        "(unsubscribed): nothing changed; `newsletter subscribers resubscribe` if they asked "
        "to be back\n"
    )
    code, _, err = run("subscribers", "add", "not-an-address")
    assert code == 2 and "'not-an-address' is not a valid address" in err
    assert (root / "subscribers.csv").read_bytes() == LIST


def test_resubscribe_and_unsubscribe_by_address(root: Path) -> None:
    assert run("subscribers", "resubscribe", "Ben@Example.org") == (
        0,
        "Ben@Example.org: subscribed again (was unsubscribed)\n",
        "",
    )
    assert audience(root) == ["ada@example.org", "ben@example.org"]
    assert run("subscribers", "resubscribe", "ben@example.org")[1] == (
        "ben@example.org: already subscribed; nothing changed\n"
    )
    assert run("unsubscribe", "ben@example.org") == (
        0,
        "ben@example.org: unsubscribed (1 row changed)\n",
        "",
    )
    assert run("unsubscribe", "ben@example.org")[1] == (
        "ben@example.org: already unsubscribed; nothing changed\n"
    )
    assert (root / "subscribers.csv").read_bytes() == LIST
    code, _, err = run("unsubscribe", "nobody@example.org")
    assert code == 2 and "nobody@example.org is not on the list: nothing changed" in err
    code, _, err = run("subscribers", "resubscribe", "nobody@example.org")
    assert code == 2 and "`newsletter subscribers add nobody@example.org` adds them" in err


def test_remove_deletes_the_rows(root: Path) -> None:
    code, out, _ = run("subscribers", "remove", "ADA@example.org")
    assert code == 0 and "(1 row deleted)" in out
    assert (root / "subscribers.csv").read_bytes() == LIST.replace(
        b"ada@example.org,Ada,Runner,subscribed,runners;seniors,12345\n", b""
    )
    code, _, err = run("subscribers", "remove", "ada@example.org")
    assert code == 2 and "ada@example.org is not on the list: nothing removed" in err


def test_unsubscribe_by_link_still_works(root: Path) -> None:
    from pipeline.config import load_settings
    from pipeline.messages.secret import load_secret
    from pipeline.messages.unsubscribe import make_token, unsubscribe_url

    settings = load_settings(root / "newsletter.toml")
    token = make_token(load_secret(settings.state_dir, dict(os.environ)), "ada@example.org")
    code, out, _ = run("unsubscribe", unsubscribe_url(settings.base_url, token))
    assert (code, out) == (0, "ada@example.org: unsubscribed (1 row changed)\n")
    code, _, err = run("unsubscribe", token[:-3] + "AAA")
    assert code == 2 and "not a valid unsubscribe token or link" in err


def test_unsubscribe_takes_what_she_copies_from_her_mail(root: Path) -> None:
    # The address as her mail program shows the sender, and the link as the header wraps it.
    from pipeline.config import load_settings
    from pipeline.messages.secret import load_secret
    from pipeline.messages.unsubscribe import make_token, unsubscribe_url

    code, out, _ = run("unsubscribe", "Ada Runner <ada@example.org>")
    assert (code, out) == (0, "ada@example.org: unsubscribed (1 row changed)\n")
    settings = load_settings(root / "newsletter.toml")
    token = make_token(load_secret(settings.state_dir, dict(os.environ)), "ben@example.org")
    code, out, _ = run("unsubscribe", f" <{unsubscribe_url(settings.base_url, token)}> ")
    assert (code, out) == (0, "ben@example.org: already unsubscribed; nothing changed\n")


def test_every_subscribers_command_has_help_with_an_example() -> None:
    group = cli.commands["subscribers"]
    assert hasattr(group, "commands")
    for name in ("check", "list", "add", "remove", "resubscribe", "export"):
        code, out, _ = run("subscribers", name, "--help")
        assert code == 0 and f"newsletter subscribers {name}" in out, name


def help_examples() -> list[tuple[str, ...]]:
    group = cli.commands["subscribers"]
    assert isinstance(group, click.Group)
    commands = [group, *group.commands.values(), cli.commands["unsubscribe"]]
    found = []
    for command in commands:
        for line in (command.help or "").splitlines():
            line = line.strip()
            if line.startswith("newsletter ") and "..." not in line:
                found.append(tuple(shlex.split(line.split(" > ")[0])[1:]))
    return found


@pytest.mark.parametrize("args", help_examples(), ids=" ".join)
def test_help_examples_work_in_a_project_made_by_init(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    from datetime import date

    from pipeline.project import init_project

    init_project(tmp_path, date(2026, 1, 5))
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        code, out, err = run(*args)
    finally:
        os.chdir(old)
    assert (code, err) == (0, ""), out + err


def test_status_of_an_address(root: Path) -> None:
    from pipeline.audience.listing import status_of

    path = root / "subscribers.csv"
    assert status_of(path, "ADA@example.org") == "subscribed"
    assert status_of(path, "ben@example.org") == "unsubscribed"
    assert status_of(path, "nobody@example.org") is None
    path.write_bytes(LIST + b"ada@example.org,Ada,,complained,,\n")  # an opt-out row wins
    assert status_of(path, "ada@example.org") == "complained"
