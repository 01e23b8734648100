"""Numbers in words she reads at a glance: plurals, percentages, dates."""

from __future__ import annotations

from datetime import date, datetime


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def percent(rate: float | None) -> str:
    """ "88%", and "0.3%" below 10%, where a decimal matters (the spam-complaint limit)."""
    if rate is None:
        return "-"
    value = rate * 100
    if value == 0:
        return "0%"
    return f"{value:.1f}%" if value < 10 else f"{value:.0f}%"


def long_date(day: date | datetime) -> str:
    return f"{day:%B} {day.day}, {day.year}"


def short_date(day: date) -> str:
    return f"{day:%b} {day.day}, {day.year}"
