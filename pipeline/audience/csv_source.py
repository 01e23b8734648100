"""Read subscribers.csv as a stream of rows with their line numbers.

Lists come from spreadsheets: a UTF-8 BOM, CRLF line ends, quoted fields with newlines, stray
spaces around values, headers such as ``Email Address`` or ``First Name``, and semicolons in
place of commas (Excel in much of Europe) are all normal.  Rows are yielded one at a time,
never loaded whole.

The file is read as bytes, one physical line at a time, and fed to the ``csv`` module; each
record keeps the exact bytes it came from, so the list writer can copy the rows it does not
change back byte for byte.  Anything that stops the file being read (not UTF-8, an unclosed
quote, an absurdly long value) is one ``InputError`` naming the line.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import InputError

UTF8_BOM = b"\xef\xbb\xbf"
SAVE_AS_UTF8 = "in Excel: File > Save As > 'CSV UTF-8 (Comma delimited)'"

# Header names as spreadsheets and mailing services export them, compared with case, spaces,
# hyphens and underscores removed.  Mailchimp exports "Email Address", "First Name", "Last
# Name", "TAGS"; its merge tags are FNAME and LNAME.
ALIASES = {
    "email": "email",
    "emailaddress": "email",
    "firstname": "first_name",
    "fname": "first_name",
    "givenname": "first_name",
    "lastname": "last_name",
    "lname": "last_name",
    "surname": "last_name",
    "familyname": "last_name",
    "tags": "tags",
    "tag": "tags",
    "status": "status",
}
DELIMITERS = (",", ";", "\t")

# C0 and C1 control characters other than tab, CR and LF (which a quoted value may hold):
# a NUL or an escape in a name comes from a broken export, never from a person.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SEPARATORS = re.compile(r"[\s\-_]+")
_BARE_CR = re.compile(rb"(?<=\r)(?!\n)")


def clean(value: str) -> str:
    """A cell's text as the pipeline uses it: control characters removed, spaces trimmed."""
    return _CONTROL.sub("", value).strip()


def column_name(text: str) -> str:
    """The name a header cell is known by: an alias's standard name, or the text in lower
    case with spaces and hyphens as underscores ("Zip Code" -> zip_code)."""
    plain = clean(text.replace("\ufeff", "")).lower()
    alias = ALIASES.get(_SEPARATORS.sub("", plain))
    return alias if alias is not None else _SEPARATORS.sub("_", plain).strip("_")


@dataclass(frozen=True)
class Header:
    """The list's header row, and how the file is written."""

    cells: list[str]  # as written in the file
    names: list[str]  # what each column is known by (see ``column_name``)
    delimiter: str
    newline: bytes  # the header line's ending: b"\r\n", b"\n", b"\r", or b"" if it has none
    bom: bool

    def index(self, name: str) -> int | None:
        return self.names.index(name) if name in self.names else None

    @property
    def mapped(self) -> list[tuple[str, str]]:
        """(as written, known as) for every column whose name was changed."""
        return [
            (cell.strip(), name)
            for cell, name in zip(self.cells, self.names, strict=True)
            if cell.strip() != name
        ]


@dataclass(frozen=True)
class Record:
    """One CSV record: the physical line it starts on, its cells, and its exact bytes."""

    line: int
    cells: list[str]
    raw: bytes  # including its line ending; the BOM is not part of the first record


@dataclass(frozen=True)
class SourceRow:
    line: int  # the file line the row starts on
    values: dict[str, str]  # column -> cleaned text ("" for a missing cell)


def _not_utf8(path: Path, line: int, raw: bytes, exc: UnicodeDecodeError) -> InputError:
    # Show the bytes around the bad one the way Excel meant them (Windows-1252), so she can
    # find the row: 'Jos\xe9' reads as "José".
    start = max(0, raw.rfind(b",", 0, exc.start) + 1, raw.rfind(b";", 0, exc.start) + 1)
    word = raw[start : exc.start + 12].split(b",")[0].split(b";")[0]
    shown = clean(word.decode("cp1252", errors="replace"))
    return InputError(
        f"the list is not saved as UTF-8 (byte 0x{raw[exc.start]:02X} in {shown!r}, "
        f"probably Windows-1252); {SAVE_AS_UTF8}, and nothing is sent until then",
        path=path,
        line=line,
    )


class _Lines:
    """The file's physical lines, decoded, for ``csv.reader``; remembers the bytes consumed
    since the last record, and the line number reached."""

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self.handle = handle
        self.path = path
        self.line = 0
        self.consumed = bytearray()
        self.bom = False
        self.pending: list[bytes] = []  # the rest of a line split at bare CRs, reversed

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.pending:
            raw = self.pending.pop()
        else:
            raw = self.handle.readline()
            if not raw:
                raise StopIteration
            if b"\r" in raw[:-2] or raw.endswith(b"\r"):
                # A bare CR ends a line too (Excel for Mac's older "CSV"): split there, as
                # text mode with newline="" would.  No UTF-8 sequence contains the byte 0x0D.
                pieces = [piece for piece in _BARE_CR.split(raw) if piece]
                raw = pieces[0]
                self.pending = pieces[:0:-1]
        self.line += 1
        if self.line == 1 and raw.startswith(UTF8_BOM):
            raw = raw[len(UTF8_BOM) :]
            self.bom = True
        self.consumed += raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf8(self.path, self.line, raw, exc) from None

    def take(self) -> bytes:
        raw = bytes(self.consumed)
        self.consumed.clear()
        return raw


def _detect_delimiter(line: str) -> str:
    """The separator the header line uses most, outside quotes: comma unless it is clearly
    semicolon or tab (a one-column header is read as commas)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _csv_problem(exc: csv.Error, start: int, reached: int) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        limit = csv.field_size_limit()
        return (
            f'a value in this row is longer than {limit:,} characters: usually a quote (") '
            "opened and never closed, so the rest of the file reads as one value"
        )
    if "unexpected end of data" in text:
        return f'a quote (") opened in this row is never closed (the file ends at line {reached})'
    if "new-line character seen in unquoted field" in text:
        return "a line break inside a value that is not in quotes (old Mac line endings?)"
    return f"not valid CSV: {text}"


class ListFile:
    """An open subscribers.csv: the header, then its records one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._handle: BinaryIO = path.open("rb")
        except FileNotFoundError:
            raise InputError("subscriber list not found", path=path) from None
        except IsADirectoryError:
            raise InputError("the subscriber list is a folder, not a file", path=path) from None
        try:
            self.header = self._read_header()
        except BaseException:
            self._handle.close()
            raise

    def __enter__(self) -> ListFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def _read_header(self) -> Header:
        self._lines = _Lines(self._handle, self.path)
        try:
            first = next(self._lines)
        except StopIteration:
            raise InputError(
                "the file is empty: it needs a header row with 'email'", path=self.path, line=1
            ) from None
        delimiter = _detect_delimiter(first)
        # The header has been read already: hand it to the reader first, then the rest.
        self._first = first
        self._reader = csv.reader(self._chain(), delimiter=delimiter, strict=True)
        record = self._next_record()
        assert record is not None
        names = [column_name(cell) for cell in record.cells]
        raw = record.raw
        newline = raw[len(raw.rstrip(b"\r\n")) :]
        header = Header(record.cells, names, delimiter, newline, self._lines.bom)
        self._check_header(header)
        self.header_raw = record.raw
        return header

    def _chain(self) -> Iterator[str]:
        yield self._first
        yield from self._lines

    def _check_header(self, header: Header) -> None:
        names = header.names
        if not any(names):
            raise InputError(
                "the first line is empty: it must be the header row, with an 'email' column",
                path=self.path,
                line=1,
            )
        if "email" not in names:
            shown = header.delimiter.join(cell.strip() for cell in header.cells)
            raise InputError(
                f"the header row has no 'email' column (it has: {shown})", path=self.path, line=1
            )
        seen: dict[str, str] = {}
        for cell, name in zip(header.cells, names, strict=True):
            if not name:
                raise InputError("the header row has an empty column name", path=self.path, line=1)
            if name in seen:
                both = f"'{seen[name]}' and '{cell.strip()}'"
                what = f"column '{name}' appears twice in the header"
                if seen[name] != cell.strip():
                    what += f" ({both} mean the same)"
                raise InputError(what, path=self.path, line=1)
            seen[name] = cell.strip()

    def _next_record(self) -> Record | None:
        start = self._lines.line + 1
        try:
            cells = next(self._reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            problem = _csv_problem(exc, start, self._lines.line)
            raise InputError(problem, path=self.path, line=start) from None
        return Record(start, cells, self._lines.take())

    def records(self) -> Iterator[Record]:
        """Every record after the header, blank lines included (as empty cells)."""
        while (record := self._next_record()) is not None:
            yield record

    def rows(self) -> Iterator[SourceRow]:
        """Every data row, blank lines skipped, values cleaned and keyed by column name."""
        names = self.header.names
        for record in self.records():
            cells = record.cells
            if not any(cell.strip() for cell in cells):
                continue
            values = {
                name: (clean(cells[i]) if i < len(cells) else "") for i, name in enumerate(names)
            }
            yield SourceRow(record.line, values)


def check_file(path: Path) -> Header:
    """Read the whole file once, so a bad byte or an unclosed quote on row 3,002 is reported
    before anything is built or sent; returns the header."""
    with ListFile(path) as source:
        for _ in source.records():
            pass
        return source.header


def read_header(path: Path) -> Header:
    with ListFile(path) as source:
        return source.header


def read_columns(path: Path) -> list[str]:
    """The column names merge fields use; checks the whole file on the way."""
    return check_file(path).names


def read_rows(path: Path) -> Iterator[SourceRow]:
    """Every data row; raises InputError for a file that cannot be read as CSV at all."""
    with ListFile(path) as source:
        yield from source.rows()


def address_key_fast(text: str) -> str:
    """The case-insensitive identity of an address as written in a cell, without validating
    it: what ``address_key(normalise_address(text))`` gives for every valid address (the
    validator keeps the local part, lower-cases and IDNA-decodes the domain, and NFC-folds)."""
    text = unicodedata.normalize("NFC", clean(text)).lower()
    if "xn--" in text:
        local, _, domain = text.rpartition("@")
        try:
            domain = domain.encode("ascii").decode("idna")
        except (UnicodeError, ValueError):
            return text
        text = f"{local}@{domain}"
    return text
