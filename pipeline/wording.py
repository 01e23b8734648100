"""Words a person reads: counts with the right plural, times in her own time zone."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from pathlib import Path


def count(number: int, singular: str, plural: str | None = None) -> str:
    """``count(1, "subscriber")`` -> "1 subscriber"; ``count(2, "row")`` -> "2 rows"."""
    word = singular if number == 1 else (plural or singular + "s")
    return f"{number:,} {word}"


# What stopped a send, in the words of the person who did it, with the signal's name kept.
_SIGNALS = {
    "SIGINT": "Ctrl-C (SIGINT)",
    "SIGTERM": "SIGTERM (a shutdown, systemctl stop or kill)",
    "SIGHUP": "the terminal closing (SIGHUP)",
}


def stopped_by(signal_name: str) -> str:
    """``stopped_by("SIGINT")`` -> "Ctrl-C (SIGINT)"."""
    return _SIGNALS.get(signal_name, signal_name)


def local_time(moment: datetime, timezone: tzinfo) -> str:
    """``Tue 1 Dec 2026, 07:00 EST``: the newsletter's zone, as she would say it."""
    local = moment.astimezone(timezone)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M} {local.tzname() or ''}".rstrip()


def duration(delta: timedelta) -> str:
    """``3 days``, ``5 hours``, ``20 minutes``: rounded down to the largest whole unit."""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds >= 2 * 86400:
        return count(seconds // 86400, "day")
    if seconds >= 2 * 3600:
        return count(seconds // 3600, "hour")
    return count(max(seconds // 60, 1) if seconds else 0, "minute")


def shown(path: Path) -> str:
    """A path as she would type it: relative to where she is, when it is below there."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
