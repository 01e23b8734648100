"""Numbers in words she reads at a glance: plurals, percentages, dates."""

from __future__ import annotations

import math
from datetime import date, datetime


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def percent(rate: float | None) -> str:
    """ "88%", and "0.3%" below 10%, where a decimal matters (the spam-complaint limit).

    Rounded, but never onto a figure that says something untrue: "100%" only when all (996
    delivered of 1,000 is "99%", not a "100%" that hides four bounces), "0%" only when none
    (one in 100,000 is "under 0.1%"), and under 1% cut rather than rounded up, so 0.29% of
    complaints reads "0.2%", not the "0.3%" the spam warning names.
    """
    if rate is None:
        return "-"
    value = round(rate * 100, 6)  # 0.29 * 100 is 28.999999999999996, not under 29
    if value == 0:
        return "0%"
    if value < 0.1:
        return "under 0.1%"
    if value < 1:
        return f"{math.floor(value * 10) / 10:.1f}%"
    tenths = math.floor(value * 10 + 0.5) / 10  # half up, as people round
    if tenths < 10:
        return f"{tenths:.1f}%"
    whole = math.floor(value + 0.5)
    return f"{min(whole, 99) if value < 100 else whole}%"


def long_date(day: date | datetime) -> str:
    return f"{day:%B} {day.day}, {day.year}"


def short_date(day: date) -> str:
    return f"{day:%b} {day.day}, {day.year}"
