"""The report on a terminal: a few lines per issue, then the list, in plain words."""

from __future__ import annotations

from datetime import tzinfo

from pipeline.audience.subscribers import Status
from pipeline.ledger.readonly import OUTBOX
from pipeline.report.list_history import ListHistory
from pipeline.report.outcomes import IssueOutcome
from pipeline.report.report import Report
from pipeline.report.words import long_date, percent, plural, short_date

SPAM_LIMIT = 0.003  # Gmail's and Yahoo's bulk-sender rule: complaints under 0.3%
WEEKS_SHOWN = 12


def sending_words(issue: IssueOutcome, zone: tzinfo | None) -> tuple[str, list[str]]:
    """When, and for how many, then what became of them, as `send` says it: the one wording
    of an issue's sending, on the terminal and in the HTML report alike.

    Only what went through a real provider is "sent": what went to the outbox was written to
    a file and emailed nobody, so it is "written", also in a send begun under one provider
    and finished under the outbox (or the other way round), each provider named."""
    when = long_date(issue.started_at.astimezone(zone))
    readers = plural(issue.audience, "reader")
    if issue.emailed_nobody:
        head = f"written to outbox/ on {when} for {readers}"
        parts = [f"{issue.written:,} written (emailed nobody)"]
    else:
        head = f"sent {when} to {readers}"
        parts = [
            f"{count:,} written to outbox/ (emailed nobody)"
            if name == OUTBOX
            else f"{count:,} sent" + (f" via {name}" if name else "")
            for name, count in (issue.sent_via or {issue.provider: 0}).items()
        ]
    if issue.failed:
        parts.append(f"{issue.failed:,} refused by the provider")
    if issue.unknown:
        parts.append(f"{issue.unknown:,} not known whether sent")
    if issue.pending:
        parts.append(f"{issue.pending:,} still to send")
    return head, parts


def nothing_heard(issue: IssueOutcome) -> str | None:
    """Why an issue has no provider events to show, when it has none (terminal and HTML)."""
    if issue.emailed_nobody:
        return "nothing to hear back: it was only written to outbox/, which emails nobody"
    if not any((issue.events or {}).values()):
        return "nothing heard back from the provider yet"
    return None


def _issue_lines(issue: IssueOutcome, zone: tzinfo | None) -> list[str]:
    head, parts = sending_words(issue, zone)
    lines = [issue.title, f"  {head}: {', '.join(parts)}"]
    if issue.events is None:
        return lines
    nothing = nothing_heard(issue)
    if nothing is not None:
        lines.append(f"  {nothing}")
        return lines
    e = issue.events
    lines.append(
        f"  delivered {e.get('delivered', 0):,} ({percent(issue.rate('delivered'))}),"
        f" bounced {e.get('bounced', 0):,} ({percent(issue.rate('bounced'))})"
    )
    lines.append(
        f"  opened by {e.get('opened', 0):,} ({percent(issue.rate('opened'))}),"
        f" clicked by {e.get('clicked', 0):,} ({percent(issue.rate('clicked'))}),"
        f" unsubscribed {e.get('unsubscribed', 0):,} ({percent(issue.rate('unsubscribed'))}),"
        f" marked as spam by {e.get('complained', 0):,} ({percent(issue.rate('complained'))})"
    )
    spam = issue.rate("complained")
    if spam is not None and spam >= SPAM_LIMIT:
        lines.append(
            "  ! spam complaints at or above 0.3%: Gmail and Yahoo start refusing mail from"
            " senders above that; the complainers are off the list now"
        )
    return lines


def list_problems(history: ListHistory) -> list[str]:
    """What the report could not read of the list, in her words (terminal and HTML alike)."""
    problems = []
    if history.missing:
        problems.append(f"{history.missing} is not there: the list is not counted")
    if history.first_bad_date is not None:
        line, column, text = history.first_bad_date
        one = history.bad_dates == 1
        problems.append(
            f"{plural(history.bad_dates, 'date')} not read, {'on' if one else 'the first on'}"
            f" line {line}: {column} {text!r} (write dates as 2025-07-21);"
            f" {'that row counts' if one else 'those rows count'} as having no date"
        )
    return problems


def format_report(report: Report) -> str:
    out = ["How each issue did", ""]
    if not report.issues:
        out += ["Nothing has been sent yet.", ""]
    for issue in reversed(report.issues):  # newest first
        out += [*_issue_lines(issue, report.made_at.tzinfo), ""]
    if report.issues and not report.events_recorded and report.nothing_comes_back:
        out += [
            "Delivered, opened, clicked and bounced: none to know. The outbox provider writes",
            "each message to a file in outbox/ and emails nobody. With a real provider",
            "([provider] in newsletter.toml), they come back to the web app (newsletter serve).",
            "",
        ]
    elif report.issues and not report.events_recorded:
        out += [
            "Delivered, opened, clicked and bounced: not known. Your provider reports them to",
            "the web app's webhooks (newsletter serve), and none are recorded in this ledger.",
            *(
                ["Those written to outbox/ were emailed to nobody: nothing comes back for them."]
                if report.some_written
                else []
            ),
            "",
        ]
    elif report.issues:
        out += [
            "Rates: delivered and bounced out of those sent, the rest out of those delivered.",
            "Opens are approximate: some mail apps open every message, some never report it.",
            "",
        ]
    history = report.history
    now = history.now
    out.append("Your list")
    out.append(
        f"  now: {now[Status.SUBSCRIBED]:,} subscribed, {now[Status.UNSUBSCRIBED]:,} unsubscribed,"
        f" {now[Status.BOUNCED]:,} bounced, {now[Status.COMPLAINED]:,} marked as spam"
    )
    weeks = history.weeks[-WEEKS_SHOWN:]
    if len(history.weeks) > 1:
        header = (
            f"  {'week of':<14}{'subscribed':>11}{'joined':>8}{'left':>6}{'bounced':>9}{'spam':>6}"
        )
        out.append(header)
        for week in weeks:
            out.append(
                f"  {short_date(week.start):<14}{week.counts[Status.SUBSCRIBED]:>11,}"
                f"{week.joined:>8,}{week.left:>6,}{week.bounced:>9,}{week.complained:>6,}"
            )
        if len(history.weeks) > WEEKS_SHOWN:
            out.append(
                f"  (the last {WEEKS_SHOWN} of {len(history.weeks)} weeks; --html shows them all)"
            )
    if history.undated:
        out.append(
            f"  {plural(history.undated, 'address', 'addresses')} with no date of joining:"
            " counted from the first week"
        )
    if history.sources:
        out.append(f"  from {' and '.join(history.sources)}")
    out += [f"  ! {problem}" for problem in list_problems(history)]
    return "\n".join(out) + "\n"
