"""subscribers.csv -> the audience of an issue: validated, suppressed, de-duplicated, filtered.

Input: the list file and the issue's tags.  Output: a stream of ``Subscriber`` (gets the issue)
and ``Skipped`` (does not, with the line and why), in file order.  Two streaming passes: the
first collects every address that some row marks unsubscribed, bounced or complained, so an
opt-out is honoured even when the same address appears again as subscribed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from pipeline.audience.address_set import AddressSet
from pipeline.audience.csv_source import read_rows


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
        # No SMTPUTF8: an address with non-ASCII before the @ cannot go through formataddr,
        # most relays or most providers' APIs, so it is an invalid row (with this reason), not
        # a crash at send time.  (A non-ASCII domain is fine: it is sent in its IDNA form.)
        valid = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return str(valid.normalized)


def address_key(normalised: str) -> str:
    return normalised.lower()


def parse_tags(text: str) -> frozenset[str]:
    return frozenset(t.strip().lower() for t in text.split(";") if t.strip())


def _status(text: str) -> Status | None:
    text = text.strip().lower()
    if not text:
        return Status.SUBSCRIBED
    try:
        return Status(text)
    except ValueError:
        return None


def _opted_out(path: Path) -> AddressSet:
    out = AddressSet()
    for row in read_rows(path):
        status = _status(row.values.get("status", ""))
        if status not in (Status.SUBSCRIBED, None):
            try:
                out.add(address_key(normalise_address(row.values.get("email", ""))))
            except ValueError:
                continue
    return out


def scan(path: Path, tags: Sequence[str] = ()) -> Iterator[Subscriber | Skipped]:
    """Every data row of the list, as a Subscriber who gets the issue or a Skipped with why."""
    wanted = frozenset(t.lower() for t in tags)
    opted_out = _opted_out(path)
    seen = AddressSet()
    try:
        for row in read_rows(path):
            values = row.values
            raw = values.get("email", "")
            if not raw:
                yield Skipped(row.line, raw, SkipReason.INVALID, "email: empty")
                continue
            try:
                email = normalise_address(raw)
            except ValueError as exc:
                yield Skipped(row.line, raw, SkipReason.INVALID, f"email: {exc}")
                continue
            status = _status(values.get("status", ""))
            if status is None:
                allowed = ", ".join(s.value for s in Status)
                detail = f"status: {values['status']!r} is not one of {allowed} (or empty)"
                yield Skipped(row.line, email, SkipReason.INVALID, detail)
                continue
            if status is not Status.SUBSCRIBED:
                yield Skipped(row.line, email, SkipReason(status.value))
                continue
            key = address_key(email)
            if key in opted_out:
                detail = "another row for this address is unsubscribed, bounced or complained"
                yield Skipped(row.line, email, SkipReason.SUPPRESSED, detail)
                continue
            if wanted and not (parse_tags(values.get("tags", "")) & wanted):
                yield Skipped(row.line, email, SkipReason.NOT_TAGGED)
                continue
            if not seen.add(key):
                yield Skipped(row.line, email, SkipReason.DUPLICATE, "already on the list above")
                continue
            yield Subscriber(row.line, email, key, {**values, "email": email})
    finally:
        opted_out.close()
        seen.close()


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


def check_list(path: Path, *, keep: int = 1000) -> ListReport:
    """Counts by status and tag, invalid rows and duplicates (the first ``keep`` of each)."""
    report = ListReport()
    for item in scan(path):
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
