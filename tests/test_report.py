"""`newsletter report`: its numbers are the ledger's, in a fixture with sends, failures,
unknowns and provider events; the list week by week; the HTML opened in Chromium."""

from __future__ import annotations

import html
import re
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from pipeline.audience.subscribers import Status, Subscriber
from pipeline.config import Settings, load_settings
from pipeline.ledger.store import Counts, Ledger, RecipientStatus, Settlement
from pipeline.report.html_report import render_html
from pipeline.report.list_history import list_history
from pipeline.report.report import make_report
from pipeline.report.terminal import format_report

from .conftest import ARTIFACTS, write_project
from .test_browser import CHROMIUM, chromium
from .web_edition_fixtures import newsletter

NOW = datetime(2025, 9, 3, 18, 0, tzinfo=UTC)  # a Wednesday
FIRST, SECOND = "2025-07-21-hip-rotation", "2025-08-18-knees"

# The provider events table as the webhooks' ledger migration creates it (branch "events",
# migration 6).  Created here only when this ledger lacks it, so the test also runs after
# that migration is merged.
EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, provider TEXT NOT NULL, event_id TEXT NOT NULL, type TEXT NOT NULL,
    bounce TEXT, email TEXT NOT NULL, key TEXT NOT NULL, issue TEXT, message_id TEXT,
    reason TEXT, occurred_at TEXT, received_at TEXT NOT NULL, applied_at TEXT, effect TEXT,
    raw TEXT NOT NULL, UNIQUE (provider, event_id)
)
"""
CONSENT_TABLE = """
CREATE TABLE IF NOT EXISTS consent_history (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL, email TEXT NOT NULL, at TEXT NOT NULL,
    action TEXT NOT NULL, cause TEXT NOT NULL, ip TEXT, user_agent TEXT, source_url TEXT,
    detail TEXT
)
"""


def reader(n: int) -> str:
    return f"reader{n:02d}@example.org"


def make_list(root: Path) -> None:
    """40 readers joining over July and August, 3 who left, 1 bounced, 2 with no dates."""
    lines = ["email,first_name,status,subscribed_at,unsubscribed_at,bounced_at"]
    for n in range(40):
        joined = date(2025, 7, 1 + n) if n < 31 else date(2025, 8, n - 30)
        status, left, bounced = "subscribed", "", ""
        if n in (3, 4, 5):
            status, left = "unsubscribed", "2025-08-20"
        if n == 6:
            status, bounced = "bounced", "2025-08-19T10:00:00-07:00"
        lines.append(f"{reader(n)},R{n},{status},{joined.isoformat()},{left},{bounced}")
    lines.append("old1@example.org,Old,,,,")
    lines.append("old2@example.org,Old,subscribed,,,")
    (root / "subscribers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def record_send(ledger: Ledger, slug: str, outcomes: dict[int, RecipientStatus]) -> None:
    """An issue's send through the real ledger API: claimed in batches, then settled."""
    ledger.start_issue(slug, "hash", "postmark")
    ledger.add_recipients(
        slug,
        (Subscriber(n + 2, reader(n), reader(n), {"email": reader(n)}) for n in outcomes),
    )
    while True:
        batch, rows = ledger.claim(slug, 7)
        if not rows:
            break
        ledger.settle(
            slug,
            batch,
            [
                Settlement(
                    row.key,
                    outcomes[int(row.key[6:8])],
                    provider_id=f"{slug}-{row.key}",
                    reason="inactive recipient" if outcomes[int(row.key[6:8])] == "failed" else "",
                )
                for row in rows
                # pending ones stay pending: the send was paused before them
                if outcomes[int(row.key[6:8])] != RecipientStatus.PENDING
            ],
        )
        if any(outcomes[int(r.key[6:8])] == RecipientStatus.PENDING for r in rows):
            break


def add_events(db_path: Path) -> None:
    db = sqlite3.connect(db_path)
    db.execute(EVENTS_TABLE)
    rows = []

    def event(kind: str, n: int, issue: str | None, bounce: str | None = None) -> None:
        rows.append(
            (
                "postmark",
                f"e{len(rows)}",
                kind,
                bounce,
                reader(n),
                reader(n),
                issue,
                f"{FIRST if issue is None else issue}-{reader(n)}",
                "2025-07-21T15:00:00+00:00",
                "{}",
            )
        )

    for n in range(20):  # the first issue: 20 sent, 18 delivered, 2 bounced
        event("delivered", n, FIRST) if n < 18 else event("bounced", n, FIRST, "hard")
    for n in range(10):
        event("opened", n, FIRST)
        event("opened", n, FIRST)  # a second open by the same reader counts once
    for n in range(3):
        event("clicked", n, None)  # no issue named: matched by the provider's message id
    event("complained", 17, FIRST)
    event("unsubscribed", 16, FIRST)
    event("bounced", 15, FIRST, "soft")  # soft bounces are not counted
    db.executemany(
        "INSERT INTO events (provider, event_id, type, bounce, email, key, issue, message_id,"
        " received_at, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.commit()
    db.close()


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Settings]:
    root = write_project(tmp_path / "project")
    make_list(root)
    (root / "newsletters" / f"{SECOND}.md").write_text(
        "---\nsubject: Knees on stairs\nsend_at: 2025-08-18 07:00\n---\n\nHi.\n", encoding="utf-8"
    )
    settings = load_settings(root / "newsletter.toml")
    first = dict.fromkeys(range(20), RecipientStatus.SENT)
    first |= dict.fromkeys(range(20, 23), RecipientStatus.FAILED)
    first[23] = RecipientStatus.UNKNOWN
    second = dict.fromkeys(range(30), RecipientStatus.SENT) | {30: RecipientStatus.FAILED}
    second |= dict.fromkeys(range(31, 36), RecipientStatus.PENDING)
    for slug, outcomes, when in (
        (FIRST, first, datetime(2025, 7, 21, 14, 0, tzinfo=UTC)),
        (SECOND, second, datetime(2025, 8, 18, 14, 0, tzinfo=UTC)),
    ):
        ledger = Ledger(settings.state_dir / "ledger.sqlite3", clock=lambda when=when: when)
        record_send(ledger, slug, outcomes)
        ledger.close()
    return root, settings


def test_issue_numbers_equal_the_ledger_without_events(project: tuple[Path, Settings]) -> None:
    _, settings = project
    made = make_report(settings, NOW)
    assert [i.slug for i in made.issues] == [FIRST, SECOND]
    ledger = Ledger(settings.state_dir / "ledger.sqlite3")
    for issue in made.issues:
        counts = ledger.counts(issue.slug)
        assert (issue.audience, issue.sent, issue.failed, issue.unknown, issue.pending) == (
            counts.audience,
            counts.sent,
            counts.failed,
            counts.unknown,
            counts.pending,
        )
        assert issue.events is None  # no event recorded: not known, not zero
    ledger.close()
    first, second = made.issues
    assert (first.audience, first.sent, first.failed, first.unknown) == (24, 20, 3, 1)
    assert (second.audience, second.sent, second.failed, second.pending) == (36, 30, 1, 5)
    assert first.title == "Why Hip Rotation Matters More Than You Think"
    text = format_report(made)
    assert "Knees on stairs\n  sent August 18, 2025 to 36 readers" in text
    # Each issue names the provider its readers went through.
    assert "to 36 readers: 30 sent via postmark, 1 refused by the provider, 5 still to send" in text
    assert (
        "to 24 readers: 20 sent via postmark, 3 refused by the provider, 1 not known whether sent"
        in text
    )
    assert "Delivered, opened, clicked and bounced: not known." in text
    assert text.index("Knees on stairs") < text.index("Why Hip Rotation")  # newest first


def test_event_numbers_and_rates(project: tuple[Path, Settings]) -> None:
    _, settings = project
    add_events(settings.state_dir / "ledger.sqlite3")
    made = make_report(settings, NOW)
    first, second = made.issues
    assert first.events == {
        "delivered": 18,
        "bounced": 2,
        "opened": 10,
        "clicked": 3,
        "complained": 1,
        "unsubscribed": 1,
    }
    assert second.events == {}  # the table exists; nothing heard back for this one
    assert first.rate("delivered") == 18 / 20
    assert first.rate("bounced") == 2 / 20
    assert first.rate("opened") == 10 / 18
    assert first.rate("complained") == 1 / 18
    text = format_report(made)
    assert "delivered 18 (90%), bounced 2 (10%)" in text
    assert "opened by 10 (56%), clicked by 3 (17%), unsubscribed 1 (5.6%)," in text
    assert "marked as spam by 1 (5.6%)" in text
    assert "spam complaints at or above 0.3%" in text
    assert "nothing heard back from the provider yet" in text
    # One issue: `report ISSUE.md`.
    only = make_report(settings, NOW, FIRST)
    assert [i.slug for i in only.issues] == [FIRST]


def test_list_week_by_week(project: tuple[Path, Settings]) -> None:
    _, settings = project
    history = list_history(settings, NOW.date())
    weeks = {w.start: w for w in history.weeks}
    assert history.weeks[0].start == date(2025, 6, 30)  # the Monday of the first join
    assert history.weeks[-1].start == date(2025, 9, 1)
    assert history.undated == 2
    # Week of June 30: the 2 undated + 6 joined (July 1-6).
    assert weeks[date(2025, 6, 30)].joined == 6
    assert weeks[date(2025, 6, 30)].counts[Status.SUBSCRIBED] == 8
    # Week of August 18: reader06 bounced on the 19th, readers 03-05 left on the 20th.
    aug18 = weeks[date(2025, 8, 18)]
    assert (aug18.left, aug18.bounced) == (3, 1)
    assert history.now == {
        Status.SUBSCRIBED: 38,
        Status.UNSUBSCRIBED: 3,
        Status.BOUNCED: 1,
        Status.COMPLAINED: 0,
    }
    assert sum(w.joined for w in history.weeks) == 40
    text = format_report(make_report(settings, NOW))
    assert "now: 38 subscribed, 3 unsubscribed, 1 bounced, 0 marked as spam" in text
    assert "2 addresses with no date of joining" in text
    assert "Aug 18, 2025" in text


def test_consent_history_wins_over_the_lists_dates(project: tuple[Path, Settings]) -> None:
    _, settings = project
    db = sqlite3.connect(settings.state_dir / "ledger.sqlite3")
    db.execute(CONSENT_TABLE)
    db.executemany(
        "INSERT INTO consent_history (key, email, at, action, cause) VALUES (?, ?, ?, ?, ?)",
        [
            (reader(0), reader(0), "2025-08-26T17:00:00.000+00:00", "confirmed", "form"),
            (
                "gone@example.org",
                "gone@example.org",
                "2025-07-02T17:00:00+00:00",
                "confirmed",
                "form",
            ),
            (
                "gone@example.org",
                "gone@example.org",
                "2025-08-27T17:00:00+00:00",
                "unsubscribed",
                "one-click",
            ),
        ],
    )
    db.commit()
    db.close()
    history = list_history(settings, NOW.date())
    weeks = {w.start: w for w in history.weeks}
    # reader00 joined on August 26 by the consent history, not July 1 by the list.
    assert weeks[date(2025, 6, 30)].joined == 5 + 1  # readers 01-05, and gone@ on July 2
    assert weeks[date(2025, 8, 25)].joined == 1 and weeks[date(2025, 8, 25)].left == 1
    # An address no longer in the list still counts in its history.
    assert history.now[Status.UNSUBSCRIBED] == 4
    assert any("consent history" in source for source in history.sources)


def test_someone_added_then_taken_off_the_list_by_hand_is_not_counted_subscribed(
    project: tuple[Path, Settings],
) -> None:
    # `subscribers add`, then she saves her own copy of the list from Excel without them:
    # nobody would send to them, so "now" must not count them subscribed.
    _, settings = project
    before = list_history(settings, NOW.date()).now
    db = sqlite3.connect(settings.state_dir / "ledger.sqlite3")
    db.execute(CONSENT_TABLE)
    db.execute(
        "INSERT INTO consent_history (key, email, at, action, cause) VALUES (?, ?, ?, ?, ?)",
        ("added@example.org", "added@example.org", "2025-07-02T17:00:00+00:00", "added", "cli"),
    )
    db.commit()
    db.close()
    history = list_history(settings, NOW.date())
    assert history.now == before
    assert {w.start: w for w in history.weeks}[date(2025, 6, 30)].joined == 6 + 1
    assert "the consent history (1 address)" in history.sources


def _table(page: str, css_class: str) -> list[list[str]]:
    """A table of the report as rows of cell texts (header first)."""
    match = re.search(rf'<table class="{css_class}">(.*?)</table>', page, re.S)
    assert match, css_class
    rows = re.findall(r"<tr>(.*?)</tr>", match[1], re.S)
    return [
        [
            " ".join(re.sub(r"<[^>]+>", " ", cell).split())
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        ]
        for row in rows
    ]


def test_html_report_tables_say_what_the_ledger_says(project: tuple[Path, Settings]) -> None:
    _, settings = project
    add_events(settings.state_dir / "ledger.sqlite3")
    page = render_html(make_report(settings, NOW), settings)
    sending = _table(page, "sending")
    assert sending[0] == ["Issue", "Readers", "Sent", "Refused", "Not known", "Still to send"]
    # Under each title, the terminal's own sentence for it.
    assert sending[1] == [
        "Knees on stairs sent August 18, 2025 to 36 readers: 30 sent via postmark, 1 refused"
        " by the provider, 5 still to send",
        "36",
        "30",
        "1",
        "0",
        "5",
    ]
    assert sending[2][1:] == ["24", "20", "3", "1", "0"]
    readers = _table(page, "readers")
    header = readers[0]
    first = dict(zip(header, readers[2], strict=True))
    assert first["Delivered"] == "18 90%"
    assert first["Bounced"] == "2 10%"
    assert first["Opened"] == "10 56%"
    assert first["Clicked"] == "3 17%"
    assert first["Unsubscribed"] == "1 5.6%"
    assert first["Marked as spam"] == "1 5.6%"
    assert readers[1][1] == "nothing heard back from the provider yet"
    assert "spam complaints at 5.6%" in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_html_report_is_self_contained_and_looks_right(
    project: tuple[Path, Settings], tmp_path: Path
) -> None:
    root, settings = project
    add_events(settings.state_dir / "ledger.sqlite3")
    code, _, err = newsletter(root, "report", "--html", "report.html")
    assert code == 0, err
    assert (root / "report.html").is_file()
    # The same report at the fixture's date, for a screenshot that does not change by the day.
    path = tmp_path / "report.html"
    page = render_html(make_report(settings, NOW), settings)
    path.write_text(page, encoding="utf-8")
    # Opens offline: nothing fetched, nothing run.
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "@import" not in page and "url(" not in page
    assert page.count("<svg") == 3
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (1024, 420):
        shot = ARTIFACTS / f"report-{width}.png"
        chromium(
            [
                f"--window-size={width},1900",
                "--virtual-time-budget=3000",
                f"--screenshot={shot}",
                path.as_uri(),
            ],
            tmp_path,
        )
        assert shot.stat().st_size > 20_000


def test_report_of_an_unsent_issue_is_one_line(project: tuple[Path, Settings]) -> None:
    root, _ = project
    (root / "newsletters" / "2025-12-01-draft.md").write_text(
        "---\nsubject: Draft\n---\n\nHi.\n", encoding="utf-8"
    )
    code, _, err = newsletter(root, "report", "newsletters/2025-12-01-draft.md")
    assert code == 2
    assert err.strip().endswith("this issue has not been sent: nothing to report yet")
    assert "Traceback" not in err


def test_report_with_no_ledger_says_so(tmp_path: Path) -> None:
    root = write_project(tmp_path / "fresh")
    code, out, _ = newsletter(root, "report")
    assert code == 0
    assert "Nothing has been sent yet." in out
    assert "now: 9 subscribed, 1 unsubscribed, 1 bounced, 1 marked as spam" in out
    assert not (root / ".newsletter" / "ledger.sqlite3").exists()  # a report creates nothing


@pytest.mark.parametrize("command", [["report"], ["archive"]])
def test_a_damaged_ledger_is_one_line(tmp_path: Path, command: list[str]) -> None:
    root = write_project(tmp_path / "damaged")
    (root / ".newsletter").mkdir()
    (root / ".newsletter" / "ledger.sqlite3").write_bytes(b"not a database, " * 300)
    code, _, err = newsletter(root, *command)
    assert code == 2
    assert "ledger.sqlite3: the ledger cannot be read" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_report_of_a_misspelled_file_says_no_such_file(project: tuple[Path, Settings]) -> None:
    """A typo in the file name is not "not sent yet": she would look for a send that never
    was. It is the same "no such file" line, with a guess, as every other command's."""
    root, _ = project
    code, _, err = newsletter(root, "report", "newsletters/2025-08-18-knee.md")
    assert code == 2
    assert "newsletters/2025-08-18-knee.md: no such file" in err
    assert "did you mean newsletters/2025-08-18-knees.md?" in err
    assert "not been sent" not in err and "Traceback" not in err


def test_report_html_into_a_new_folder(project: tuple[Path, Settings]) -> None:
    """`--html reports/july.html` makes the folder, as saving a file would; a place it cannot
    write is one line naming it, never a traceback."""
    root, _ = project
    code, out, err = newsletter(root, "report", "--html", "reports/july.html")
    assert code == 0, err
    assert (root / "reports" / "july.html").read_text(encoding="utf-8").startswith("<!doctype")
    assert "wrote reports/july.html" in out
    (root / "taken").write_text("a file, not a folder", encoding="utf-8")
    code, out, err = newsletter(root, "report", "--html", "taken/report.html")
    assert code == 2
    assert err.strip() == (
        "error: taken/report.html: cannot write the report: taken is a file, not a folder"
    )
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_with_the_outbox_nothing_comes_back_and_the_report_says_so(tmp_path: Path) -> None:
    """README's first command sends through the outbox, which emails nobody: the report must
    not send her looking for delivery reports that can never come."""
    root = write_project(tmp_path / "outbox")
    code, _, err = newsletter(root, "send", "newsletters/2025-07-21-hip-rotation.md", "--yes")
    assert code == 0, err
    code, out, _ = newsletter(root, "report", "--html", "report.html")
    assert code == 0
    assert "The outbox provider writes\neach message to a file in outbox/ and emails nobody" in out
    assert "`" not in out  # Markdown's backticks are not words she reads on a terminal
    # As `send` says it: the outbox writes files, it does not send.
    assert "  written to outbox/ on " in out and "for 9 readers: 9 written (emailed nobody)" in out
    page = (root / "report.html").read_text(encoding="utf-8")
    assert "The outbox provider writes each message to a file in outbox/" in page
    # The bar's legend and tooltip say what happened: files, not mail on its way.
    assert "written to outbox/ (emailed nobody)" in page
    assert "not yet confirmed delivered" not in page


def test_without_events_a_real_providers_report_is_not_known(
    project: tuple[Path, Settings],
) -> None:
    root, _ = project  # sent through postmark, no events table
    code, out, _ = newsletter(root, "report")
    assert code == 0
    assert "Your provider reports them to" in out and "outbox" not in out
    assert "`" not in out


@pytest.mark.parametrize(
    ("undated", "words"),
    [
        (1, "1 address with no date of joining counts"),
        (2, "2 addresses with no date of joining count"),
    ],
)
def test_html_report_agrees_with_its_number(
    project: tuple[Path, Settings], undated: int, words: str
) -> None:
    root, settings = project
    csv_path = root / "subscribers.csv"
    rows = csv_path.read_text(encoding="utf-8").splitlines()
    if undated == 1:
        rows = [row for row in rows if not row.startswith("old2@")]
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    page = render_html(make_report(settings, NOW), settings)
    assert f"{words} from the first week." in page


def test_a_bar_for_one_reader_says_one_reader() -> None:
    from pipeline.config import Theme
    from pipeline.report.charts import outcome_bars
    from pipeline.report.outcomes import IssueOutcome

    def issue(audience: int) -> IssueOutcome:
        return IssueOutcome(f"i{audience}", "Test", NOW, audience, audience, 0, 0, 0)

    chart = str(outcome_bars([issue(1), issue(1200)], Theme()))
    assert ">1 reader<" in chart
    assert ">1,200 readers<" in chart


def test_dates_it_cannot_read_are_said_not_dropped(project: tuple[Path, Settings]) -> None:
    """A date typed as a person would ('last tuesday', '13/07/2025') is not silently a row
    with no date: the report says how many it could not read, and the first one's line."""
    root, settings = project
    csv_path = root / "subscribers.csv"
    rows = csv_path.read_text(encoding="utf-8").splitlines()
    rows[1] = rows[1].replace("2025-07-01", "last tuesday")  # line 2
    rows[2] = rows[2].replace("2025-07-02", "13/07/2025")
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    made = make_report(settings, NOW)
    problem = (
        "2 dates not read, the first on line 2: subscribed_at 'last tuesday'"
        " (write dates as 2025-07-21); those rows count as having no date"
    )
    assert f"  ! {problem}" in format_report(made)
    assert problem in html.unescape(render_html(made, settings))
    assert made.history.undated == 4  # the 2 with no date, and these 2
    rows[2] = rows[2].replace("13/07/2025", "2025-07-02")
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert (
        "  ! 1 date not read, on line 2: subscribed_at 'last tuesday' (write dates as"
        " 2025-07-21); that row counts as having no date"
    ) in format_report(make_report(settings, NOW))


def test_a_missing_list_is_said_not_counted_as_empty(project: tuple[Path, Settings]) -> None:
    root, settings = project
    (root / "subscribers.csv").unlink()
    made = make_report(settings, NOW)
    assert "  ! subscribers.csv is not there: the list is not counted" in format_report(made)
    assert "subscribers.csv is not there: the list is not counted" in render_html(made, settings)


def _words(page: str) -> str:
    """The page's text as a person reads it: tags gone, entities decoded, spaces collapsed."""
    text = re.sub(r"<(style|svg)\b.*?</\1>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def _issue_sentences(text: str) -> list[str]:
    """Each issue's line of the terminal report: what became of its readers."""
    return [
        line.strip()
        for line in text.splitlines()
        if line.startswith(("  sent ", "  written to outbox/ on "))
    ]


def test_html_report_of_an_outbox_trial_says_what_the_text_says(tmp_path: Path) -> None:
    """README's first command, then `report --html`: the page once said "1 issue sent" and
    "9 got the latest issue" while the terminal said "9 written (emailed nobody)"."""
    root = write_project(tmp_path / "trial")
    code, _, err = newsletter(root, "send", "newsletters/2025-07-21-hip-rotation.md", "--yes")
    assert code == 0, err
    code, out, err = newsletter(root, "report", "--html", "report.html")
    assert code == 0, err
    page = (root / "report.html").read_text(encoding="utf-8")
    words = _words(page)
    [sentence] = _issue_sentences(out)
    assert sentence.endswith("for 9 readers: 9 written (emailed nobody)")
    assert sentence in words  # the terminal's words, not a second wording of its own
    assert "1 issue only written to outbox/ (emailed nobody)" in words
    assert "issue sent" not in words and "issues sent" not in words
    assert "got the latest issue" not in words
    assert "9 written to outbox/ of the latest issue (emailed nobody)" in words
    sending = _table(page, "sending")
    assert sending[0][2:4] == ["Sent", "Written to outbox/"]
    assert sending[1][1:4] == ["9", "0", "9"]  # 9 readers: none sent, 9 written


def test_html_report_beside_real_sends_keeps_the_outbox_trial_apart(
    project: tuple[Path, Settings],
) -> None:
    """Two issues sent through postmark, then a third only written to the outbox: the page
    counted "3 issues sent", drew the trial as "sent (not yet confirmed delivered)" and left
    its readers waiting on the provider's webhooks, all unlike the terminal."""
    root, settings = project
    (root / "newsletters" / "2025-09-01-shoulders.md").write_text(
        "---\nsubject: Shoulders at the desk\n---\n\nHi.\n", encoding="utf-8"
    )
    code, _, err = newsletter(root, "send", "newsletters/2025-09-01-shoulders.md", "--yes")
    assert code == 0, err
    code, out, err = newsletter(root, "report", "--html", "report.html")
    assert code == 0, err
    written = ledger_counts(settings, "2025-09-01-shoulders").sent
    assert written > 0
    page = (root / "report.html").read_text(encoding="utf-8")
    words = _words(page)
    sentences = _issue_sentences(out)
    assert sentences[0].endswith(f"readers: {written} written (emailed nobody)")
    assert sentences[1].startswith("sent August 18, 2025 to 36 readers: 30 sent via postmark")
    for sentence in sentences:
        assert sentence in words
    assert "2 issues sent" in words and "1 issue only written to outbox/" in words
    assert f"{written} written to outbox/ of the latest issue (emailed nobody)" in words
    assert f"written to outbox/ (emailed nobody): {written} (100%)" in page  # its bar
    assert f"sent (not yet confirmed delivered): {written} " not in page
    assert "Those written to outbox/ were emailed to nobody: nothing comes back for them." in (
        words
    )
    assert "Those written to outbox/ were emailed to nobody" in out
    sending = _table(page, "sending")
    assert sending[0][2:4] == ["Sent", "Written to outbox/"]
    assert sending[1][2:4] == ["0", f"{written:,}"]
    assert sending[2][2:4] == ["30", "0"]


def ledger_counts(settings: Settings, slug: str) -> Counts:
    ledger = Ledger(settings.state_dir / "ledger.sqlite3")
    try:
        return ledger.counts(slug)
    finally:
        ledger.close()


def test_a_send_finished_through_the_outbox_says_which_readers_were_only_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Begun through postmark, paused (the provider out of reach), then finished after
    newsletter.toml went back to the outbox: the report said "11 sent", as if all 11 were
    emailed; 5 were, through postmark, and 6 only written to outbox/."""
    from .fake_providers import POSTMARK_TOKEN, CallFault, FakePostmark

    monkeypatch.setenv("POSTMARK_SERVER_TOKEN", POSTMARK_TOKEN)
    rows = "\n".join(f"{reader(n)},R{n},subscribed" for n in range(11))
    server = FakePostmark()
    try:
        root = write_project(
            tmp_path / "switched",
            provider=f'name = "postmark"\nbase_url = "{server.url}"\nbatch_size = 5\n'
            "concurrency = 1\nmax_attempts = 1",
            csv=f"email,first_name,status\n{rows}\n",
        )
        server.faults = [CallFault(), CallFault(status=503)]  # the second batch: no answer
        code, out, err = newsletter(root, "send", "newsletters/2025-07-21-hip-rotation.md", "--yes")
        assert "paused" in out + err, out + err
        assert len(server.delivered) == 5
    finally:
        server.close()
    config = root / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.split("[provider]")[0] + '[provider]\nname = "outbox"\n', "utf-8")
    code, out, err = newsletter(root, "send", "newsletters/2025-07-21-hip-rotation.md", "--yes")
    # Refused now (the rest would be emailed nobody and the issue marked complete); an older
    # version finished it so, and its ledger must still be told truly: made here as it did.
    assert code == 2 and "set [provider] back to postmark to finish it" in err, out + err
    db = sqlite3.connect(root / ".newsletter" / "ledger.sqlite3")
    with db:
        slug = "2025-07-21-hip-rotation"
        left = db.execute(
            "SELECT count(*) FROM recipients WHERE issue = ? AND status IN ('pending', 'unknown')",
            (slug,),
        ).fetchone()[0]
        batch = db.execute(
            "INSERT INTO batches (issue, size, started_at, provider, settled, settled_at)"
            " VALUES (?, ?, '2025-07-21T15:00:00+00:00', 'outbox', ?, '2025-07-21T15:00:01+00:00')",
            (slug, left, left),
        ).lastrowid
        db.execute(
            "UPDATE recipients SET status = 'sent', batch = ?, provider_id = 'a.eml'"
            " WHERE issue = ? AND status IN ('pending', 'unknown')",
            (batch, slug),
        )
        db.execute("DELETE FROM recipient_counts WHERE issue = ?", (slug,))
        db.execute(
            "INSERT INTO recipient_counts (issue, status, n) SELECT issue, status, count(*)"
            " FROM recipients WHERE issue = ? GROUP BY status",
            (slug,),
        )
        db.execute(
            "UPDATE issues SET status = 'complete', finished_at = '2025-07-21T15:00:02+00:00'"
            " WHERE slug = ?",
            (slug,),
        )
    db.close()
    code, out, err = newsletter(root, "report", "--html", "report.html")
    assert code == 0, err
    [sentence] = _issue_sentences(out)
    assert sentence.endswith(
        "to 11 readers: 5 sent via postmark, 6 written to outbox/ (emailed nobody)"
    ), sentence
    page = (root / "report.html").read_text(encoding="utf-8")
    assert sentence in _words(page)
    sending = _table(page, "sending")
    assert sending[1][1:4] == ["11", "5", "6"]
    settings = load_settings(config)
    [issue] = make_report(settings, NOW).issues
    assert (issue.sent, issue.emailed, issue.written) == (11, 5, 6)
    assert issue.sent_via == {"postmark": 5, "outbox": 6}
