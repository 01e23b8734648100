"""The report as one HTML file: inline CSS and SVG, no script, nothing fetched, so it opens
offline, attaches to an email and prints."""

from __future__ import annotations

from pathlib import Path

import jinja2

from pipeline.audience.subscribers import Status
from pipeline.config import Settings
from pipeline.errors import InputError
from pipeline.report.charts import (
    engagement_bars,
    issue_segments,
    list_chart,
    outcome_bars,
    outcome_segments,
)
from pipeline.report.report import Report
from pipeline.report.terminal import SPAM_LIMIT, list_problems, nothing_heard, sending_words
from pipeline.report.words import long_date, percent, plural, short_date

TEMPLATES = Path(__file__).parent / "templates"
# The columns of "What readers did", in the order of its header.
TABLE_KINDS = (
    ("delivered", "Delivered"),
    ("bounced", "Bounced"),
    ("opened", "Opened"),
    ("clicked", "Clicked"),
    ("unsubscribed", "Unsubscribed"),
    ("complained", "Marked as spam"),
)


def check_report_path(settings: Settings, path: Path) -> None:
    """Refuse to write the report over anything of hers.

    ``report --html newsletters/x.md`` (meaning ``report newsletters/x.md``) once replaced her
    draft with the report, and ``--html subscribers.csv`` her whole list.  The report is a
    page: its name ends in .html, and it is never written among her drafts, templates or
    the ledger."""
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(
            "the report is a web page: name it with .html at the end, such as report.html"
            + (" (this file exists and is not one: it is left as it is)" if path.exists() else ""),
            path=path,
            field="--html",
        )
    where = path.resolve()
    for own in (settings.newsletters_dir, settings.templates_dir, settings.state_dir):
        if where.is_relative_to(own.resolve()):
            raise InputError(
                f"is inside {own.name}/, which holds your own files; write the report"
                " elsewhere, such as report.html",
                path=path,
                field="--html",
            )


def render_html(report: Report, settings: Settings) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    theme = settings.theme
    history = report.history
    now = history.now
    issues = report.issues
    segments = outcome_segments(theme)
    used = {name for issue in issues for name, count in issue_segments(issue) if count}
    rows = []
    for issue in reversed(issues):
        # The terminal's own words for each issue: written to the outbox is never "sent".
        head, parts = sending_words(issue, settings.timezone)
        rows.append(
            {
                "issue": issue,
                "title": issue.title,
                "sending": f"{head}: {', '.join(parts)}",
                "events": issue.events or {},
                "nothing": nothing_heard(issue),
                "spam_warning": (issue.rate("complained") or 0) >= SPAM_LIMIT,
            }
        )
    return env.get_template("report.html.j2").render(
        settings=settings,
        theme=theme,
        report=report,
        made=f"{long_date(report.made_at)}, {report.made_at:%H:%M}",
        now={
            "subscribed": now[Status.SUBSCRIBED],
            "unsubscribed": now[Status.UNSUBSCRIBED],
            "bounced": now[Status.BOUNCED],
            "complained": now[Status.COMPLAINED],
        },
        last=issues[-1] if issues else None,
        # Sent through a real provider, and only written to the outbox (trials): apart.
        emailed_issues=sum(1 for issue in issues if not issue.emailed_nobody),
        trial_issues=sum(1 for issue in issues if issue.emailed_nobody),
        any_written=any(issue.written for issue in issues),
        pct=percent,
        undated=plural(history.undated, "address", "addresses"),
        any_gone=any(
            w.counts[Status.UNSUBSCRIBED] + w.counts[Status.BOUNCED] + w.counts[Status.COMPLAINED]
            for w in history.weeks
        ),
        weeks=[
            {
                "label": short_date(w.start),
                "subscribed": w.counts[Status.SUBSCRIBED],
                "joined": w.joined,
                "left": w.left,
                "bounced": w.bounced,
                "complained": w.complained,
            }
            for w in reversed(history.weeks)
        ],
        list_chart=list_chart(history.weeks, theme),
        outcome_chart=outcome_bars(issues, theme) if issues else "",
        engagement_chart=engagement_bars(issues, theme) if report.events_recorded else "",
        segments=[segments[name] for name in segments if name in used],
        rows=rows,
        kinds=TABLE_KINDS,
        list_problems=list_problems(history),
    )
