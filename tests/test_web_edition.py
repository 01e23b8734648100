"""The web edition: what is public, what is not, the feed, the links, the email's link to it."""

from __future__ import annotations

import csv
import email
import re
import shutil
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import feedparser
import pytest
from markupsafe import Markup

from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.web_edition.site import build_site
from pipeline.web_edition.urls import issue_url

from .conftest import REPO
from .web_edition_fixtures import (
    DRAFT,
    FUTURE,
    SENT_BY_HAND,
    archive_project,
    newsletter,
    send_for_real,
    sent_emails,
)

SAMPLE = "2025-07-21-hip-rotation"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sent_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return archive_project(tmp_path_factory.mktemp("web") / "project")


@pytest.fixture
def project(sent_project: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(sent_project, root)
    return root


def site_text(site: Path) -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in site.rglob("*") if p.is_file()}


def test_only_sent_or_due_issues_are_public(project: Path) -> None:
    settings = load_settings(project / "newsletter.toml")
    site = project / "site"
    result = build_site(settings, site, now=NOW)
    # Newest first: the issue sent by hand (dated by the ledger, today), then the sample.
    assert result.published == [SENT_BY_HAND, SAMPLE]
    assert sorted(p.parent.name for p in (site / "issues").glob("*/index.html")) == sorted(
        [SAMPLE, SENT_BY_HAND]
    )
    for path, text in site_text(site).items():
        for hidden in (FUTURE, DRAFT, "Secret future issue", "Unfinished draft"):
            assert hidden not in text, f"{hidden} appears in {path}"
    index = (site / "index.html").read_text(encoding="utf-8")
    assert index.index("Your desk is shaping your back") < index.index("Why Hip Rotation")
    assert "Three resets for the hours you spend sitting." in index  # the preheader
    assert "July 21, 2025" in index


def test_an_issue_only_written_to_the_outbox_is_not_published(project: Path) -> None:
    """The outbox writes files and emails nobody: an issue sent only through it (a trial) once
    went on the public site as if readers had it.  It is kept off, and the archive says why;
    the sample, whose send_at has passed, stays public by that rule, saying nobody got it."""
    trial = "2025-09-15-ankles"
    (project / "newsletters" / f"{trial}.md").write_text(
        "---\nsubject: Ankles that roll\n---\n\nHi there, a trial.\n", encoding="utf-8"
    )
    code, out, err = newsletter(project, "send", f"newsletters/{trial}.md", "--yes")
    assert code == 0 and "written to outbox/" in out, out + err
    code, out, err = newsletter(project, "archive")
    assert code == 0, out + err
    assert "site/: 2 published issues" in out
    assert (
        f"not published: newsletters/{trial}.md was only written to the outbox (a trial):"
        " nobody was emailed it"
    ) in out
    assert (
        f"newsletters/{SAMPLE}.md: on the site by its send_at (July 21, 2025), but it was only"
        " written to the outbox (a trial): nobody was emailed it"
    ) in out
    assert SENT_BY_HAND not in out  # sent for real: nothing to say
    assert not (project / "site" / "issues" / trial).exists()
    for path, text in site_text(project / "site").items():
        assert trial not in text and "Ankles that roll" not in text, path
    code, out, err = newsletter(project, "archive", "--drafts")
    assert code == 0, out + err
    preview = project / "build" / "archive-preview" / "issues" / trial / "index.html"
    assert "Only written to the outbox (a trial): not public" in preview.read_text("utf-8")


def test_the_future_issue_appears_once_its_time_has_passed(project: Path) -> None:
    settings = load_settings(project / "newsletter.toml")
    later = datetime(2099, 1, 5, 15, 0, tzinfo=UTC)  # 07:00 in Los Angeles
    result = build_site(settings, project / "site", now=later)
    assert result.published[0] == FUTURE
    assert DRAFT not in result.published


def test_an_issue_sent_early_keeps_the_date_it_went_out(project: Path) -> None:
    """Sent by hand (`--now`) before its send_at, an issue is dated the day it went out, and
    stays so once its send_at passes: its page, the index and the feed do not change date
    (a feed reader would show it again as new)."""
    code, out, err = send_for_real(project, FUTURE, "--now")
    assert code == 0, out + err
    settings = load_settings(project / "newsletter.toml")
    site = project / "site"
    today = datetime.now(UTC)
    build_site(settings, site, now=today)
    page = site / "issues" / FUTURE / "index.html"
    went_out = today.astimezone(settings.timezone)
    assert f"{went_out:%B} {went_out.day}, {went_out.year}" in page.read_text(encoding="utf-8")
    before = {p: p.read_bytes() for p in (page, site / "index.html", site / "sitemap.xml")}
    build_site(settings, site, now=datetime(2099, 2, 1, tzinfo=UTC))
    after = {p: p.read_bytes() for p in (page, site / "index.html", site / "sitemap.xml")}
    assert after == before
    assert "January 5, 2099" not in page.read_text(encoding="utf-8")


def test_without_a_preheader_the_summary_is_her_first_words_not_the_greeting() -> None:
    """The index, the feed and link previews show what the issue says: its opening
    paragraphs, without "Hi there," and without headings, buttons or list items run
    together ("A drill First step. Watch Demo Video")."""
    from pipeline.web_edition.page import WebContent, summary

    body = (
        "<p>Hi there,</p>\n<p>Winter is hard on knees.</p>\n<h2>A drill</h2>\n"
        "<ol>\n<li>First step.</li>\n</ol>\n"
        '<p><a href="https://x.example/v" class="button">Watch Demo Video</a></p>\n'
        '<div class="callout">\n<p><strong>Bottom line:</strong> keep moving.</p>\n</div>\n'
    )
    content = WebContent("T", "T", "", Markup(body), "")
    assert summary(content) == "Winter is hard on knees. Bottom line: keep moving."
    long = WebContent("T", "T", "", Markup("<p>Hi Ada,</p><p>" + "word " * 80 + "</p>"), "")
    assert summary(long).endswith("word…") and len(summary(long)) <= 200
    only_list = WebContent("T", "T", "", Markup("<ul><li>One</li><li>Two</li></ul>"), "")
    assert summary(only_list) == "One Two"  # no paragraph at all: the words as they come


def test_no_subscriber_data_or_token_anywhere(project: Path) -> None:
    settings = load_settings(project / "newsletter.toml")
    build_site(settings, project / "site", now=NOW)
    with (project / "subscribers.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    texts = site_text(project / "site")
    everything = "\n".join(texts.values())
    for row in rows:
        assert row["email"].lower() not in everything.lower()
        if row["first_name"] and row["last_name"]:
            assert f"{row['first_name']} {row['last_name']}" not in everything
        local_part = row["email"].split("@")[0]
        assert local_part not in everything, local_part
    # The tokens the emails carried, and any internal merge-field token.
    tokens = set()
    for eml in sent_emails(project):
        tokens |= set(re.findall(r"token=([A-Za-z0-9_.=-]+)", eml.read_text(encoding="utf-8")))
    assert tokens, "the fixture's emails should carry unsubscribe tokens"
    for token in tokens:
        assert token not in everything
    assert "unsubscribe" not in everything.lower()
    assert not re.search(r"MFX\d+XFM", everything)
    page = texts[project / "site" / "issues" / SENT_BY_HAND / "index.html"]
    assert "Hi there," in page and "Sitting in your town" in page
    assert "Friend" not in page  # the subject's merge field is not the page's title


def test_page_content_and_meta(project: Path) -> None:
    settings = load_settings(project / "newsletter.toml")
    build_site(settings, project / "site", now=NOW)
    page = (project / "site" / "issues" / SENT_BY_HAND / "index.html").read_text(encoding="utf-8")
    url = f"https://movementsolutions.example/issues/{SENT_BY_HAND}/"
    assert '<html lang="en">' in page
    assert f'<link rel="canonical" href="{url}">' in page
    assert f'<meta property="og:url" content="{url}">' in page
    assert '<meta property="og:title" content="Your desk is shaping your back">' in page
    assert 'content="Three resets for the hours you spend sitting."' in page
    assert 'og:image" content="https://movementsolutions.example/img/desk.jpg"' in page
    assert '<meta name="twitter:card" content="summary_large_image">' in page
    assert 'type="application/atom+xml"' in page and 'href="../../feed.xml"' in page
    assert '<h2 id="three-resets">Three resets</h2>' in page
    assert '<div class="callout">' in page
    assert 'class="button">Watch the two-minute routine</a>' in page
    assert "📩 Ready to Move Better?" in page  # the CTA
    assert "– Dr. Connie &amp; the Movement Solutions Team" in page  # the signature
    assert "Sign up to receive regular emails like this" in page
    assert 'action="https://movementsolutions.example/subscribe"' in page
    assert 'name="email"' in page and 'name="first_name"' in page
    # The web app's honeypot (a bot fills it) and the page the signup came from.
    assert '<input type="text" name="website" tabindex="-1"' in page
    assert f'<input type="hidden" name="source" value="{url}">' in page
    assert '<a href="https://movementsolutions.example/services">Our Services</a>' in page
    assert "<script" not in page  # no tracking, nothing to run


def test_signup_url_replaces_the_form(project: Path) -> None:
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace(
        "[provider]", '[signup]\nurl = "https://movementsolutions.example/join"\n\n[provider]'
    )
    config.write_text(text, encoding="utf-8")
    build_site(load_settings(config), project / "site", now=NOW)
    page = (project / "site" / "issues" / SAMPLE / "index.html").read_text(encoding="utf-8")
    assert "<form" not in page
    assert 'href="https://movementsolutions.example/join">Sign up</a>' in page


def test_feed_parses_with_the_right_entries_and_dates(project: Path) -> None:
    settings = load_settings(project / "newsletter.toml")
    build_site(settings, project / "site", now=NOW)
    feed = feedparser.parse((project / "site" / "feed.xml").read_bytes())
    assert not feed.bozo, feed.bozo_exception
    assert feed.feed.title == "Movement Solutions"
    assert [e.title for e in feed.entries] == [
        "Your desk is shaping your back",
        "Why Hip Rotation Matters More Than You Think",
    ]
    sample = feed.entries[1]
    assert sample.link == f"https://movementsolutions.example/issues/{SAMPLE}/"
    assert sample.published_parsed[:5] == (2025, 7, 21, 14, 0)  # 07:00 PDT in UTC
    assert sample.summary.startswith("A few targeted mobility drills")
    assert "Hi there," in sample.content[0].value
    by_hand = feed.entries[0]
    # Sent by hand, no send_at: dated by when the ledger first sent it (the test ran today).
    assert by_hand.published_parsed[:3] <= datetime.now(UTC).timetuple()[:3]
    assert by_hand.published_parsed[:3] > (2025, 7, 21)
    sitemap = (project / "site" / "sitemap.xml").read_text(encoding="utf-8")
    assert f"<loc>https://movementsolutions.example/issues/{SAMPLE}/</loc>" in sitemap
    assert FUTURE not in sitemap and DRAFT not in sitemap


def test_drafts_preview_is_marked_and_never_leaks_into_the_public_build(project: Path) -> None:
    settings = load_settings(project / "newsletter.toml")
    site = project / "public"  # not site/: a preview is refused there (the folder uploaded)
    preview = build_site(settings, site, now=NOW, drafts=True)
    assert sorted(preview.private) == sorted([FUTURE, DRAFT])
    draft_page = (site / "issues" / DRAFT / "index.html").read_text(encoding="utf-8")
    assert "Private preview" in draft_page and "Draft: not public" in draft_page
    assert '<meta name="robots" content="noindex, nofollow">' in draft_page
    future_page = (site / "issues" / FUTURE / "index.html").read_text(encoding="utf-8")
    assert "Scheduled for January 5, 2099: not public" in future_page
    feed = (site / "feed.xml").read_text(encoding="utf-8")
    assert FUTURE not in feed and DRAFT not in feed  # even a preview's feed is public only

    public = build_site(settings, site, now=NOW)
    assert sorted(p.name for p in public.removed) == sorted([FUTURE, DRAFT])
    for text in site_text(site).values():
        assert "Private preview" not in text and FUTURE not in text and DRAFT not in text


def test_the_second_build_changes_nothing_and_an_edit_only_its_pages(project: Path) -> None:
    settings = load_settings(project / "newsletter.toml")
    site = project / "site"
    first = build_site(settings, site, now=NOW)
    assert first.rendered == 2
    stamps = {p: p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()}
    again = build_site(settings, site, now=NOW)
    assert (again.rendered, again.reused, again.written) == (0, 2, [])
    assert {p: p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()} == stamps

    draft = project / "newsletters" / f"{SENT_BY_HAND}.md"
    draft.write_text(
        draft.read_text(encoding="utf-8").replace("Three resets", "Four resets"), encoding="utf-8"
    )
    edited = build_site(settings, site, now=NOW)
    assert edited.rendered == 1 and edited.reused == 1
    assert site / "issues" / SENT_BY_HAND / "index.html" in edited.written
    assert site / "issues" / SAMPLE / "index.html" not in edited.written


def test_a_template_in_templates_web_overrides_the_builtin(project: Path) -> None:
    (project / "templates" / "web").mkdir(parents=True)
    (project / "templates" / "web" / "signup.html.j2").write_text(
        '<section class="signup"><h2>Join the list</h2></section>\n', encoding="utf-8"
    )
    build_site(load_settings(project / "newsletter.toml"), project / "site", now=NOW)
    page = (project / "site" / "issues" / SAMPLE / "index.html").read_text(encoding="utf-8")
    assert "Join the list" in page and "<form" not in page


def test_a_broken_draft_is_skipped_with_its_reason(project: Path) -> None:
    (project / "newsletters" / "2025-10-01-broken.md").write_text(
        "---\nsubjet: typo\n---\n\nbody\n", encoding="utf-8"
    )
    code, out, err = newsletter(project, "archive")
    assert code == 0, err
    assert (
        "not published, it has a problem a send would refuse: " in err
        and "2025-10-01-broken.md:2: subjet" in err
    )
    assert "2 published issues; 6 files changed" in out
    # Named as she would type it, with the command that lists every problem in it.
    assert err.strip() == (
        "not published, it has a problem a send would refuse:"
        " newsletters/2025-10-01-broken.md:2: subjet: unknown key (did you mean 'subject'?)"
        " (and 1 more); newsletter check"
        " newsletters/2025-10-01-broken.md"
        " lists every problem"
    )


def test_cli_drafts_go_to_a_preview_folder_by_default(project: Path) -> None:
    code, out, _ = newsletter(project, "archive", "--drafts")
    assert code == 0
    assert "and 2 draft or scheduled issues (private preview)" in out
    assert "do not upload it" in out
    assert (project / "build" / "archive-preview" / "issues" / DRAFT / "index.html").is_file()
    assert not (project / "site").exists()


def test_cli_says_which_issues_it_kept_off_the_site_and_why(project: Path) -> None:
    """Her first `archive`, before anything is sent, must not leave her wondering where her
    drafts went: the summary counts what it kept back, and says how to see it."""
    code, out, _ = newsletter(project, "archive")
    assert code == 0
    assert out.splitlines()[1] == (
        "kept off the site: 1 draft (no send_at, never sent), 1 scheduled issue (its send_at"
        " is still to come); newsletter archive --drafts previews them"
    )
    (project / "newsletters" / f"{FUTURE}.md").unlink()
    code, out, _ = newsletter(project, "archive")
    assert "kept off the site: 1 draft (no send_at, never sent);" in out
    assert "scheduled" not in out


def test_cli_a_folder_it_cannot_write_is_one_line(project: Path) -> None:
    (project / "taken").write_text("a file, not a folder", encoding="utf-8")
    code, _, err = newsletter(project, "archive", "--out", "taken/site")
    assert code == 2
    assert err.strip() == (
        "error: taken/site: cannot write the site: taken is a file, not a folder"
    )
    (project / "site" / "issues").mkdir(parents=True)
    (project / "site" / "issues" / SENT_BY_HAND).write_text("in the way", encoding="utf-8")
    code, _, err = newsletter(project, "archive")
    assert code == 2
    assert err.strip() == (
        f"error: site: cannot write the site: site/issues/{SENT_BY_HAND} is a file, not a folder"
    )


def test_cli_warns_of_a_merge_field_the_web_page_leaves_blank(project: Path) -> None:
    """`Hi {{ subscriber.first_name }},` with no default reads "Hi ," on the public page (it
    is nobody's): the build says where, and how to write it."""
    (project / "newsletters" / "2025-10-06-knees.md").write_text(
        "---\nsubject: Knees on stairs\nsend_at: 2025-10-06 07:00\n---\n\n"
        "Hi {{ subscriber.first_name }},\n\nKnees.\n",
        encoding="utf-8",
    )
    code, _, err = newsletter(project, "archive")
    assert code == 0, err
    assert err.strip() == (
        "newsletters/2025-10-06-knees.md:6: {{ subscriber.first_name }} is blank on the web"
        ' page (it has no default); write {{ subscriber.first_name | default("there") }}'
    )
    page = project / "site" / "issues" / "2025-10-06-knees" / "index.html"
    assert "<p>Hi ,</p>" in page.read_text(encoding="utf-8")  # built all the same
    code, _, err = newsletter(project, "archive")  # unchanged: still said
    assert code == 0
    assert "is blank on the web page" in err
    # A default she chose to be empty is hers: nothing to say.
    knees = project / "newsletters" / "2025-10-06-knees.md"
    knees.write_text(
        knees.read_text(encoding="utf-8").replace(
            "{{ subscriber.first_name }}", "{{ subscriber.first_name | default('') }}"
        ),
        encoding="utf-8",
    )
    code, _, err = newsletter(project, "archive")
    assert code == 0 and err == ""


def _view_in_browser(eml: Path) -> tuple[str, str]:
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    html = html_part.get_content()
    match = re.search(r'<a href="([^"]+)"[^>]*>View in browser</a>', html)
    assert match, "no View in browser link in the HTML"
    text_match = re.search(r"View in browser: (\S+)", text_part.get_content())
    assert text_match, "no View in browser link in the text part"
    return match[1], text_match[1]


def test_each_email_links_to_its_own_page(project: Path) -> None:
    settings = load_settings(project / "newsletter.toml")
    build_site(settings, project / "site", now=NOW)
    for slug in (SAMPLE, SENT_BY_HAND):
        eml = next(e for e in sent_emails(project) if e.parent.name == slug)
        html_url, text_url = _view_in_browser(eml)
        assert html_url == text_url == issue_url(settings, slug)
        # ... and that URL is the page the archive wrote, at the path the URL names.
        relative = html_url.removeprefix(settings.archive.url)
        assert (project / "site" / "issues" / relative / "index.html").is_file()
        body = eml.read_text(encoding="utf-8")
        assert "Forwarded this?" in body and "https://movementsolutions.example/subscribe" in body


@pytest.mark.parametrize("where", ["top", "off"])
def test_view_in_browser_top_or_off(where: str, tmp_path: Path) -> None:
    root = tmp_path / "p"
    shutil.copytree(REPO / "newsletters", root / "newsletters")
    shutil.copyfile(REPO / "subscribers.csv", root / "subscribers.csv")
    config = (REPO / "newsletter.toml").read_text(encoding="utf-8")
    config = config.replace('view_in_browser = "footer"', f'view_in_browser = "{where}"')
    (root / "newsletter.toml").write_text(config, encoding="utf-8")
    code, _, err = newsletter(root, "build", f"newsletters/{SAMPLE}.md")
    assert code == 0, err
    html = (root / "build" / SAMPLE / "email.html").read_text(encoding="utf-8")
    text = (root / "build" / SAMPLE / "email.txt").read_text(encoding="utf-8")
    if where == "off":
        assert "View in browser" not in html and "View in browser" not in text
    else:
        assert html.count("View in browser") == 1
        assert html.index("View in browser") < html.index("<h1")
        assert text.startswith(
            f"View in browser: https://movementsolutions.example/issues/{SAMPLE}/"
        )
    assert "Forwarded this?" in html and "Forwarded this? Sign up:" in text


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            'view_in_browser = "header"',
            "[archive] view_in_browser: must be 'top', 'footer' or 'off'",
        ),
        (
            'url = "https://movementsolutions.example/newsletter/"',
            "[archive] url: must end in /issues/",
        ),
        ('nav = ["Our Services"]', "[archive] nav: link 1 must be"),
        # Keys as she might guess them: named, in TOML's words, never as a Python dict.
        (
            'nav = [{ label = "Our Services", link = "https://movementsolutions.example/s" }]',
            "[archive] nav: link 1: unknown key 'link'; write"
            ' { label = "Our Services", url = "https://..." }',
        ),
        (
            'nav = [{ label = "Book" }, { name = "Home", url = "/" }]',
            '[archive] nav: link 1: url is missing; write { label = "Book", url = "https://..." }',
        ),
        (
            'nav = [{ label = "X", url = "javascript:alert(1)" }]',
            "is not an http(s), mailto or /path",
        ),
        ("navv = []", "[archive] navv: unknown setting (did you mean 'nav'?)"),
        # A link as she copies it from her browser's address bar, without https://
        (
            'nav = [{ label = "Our Services", url = "www.movementsolutions.example/services" }]',
            "[archive] nav: link 1: 'www.movementsolutions.example/services' is not an http(s),"
            " mailto or /path link (did you mean 'https://www.movementsolutions.example/services'?)",
        ),
    ],
)
def test_bad_archive_settings_are_one_line(tmp_path: Path, setting: str, message: str) -> None:
    config = (REPO / "newsletter.toml").read_text(encoding="utf-8")
    start = config.index("[archive]")
    end = config.index("[provider]")
    config = config[:start] + f"[archive]\n{setting}\n\n" + config[end:]
    path = tmp_path / "newsletter.toml"
    path.write_text(config, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert message in caught.value.location_message()
    assert "{'" not in caught.value.location_message()  # no Python dict in her words


def test_default_archive_url_is_under_base_url(tmp_path: Path) -> None:
    config = (REPO / "newsletter.toml").read_text(encoding="utf-8")
    config = config[: config.index("[archive]")] + config[config.index("[provider]") :]
    path = tmp_path / "newsletter.toml"
    path.write_text(config, encoding="utf-8")
    settings = load_settings(path)
    assert issue_url(settings, SAMPLE) == f"https://movementsolutions.example/issues/{SAMPLE}/"
    assert settings.archive.view_in_browser == "footer"


def test_hostile_draft_and_odd_file_name(project: Path) -> None:
    """Markup in a title, a merge field's default and a nav label is text, never HTML; a
    file name with a space and an accent still gives a page every link reaches."""
    name = "2025-10-06 genou à l'escalier"
    (project / "newsletters" / f"{name}.md").write_text(
        "---\n"
        "subject: '<script>alert(1)</script> Knees'\n"
        "preheader: 'A \"quoted\" <b>preheader</b>'\n"
        "send_at: 2025-10-06 07:00\n"
        "---\n\n"
        "Hi {{ subscriber.first_name | default('<img src=x onerror=alert(1)>') }},\n\n"
        "<script>alert(2)</script>\n\n"
        "[click](https://movementsolutions.example/?a=<b>&c=%22d%22)\n",
        encoding="utf-8",
    )
    # A javascript: link is a problem check refuses: such a draft is never public (below).
    (project / "newsletters" / "2025-10-07-js.md").write_text(
        "---\nsubject: JS\nsend_at: 2025-10-07 07:00\n---\n\n[click](javascript:alert(3))\n",
        encoding="utf-8",
    )
    config = project / "newsletter.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            'label = "Our Services"', 'label = "<i>Our</i> Services"'
        ),
        encoding="utf-8",
    )
    settings = load_settings(config)
    site = project / "site"
    result = build_site(settings, site, now=NOW)
    assert name in result.published
    assert "2025-10-07-js" not in result.published
    page = (site / "issues" / name / "index.html").read_text(encoding="utf-8")
    everything = "\n".join(site_text(site).values())
    assert "<script" not in everything
    assert "<img src=x" not in everything and "<b>preheader" not in everything
    assert 'href="javascript:' not in everything and 'href="javascript:' not in page
    assert "<i>Our</i>" not in everything and "&lt;i&gt;Our&lt;/i&gt; Services" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Knees" in page
    quoted = "2025-10-06%20genou%20%C3%A0%20l%27escalier"
    index = (site / "index.html").read_text(encoding="utf-8")
    assert f'href="issues/{quoted}/index.html"' in index
    assert f"https://movementsolutions.example/issues/{quoted}/" in page
    assert issue_url(settings, name).endswith(f"/issues/{quoted}/")
    feed = feedparser.parse((site / "feed.xml").read_bytes())
    assert not feed.bozo
    entry = next(e for e in feed.entries if quoted in e.link)
    assert "alert(1)" in entry.title and "Knees" in entry.title  # text, escaped in the XML
    assert "<script" not in (site / "feed.xml").read_text(encoding="utf-8")


def test_the_welcome_email_is_never_a_page(project: Path) -> None:
    """newsletters/welcome.md is the web app's welcome for each new subscriber, not an issue:
    with a send_at of the past it was published as one, in the index and the feed."""
    (project / "newsletters" / "welcome.md").write_text(
        "---\nsubject: Welcome aboard\nsend_at: 2025-07-01 07:00\n---\n\nGlad you are here.\n",
        encoding="utf-8",
    )
    settings = load_settings(project / "newsletter.toml")
    site = project / "site"
    result = build_site(settings, site, now=NOW)
    assert "welcome" not in result.published
    assert not (site / "issues" / "welcome").exists()
    for path, text in site_text(site).items():
        assert "Welcome aboard" not in text, path
