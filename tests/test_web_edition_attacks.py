"""Attacks on the web edition that once broke it: what it must never delete, never crash on,
never publish."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest

from pipeline.config import load_settings
from pipeline.web_edition.site import build_site

from .web_edition_fixtures import DRAFT, archive_project, newsletter

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sent_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return archive_project(tmp_path_factory.mktemp("attack") / "project")


@pytest.fixture
def project(sent_project: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(sent_project, root)
    return root


def test_an_issues_folder_of_her_own_under_out_loses_nothing(project: Path) -> None:
    """Pruning once deleted every folder under <out>/issues/ that was not an issue."""
    mine = project / "docs" / "issues" / "tax-2024"
    mine.mkdir(parents=True)
    (mine / "return.pdf").write_text("important", encoding="utf-8")
    code, out, err = newsletter(project, "archive", "--out", "docs")
    assert code == 0, out + err
    assert (mine / "return.pdf").read_text(encoding="utf-8") == "important"


def test_a_stale_page_goes_but_her_files_beside_it_stay(project: Path) -> None:
    settings = load_settings(project / "newsletter.toml")
    site = project / "public"
    build_site(settings, site, now=NOW, drafts=True)
    photo = site / "issues" / DRAFT / "photo.jpg"
    photo.write_bytes(b"jpeg")
    result = build_site(settings, site, now=NOW)
    assert not (site / "issues" / DRAFT / "index.html").exists()  # the draft's page is gone
    assert photo.read_bytes() == b"jpeg"
    assert site / "issues" / DRAFT in result.removed


def test_symlinks_in_the_site_are_never_followed_to_delete(project: Path) -> None:
    """A symlinked issues/ folder once had the folders it pointed at deleted (her images in
    newsletters/), and a symlinked issue folder crashed the build with a traceback."""
    images = project / "newsletters" / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"jpeg")
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "index.html").write_text("hers", encoding="utf-8")
    site = project / "site"
    site.mkdir()
    (site / "issues").symlink_to(project / "newsletters")
    code, out, err = newsletter(project, "archive")
    assert code == 0, out + err
    assert (images / "a.jpg").read_bytes() == b"jpeg"

    shutil.rmtree(project / "newsletters" / "2025-07-21-hip-rotation")
    shutil.rmtree(project / "newsletters" / "2025-08-04-desk-posture")
    (site / "issues").unlink()
    (site / "issues").mkdir()
    (site / "issues" / "old-link").symlink_to(elsewhere)
    code, out, err = newsletter(project, "archive")
    assert code == 0, out + err
    assert "Traceback" not in err
    assert (elsewhere / "index.html").read_text(encoding="utf-8") == "hers"


@pytest.mark.parametrize(
    "out",
    [".", "newsletters", "templates/web", ".newsletter", "..", "outbox", "outbox/web", "build"],
)
def test_out_must_not_be_the_project_or_her_folders(project: Path, out: str) -> None:
    before = sorted(p.name for p in (project / "newsletters").iterdir())
    code, _, err = newsletter(project, "archive", "--out", out)
    assert code == 2
    assert "--out" in err and "choose a folder of its own" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in (project / "newsletters").iterdir()) == before
    assert not (project / "index.html").exists()
    assert not (project / "newsletters" / "index.html").exists()


def test_control_characters_pasted_into_a_draft_do_not_stop_the_feed(project: Path) -> None:
    """A form feed or vertical tab (pasted from a word processor) in the body or the title
    once crashed the archive with lxml's ValueError at the feed."""
    (project / "newsletters" / "2025-10-06-pasted.md").write_text(
        "---\n"
        'subject: "Pasted \\x01 from Word"\n'
        "send_at: 2025-10-06 07:00\n"
        "---\n\n"
        "Hi there,\x0c pasted text\x0b here.\n",
        encoding="utf-8",
    )
    code, out, err = newsletter(project, "archive")
    assert code == 0, out + err
    feed = feedparser.parse((project / "site" / "feed.xml").read_bytes())
    assert not feed.bozo
    entry = next(e for e in feed.entries if "pasted" in e.link)
    assert entry.title == "Pasted   from Word"
    assert "pasted text  here." in entry.content[0].value


def _damage(root: Path, sql: str) -> None:
    db = sqlite3.connect(root / ".newsletter" / "ledger.sqlite3")
    with db:
        db.execute(sql)
    db.close()


@pytest.mark.parametrize(
    ("command", "damage"),
    [
        ("archive", "folder"),
        ("report", "folder"),
        ("report", "UPDATE issues SET started_at = 'yesterday'"),
        ("archive", "UPDATE recipients SET updated_at = 'soon'"),
        ("archive", "DROP TABLE recipients"),
        ("report", "DROP TABLE recipients"),
    ],
)
def test_a_damaged_ledger_is_one_line_whatever_the_damage(
    project: Path, command: str, damage: str
) -> None:
    """A folder in the ledger's place, or a time that is not a time, once gave a traceback."""
    ledger = project / ".newsletter" / "ledger.sqlite3"
    if damage == "folder":
        ledger.unlink()
        ledger.mkdir()
    else:
        _damage(project, damage)
    code, _, err = newsletter(project, command)
    assert code == 2, err
    assert "ledger.sqlite3: the ledger cannot be read" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_ledger_time_without_an_offset_is_utc(project: Path) -> None:
    """A time written without its offset once crashed the archive (naive vs aware)."""
    _damage(project, "UPDATE recipients SET updated_at = '2025-08-04T15:00:00'")
    _damage(project, "UPDATE issues SET started_at = '2025-08-04T15:00:00'")
    code, out, err = newsletter(project, "archive")
    assert code == 0, out + err
    feed = feedparser.parse((project / "site" / "feed.xml").read_bytes())
    entry = next(e for e in feed.entries if "desk-posture" in e.link)
    assert entry.published_parsed[:5] == (2025, 8, 4, 15, 0)
    code, out, err = newsletter(project, "report")
    assert code == 0, out + err
    assert "on August 4, 2025" in out  # "written to outbox/ on ...": the outbox mails nobody


def test_hidden_files_and_folders_in_newsletters_are_not_issues(project: Path) -> None:
    """A Mac's "._name.md" (binary) once warned on every build; a draft named "...md" (slug
    "..") was written to issues/../index.html, the index itself, and listed with no page."""
    folder = project / "newsletters"
    (folder / "._2025-07-21-hip-rotation.md").write_bytes(b"\x00\x05\x16\x07Mac OS X  \x00\x02")
    (folder / "old.md").mkdir()  # once a traceback (IsADirectoryError)
    (folder / "...md").write_text(
        "---\nsubject: Dots\nsend_at: 2025-10-06 07:00\n---\n\nHi\n", encoding="utf-8"
    )
    code, out, err = newsletter(project, "archive")
    assert code == 0, out + err
    assert err == ""
    assert "2 published issues" in out
    assert "Dots" not in (project / "site" / "index.html").read_text(encoding="utf-8")


def test_a_killed_builds_temp_files_are_not_left_to_upload(project: Path) -> None:
    """Pages are written by temp file and rename; a build killed between the two left its
    temp file (a half-written page) in site/, for rsync to upload."""
    code, out, err = newsletter(project, "archive")
    assert code == 0, out + err
    site = project / "site"
    page = next((site / "issues").iterdir())
    killed = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(killed.stdout)  # a build that is no longer running
    left = [
        site / f".feed.xml.{dead}.k1ll3d_0.tmp",
        site / "assets" / f".style.css.{dead}.k1ll3d_0.tmp",
        page / f".index.html.{dead}.k1ll3d_0.tmp",
        page / ".index.html.k1ll3d_0.tmp",  # an older build's name, without its pid
    ]
    running = site / f".sitemap.xml.{os.getpid()}.wr1t1ng.tmp"  # a build at work right now
    for temp in [*left, running]:
        temp.write_text("<!doctype html><html><body><p>half a pa", encoding="utf-8")
    code, out, err = newsletter(project, "archive")
    assert code == 0, out + err
    assert not [temp for temp in left if temp.exists()]
    assert running.exists()  # not taken from under a second build running at the same time


def test_the_cache_knows_all_the_code_a_page_comes_from() -> None:
    """The cache of rendered pages once ignored a change to how a draft loads or how merge
    fields fill (pipeline/content, render/fill.py): after an upgrade, pages made by the old
    code stayed until each draft was edited.  Every module the archive loads that shapes a
    page must be in its fingerprint."""
    from pipeline.web_edition import site

    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pipeline.web_edition.site;"
            "print('\\n'.join(m.__file__ for n, m in sys.modules.items()"
            " if n.startswith('pipeline.') and getattr(m, '__file__', None)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # Settings reach the fingerprint as values; the list and the ledger decide what is
    # published (read on every build), not what a page says.
    not_words = ("config.py", "errors.py", "__init__.py", "/audience/", "/ledger/")
    shaping = {Path(f).resolve() for f in loaded if not any(part in f for part in not_words)}
    assert shaping  # the subprocess saw the package
    assert shaping <= {path.resolve() for path in site._CODE}


def test_a_sent_issue_whose_draft_is_gone_is_named(project: Path) -> None:
    """Moving a sent draft out of newsletters/ once removed its page from the site silently."""
    code, _, _ = newsletter(project, "archive")
    assert code == 0
    page = project / "site" / "issues" / "2025-08-04-desk-posture" / "index.html"
    assert page.is_file()
    (project / "newsletters" / "2025-08-04-desk-posture.md").rename(project / "moved.md")
    code, out, err = newsletter(project, "archive")
    assert code == 0, out + err
    assert err.startswith("not on the site: ")
    assert "2025-08-04-desk-posture.md: was sent, but the file is gone" in err
    assert len(err.strip().splitlines()) == 1
    assert not page.exists()


def test_the_whole_subscriber_as_a_field_is_nothing_on_the_web(project: Path) -> None:
    """{{ subscriber }} alone once put "<pipeline.web_edition.page._Nobody object at 0x...>"
    on the public page (a new address, so new bytes, on every build)."""
    (project / "newsletters" / "2025-10-06-whole.md").write_text(
        "---\nsubject: Whole\nsend_at: 2025-10-06 07:00\n---\n\nHi [{{ subscriber }}] end\n",
        encoding="utf-8",
    )
    code, out, err = newsletter(project, "archive")
    assert code == 0, out + err
    everything = "\n".join(
        p.read_text(encoding="utf-8") for p in (project / "site").rglob("*") if p.is_file()
    )
    assert "object at 0x" not in everything and "_Nobody" not in everything


def test_a_preview_with_drafts_is_never_written_into_site(project: Path) -> None:
    """archive --drafts --out site once put drafts into the folder cron uploads."""
    code, _, err = newsletter(project, "archive", "--drafts", "--out", "site")
    assert code == 2
    assert "--out: is the folder you upload" in err and "Traceback" not in err
    assert not (project / "site").exists()
    code, out, err = newsletter(project, "archive", "--drafts", "--out", "elsewhere")
    assert code == 0, out + err


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("{{ page.title + 1 }}", 'can only concatenate str (not "int") to str'),
        ("{{ 1 // 0 }}", "integer division or modulo by zero"),
        ("{{ page.nothing.deeper }}", "'dict object' has no attribute 'nothing'"),
    ],
)
def test_a_mistake_in_her_web_template_is_its_file_and_line(
    project: Path, expression: str, why: str
) -> None:
    """A runtime mistake in templates/web/ once gave a traceback (TypeError, ...)."""
    web = project / "templates" / "web"
    web.mkdir(parents=True)
    (web / "issue.html.j2").write_text(
        '{% extends "base.html.j2" %}\n{% block content %}\n<h1>{{ page.title }}</h1>\n'
        f"<p>{expression}</p>\n{{% endblock %}}\n",
        encoding="utf-8",
    )
    code, _, err = newsletter(project, "archive")
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"templates/web/issue.html.j2:4: template error: {why}" in err


def test_the_preview_may_go_inside_build(project: Path) -> None:
    code, out, err = newsletter(project, "archive", "--drafts")
    assert code == 0, out + err
    assert (project / "build" / "archive-preview" / "index.html").is_file()
