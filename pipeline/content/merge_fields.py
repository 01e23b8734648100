"""Merge fields: ``{{ subscriber.first_name | default("there") }}`` in a draft or a template.

Each distinct Jinja expression is swapped for a plain-ASCII placeholder token before Markdown,
Jinja layout and MJML run, so the whole issue is compiled once; the tokens are filled per
recipient afterwards (see ``pipeline.render.fill``).  Tokens are letters and digits only, so
Markdown, URL normalisation and MJML all pass them through untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2 import nodes

from pipeline.errors import InputError

TOKEN_PATTERN = re.compile(r"MFX(\d+)XFM")
_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_BLOCK_TAG = re.compile(r"\{%|\{#")

# StrictUndefined: a field no subscriber column provides is an error, never an empty gap.
ENVIRONMENT = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class MergeField:
    source: str
    line: int | None

    def subscriber_columns(self) -> set[str]:
        """The ``subscriber.<column>`` / ``subscriber["column"]`` names the expression reads."""
        tree = ENVIRONMENT.parse("{{ " + self.source + " }}")
        names: set[str] = set()
        for attr in tree.find_all(nodes.Getattr):
            if isinstance(attr.node, nodes.Name) and attr.node.name == "subscriber":
                names.add(attr.attr)
        for item in tree.find_all(nodes.Getitem):
            if (
                isinstance(item.node, nodes.Name)
                and item.node.name == "subscriber"
                and isinstance(item.arg, nodes.Const)
                and isinstance(item.arg.value, str)
            ):
                names.add(item.arg.value)
        return names


class MergeFields:
    """The table of placeholder tokens of one issue, in order of first appearance."""

    def __init__(self) -> None:
        self.fields: list[MergeField] = []
        self._index: dict[str, int] = {}

    def token(self, source: str, line: int | None = None) -> str:
        source = source.strip()
        if source not in self._index:
            self._index[source] = len(self.fields)
            self.fields.append(MergeField(source, line))
        return f"MFX{self._index[source]}XFM"

    def copy(self) -> MergeFields:
        other = MergeFields()
        other.fields = list(self.fields)
        other._index = dict(self._index)
        return other

    def extract(self, text: str, *, path: Path, first_line: int) -> str:
        """Replace every ``{{ expression }}`` in ``text`` with its token; check its syntax.

        ``first_line`` is the file line of ``text``'s first line, so errors point into the file.
        """
        block = _BLOCK_TAG.search(text)
        if block:
            line = first_line + text.count("\n", 0, block.start())
            raise InputError(
                "only {{ expressions }} are supported in a draft, not {% tags %} or {# comments #}",
                path=path,
                line=line,
            )

        def replace(match: re.Match[str]) -> str:
            line = first_line + text.count("\n", 0, match.start())
            source = " ".join(match[1].split())
            try:
                ENVIRONMENT.compile_expression(source)
            except jinja2.TemplateSyntaxError as exc:
                raise InputError(
                    f"merge field {{{{ {source} }}}} is not a valid expression: {exc.message}",
                    path=path,
                    line=line,
                ) from None
            return self.token(source, line)

        return _EXPRESSION.sub(replace, text)
