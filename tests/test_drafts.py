"""A draft is text from a person, or from anywhere: merge fields are a checked, sandboxed subset;
broken braces, Mailchimp tags, the untouched scaffold and `init`'s placeholders never go out;
every problem is reported in one run, with its line; pathological input is one line, fast."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from pipeline.audience.sample import sample_subscriber
from pipeline.cli import cli
from pipeline.config import Settings, load_settings
from pipeline.content.issue import load_issue, read_issue
from pipeline.errors import InputError, InputErrors
from pipeline.project import new_issue
from pipeline.render.checks import check_issue
from pipeline.render.compile import compile_issue
from pipeline.render.markdown import MAX_DEPTH

LA = ZoneInfo("America/Los_Angeles")
GOOD_LINK = "[Book](https://movementsolutions.example/book){.button}"


def messages(path: Path, settings: Settings) -> list[str]:
    return [p.location_message() for p in check_issue(path, settings)]


def load_problems(path: Path) -> list[str]:
    with pytest.raises(InputError) as caught:
        load_issue(path, LA)
    error = caught.value
    items = error.problems if isinstance(error, InputErrors) else [error]
    return [p.location_message() for p in items]


@pytest.fixture
def in_project(project: Path) -> Iterator[Path]:
    old = Path.cwd()
    os.chdir(project)
    try:
        yield project
    finally:
        os.chdir(old)


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), obj={}, env=env)
    return result.exit_code, result.stdout, result.stderr


# --- The sandbox (issue 10) ---------------------------------------------------------------

EXPLOITS = [
    "{{ lipsum.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].environ }}",
    "{{ lipsum.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{{ subscriber.__class__.__init__.__globals__ }}",
    "{{ subscriber._values }}",
    "{{ subscriber.first_name.__class__.__mro__ }}",
    "{{ subscriber.first_name.upper() }}",
    "{{ subscriber.first_name | attr('__class__') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ range(3) | list }}",
    "{{ 'x' * 3 }}",
    "{{ subscriber }}",
    "{{ config }}",
    "{{ self }}",
]


@pytest.mark.parametrize("field", EXPLOITS)
def test_exploits_are_refused_with_file_and_line(
    in_project: Path, write_issue: Callable[..., Path], field: str
) -> None:
    path = write_issue(f"Hello\n\nThere {field}\n")
    env = {"NEWSLETTER_SECRET": "s3cr3t-never-printed"}
    for command in (["check"], ["build"], ["send", "--dry-run"], ["send", "--yes"]):
        code, out, err = run(*command, str(path), env=env)
        assert code == (1 if command == ["check"] else 2), (command, out, err)
        shown = out + err
        assert f"{path}:7: merge field" in shown and "is not allowed" in shown, shown
        assert "uid=" not in shown and "s3cr3t" not in shown and "Traceback" not in shown
    assert not (in_project / "build").exists()
    assert not (in_project / "outbox").exists()


def test_exploit_in_the_subject_is_refused_too(write_issue: Callable[..., Path]) -> None:
    path = write_issue("Body\n", front="subject: \"{{ lipsum.__globals__['os'].environ }}\"\n")
    (message,) = load_problems(path)
    assert message.startswith(f"{path}:2: subject: merge field {{{{ lipsum")


def test_the_sandbox_is_a_second_wall(settings: Settings, write_issue: Callable[..., Path]) -> None:
    """Even an expression that got past the check cannot reach Python's internals."""
    import jinja2

    from pipeline.content.merge_fields import ENVIRONMENT

    assert ENVIRONMENT.globals == {}
    with pytest.raises(jinja2.TemplateError):
        ENVIRONMENT.from_string("{{ x.__class__.__mro__ }}").render(x="")
    with pytest.raises(jinja2.TemplateError):  # no filter outside the allow-list exists
        ENVIRONMENT.from_string("{{ x | attr('upper') }}").render(x="")


def test_allowed_merge_fields_still_work(
    settings: Settings, write_issue: Callable[..., Path]
) -> None:
    body = (
        'Hi {{ subscriber.first_name | default("there") | upper }},\n\n'
        '{{ "Dear " ~ subscriber.first_name if subscriber.first_name is defined else "Hi" }}\n\n'
        '{{ subscriber["last_name"] | lower | replace("a", "4") | truncate(20) }}\n\n'
        f"[Leave]({{{{ unsubscribe_url }}}})\n\n{GOOD_LINK}\n"
    )
    path = write_issue(body)
    assert messages(path, settings) == []
    compiled = compile_issue(load_issue(path, settings.timezone), settings)
    email = compiled.personalise(sample_subscriber(settings), "https://u.example/t")
    assert "Hi ADA," in email.text and "Dear Ada" in email.text and "runner" in email.text


def test_check_messages_show_merge_fields_not_tokens(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    path = write_issue("![](https://movementsolutions.example/{{ subscriber.city }}.png)\n")
    (message,) = messages(path, settings)
    assert "{{ subscriber.city }}" in message and "MFX" not in message


# --- Broken braces and Mailchimp tags -------------------------------------------------------


@pytest.mark.parametrize(
    ("front", "body", "line", "expected"),
    [
        (None, 'Hi {{ subscriber.first_name | default("there") },\n', 5, "'{{' is never closed"),
        ('subject: "{{ subscriber.first_name"\n', "Body\n", 2, "'{{' is never closed"),
        (None, "Hi subscriber.first_name }}!\n", 5, "'}}' has no '{{' before it"),
        (
            None,
            "Hello\n\nHi {{ subscriber.first_name },\n\nsee {{ unsubscribe_url }}\n",
            7,
            "'{{' is never closed",
        ),
        (None, "Hi *|FNAME|*,\n", 5, "*|FNAME|* is a Mailchimp merge tag"),
    ],
)
def test_broken_merge_fields_are_check_errors(
    in_project: Path,
    write_issue: Callable[..., Path],
    settings: Settings,
    front: str | None,
    body: str,
    line: int,
    expected: str,
) -> None:
    path = write_issue(body, front=front)
    found = messages(path, settings)
    assert any(m.startswith(f"{path}:{line}: ") and expected in m for m in found), found
    code, out, err = run("send", "--yes", str(path))  # send runs check: nothing goes out
    assert code == 2 and expected in err and "Traceback" not in out + err
    assert not (in_project / "outbox").exists()


def test_mailchimp_tag_suggests_the_merge_field(write_issue: Callable[..., Path]) -> None:
    (message,) = load_problems(write_issue("Hi *|FNAME|*,\n"))
    assert "write {{ subscriber.first_name }}" in message


# --- Did you mean -----------------------------------------------------------------------------


def test_misspelt_filter_suggests_the_right_one(write_issue: Callable[..., Path]) -> None:
    path = write_issue('Hi {{ subscriber.first_name | defualt("there") }}\n')
    (message,) = load_problems(path)
    assert message.startswith(f"{path}:5: merge field")
    assert "there is no filter 'defualt' (did you mean 'default'?)" in message


def test_misspelt_column_suggests_the_right_one(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    path = write_issue("Hi {{ subscriber.frist_name }}\n")
    (message,) = messages(path, settings)
    assert message.endswith("did you mean subscriber.first_name?")


def test_build_with_an_unknown_column_is_one_line_naming_it(
    in_project: Path, write_issue: Callable[..., Path]
) -> None:
    path = write_issue("Hi {{ subscriber.zip_code }} and {{ subscriber.cty }}\n")
    code, out, err = run("build", str(path))
    assert code == 2 and out == ""
    assert err == (
        f"error: {path}:5: merge field {{{{ subscriber.zip_code }}}}: the list has no column "
        "'zip_code' (its columns: city, email, first_name, last_name, status, tags)\n"
    )
    assert "SubscriberFields" not in err
    path.write_text("---\nsubject: s\n---\n\nHi {{ subscriber.cty }}\n", encoding="utf-8")
    code, _, err = run("build", str(path))
    assert code == 2 and err.rstrip().endswith("did you mean subscriber.city?")


def test_bare_column_name_suggests_subscriber_prefix(write_issue: Callable[..., Path]) -> None:
    (message,) = load_problems(write_issue("Hi {{ first_name }}\n"))
    assert "did you mean subscriber.first_name?" in message


# --- A colon in the subject -------------------------------------------------------------------


def test_unquoted_colon_in_subject_is_accepted(write_issue: Callable[..., Path]) -> None:
    path = write_issue(
        "Body\n",
        front="subject: Knee pain: 3 fixes\npreheader: Part 2: stairs\nsend_at: 2025-08-01 07:00\n",
    )
    issue = load_issue(path, LA)
    assert issue.subject == "Knee pain: 3 fixes"
    assert issue.preheader == "Part 2: stairs"
    assert issue.send_at is not None


def test_other_unquoted_colons_say_to_quote(write_issue: Callable[..., Path]) -> None:
    path = write_issue("Body\n", front="subject: ok\ntags: a: b\n")
    (message,) = load_problems(path)
    assert message.startswith(f"{path}:3: front matter is not valid YAML")
    assert "must be in quotes" in message


def test_a_yaml_error_below_an_unquoted_colon_subject_names_its_own_line(
    write_issue: Callable[..., Path],
) -> None:
    # The subject is accepted as it is; the line to fix is the tags line, not the subject's.
    path = write_issue("Body\n", front="subject: Knee pain: 3 fixes\ntags: a: b\n")
    (message,) = load_problems(path)
    assert message.startswith(f"{path}:3: front matter is not valid YAML")
    assert "must be in quotes" in message


def test_a_key_with_no_space_after_its_colon_names_its_own_line(
    write_issue: Callable[..., Path],
) -> None:
    """YAML gives up on the line after "send_at:2026-12-21 07:00" (the closing --- when it is
    the last): the message named that line, and said nothing of the missing space."""
    for after in ("", "preheader: x\n"):
        path = write_issue("Body\n", front=f"subject: Hi\nsend_at:2026-12-21 07:00\n{after}")
        (message,) = load_problems(path)
        assert message.startswith(f"{path}:3: front matter is not valid YAML"), message
        assert message.endswith(
            '(a key needs a space after its colon: "send_at: 2026-12-21 07:00")'
        ), message


# --- Every problem in one run -----------------------------------------------------------------


def test_check_reports_every_problem_in_one_run(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    path = write_issue(
        "Hi {{ subscriber.frist_name }},\n\n{{ subscriber.first_name | defualt('x') }}\n\n"
        "![](https://movementsolutions.example/a.png)\n",
        front="subjet: Hi\nsend_at: tomorrow\nsend_at: 2025-08-01 07:00\ntags: {a: 1}\n",
    )
    found = messages(path, settings)
    expected = [
        f"{path}:1: subject: missing",
        f"{path}:2: subjet: unknown key (did you mean 'subject'?)",
        f"{path}:4: send_at: given twice (also on line 3)",
        f"{path}:5: tags: must be a list",
        f"{path}:8: unknown merge field subscriber.frist_name",
        f"{path}:10: merge field {{{{ subscriber.first_name | defualt('x') }}}} is not allowed",
        f"{path}:12: image 'https://movementsolutions.example/a.png' has no alt text",
    ]
    assert len(found) == len(expected), found
    for start, message in zip(expected, found, strict=True):  # in the order of the file
        assert message.startswith(start), (start, found)


# --- The untouched scaffold and init's placeholders ----------------------------------------


def test_untouched_scaffold_is_refused_by_check_and_send(in_project: Path) -> None:
    settings = load_settings(in_project / "newsletter.toml")
    path = new_issue(settings.newsletters_dir, "December check-in", settings_date())
    found = messages(path, settings)
    assert f"{path}:13: 'Write the issue here in Markdown.' is the example text" in found[0]
    assert any("'https://example.com/video' is a placeholder address" in m for m in found)
    assert any("'1. First step.'" in m for m in found)
    assert all("Hi {{" not in m for m in found)  # the greeting is hers to keep
    code, _, err = run("send", "--yes", str(path))
    assert code == 2 and "Write the issue here" in err
    assert not (in_project / "outbox").exists()


@pytest.mark.parametrize(
    "title", ['Knee pain: 3 "fixes"', "Back\\slash C:\\path", "Año nuevo 🏃", "Tip #3"]
)
def test_new_keeps_any_title_as_the_subject(settings: Settings, title: str) -> None:
    # A backslash once made the scaffold's front matter invalid YAML ("unknown escape").
    path = new_issue(settings.newsletters_dir, title, settings_date())
    issue, problems = read_issue(path, LA)
    assert issue is not None and issue.subject == title, problems


def settings_date() -> date:
    return date(2025, 12, 1)


def test_every_init_placeholder_is_a_check_error(tmp_path: Path) -> None:
    folder = tmp_path / "new"
    code, said, _ = run("init", str(folder))
    assert code == 0 and "[cta] url" in said
    settings = load_settings(folder / "newsletter.toml")
    config = folder / "newsletter.toml"
    draft = write_real_draft(folder)
    found = messages(draft, settings)
    lines = config.read_text(encoding="utf-8").splitlines()

    def line_of(key: str, after: str = "[newsletter]") -> int:
        start = lines.index(after)
        return next(i for i, text in enumerate(lines) if i > start and text.startswith(key)) + 1

    for key, text in [
        ("name", "still the placeholder 'Your Practice'"),
        ("from", "still the placeholder 'Your Name <you@example.com>'"),
        ("reply_to", "still the placeholder 'you@example.com'"),
        ("postal_address", "postal_address is still the placeholder"),
        ("base_url", "'https://example.com' is the placeholder address"),
        ("signature", "still signed 'Your Name'"),
    ]:
        expected = f"{config}:{line_of(key)}: [newsletter] {key}: {text}"
        assert any(m.startswith(expected) for m in found), (expected, found)
    assert any(
        m.startswith(f"{config}:{line_of('url', '[cta]')}: [cta] url: 'https://example.com/book'")
        for m in found
    ), found
    assert len(found) == 7, found
    # In the order of the file, each saying what to put there, to her ("put your name").
    config_lines = [int(m.split(":")[1]) for m in found if m.startswith(str(config))]
    assert config_lines == sorted(config_lines), found
    signature = next(m for m in found if "[newsletter] signature:" in m)
    assert "her name" not in signature and "your name" in signature
    reply_to = next(m for m in found if "[newsletter] reply_to:" in m)
    assert reply_to.endswith("put the address replies should go to")

    # Once she has filled them in, the same draft is clean.
    for key in ("name", "from", "reply_to", "postal_address", "base_url", "signature"):
        assert key in said  # init's next step names every placeholder it left for her

    text = config.read_text(encoding="utf-8")
    for old, new in [
        ('"Your Practice"', '"Movement Solutions"'),
        ("Your Name <you@example.com>", "Connie <connie@movementsolutions.example>"),
        ('"you@example.com"', '"connie@movementsolutions.example"'),
        ("REPLACE with your postal address", "1 Main St, Springfield"),
        ("https://example.com", "https://movementsolutions.example"),
        ("Your Name", "Connie"),
    ]:
        text = text.replace(old, new)
    config.write_text(text, encoding="utf-8")
    assert messages(draft, load_settings(config)) == []


def write_real_draft(folder: Path) -> Path:
    for old in (folder / "newsletters").glob("*.md"):
        old.unlink()
    path = folder / "newsletters" / "2025-12-01-real.md"
    path.write_text(
        f"---\nsubject: Real\n---\n\nHi {{{{ subscriber.first_name }}}},\n\nReal text.\n\n"
        f"{GOOD_LINK}\n",
        encoding="utf-8",
    )
    return path


# --- Pathological input: one line, and linear --------------------------------------------


def test_deep_yaml_is_one_line(in_project: Path, write_issue: Callable[..., Path]) -> None:
    path = write_issue("Body\n", front="subject: " + "[" * 1700 + "]" * 1700 + "\n")
    for command in ("check", "build"):
        code, out, err = run(command, str(path))
        assert "Traceback" not in out + err and "RecursionError" not in out + err
        assert f"{path}:2: front matter is nested too deeply" in out + err
        assert code == (1 if command == "check" else 2)


@pytest.mark.parametrize(
    "body",
    [
        "*" * 20000 + "a" + "*" * 20000 + "\n",
        "_" * 5000 + "a" + "_" * 5000 + "\n",
        "Hello\n\n" + "**" * 2000 + "deep" + "**" * 2000 + "\n",
    ],
)
def test_deep_markdown_is_one_line(
    in_project: Path, write_issue: Callable[..., Path], body: str
) -> None:
    path = write_issue(body)
    code, out, err = run("build", str(path))
    assert code == 2 and "Traceback" not in out + err
    assert err.startswith(f"error: {path}:") and f"more than {MAX_DEPTH} levels deep" in err
    assert len(err.splitlines()) == 1


def test_deep_jinja_expression_is_one_line(write_issue: Callable[..., Path]) -> None:
    path = write_issue("Hi {{ " + "(" * 3000 + "subscriber.first_name" + ")" * 3000 + " }}\n")
    (message,) = load_problems(path)
    assert message.startswith(f"{path}:5: merge field") and "Traceback" not in message
    assert len(message) < len(str(path)) + 200  # the 6,000-character field is cut, not echoed


def test_many_merge_fields_keep_their_lines(write_issue: Callable[..., Path]) -> None:
    """Lines are counted once (not from the top for every field, which was quadratic)."""
    body = "".join(
        f"Line {i}: {{{{ subscriber.first_name | default('x{i}') }}}}\n" for i in range(3000)
    )
    body += "Bad {{ subscriber.first_name | nope }}\n"
    path = write_issue(body)
    (message,) = load_problems(path)
    assert message.startswith(f"{path}:{5 + 3000}: merge field")
    issue = load_issue(write_issue(body.replace(" | nope", ""), name="ok.md"), LA)
    assert len(issue.merge_fields.fields) == 3001
    assert issue.merge_fields.fields[2999].line == 5 + 2999


def test_draft_files_that_are_not_drafts(project: Path, tmp_path: Path, settings: Settings) -> None:
    folder = project / "newsletters" / "folder.md"
    folder.mkdir()
    binary = project / "newsletters" / "binary.md"
    binary.write_bytes(b"---\nsubject: x\n---\n\x00\x01\x02")
    shutil.copyfile(project / "subscribers.csv", project / "newsletters" / "list.md")
    cases = {
        folder: "is a folder, not a draft",
        binary: "is not a text file",
        project / "newsletters" / "list.md": "starts with front matter",
        project / "newsletters" / "missing.md": "no such file",
    }
    for path, expected in cases.items():
        (message,) = messages(path, settings)
        assert message.startswith(str(path)) and expected in message


def test_a_run_of_braces_is_one_problem_per_line(write_issue: Callable[..., Path]) -> None:
    path = write_issue("{" * 20000 + "\n\nfine\n\n}}\n")
    assert load_problems(path) == [
        f"{path}:5: '{{{{' is never closed with '}}}}': a merge field is written "
        "{{ subscriber.first_name }}",
        f"{path}:9: '}}}}' has no '{{{{' before it: a merge field is written "
        "{{ subscriber.first_name }}",
    ]


def test_yaml_aliases_cannot_blow_up(write_issue: Callable[..., Path]) -> None:
    """A 'billion laughs' front matter: PyYAML shares the lists, and nothing may print them."""
    front = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        front += f"{level}: &{level} [{', '.join([f'*{previous}'] * 10)}]\n"
    front += "subject: *i\nsend_at: *i\ntags: *i\ntitle: *i\n"
    found = load_problems(write_issue("Body\n", front=front))
    assert any("send_at: must be one date and time" in m for m in found)
    assert any("subject: must be a single line of text" in m for m in found)
    assert all(len(m) < 500 for m in found)


@pytest.mark.parametrize(
    ("field", "usage"),
    [
        ('subscriber.first_name | truncate("x")', "| truncate(40)"),
        ("subscriber.first_name | replace(1)", '| replace("old", "new")'),
        ("subscriber.first_name | default(1, 2, 3, 4)", '| default("there")'),
        ("subscriber.first_name | upper(3)", "| upper"),
    ],
)
def test_a_filter_called_wrongly_shows_how_it_is_written(
    write_issue: Callable[..., Path], field: str, usage: str
) -> None:
    path = write_issue("Hi {{ " + field + " }}\n")
    (message,) = load_problems(path)
    assert message.startswith(f"{path}:5: merge field") and message.endswith(f"is written {usage}")


def test_a_config_problem_is_said_once_for_several_issues(in_project: Path) -> None:
    config = in_project / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('"Movement Solutions"', '"Your Practice"'), encoding="utf-8")
    sample = "newsletters/2025-07-21-hip-rotation.md"
    shutil.copyfile(in_project / sample, in_project / "newsletters/2025-08-01-copy.md")
    code, out, err = run("check", sample, "newsletters/2025-08-01-copy.md")
    assert code == 1 and err == "1 problem found\n"
    assert out.count("still the placeholder 'Your Practice'") == 1


@pytest.mark.parametrize(
    ("line", "subject"),
    [
        ("subject: Tip #3 for knees", "Tip #3 for knees"),  # YAML: "Tip", the rest a comment
        ("subject: #1 mistake runners make", "#1 mistake runners make"),  # YAML: no subject
        ("subject: no", "no"),  # YAML: false
        ("subject: 2025", "2025"),
        ("subject: 🏃 Knees, hips and you", "🏃 Knees, hips and you"),  # not two surrogates
        ("subject: Tab\tand \\ back\\slash", "Tab\tand \\ back\\slash"),
        ('subject: "Quoted: as before"', "Quoted: as before"),
        ("subject: 'Single # quoted'", "Single # quoted"),
        (
            "subject: Long subject\n  continued on the next line",
            "Long subject continued on the next line",
        ),
    ],
)
def test_the_subject_is_the_rest_of_its_line(
    write_issue: Callable[..., Path], line: str, subject: str
) -> None:
    issue = load_issue(write_issue("Body\n", front=line + "\n"), LA)
    assert issue.subject == subject


def test_a_tag_nobody_has_is_a_check_problem(
    in_project: Path, write_issue: Callable[..., Path], settings: Settings
) -> None:
    path = write_issue(f"Hi,\n\nText.\n\n{GOOD_LINK}\n", front="subject: Hi\ntags: [runner]\n")
    (message,) = messages(path, settings)
    assert message.startswith(f"{path}:3: tags: no subscribed reader has the tag 'runner'")
    assert "did you mean 'runners'?" in message and "runners, seniors" in message
    code, _, err = run("send", "--yes", str(path))
    assert code == 2 and "'runner'" in err
    assert not (in_project / "outbox").exists()
    ok = write_issue(
        "Hi,\n\nText.\n\n" + GOOD_LINK + "\n", name="ok.md", front="tags: [Runners]\nsubject: Hi\n"
    )
    assert messages(ok, settings) == []


def _nested_list(depth: int) -> str:
    return "".join("  " * i + f"- level {i}\n" for i in range(depth))


def test_a_list_nested_a_dozen_levels_keeps_the_rest_of_the_issue(
    in_project: Path, write_issue: Callable[..., Path], settings: Settings
) -> None:
    """markdown-it's own limit (20 levels: ten nested lists) used to stop the parse there in
    silence: every line after it, the rest of the issue, was left out and `check` said ok."""
    path = write_issue(_nested_list(12) + "\nThe paragraph after the list.\n")
    assert messages(path, settings) == []
    code, _out, err = run("build", str(path))
    assert code == 0, err
    html = (in_project / "build" / path.stem / "email.html").read_text(encoding="utf-8")
    text = (in_project / "build" / path.stem / "email.txt").read_text(encoding="utf-8")
    assert "level 11" in html and "The paragraph after the list." in html
    assert "level 11" in text and "The paragraph after the list." in text


@pytest.mark.parametrize(
    "body", [_nested_list(40), "> " * 60 + "deep\n", "Hi\n\n" + "> " * 3000 + "deep\n"]
)
def test_markdown_nested_past_the_limit_is_a_problem_with_its_line(
    write_issue: Callable[..., Path], settings: Settings, body: str
) -> None:
    """Too deep is said, never silently cut short (40 nested lists, 60 or 3,000 quotes)."""
    path = write_issue(body + "\nAfter.\n")
    found = messages(path, settings)
    assert len(found) == 1 and f"more than {MAX_DEPTH} levels deep" in found[0], found
    assert found[0].startswith(f"{path}:")


@pytest.mark.parametrize(
    ("field", "says"),
    [
        ("7*7", "arithmetic (+, -, *, /, %, **) is not allowed"),
        ("-1", "arithmetic"),
        ("subscriber.first_name ~ 3 + 4", "arithmetic"),
        ("[1, 2]", "a list or dictionary is not allowed"),
        ('{"a": 1}', "a list or dictionary is not allowed"),
    ],
)
def test_a_disallowed_expression_is_named_in_words_not_jinja_node_names(
    write_issue: Callable[..., Path], field: str, says: str
) -> None:
    """`{{ 7*7 }}` was refused as "mul is not allowed": Jinja's name for it, not hers."""
    path = write_issue(f"Hi {{{{ {field} }}}}\n")
    (message,) = load_problems(path)
    assert message.startswith(f"{path}:5: merge field") and says in message, message
    for jargon in ("mul ", "neg ", "add ", "list is", "dict ", "pair "):
        assert jargon not in message


@pytest.mark.parametrize(
    ("subject", "first_reader_sees"),
    [
        ("{{ subscriber.first_name }}", "Ada"),
        ("{{ subscriber.first_name }}, 3 knee fixes", "Ada, 3 knee fixes"),
        ('{{ subscriber.first_name | default("Friend") }}: 3 knee fixes', "Ada: 3 knee fixes"),
    ],
)
def test_a_subject_that_starts_with_a_merge_field_needs_no_quotes(
    write_issue: Callable[..., Path], settings: Settings, subject: str, first_reader_sees: str
) -> None:
    """It was read as YAML: "front matter is not valid YAML: found unhashable key"."""
    path = write_issue("Hi\n", front=f"subject: {subject}\n")
    assert messages(path, settings) == []
    compiled = compile_issue(load_issue(path, LA), settings)
    assert compiled.personalise({"first_name": "Ada"}, "https://x/u").subject == (first_reader_sees)


def test_control_characters_pasted_from_a_word_processor_are_spaces(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    """A form feed or vertical tab pasted into the body, or \\x01 in a quoted subject, made
    the email's MJML fail to compile: "unable to parse next template", naming no line."""
    from pipeline.render.checks import check_issue
    from pipeline.render.compile import compile_issue

    path = write_issue(
        "Hi there,\x0c pasted text\x0b here.\n", front='subject: "Pasted \\x01 Word"\n'
    )
    assert check_issue(path, settings) == []
    issue = load_issue(path, LA)
    assert issue.subject == "Pasted   Word" and "pasted text  here." in issue.body
    compiled = compile_issue(issue, settings)
    assert "pasted text here." in compiled.personalise({"email": "a@example.org"}, "https://u").text
