"""The list as a person looks at it: who is on it, with what status and tags, and a clean copy.

``newsletter subscribers list`` and ``export`` print these; ``add``, ``resubscribe`` and
``unsubscribe ADDRESS`` look an address up here before changing it.  Nothing here validates
addresses (``subscribers check`` does): a row is shown as it is written.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pipeline.audience.csv_source import ListFile, check_file
from pipeline.audience.list_writer import row_key
from pipeline.audience.subscribers import Status, parse_tags

STANDARD = ("email", "first_name", "last_name", "status", "tags")


@dataclass(frozen=True)
class Entry:
    line: int
    values: dict[str, str]  # column (as merge fields name it) -> cleaned text

    @property
    def email(self) -> str:
        return self.values.get("email", "")

    @property
    def status(self) -> str:
        """The status as written, lower case; an empty cell means subscribed."""
        return self.values.get("status", "").lower() or Status.SUBSCRIBED.value

    @property
    def tags(self) -> frozenset[str]:
        return parse_tags(self.values.get("tags", ""))

    @property
    def name(self) -> str:
        return f"{self.values.get('first_name', '')} {self.values.get('last_name', '')}".strip()


def entries(path: Path, *, status: str | None = None, tag: str | None = None) -> Iterator[Entry]:
    """Every row of the list (blank lines skipped), optionally only one status or tag."""
    wanted_tag = tag.strip().lower() if tag else None
    check_file(path)  # a bad byte on row 3,002 is reported before row 2 is printed
    with ListFile(path) as source:
        for row in source.rows():
            entry = Entry(row.line, row.values)
            if status is not None and entry.status != status:
                continue
            if wanted_tag is not None and wanted_tag not in entry.tags:
                continue
            yield entry


def find(path: Path, email: str) -> list[Entry]:
    """The rows of one address, in any case."""
    key = row_key(email)
    return [entry for entry in entries(path) if row_key(entry.email) == key]


def export(path: Path, target: TextIO) -> int:
    """Write the list as plain comma-separated UTF-8 with the standard column names first;
    returns how many rows.  ``target`` is opened by the caller with ``newline=""``.  The
    whole file is read once first, so a list that cannot be read writes nothing."""
    check_file(path)
    with ListFile(path) as source:
        names = source.header.names
        columns = [*(n for n in STANDARD if n in names), *(n for n in names if n not in STANDARD)]
        writer = csv.writer(target, lineterminator="\r\n")
        writer.writerow(columns)
        count = 0
        for row in source.rows():
            writer.writerow([_inert(row.values.get(name, ""), name) for name in columns])
            count += 1
        return count


def _inert(value: str, column: str) -> str:
    """A cell a spreadsheet will not run: one starting with = + - or @ gets an apostrophe in
    front, which Excel and LibreOffice show as text and hide (OWASP's "CSV injection").  New
    values are stripped of those where they come in (``list_writer``), but a list edited by
    hand or imported may hold a ``=HYPERLINK(...)`` already.  Not the address, which a
    re-import must read as it is: an address cannot hold the parentheses a formula calls a
    function with."""
    if column != "email" and value[:1] in _FORMULA_STARTS:
        return "'" + value
    return value


_FORMULA_STARTS = frozenset("=+-@\t\r")


def status_of(path: Path, email: str) -> str | None:
    """This address's status in the list: None if it has no row; an opt-out on any of its
    rows wins, as it does for a send (``subscribers.scan``).  Reads the list as every other
    command does (header aliases, semicolons, one line for a file it cannot read)."""
    rows = find(path, email)
    if not rows:
        return None
    opted_out = [entry.status for entry in rows if entry.status != Status.SUBSCRIBED.value]
    return opted_out[0] if opted_out else Status.SUBSCRIBED.value
