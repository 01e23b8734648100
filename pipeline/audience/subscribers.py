"""subscribers.csv -> the audience of an issue: validated, suppressed, de-duplicated, filtered.

Input: the list file and the issue's tags.  Output: a stream of ``Subscriber`` (gets the issue)
and ``Skipped`` (does not, with the line and why), in file order.  Two streaming passes: the
first (CSV cells only) collects every address that some row marks unsubscribed, bounced or
complained, so an opt-out is honoured even when the same address appears again as subscribed
above it; the second validates and decides every row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from email_validator import EmailNotValidError

from pipeline.audience.address_set import AddressSet
from pipeline.audience.addresses import normalise
from pipeline.audience.csv_source import ListFile, clean


class Status(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class SkipReason(StrEnum):
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    SUPPRESSED = "suppressed"  # another row for the same address opted out
    NOT_TAGGED = "not tagged"
    # The row says subscribed, but the consent history says they left (an old copy of the list).
    LEFT_EARLIER = "left earlier"


@dataclass(frozen=True, slots=True)
class Subscriber:
    line: int
    email: str  # normalised by email-validator
    key: str  # case-insensitive identity: one message per key
    fields: dict[str, str]  # every column, for merge fields

    @property
    def name(self) -> str:
        return f"{self.fields.get('first_name', '')} {self.fields.get('last_name', '')}".strip()


@dataclass(frozen=True, slots=True)
class Skipped:
    line: int
    email: str
    reason: SkipReason
    detail: str = ""


def normalise_address(address: str) -> str:
    """The address as it will be sent to; raises ValueError with the validator's reason."""
    try:
        return normalise(address)
    except EmailNotValidError as exc:
        raise ValueError(_why(address, exc, name_it=False)) from None


def _why(raw: str, exc: EmailNotValidError, *, name_it: bool = True) -> str:
    """email-validator's reason, but for the one a person meets most (an address such as
    jürgen@...), what it means for her and what to do."""
    text = str(exc)
    if "before the @-sign are not supported" in text:
        local = raw.rpartition("@")[0]
        odd = "".join(dict.fromkeys(c for c in local if not c.isascii()))
        return (
            f"{repr(raw) if name_it else 'it'} has {odd!r} before the @, which most email "
            "services cannot deliver to (it needs SMTPUTF8): ask the reader for another address"
        )
    return text


def address_key(normalised: str) -> str:
    return normalised.lower()


def parse_tags(text: str) -> frozenset[str]:
    return frozenset(t.strip().lower() for t in text.split(";") if t.strip())


# A status cell as written (trimmed, lower case) -> the status; anything else is invalid.
_STATUSES = {"": Status.SUBSCRIBED, **{status.value: status for status in Status}}


def _status(text: str) -> Status | None:
    return _STATUSES.get(text.strip().lower())


# Status cells that (trimmed, lower case) mean subscribed: cleaning cannot change the verdict,
# since what strip() leaves of them holds no control character.
SUBSCRIBED_CELLS = frozenset({"", Status.SUBSCRIBED.value})


def _opted_out(path: Path) -> AddressSet:
    """Every address some row marks unsubscribed, bounced or complained.  A light pass: the
    CSV cells only, and only the rows that opt out are validated."""
    out = AddressSet()
    with ListFile(path) as source:
        email_at, status_at = source.header.index("email"), source.header.index("status")
        if status_at is None:
            return out
        assert email_at is not None  # the header was checked for it
        for record in source.records():
            cells = record.cells
            if len(cells) <= status_at:
                continue
            text = cells[status_at]
            if text.strip().lower() in SUBSCRIBED_CELLS:
                continue  # the usual row, decided without cleaning it
            if _status(clean(text)) in (Status.SUBSCRIBED, None):
                continue
            try:
                email = normalise(clean(cells[email_at]) if email_at < len(cells) else "")
            except EmailNotValidError:
                continue
            out.add(address_key(email))
    return out


def scan(
    path: Path, tags: Sequence[str] = (), strays: list[Stray] | None = None
) -> Iterator[Subscriber | Skipped]:
    """Every data row of the list, as a Subscriber who gets the issue or a Skipped with why.

    Two passes: ``_opted_out`` (light), then this one, which validates each address (each
    domain once, see ``addresses``) and builds a dict only for the rows that get the issue.
    ``strays``: the rows with something in a cell no column of the header names (past its
    last, or under an empty name), which nothing reads, are added to it (the first 1,000), so
    that they can be said.
    """
    wanted = frozenset(t.lower() for t in tags)
    opted_out = _opted_out(path)
    any_opted_out = len(opted_out) > 0
    seen = AddressSet()
    try:
        with ListFile(path) as source:
            names = source.header.names
            unnamed = "" in names
            email_at = source.header.index("email")
            assert email_at is not None  # the header was checked for it
            status_at = source.header.index("status")
            tags_at = source.header.index("tags")
            width = len(names)
            nameless = [i for i, name in enumerate(names) if not name]
            for line, values in source.cells():
                if (
                    strays is not None
                    and (
                        (len(values) > width and any(values[width:]))
                        or (nameless and any(values[i] for i in nameless))
                    )
                    and len(strays) < 1000
                ):
                    cells = [values[i] for i in nameless] + values[width:]
                    strays.append(Stray(line, [cell for cell in cells if cell]))
                raw = values[email_at]
                if not raw:
                    yield Skipped(line, raw, SkipReason.INVALID, "email: empty")
                    continue
                try:
                    email = normalise(raw)
                except EmailNotValidError as exc:
                    yield Skipped(line, raw, SkipReason.INVALID, f"email: {_why(raw, exc)}")
                    continue
                written = values[status_at] if status_at is not None else ""
                status = _status(written)
                if status is None:
                    allowed = ", ".join(s.value for s in Status)
                    detail = f"status: {written!r} is not one of {allowed} (or empty)"
                    yield Skipped(line, email, SkipReason.INVALID, detail)
                    continue
                if status is not Status.SUBSCRIBED:
                    yield Skipped(line, email, SkipReason(status.value))
                    continue
                key = address_key(email)
                if any_opted_out and key in opted_out:
                    detail = "another row for this address is unsubscribed, bounced or complained"
                    yield Skipped(line, email, SkipReason.SUPPRESSED, detail)
                    continue
                if wanted and not (
                    parse_tags(values[tags_at] if tags_at is not None else "") & wanted
                ):
                    yield Skipped(line, email, SkipReason.NOT_TAGGED)
                    continue
                if not seen.add(key):
                    yield Skipped(line, email, SkipReason.DUPLICATE, "already on the list above")
                    continue
                fields = dict(zip(names, values, strict=False))
                if unnamed:
                    del fields[""]
                fields["email"] = email
                yield Subscriber(line, email, key, fields)
    finally:
        opted_out.close()
        seen.close()


@dataclass(frozen=True)
class Stray:
    """A row with something in cells no column of the header names: nothing reads them."""

    line: int
    cells: list[str]  # the ones with something in them


@dataclass
class ListReport:
    """What ``newsletter subscribers check`` prints."""

    rows: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_tag: Counter[str] = field(default_factory=Counter)
    invalid: list[Skipped] = field(default_factory=list)
    duplicates: list[Skipped] = field(default_factory=list)
    suppressed: list[Skipped] = field(default_factory=list)
    audience: int = 0
    strays: list[Stray] = field(default_factory=list)


def check_list(path: Path, *, keep: int = 1000) -> ListReport:
    """Counts by status and tag, invalid rows and duplicates (the first ``keep`` of each)."""
    report = ListReport()
    for item in scan(path, strays=report.strays):
        report.rows += 1
        if isinstance(item, Subscriber):
            report.audience += 1
            report.by_status[Status.SUBSCRIBED.value] += 1
            for tag in parse_tags(item.fields.get("tags", "")):
                report.by_tag[tag] += 1
            continue
        if item.reason is SkipReason.INVALID:
            bucket = report.invalid
        elif item.reason is SkipReason.DUPLICATE:
            bucket = report.duplicates
        elif item.reason is SkipReason.SUPPRESSED:
            bucket = report.suppressed
        else:
            report.by_status[item.reason.value] += 1
            continue
        report.by_status[item.reason.value] += 1
        if len(bucket) < keep:
            bucket.append(item)
    return report
