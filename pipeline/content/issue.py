"""A draft file -> ``Issue``: validated front matter and a body whose merge fields are tokens.

Input: ``newsletters/YYYY-MM-DD-slug.md``.  Output: an ``Issue`` (plain data) for the render stage.
Every problem names the file, the line and the field.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.content.front_matter import split_front_matter
from pipeline.content.merge_fields import MergeFields
from pipeline.errors import InputError, InputErrors
from pipeline.render.markdown import markdown_problems

KNOWN_KEYS = ("subject", "preheader", "send_at", "tags", "title")
# newsletters/welcome.md is not an issue: the web app sends it to each new subscriber once,
# when they confirm.  Cron, `status` and a send to the list leave it alone.
WELCOME_DRAFT = "welcome.md"


@dataclass(frozen=True)
class Issue:
    path: Path
    slug: str
    subject: str  # merge fields are tokens (see MergeFields)
    title: str
    preheader: str
    send_at: datetime | None  # aware; None: only sent by hand, never by cron
    tags: tuple[str, ...]
    body: str  # Markdown, merge fields are tokens
    body_line: int  # file line of the body's first line
    merge_fields: MergeFields
    content_hash: str  # sha256 of the file, so a send can refuse an edited issue
    key_lines: Mapping[str, int] = field(default_factory=dict)  # front matter key -> line


SEND_AT_FORMS = (
    ": write a local time such as '2025-07-21 07:00' (24-hour clock, in newsletter.toml's "
    "timezone) or a time with its offset such as '2025-07-21T07:00:00-07:00'"
)
_US_DATE = re.compile(r"^(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4})(?:\s+(?P<rest>.*))?$")
_CLOCK = re.compile(r"^(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<half>[ap])?\.?m?\.?$", re.I)


# A zone written after the time ('07:00 PST'): the zone is newsletter.toml's, not the draft's.
_TRAILING_ZONE = re.compile(r"\s+(?![ap]\.?m\.?$)[A-Za-z]{2,5}$", re.I)


def _send_at_hint(text: str) -> str:
    """' (did you mean '2025-07-21 19:00'?)' for a date or time in a familiar other form."""
    match = _US_DATE.match(text)
    if match:
        day = f"{match['year']}-{int(match['month']):02d}-{int(match['day']):02d}"
        rest = match["rest"] or ""
    elif re.match(r"^\d{4}-\d{2}-\d{2}", text):
        day, rest = text[:10], text[10:].strip(" T")
    else:
        return ""
    try:  # never suggest a day that does not exist (month 13, 30 February)
        date.fromisoformat(day)
    except ValueError:
        return ""
    zone_note = ""
    if _TRAILING_ZONE.search(rest):
        rest = _TRAILING_ZONE.sub("", rest)
        zone_note = " the time zone is newsletter.toml's, so leave it out"
    clock = _CLOCK.match(rest.strip()) if rest else None
    if clock is None:
        return f" (did you mean '{day} 07:00'? add the time)" if not rest else ""
    hour, minute = int(clock["hour"]), int(clock["minute"] or 0)
    if clock["half"]:
        if not 1 <= hour <= 12:
            return ""
        hour = hour % 12 + (12 if clock["half"].lower() == "p" else 0)
    if hour > 23 or minute > 59:
        return ""
    return f" (did you mean '{day} {hour:02d}:{minute:02d}'?{zone_note})"


def parse_send_at(text: str, timezone: tzinfo) -> datetime:
    """``2025-07-21 07:00`` in the newsletter's zone, or ISO 8601 with an offset.

    A local time that a daylight-saving change skips (02:30 on a spring-forward night) is
    taken as the same instant an hour later, as cron would; a repeated one as its first
    occurrence.
    """
    text = text.strip()
    if not re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}", text) or re.search(
        r"[ap]\.?m", text, re.I
    ):
        raise ValueError(f"{text!r} is not a date and time{_send_at_hint(text)}{SEND_AT_FORMS}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a valid date and time{_send_at_hint(text)}{SEND_AT_FORMS}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone)
        # Normalise through UTC so a skipped local time lands on a real instant.
        moment = moment.astimezone(ZoneInfo("UTC")).astimezone(timezone)
    return moment


def load_issue(path: Path, timezone: tzinfo) -> Issue:
    """Read and validate a draft.  Raises InputErrors listing every problem found."""
    issue, problems = read_issue(path, timezone)
    if problems:
        raise InputErrors(problems)
    assert issue is not None
    return issue


# Invisible control characters a word processor leaves in pasted text (a form feed, a
# vertical tab; "\x01" written in a quoted subject): each read as a space, as the web edition
# shows them.  Left in, the email's MJML did not compile, and the send stopped with no line.
_PASTED_CONTROLS = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")


def read_issue(path: Path, timezone: tzinfo) -> tuple[Issue | None, list[InputError]]:
    """The draft, as far as it can be read, and every problem with it, so ``check`` can report
    them all in one run.  The Issue is None only when the front matter cannot be read at all;
    with problems, bad values are left at their defaults and must not be sent."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, [InputError("no such file", path=path)]
    except IsADirectoryError:
        return None, [InputError("is a folder, not a draft (give the .md file)", path=path)]
    except OSError as exc:
        return None, [InputError(f"cannot be read: {exc.strerror}", path=path)]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return None, [InputError(_not_utf8(raw, exc), path=path, line=line)]
    if "\x00" in text:
        return None, [InputError("is not a text file (it contains NUL bytes)", path=path)]
    text = _PASTED_CONTROLS.sub(" ", text.replace("\r\n", "\n"))

    try:
        front = split_front_matter(text, path)
    except InputError as exc:
        return None, [exc]
    values, lines = front.values, front.lines
    problems: list[InputError] = list(front.problems)

    def problem(key: str, message: str) -> None:
        problems.append(InputError(message, path=path, line=lines.get(key, 1), field=key))

    for key in values:
        if key not in KNOWN_KEYS:
            hint = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            problem(key, "unknown key" + (f" (did you mean '{hint[0]}'?)" if hint else ""))

    def text_value(key: str, default: str = "") -> str:
        value: Any = values.get(key)
        if value is None:
            return default
        if isinstance(value, (dict, list)):
            problem(key, "must be a single line of text")
            return default
        return _PASTED_CONTROLS.sub(" ", str(value)).strip()

    subject = text_value("subject")
    if not subject:
        problem("subject", "missing: every issue needs a subject line")

    send_at = None
    raw_send_at = values.get("send_at")
    if isinstance(raw_send_at, (dict, list)):
        # Never str() it: YAML aliases can make a small file an enormous nested list.
        problem("send_at", "must be one date and time" + SEND_AT_FORMS)
    elif raw_send_at is not None:
        try:
            send_at = parse_send_at(str(raw_send_at), timezone)
        except ValueError as exc:
            problem("send_at", str(exc))

    tags: tuple[str, ...] = ()
    raw_tags = values.get("tags")
    if isinstance(raw_tags, str):
        tags = tuple(t.strip() for t in re.split(r"[;,]", raw_tags) if t.strip())
    elif isinstance(raw_tags, list) and all(isinstance(t, (str, int)) for t in raw_tags):
        tags = tuple(str(t).strip() for t in raw_tags if str(t).strip())
    elif raw_tags is not None:
        problem("tags", "must be a list of tag names, e.g. [runners, seniors]")

    merge_fields = MergeFields()

    def with_tokens(key: str, value: str) -> str:
        try:
            return merge_fields.extract(value, path=path, first_line=lines.get(key, 1))
        except InputErrors as exc:
            problems.extend(
                InputError(p.message, path=path, line=p.line, field=key) for p in exc.problems
            )
            return value

    subject = with_tokens("subject", subject)
    title = with_tokens("title", text_value("title")) or subject
    preheader = with_tokens("preheader", text_value("preheader"))
    try:
        body = merge_fields.extract(front.body, path=path, first_line=front.body_line)
    except InputErrors as exc:
        problems.extend(exc.problems)
        body = front.body
    if not front.body.strip():
        problems.append(InputError("the issue has no body text", path=path, line=front.body_line))
    else:
        problems.extend(markdown_problems(body, path=path, first_line=front.body_line))

    issue = Issue(
        path=path,
        slug=path.stem,
        subject=subject,
        title=title,
        preheader=preheader,
        send_at=send_at,
        tags=tags,
        body=body,
        body_line=front.body_line,
        merge_fields=merge_fields,
        content_hash=hashlib.sha256(raw).hexdigest(),
        key_lines=lines,
    )
    return issue, problems


def _not_utf8(raw: bytes, exc: UnicodeDecodeError) -> str:
    """Which word is in another encoding, shown as the editor meant it (Windows-1252: b"Caf\xe9"
    is "Café"), rather than the codec's "invalid continuation byte"."""
    how = "in your editor, Save As with the encoding UTF-8"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return f'not UTF-8 text: the draft is saved as UTF-16 ("Unicode"); {how}'
    start = max(raw.rfind(b" ", 0, exc.start), raw.rfind(b"\n", 0, exc.start)) + 1
    after = re.search(rb"\s", raw[exc.start :])
    end = exc.start + after.start() if after else len(raw)
    word = raw[start:end].decode("cp1252", errors="replace")
    word = "".join(c for c in word if c.isprintable())[:40]
    return f'not UTF-8 text ("{word}" is in another encoding); {how}'
