"""Fill a compiled email for one recipient: cheap, because everything else was done once.

A ``Template`` is the compiled text split at its merge-field tokens: static pieces and the
indexes of the fields between them.  Per recipient, each distinct field is evaluated once
(a compiled Jinja expression), escaped once for HTML, and the pieces are joined.
"""

from __future__ import annotations

import binascii
import difflib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jinja2
from jinja2 import nodes
from markupsafe import escape

from pipeline.content.merge_fields import (
    ENVIRONMENT,
    TOKEN_PATTERN,
    MergeField,
    parse_expression,
    shown,
)
from pipeline.errors import InputError

STANDARD_COLUMNS = ("email", "first_name", "last_name", "status", "tags")


class SubscriberFields:
    """``subscriber`` as merge fields see it: every CSV column, as text.

    An empty cell or a standard column the CSV lacks reads as Jinja's (lenient) Undefined, so
    ``default("there")`` works for a blank first name; a column nobody has is an error.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def _lookup(self, name: str) -> Any:
        value = self._values.get(name)
        if value:
            return value
        if value is not None or name in STANDARD_COLUMNS:
            return jinja2.Undefined(name=name)
        raise KeyError(name)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._lookup(name)
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._lookup(name)

    # No public methods: every attribute name belongs to the subscriber's columns.
    def _columns(self) -> set[str]:
        """The columns a merge field may read: the list's, and the standard ones."""
        return set(self._values) | set(STANDARD_COLUMNS)


def json_escaped(text: str) -> str:
    """``text`` as it stands inside a JSON string literal (ASCII only), without the quotes."""
    return json.dumps(text)[1:-1]


def quoted_printable(text: str) -> bytes:
    """``text`` as a quoted-printable MIME body: CRLF line ends, lines of at most 76
    characters (RFC 2045 section 6.7), ending with a line break; the C encoder."""
    data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)


def _qp_chunk(text: str, final: bool) -> bytes | None:
    """One stretch of a body (a static piece or a field's value) quoted-printable on its
    own, ending in a line break: its own, else a soft one (``=`` CRLF, which decoders
    remove), so that chunks joined decode to the text joined.  None where that cannot be
    promised: a CR or LF that a neighbour could pair differently, or a last line too long
    for the ``=``; the caller then encodes the whole body."""
    if final:
        return quoted_printable(text)
    data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    if not data:
        return b""
    if data.count(b"\r") != data.count(b"\r\n"):
        return None
    if data.endswith(b"\r\n"):
        return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    # Encoded with a line end after it, so that the encoder writes CRLF line ends (it takes
    # the style of the first one it meets), which is then taken off again.
    encoded = binascii.b2a_qp(data + b"\r\n", quotetabs=False, istext=True, header=False)
    encoded = encoded[:-2]
    if len(encoded) - (encoded.rfind(b"\n") + 1) > 75:
        return None
    return encoded + b"=\r\n"


@dataclass(frozen=True)
class Template:
    """Text split at its tokens: ``pieces[0] + field(slots[0]) + pieces[1] + ...``.

    ``json_pieces`` are the same pieces escaped for a JSON string and encoded (ASCII), once
    per issue, so an HTTP provider's payload costs a join per recipient instead of escaping
    20 KB of HTML.
    """

    pieces: tuple[str, ...]
    slots: tuple[int, ...]
    json_pieces: tuple[bytes, ...]

    @classmethod
    def split(cls, text: str) -> Template:
        parts = TOKEN_PATTERN.split(text)
        pieces = tuple(parts[0::2])
        return cls(
            pieces=pieces,
            slots=tuple(int(i) for i in parts[1::2]),
            json_pieces=tuple(json_escaped(p).encode("ascii") for p in pieces),
        )

    @staticmethod
    def _join(pieces: tuple[str, ...], slots: tuple[int, ...], values: Sequence[str]) -> str:
        if not slots:
            return pieces[0]
        out = [pieces[0]]
        for slot, piece in zip(slots, pieces[1:], strict=True):
            out.append(values[slot])
            out.append(piece)
        return "".join(out)

    def filled_length(self, values: Sequence[str], growth: int = 1) -> int:
        """The length ``fill`` would return, without building it; ``growth``: the most
        escaping makes of one character (5 for HTML: ``"`` is ``&#34;``)."""
        fields = sum(len(values[slot]) for slot in self.slots)
        return self.static_length + growth * fields

    @cached_property
    def static_length(self) -> int:
        return sum(map(len, self.pieces))

    def fill(self, values: Sequence[str]) -> str:
        return self._join(self.pieces, self.slots, values)

    def add_json(self, json_values: Sequence[bytes], out: list[bytes]) -> None:
        """Append the filled text as a JSON string literal to ``out``, as its pieces, from
        values already JSON-escaped and encoded: a request body is then one join of every
        message's pieces, each body copied once, not joined, formatted, encoded and appended
        (four copies of 25 KB a message, in the delivery workers, holding the interpreter
        lock)."""
        pieces = self.json_pieces
        out.append(b'"')
        out.append(pieces[0])
        for slot, piece in zip(self.slots, pieces[1:], strict=True):
            out.append(json_values[slot])
            out.append(piece)
        out.append(b'"')

    @cached_property
    def _qp_pieces(self) -> tuple[bytes, ...] | None:
        """The pieces quoted-printable, once per issue (see ``fill_qp``)."""
        if not self.pieces[-1]:
            return None  # the text ends with a field: whether it ends a line is per recipient
        last = len(self.pieces) - 1
        chunks = [_qp_chunk(piece, index == last) for index, piece in enumerate(self.pieces)]
        return None if None in chunks else tuple(c for c in chunks if c is not None)

    def fill_qp(self, values: Sequence[str]) -> bytes:
        """``quoted_printable(self.fill(values))``, or as its decoder reads it: the pieces are
        encoded once per issue and only the values per recipient (quoted-printable of 25 KB of
        HTML was most of the cost of a message for SMTP and the outbox)."""
        pieces = self._qp_pieces
        if pieces is None:
            return quoted_printable(self.fill(values))
        out = [pieces[0]]
        for slot, piece in zip(self.slots, pieces[1:], strict=True):
            value = values[slot]
            if "\r" in value or "\n" in value:
                return quoted_printable(self.fill(values))
            chunk = _qp_chunk(value, False)
            if chunk is None:
                return quoted_printable(self.fill(values))
            out.append(chunk)
            out.append(piece)
        return b"".join(out)


_SEPARATOR = "\x00"  # cannot occur in a value: control characters are removed from them


def unknown_column(column: str, columns: Collection[str]) -> str:
    """What to say about ``subscriber.<column>`` when the list has no such column."""
    hint = difflib.get_close_matches(column, sorted(columns), n=1)
    suggestion = f"; did you mean subscriber.{hint[0]}?" if hint else ""
    return (
        f"the list has no column '{column}' (its columns: {', '.join(sorted(columns))})"
        + suggestion
    )


# What a merge field can raise at run time on a value it did not expect (a filter given text
# where it wants a number): reported as the field's problem, never as a traceback.
_EVALUATION_ERRORS = (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError)

# The most one reader's merge fields may come to, and one reader's email: Postmark, the
# strictest of the providers, takes 10 MB a message "including attachments" (Postmark API,
# Email: "Messages have a size limit of 10 MB").  Past this a value in the reader's row is
# hostile or broken, and building it would hold hundreds of MB (200 distinct fields of a
# 100 KB name are 20 MB; 20,000 would be 2.6 GB).
MAX_MESSAGE_CHARACTERS = 10_000_000


class TooLarge(InputError):
    """This reader's email would be past what a provider takes: that reader fails alone."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"this reader's email would be more than {MAX_MESSAGE_CHARACTERS // 1_000_000} MB, "
            "more than a provider takes: a value in their row of the list is far too long",
            path=path,
        )


class FieldEvaluator:
    """The issue's merge fields, compiled once into one Jinja template that renders them
    all, separated by NUL: one template context per recipient instead of one per field.

    The template is compiled in the sandboxed draft environment (no globals, a few filters),
    and every field was checked against the allowed subset when the draft was read.
    """

    def __init__(self, fields: Sequence[MergeField], path: str) -> None:
        self.fields = tuple(fields)
        self.path = path
        # Built from the trees parsed when the draft was read: parsing 20,000 fields twice
        # was half the time of a large draft.
        body: list[nodes.Expr] = []
        for index, field in enumerate(fields):
            if index:
                body.append(nodes.TemplateData(_SEPARATOR))
            tree = field.tree if field.tree is not None else parse_expression(field.source)
            assert isinstance(tree, nodes.Expr)
            body.append(tree)
        template = nodes.Template([nodes.Output(body)])
        self._template = ENVIRONMENT.from_string(template)
        self._render: Callable[..., str] = self._template.render

    def evaluate(self, context: Mapping[str, Any]) -> list[str]:
        if not self.fields:
            return []
        try:
            values = self._bounded_render(context).split(_SEPARATOR)
        except TooLarge:
            raise
        except _EVALUATION_ERRORS:
            raise self._which_failed(context) from None
        if len(values) != len(self.fields):
            raise InputError("a merge field's value contains a NUL character", path=self.path)
        return values

    def _bounded_render(self, context: Mapping[str, Any]) -> str:
        """Render, counting as it goes: stops at MAX_MESSAGE_CHARACTERS, before the memory."""
        chunks: list[str] = []
        total = 0
        for chunk in self._template.generate(context):
            total += len(chunk)
            if total > MAX_MESSAGE_CHARACTERS:
                raise TooLarge(self.path)
            chunks.append(chunk)
        return "".join(chunks)

    def _which_failed(self, context: Mapping[str, Any]) -> InputError:
        """The slow path, on error only: find the field that failed, to name its line."""
        subscriber = context.get("subscriber")
        columns = subscriber._columns() if isinstance(subscriber, SubscriberFields) else None
        for field in self.fields:

            def problem(message: str, field: MergeField = field) -> InputError:
                return InputError(
                    f"merge field {{{{ {shown(field.source)} }}}}: {message}",
                    path=self.path,
                    line=field.line,
                )

            if columns is not None:
                for column in sorted(field.subscriber_columns() - columns):
                    return problem(unknown_column(column, columns))
            try:
                expression = ENVIRONMENT.compile_expression(field.source, undefined_to_none=False)
                str(expression(context))
            except jinja2.UndefinedError as exc:
                return problem(str(exc.message))
            except _EVALUATION_ERRORS as exc:
                return problem(f"cannot be filled in ({exc})")
        return InputError("a merge field failed", path=self.path)


def escape_all(values: Sequence[str]) -> list[str]:
    return [str(escape(value)) for value in values]
