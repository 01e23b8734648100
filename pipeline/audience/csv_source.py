"""Read subscribers.csv as a stream of rows with their line numbers.

Lists come from spreadsheets: a UTF-8 BOM, CRLF line ends, quoted fields with newlines and
stray spaces around values are all normal.  Rows are yielded one at a time, never loaded whole.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError


@dataclass(frozen=True)
class SourceRow:
    line: int  # the file line the row starts on
    values: dict[str, str]  # column -> stripped text ("" for a missing cell)


def _header(reader: Iterator[list[str]], path: Path) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(
            "the file is empty: it needs a header row with 'email'", path=path, line=1
        ) from None
    columns = [name.strip().lower() for name in header]
    if "email" not in columns:
        raise InputError(
            f"the header row has no 'email' column (it has: {', '.join(columns)})",
            path=path,
            line=1,
        )
    seen: set[str] = set()
    for name in columns:
        if not name:
            raise InputError("the header row has an empty column name", path=path, line=1)
        if name in seen:
            raise InputError(f"column '{name}' appears twice in the header", path=path, line=1)
        seen.add(name)
    return columns


def read_columns(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return _header(csv.reader(handle), path)
    except FileNotFoundError:
        raise InputError("subscriber list not found", path=path) from None


def read_rows(path: Path) -> Iterator[SourceRow]:
    """Every data row; raises InputError for a file that cannot be read as CSV at all."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError("subscriber list not found", path=path) from None
    with handle:
        reader = csv.reader(handle, strict=True)
        try:
            columns = _header(reader, path)
            next_line = reader.line_num + 1
            for cells in reader:
                start, next_line = next_line, reader.line_num + 1
                if not any(cell.strip() for cell in cells):
                    continue
                values = {
                    name: (cells[i].strip() if i < len(cells) else "")
                    for i, name in enumerate(columns)
                }
                yield SourceRow(start, values)
        except csv.Error as exc:
            raise InputError(f"not valid CSV: {exc}", path=path, line=reader.line_num) from None
        except UnicodeDecodeError as exc:
            raise InputError(
                f"not UTF-8 text ({exc.reason}); save the sheet as 'CSV UTF-8'", path=path
            ) from None
