"""The click shell: each command through CliRunner, exit codes, and one-line errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import cli

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def in_project(project: Path) -> Iterator[Path]:
    old = Path.cwd()
    os.chdir(project)
    try:
        yield project
    finally:
        os.chdir(old)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), obj={})
    return result.exit_code, result.stdout, result.stderr


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert isinstance(cli, click.Group)
    for name, command in cli.commands.items():
        assert command.help and command.help.strip(), name
        code, out, _ = run(name, "-h")
        assert code == 0 and "Usage:" in out
        assert f"newsletter {name}" in readme, f"README does not document `newsletter {name}`"


def test_the_readme_unit_files_have_no_comment_after_a_setting() -> None:
    """systemd has no end-of-line comments: `Environment=NEWSLETTER_SECRET=...  # or ...`
    was ignored whole ("Invalid syntax"), so a secret set there never reached the app."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = readme.split("```ini\n")[1:]
    assert blocks
    for block in blocks:
        for line in block.split("```", 1)[0].splitlines():
            if "=" in line and not line.lstrip().startswith(("#", ";")):
                assert " #" not in line and " ;" not in line, line


def test_build_writes_three_files(in_project: Path) -> None:
    code, out, _ = run("build", "newsletters/2025-07-21-hip-rotation.md")
    assert code == 0
    folder = in_project / "build" / "2025-07-21-hip-rotation"
    for name in ("email.html", "email.txt", "email.mjml"):
        assert str(folder / name) in out
        assert (folder / name).stat().st_size > 1000
    assert "HTML size:" in out and "KB" in out
    assert "Hi Ada," in (folder / "email.txt").read_text(encoding="utf-8")


def test_build_without_subscribers_uses_placeholders(in_project: Path) -> None:
    (in_project / "subscribers.csv").unlink()
    code, _, _ = run("build", "newsletters/2025-07-21-hip-rotation.md")
    assert code == 0
    text = (in_project / "build/2025-07-21-hip-rotation/email.txt").read_text(encoding="utf-8")
    assert "Hi Reader," in text


def test_check_exit_codes(in_project: Path) -> None:
    code, out, _ = run("check", "newsletters/2025-07-21-hip-rotation.md")
    assert (code, out) == (0, "newsletters/2025-07-21-hip-rotation.md: ok\n")
    bad = in_project / "newsletters" / "bad.md"
    bad.write_text("---\npreheader: x\n---\n\n![](https://e.example/a.png)\n", encoding="utf-8")
    code, out, err = run("check", str(bad))
    assert code == 1
    assert out.splitlines() == [  # every problem in one run, not the first alone
        f"{bad}:1: subject: missing: every issue needs a subject line",
        f"{bad}:5: image 'https://e.example/a.png' has no alt text: "
        "write ![what it shows](https://e.example/a.png)",
    ]
    assert "2 problems found" in err


def test_bad_front_matter_is_one_line_not_a_traceback(in_project: Path) -> None:
    bad = in_project / "newsletters" / "bad.md"
    bad.write_text("---\nsubject: [oops\n---\nBody\n", encoding="utf-8")
    code, out, err = run("build", str(bad))
    assert code == 2
    assert err.startswith(f"error: {bad}:")
    assert "Traceback" not in err + out


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        code, _, err = run("build", "x.md")
    finally:
        os.chdir(old)
    assert code == 2
    assert "no newsletter.toml" in err and "newsletter init" in err


def test_bad_config_names_the_key(in_project: Path) -> None:
    config = in_project / "newsletter.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("America/Los_Angeles", "Mars/Olympus"),
        encoding="utf-8",
    )
    code, _, err = run("check", "newsletters/2025-07-21-hip-rotation.md")
    assert code == 2
    assert err.strip() == (
        f"error: {config}:8: [newsletter] timezone: unknown time zone 'Mars/Olympus': "
        "A time zone is written Region/City, as in 'America/New_York' or 'Europe/London'"
    )


def test_new_scaffolds_a_draft_that_check_refuses_until_written(in_project: Path) -> None:
    code, out, _ = run("new", "Squats & Knees: Part 2")
    assert code == 0
    path = in_project / out.splitlines()[0].split("created ", 1)[1]
    assert path.parent == in_project / "newsletters"
    assert path.name.endswith("-squats-knees-part-2.md")
    code, out, _ = run("check", str(path))  # the untouched scaffold must never go out
    assert code == 1
    assert f"{path}:13: 'Write the issue here in Markdown.' is the example text" in out
    assert "'https://example.com/video' is a placeholder address" in out
    assert run("new", "Squats & Knees: Part 2")[0] == 2  # never overwrites


def test_init_creates_a_working_newsletter(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    code, out, _ = run("init", str(folder))
    assert code == 0
    for name in ("newsletter.toml", "subscribers.csv", "templates/README.md"):
        assert (folder / name).is_file()
    (draft,) = (folder / "newsletters").glob("*.md")
    config = str(folder / "newsletter.toml")
    assert run("--config", config, "build", str(draft))[0] == 0
    code, out, _ = run("--config", config, "check", str(draft))
    assert code == 1 and "postal_address is still the placeholder" in out
    assert run("init", str(folder))[0] == 2  # never overwrites
