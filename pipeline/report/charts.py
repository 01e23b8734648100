"""Inline SVG charts for the HTML report: no library, no script, nothing fetched.

SVG written here opens offline, prints sharp, and needs no dependency; each chart carries a
<title> and an aria-label, and the same numbers are in a table beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from pipeline.audience.subscribers import Status
from pipeline.config import Theme
from pipeline.report.list_history import Week
from pipeline.report.outcomes import IssueOutcome
from pipeline.report.words import percent, plural, short_date

WIDTH = 720


@dataclass(frozen=True)
class Segment:
    label: str
    color: str


def nice_ticks(top: int, count: int = 4) -> list[int]:
    """Round gridline values from 0 to at least ``top``."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(int(step), 1)
    return list(range(0, top + step, step)) if top % step else list(range(0, top + 1, step))


def _text(x: float, y: float, words: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(words)}</text>'


def list_chart(weeks: Sequence[Week], theme: Theme) -> Markup:
    """Subscribed readers, week by week (an area), and those who left in all (a line)."""
    left_margin, right_margin, top_margin, bottom_margin = 56, 16, 20, 40
    height = 260
    plot_w = WIDTH - left_margin - right_margin
    plot_h = height - top_margin - bottom_margin
    subscribed = [w.counts[Status.SUBSCRIBED] for w in weeks]
    gone = [
        w.counts[Status.UNSUBSCRIBED] + w.counts[Status.BOUNCED] + w.counts[Status.COMPLAINED]
        for w in weeks
    ]
    ticks = nice_ticks(max([*subscribed, *gone, 1]))
    top = ticks[-1]

    def x(index: int) -> float:
        if len(weeks) == 1:
            return left_margin + plot_w / 2
        return left_margin + plot_w * index / (len(weeks) - 1)

    def y(value: int) -> float:
        return top_margin + plot_h * (1 - value / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img"'
        ' aria-label="Subscribed readers per week">',
        "<title>Subscribed readers per week</title>",
    ]
    for tick in ticks:
        parts.append(
            f'<line x1="{left_margin}" x2="{WIDTH - right_margin}" y1="{y(tick):.1f}"'
            f' y2="{y(tick):.1f}" stroke="#dde5e3" />'
        )
        parts.append(_text(left_margin - 8, y(tick) + 4, f"{tick:,}", "end"))
    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(subscribed))
    if len(weeks) == 1:
        bar = 24
        parts.append(
            f'<rect x="{x(0) - bar / 2:.1f}" y="{y(subscribed[0]):.1f}" width="{bar}"'
            f' height="{y(0) - y(subscribed[0]):.1f}" fill="{theme.accent}" />'
        )
    else:
        area = f"{x(0):.1f},{y(0):.1f} {points} {x(len(weeks) - 1):.1f},{y(0):.1f}"
        parts.append(f'<polygon points="{area}" fill="{theme.accent}" fill-opacity="0.18" />')
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{theme.accent}" stroke-width="2.5" />'
        )
        if any(gone):
            gone_points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(gone))
            parts.append(
                f'<polyline points="{gone_points}" fill="none" stroke="#b5533c"'
                ' stroke-width="2" stroke-dasharray="6 4" />'
            )
    for i, week in enumerate(weeks):
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(subscribed[i]):.1f}" r="{3 if len(weeks) < 60 else 0}"'
            f' fill="{theme.accent}"><title>week of {escape(short_date(week.start))}:'
            f" {subscribed[i]:,} subscribed, {week.joined:,} joined, {week.left:,} left,"
            f" {week.bounced:,} bounced</title></circle>"
        )
    # At most 6 dates, evenly spaced, the last week always; none crowding the last one.
    step = max(1, math.ceil((len(weeks) - 1) / 5))
    shown = [i for i in range(0, len(weeks), step) if len(weeks) - 1 - i >= step]
    shown.append(len(weeks) - 1)
    for i in shown:
        # The first and last labels lean inwards, so the edges do not cut them.
        anchor, shift = "middle", 0.0
        if len(weeks) > 1 and i == 0:
            anchor, shift = "start", -20.0
        elif len(weeks) > 1 and i == len(weeks) - 1:
            anchor, shift = "end", 10.0
        label = short_date(weeks[i].start)
        parts.append(_text(x(i) + shift, height - bottom_margin + 20, label, anchor))
    parts.append("</svg>")
    return Markup("".join(parts))


def outcome_segments(theme: Theme) -> dict[str, Segment]:
    """The parts of an issue's bar.  "written" is what went to the outbox: files that emailed
    nobody, never "sent" (the words of ``pipeline/report/terminal.py``'s ``sending_words``)."""
    return {
        "delivered": Segment("delivered", theme.accent),
        "sent": Segment("sent (not yet confirmed delivered)", "#8cc5bc"),
        "written": Segment("written to outbox/ (emailed nobody)", "#b9c3d9"),
        "bounced": Segment("bounced", "#d08a2e"),
        "failed": Segment("refused by the provider", "#b5533c"),
        "unknown": Segment("not known", "#8a8f8e"),
        "pending": Segment("still to send", "#d5dedc"),
    }


def issue_segments(issue: IssueOutcome) -> list[tuple[str, int]]:
    """The audience of an issue cut into parts that add up to it."""
    events = issue.events or {}
    delivered = min(events.get("delivered", 0), issue.emailed)
    bounced = min(events.get("bounced", 0), issue.emailed - delivered)
    return [
        ("delivered", delivered),
        ("sent", issue.emailed - delivered - bounced),
        ("written", issue.written),
        ("bounced", bounced),
        ("failed", issue.failed),
        ("unknown", issue.unknown),
        ("pending", issue.pending),
    ]


def outcome_bars(issues: Sequence[IssueOutcome], theme: Theme) -> Markup:
    """One bar per issue, newest first: its whole audience, cut by what happened."""
    segments = outcome_segments(theme)
    row_h, label_h, bar_h = 64, 22, 26
    height = 16 + row_h * len(issues)
    bar_w = WIDTH - 140
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img"'
        ' aria-label="What happened to each issue">',
        "<title>What happened to each issue</title>",
    ]
    for row, issue in enumerate(reversed(issues)):
        top = 8 + row * row_h
        title = issue.title if len(issue.title) <= 80 else issue.title[:79] + "…"
        parts.append(_text(0, top + 15, title, extra=' font-weight="bold"'))
        offset = 0.0
        for name, count in issue_segments(issue):
            if not count:
                continue
            width = bar_w * count / max(issue.audience, 1)
            share = percent(count / issue.audience) if issue.audience else "-"
            parts.append(
                f'<rect x="{offset:.1f}" y="{top + label_h}" width="{width:.1f}" height="{bar_h}"'
                f' fill="{segments[name].color}"><title>{escape(segments[name].label)}:'
                f" {count:,} ({share})</title></rect>"
            )
            if width >= 44:
                fill = "#ffffff" if name in ("delivered", "failed", "unknown") else "#26302e"
                parts.append(
                    _text(
                        offset + width / 2,
                        top + label_h + 18,
                        f"{count:,}",
                        "middle",
                        f' fill="{fill}" font-weight="bold"',
                    )
                )
            offset += width
        parts.append(_text(bar_w + 10, top + label_h + 18, plural(issue.audience, "reader")))
    parts.append("</svg>")
    return Markup("".join(parts))


def engagement_bars(issues: Sequence[IssueOutcome], theme: Theme) -> Markup:
    """Opened and clicked, as shares of those delivered, one pair of bars per issue."""
    shown = [i for i in reversed(issues) if i.events]
    row_h = 58
    height = 12 + row_h * len(shown)
    bar_w = WIDTH - 200
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img"'
        ' aria-label="Opened and clicked, per issue">',
        "<title>Opened and clicked, per issue</title>",
    ]
    for row, issue in enumerate(shown):
        top = 6 + row * row_h
        title = issue.title if len(issue.title) <= 80 else issue.title[:79] + "…"
        parts.append(_text(0, top + 14, title, extra=' font-weight="bold"'))
        for line, (kind, color) in enumerate((("opened", theme.accent), ("clicked", "#d08a2e"))):
            rate = issue.rate(kind) or 0.0
            y = top + 20 + line * 17
            parts.append(f'<rect x="70" y="{y}" width="{bar_w}" height="13" fill="#eef2f1" />')
            parts.append(
                f'<rect x="70" y="{y}" width="{bar_w * min(rate, 1):.1f}" height="13"'
                f' fill="{color}"><title>{kind}: {percent(rate)}</title></rect>'
            )
            parts.append(_text(0, y + 11, kind))
            count = (issue.events or {}).get(kind, 0)
            parts.append(_text(80 + bar_w, y + 11, f"{percent(rate)} ({count:,})"))
    parts.append("</svg>")
    return Markup("".join(parts))
