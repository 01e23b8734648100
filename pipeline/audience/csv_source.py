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
import io
import itertools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from pipeline.errors import InputError

UTF8_BOM = b"\xef\xbb\xbf"
SAVE_AS_UTF8 = 'in Excel, use File > Save As > "CSV UTF-8 (Comma delimited)"'

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
_SEPARATORS = re.compile(r"[\W_]+")  # spaces, hyphens, slashes, dots... and underscores
_BARE_CR = re.compile(rb"(?<=\r)(?!\n)")


def clean(value: str) -> str:
    """A cell's text as the pipeline uses it: control characters removed, spaces trimmed."""
    return _CONTROL.sub("", value).strip()


def column_name(text: str) -> str:
    """The name a header cell is known by: an alias's standard name, or the text in lower
    case with every run of spaces and punctuation as one underscore ("Zip / Postal Code" ->
    zip_postal_code), so that every column can be written as a merge field."""
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
    # Show the value holding the bad byte the way Excel meant it (Windows-1252), so she can
    # find the row: b"Jos\xe9" reads as "José".
    before = raw[: exc.start]
    start = max(before.rfind(b","), before.rfind(b";"), before.rfind(b"\t")) + 1
    value = re.split(rb"[,;\t\r\n]", raw[start:], maxsplit=1)[0]
    shown = clean(value.decode("cp1252", errors="replace")).strip('"')
    if len(shown) > 40:
        shown = shown[:40] + "..."
    return InputError(
        f'the list is not saved as UTF-8 ("{shown}" is in another encoding, as Excel\'s plain '
        f'"CSV" saves it); {SAVE_AS_UTF8}; nothing is sent until then',
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
    if (after := re.fullmatch(r"'(.+)' expected after '\"'", text)) is not None:
        # Python's words ("',' expected after '\"'") are for programmers: say what it means.
        separator = {"\t": "tab"}.get(after.group(1), repr(after.group(1)))
        closes = f" (the quote opened here closes at line {reached})" if reached > start else ""
        return (
            f"a value in this row has more text after its closing quote, before the next "
            f"{separator}{closes}: a quote inside a value in quotes is written twice "
            '("Jo ""JJ"" O\'Connor"), and a value that starts with a quote ends with one'
        )
    return f"not valid CSV: {text}"


class ListFile:
    """An open subscribers.csv: the header, then its records one at a time.

    ``exact=True`` (the writer) keeps each record's bytes; otherwise the file is read through
    Python's text layer, twice as fast, and only a file that turns out not to be UTF-8 is read
    again byte by byte to find the line of the bad byte."""

    def __init__(self, path: Path, *, exact: bool = False) -> None:
        self.path = path
        self.exact = exact
        self.header_raw = b""
        try:
            self._handle: BinaryIO = path.open("rb")
        except FileNotFoundError:
            raise InputError("subscriber list not found", path=path) from None
        except IsADirectoryError:
            raise InputError("the subscriber list is a folder, not a file", path=path) from None
        except PermissionError:
            raise InputError(
                "the subscriber list cannot be read (permission denied)", path=path
            ) from None
        self._lines = _Lines(self._handle, path)
        self._text: TextIO | None = None
        self._offset = 0  # lines before the header the csv reader does not see (sep=;)
        try:
            self.header = self._read_header()
        except UnicodeDecodeError:
            self.close()
            raise _locate_bad_byte(path) from None
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> ListFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._text is not None:
            self._text.close()
        self._handle.close()

    def _read_header(self) -> Header:
        if self._handle.read(2) in (b"\xff\xfe", b"\xfe\xff"):
            raise InputError(
                'the list is saved as UTF-16 (Excel\'s "Unicode Text"); '
                f"{SAVE_AS_UTF8}; nothing is sent until then",
                path=self.path,
                line=1,
            )
        self._handle.seek(0)
        lines: Iterator[str]
        if self.exact:
            lines = self._lines
        else:
            self._text = io.TextIOWrapper(self._handle, encoding="utf-8-sig", newline="")
            lines = self._text
        try:
            first = next(lines)
        except StopIteration:
            raise InputError(
                "the file is empty: it needs a header row with 'email'", path=self.path, line=1
            ) from None
        delimiter = _detect_delimiter(first)
        declared = first.strip()
        if declared.lower().startswith("sep=") and len(declared) == 5:
            # Excel's "sep=;" line names the separator; the header is on the next line.  The
            # writer keeps the line: it is part of the header record's bytes.
            delimiter, self._offset = declared[4], 1
            try:
                first = next(lines)
            except StopIteration:
                raise InputError(
                    "the file has only a 'sep=' line: it needs a header row with 'email'",
                    path=self.path,
                    line=2,
                ) from None
        # The header line has been read already: hand it to the reader first, then the rest.
        self._reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter, strict=True)
        record = self._next_record()
        assert record is not None
        names = [column_name(cell) for cell in record.cells]
        raw = record.raw if self.exact else first.encode("utf-8")
        newline = raw[len(raw.rstrip(b"\r\n")) :]
        bom = self._lines.bom if self.exact else False
        header = Header(record.cells, names, delimiter, newline, bom)
        self._check_header(header)
        self.header_raw = record.raw
        return header

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
            reader = next(
                (c.strip() for c in header.cells if "@" in c and " " not in c.strip()), None
            )
            if reader is not None:
                # The header row deleted (or never there): the first reader is read as one.
                columns = header.delimiter.join(
                    ("email", "first_name", "last_name", "status", "tags")[: len(header.cells)]
                )
                raise InputError(
                    f"the first line is a reader ({reader}), not the column names: add a "
                    f"header line above it naming each column, such as {columns}",
                    path=self.path,
                    line=1,
                )
            raise InputError(
                f"the header row has no 'email' column (it has: {shown})", path=self.path, line=1
            )
        seen: dict[str, str] = {}
        for cell, name in zip(header.cells, names, strict=True):
            if not name:
                continue  # an unnamed column (Excel's trailing commas): its values are ignored
            if name in seen:
                both = f"'{seen[name]}' and '{cell.strip()}'"
                what = f"column '{name}' appears twice in the header"
                if seen[name] != cell.strip():
                    what += f" ({both} mean the same)"
                raise InputError(what, path=self.path, line=1)
            seen[name] = cell.strip()

    def _next_record(self) -> Record | None:
        start = self._reader.line_num + 1 + self._offset
        try:
            cells = next(self._reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            problem = _csv_problem(exc, start, self._reader.line_num + self._offset)
            raise InputError(problem, path=self.path, line=start) from None
        except UnicodeDecodeError:
            raise _locate_bad_byte(self.path) from None
        return Record(start, cells, self._lines.take() if self.exact else b"")

    def records(self) -> Iterator[Record]:
        """Every record after the header, blank lines included (as empty cells)."""
        while (record := self._next_record()) is not None:
            yield record

    def cells(self) -> Iterator[tuple[int, list[str]]]:
        """Every data row as (line, cleaned cells), blank lines skipped: at least one cell per
        header column (missing ones are ""), in the header's order.  What ``rows`` gives,
        without a dict per row, for the passes that read every row of a long list."""
        width = len(self.header.names)
        reader, offset, exact = self._reader, self._offset, self.exact
        while True:  # _next_record, without a Record per row
            line = reader.line_num + 1 + offset
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                problem = _csv_problem(exc, line, reader.line_num + offset)
                raise InputError(problem, path=self.path, line=line) from None
            except UnicodeDecodeError:
                raise _locate_bad_byte(self.path) from None
            if exact:
                self._lines.take()
            joined = "".join(cells)
            if not joined.strip():
                continue  # a blank line, or only separators
            # No control character anywhere in the row (the usual case): cleaning a cell is
            # only trimming it.
            values = [c.strip() for c in cells] if joined.isprintable() else list(map(clean, cells))
            if len(values) < width:
                values += [""] * (width - len(values))
            yield line, values

    def rows(self) -> Iterator[SourceRow]:
        """Every data row, blank lines skipped, values cleaned and keyed by column name."""
        names = self.header.names
        unnamed = "" in names
        for line, values in self.cells():
            fields = dict(zip(names, values, strict=False))  # cells past the header: ignored
            if unnamed:
                del fields[""]  # columns with no name in the header: their values are ignored
            yield SourceRow(line, fields)


def _locate_bad_byte(path: Path) -> InputError:
    """The error naming the line of the first byte that is not UTF-8 (read byte by byte)."""
    with path.open("rb") as handle:
        try:
            for _ in _Lines(handle, path):
                pass
        except InputError as exc:
            return exc
    return InputError(f"the list is not saved as UTF-8; {SAVE_AS_UTF8}", path=path)


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
    return [name for name in check_file(path).names if name]


def read_rows(path: Path) -> Iterator[SourceRow]:
    """Every data row; raises InputError for a file that cannot be read as CSV at all."""
    with ListFile(path) as source:
        yield from source.rows()


def address_key_fast(text: str) -> str:
    """The case-insensitive identity of an address as written in a cell, without validating
    it: what ``address_key(normalise_address(text))`` gives for every valid address (the
    validator keeps the local part, lower-cases and IDNA-decodes the domain, and NFC-folds)."""
    if text.isascii() and text.isprintable() and "xn--" not in text:
        return text.strip().lower()  # the common case, in a fraction of the time
    text = unicodedata.normalize("NFC", clean(text)).lower()
    if "xn--" in text:
        local, _, domain = text.rpartition("@")
        try:
            domain = domain.encode("ascii").decode("idna")
        except (UnicodeError, ValueError):
            return text
        text = f"{local}@{domain}"
    return text
