"""Merge fields: ``{{ subscriber.first_name | default("there") }}`` in a draft or a template.

Each distinct Jinja expression is swapped for a plain-ASCII placeholder token before Markdown,
Jinja layout and MJML run, so the whole issue is compiled once; the tokens are filled per
recipient afterwards (see ``pipeline.render.fill``).  Tokens are letters and digits only, so
Markdown, URL normalisation and MJML all pass them through untouched.

A draft is text from a person (or pasted from anywhere), so its merge fields are a small,
checked language, not Jinja at large: ``subscriber.<column>``, ``subscriber["column"]``,
``unsubscribe_url``, string constants, a few text filters, ``~``, ``and``/``or``/``not``,
comparisons and ``x if y else z``.  Anything else (``lipsum.__globals__``, a method call,
arithmetic) is refused with the file and line before anything is rendered, and what is
allowed runs in Jinja's immutable sandbox with no globals, as a second wall.
"""

from __future__ import annotations

import bisect
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pipeline.errors import InputError, InputErrors

TOKEN_PATTERN = re.compile(r"MFX(\d+)XFM")
# A complete field: ``{{``, then anything but another ``{{``, a ``}}`` or a blank line (a field
# never spans paragraphs: an unclosed ``{{`` must not swallow the text up to a later ``}}``).
_EXPRESSION = re.compile(r"\{\{((?:(?!\{\{|\}\}|\n[ \t]*\n).)*)\}\}", re.DOTALL)
_BLOCK_TAG = re.compile(r"\{%|\{#")
_STRAY_BRACES = re.compile(r"\{\{|\}\}")
# Mailchimp's tags are upper case (*|FNAME|*, *|IF:...|*); lower case would also catch a table
# row of emphasised cells such as |*a*|b|*c*|.
_MAILCHIMP_TAG = re.compile(r"\*\|\s*([A-Z][A-Z0-9_:]*)\s*\|\*")
_MAILCHIMP_EQUIVALENT = {
    "FNAME": "subscriber.first_name",
    "LNAME": "subscriber.last_name",
    "EMAIL": "subscriber.email",
    "UNSUB": "unsubscribe_url",
}

SUBSCRIBER = "subscriber"
UNSUBSCRIBE_FIELD = "unsubscribe_url"
ALLOWED_TESTS = ("defined", "none", "undefined")
# Text filters only: nothing that reaches attributes (attr, map), formats (format) or makes
# large output from a short field (center, indent, wordwrap).  Each with (fewest arguments,
# most arguments, how it is written), checked when the draft is read, so a wrong call is a
# line in `check`, not a Python message at send time.
FILTER_USAGE = {
    "capitalize": (0, 0, "| capitalize"),
    "d": (0, 2, '| d("there")'),
    "default": (0, 2, '| default("there")'),
    "lower": (0, 0, "| lower"),
    "replace": (2, 3, '| replace("old", "new")'),
    "title": (0, 0, "| title"),
    "trim": (0, 1, "| trim"),
    "truncate": (0, 4, "| truncate(40)"),
    "upper": (0, 0, "| upper"),
}
ALLOWED_FILTERS = tuple(FILTER_USAGE)
# The longest value a merge field may make: as long as the longest cell the list reader
# accepts (csv.field_size_limit's default).  ``replace("", "xxxxxxxxxx")`` puts its text
# between every character, and a chain of them multiplies: three of them on a 100 KB name
# once made a 277 MB message.
MAX_FIELD_VALUE = 131_072


def bounded_replace(value: object, old: object, new: object, count: int | None = None) -> str:
    """Jinja's ``replace``, refusing (before building it) a result past MAX_FIELD_VALUE."""
    text, old, new = str(value), str(old), str(new)
    found = len(text) + 1 if not old else text.count(old)
    if count is not None and count >= 0:
        found = min(found, count)
    if len(text) + found * (len(new) - len(old)) > MAX_FIELD_VALUE:
        raise ValueError(
            f"replace would make this value longer than {MAX_FIELD_VALUE:,} characters"
        )
    return text.replace(old, new, -1 if count is None else count)


def _draft_environment() -> ImmutableSandboxedEnvironment:
    # StrictUndefined: a field no subscriber column provides is an error, never an empty gap.
    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    env.globals.clear()  # no lipsum, range, dict, cycler, joiner, namespace
    env.filters = {name: env.filters[name] for name in ALLOWED_FILTERS}
    env.filters["replace"] = bounded_replace
    env.tests = {name: env.tests[name] for name in ALLOWED_TESTS}
    return env


ENVIRONMENT = _draft_environment()

_FILTER_LIST = ", ".join(name for name in ALLOWED_FILTERS if name != "d")
_ALLOWED_SUBSET = (
    f"a draft may use subscriber.<column>, unsubscribe_url, text in quotes and the filters "
    f"{_FILTER_LIST}"
)

# Jinja's node names ("mul", "getitem") mean nothing to the person who wrote the draft.
_ARITHMETIC = "arithmetic (+, -, *, /, %, **)"
_NODE_WORDS = {
    **dict.fromkeys(
        ("Add", "Sub", "Mul", "Div", "FloorDiv", "Mod", "Pow", "Neg", "Pos"), _ARITHMETIC
    ),
    **dict.fromkeys(("List", "Tuple", "Dict", "Pair"), "a list or dictionary"),
}


def shown(source: str, limit: int = 80) -> str:
    """A merge field as a message quotes it: a hostile one (3,000 parentheses) is cut, so the
    message stays one readable line."""
    return source if len(source) <= limit else f"{source[: limit - 20]}\u2026{source[-19:]}"


class FieldNotAllowed(Exception):
    """An expression outside the subset drafts may use; the message says what and why."""


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    hint = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


def _check_node(node: nodes.Node, columns: set[str]) -> None:
    """Walk one parsed expression; raise FieldNotAllowed at the first construct not allowed.

    Collects the ``subscriber`` columns it reads into ``columns``.
    """
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == SUBSCRIBER):
            if isinstance(target, nodes.Name) and target.name != UNSUBSCRIBE_FIELD:
                raise FieldNotAllowed(f"'{target.name}' is not a merge field; {_ALLOWED_SUBSET}")
            raise FieldNotAllowed(f"only subscriber.<column> may be looked into; {_ALLOWED_SUBSET}")
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            name = node.arg.value
        else:
            raise FieldNotAllowed('write subscriber["column name"], with the name in quotes')
        if name.startswith("_") or not name:
            raise FieldNotAllowed(f"'{name}' is not a column name")
        columns.add(name)
        return
    if isinstance(node, nodes.Name):
        if node.name == UNSUBSCRIBE_FIELD:
            return
        if node.name == SUBSCRIBER:
            raise FieldNotAllowed(
                "write subscriber.<column>, e.g. {{ subscriber.first_name }}, not subscriber alone"
            )
        hint = difflib.get_close_matches(node.name, [UNSUBSCRIBE_FIELD], n=1)
        instead = hint[0] if hint else f"subscriber.{node.name}"
        raise FieldNotAllowed(
            f"'{node.name}' is not a merge field (did you mean {instead}? "
            "a column of the list is written subscriber.<column>)"
        )
    if isinstance(node, nodes.Filter):
        if node.name not in ALLOWED_FILTERS:
            suggestion = _suggest(node.name, list(ALLOWED_FILTERS))
            raise FieldNotAllowed(
                f"there is no filter '{node.name}'{suggestion}; the filters are {_FILTER_LIST}"
            )
        fewest, most, usage = FILTER_USAGE[node.name]
        given = len(node.args) + len(node.kwargs)
        numbers = node.args[:1] if node.name == "truncate" else []
        if not fewest <= given <= most or any(
            isinstance(arg, nodes.Const) and not isinstance(arg.value, int) for arg in numbers
        ):
            raise FieldNotAllowed(f"the filter '{node.name}' is written {usage}")
    elif isinstance(node, nodes.Test):
        if node.name not in ALLOWED_TESTS:
            suggestion = _suggest(node.name, list(ALLOWED_TESTS))
            raise FieldNotAllowed(
                f"there is no test '{node.name}'{suggestion}; tests: {', '.join(ALLOWED_TESTS)}"
            )
    elif isinstance(node, nodes.Call):
        raise FieldNotAllowed(
            "a draft cannot call functions or methods; use a filter, e.g. | upper"
        )
    elif isinstance(node, nodes.Const):
        if not isinstance(node.value, str | int | float | bool | None):
            raise FieldNotAllowed(f"{node.value!r} is not allowed; {_ALLOWED_SUBSET}")
    elif not isinstance(
        node,
        nodes.Concat
        | nodes.CondExpr
        | nodes.And
        | nodes.Or
        | nodes.Not
        | nodes.Compare
        | nodes.Operand
        | nodes.Keyword,
    ):
        what = _NODE_WORDS.get(type(node).__name__, "this kind of expression")
        raise FieldNotAllowed(f"{what} is not allowed in a merge field; {_ALLOWED_SUBSET}")
    if isinstance(node, nodes.Filter | nodes.Test | nodes.Call) and (
        node.dyn_args is not None or node.dyn_kwargs is not None
    ):
        raise FieldNotAllowed("*args and **kwargs are not allowed in a merge field")
    for child in node.iter_child_nodes():
        _check_node(child, columns)


def analyse(expression: nodes.Node) -> frozenset[str]:
    """The subscriber columns an allowed expression reads; FieldNotAllowed if not allowed."""
    columns: set[str] = set()
    _check_node(expression, columns)
    return frozenset(columns)


def parse_expression(source: str) -> nodes.Node:
    """One expression's tree.  Raises jinja2.TemplateSyntaxError or FieldNotAllowed."""
    try:
        tree = ENVIRONMENT.parse("{{ " + source + " }}")
    except RecursionError:
        raise FieldNotAllowed("it is nested too deeply") from None
    (output,) = tree.body
    assert isinstance(output, nodes.Output)
    if len(output.nodes) != 1:
        raise FieldNotAllowed("write one expression between {{ and }}")
    return output.nodes[0]


@dataclass(frozen=True)
class MergeField:
    source: str
    line: int | None
    columns: frozenset[str] = frozenset()  # the subscriber columns it reads
    # The parsed expression, kept so the evaluator compiles it without parsing it again.
    tree: nodes.Node | None = field(default=None, compare=False, repr=False)

    def subscriber_columns(self) -> set[str]:
        """The ``subscriber.<column>`` / ``subscriber["column"]`` names the expression reads."""
        return set(self.columns)


class MergeFields:
    """The table of placeholder tokens of one issue, in order of first appearance."""

    def __init__(self) -> None:
        self.fields: list[MergeField] = []
        self._index: dict[str, int] = {}

    def token(self, source: str, line: int | None = None) -> str:
        """The token of an expression from a template (trusted, few): analysed here."""
        source = source.strip()
        if source not in self._index:
            try:
                tree = parse_expression(source)
                columns = analyse(tree)
            except (jinja2.TemplateSyntaxError, FieldNotAllowed):
                tree, columns = None, frozenset()
            self._add(MergeField(source, line, columns, tree))
        return f"MFX{self._index[source]}XFM"

    def _add(self, field: MergeField) -> None:
        self._index[field.source] = len(self.fields)
        self.fields.append(field)

    def copy(self) -> MergeFields:
        other = MergeFields()
        other.fields = list(self.fields)
        other._index = dict(self._index)
        return other

    def extract(self, text: str, *, path: Path, first_line: int) -> str:
        """Replace every ``{{ expression }}`` in ``text`` with its token; check each one.

        ``first_line`` is the file line of ``text``'s first line, so errors point into the file.
        Raises InputErrors with every problem found: block tags, stray or unclosed braces,
        Mailchimp tags, invalid or disallowed expressions.
        """
        problems: list[InputError] = []
        line_at = _LineCounter(text, first_line)

        def report(message: str, offset: int) -> None:
            problems.append(InputError(message, path=path, line=line_at(offset)))

        for block in _BLOCK_TAG.finditer(text):
            report(
                "only {{ expressions }} are supported in a draft, not {% tags %} or {# comments #}",
                block.start(),
            )
            break  # one is enough: `{% raw %}...{% endraw %}` is one mistake, not two
        for tag in _MAILCHIMP_TAG.finditer(text):
            instead = _MAILCHIMP_EQUIVALENT.get(tag[1].upper(), "subscriber.<column>")
            report(
                f"{tag[0]} is a Mailchimp merge tag, which this newsletter does not fill: "
                f"write {{{{ {instead} }}}}",
                tag.start(),
            )

        matches = list(_EXPRESSION.finditer(text))
        sources = [" ".join(match[1].split()) for match in matches]
        lines = [line_at(match.start()) for match in matches]
        new = {s: line for s, line in zip(sources, lines, strict=True) if s not in self._index}
        for source, analysed in self._analyse_all(list(new)).items():
            if isinstance(analysed, str):
                problems.append(
                    InputError(
                        f"merge field {{{{ {shown(source)} }}}} {analysed}",
                        path=path,
                        line=new[source],
                    )
                )
            else:
                self._add(MergeField(source, new[source], analysed[0], analysed[1]))

        pieces: list[str] = []
        masked: list[str] = []  # the text with every complete field blanked, for stray braces
        last = 0
        for match, source in zip(matches, sources, strict=True):
            pieces.append(text[last : match.start()])
            masked.append(text[last : match.start()])
            index = self._index.get(source)
            pieces.append(f"MFX{index}XFM" if index is not None else match[0])
            masked.append(" " * len(match[0]))
            last = match.end()
        pieces.append(text[last:])
        masked.append(text[last:])

        stray_lines: set[int] = set()  # one report per line: '{{{{{{' is one mistake
        for brace in _STRAY_BRACES.finditer("".join(masked)):
            opening = brace[0] == "{{"
            if line_at(brace.start()) in stray_lines:
                continue
            stray_lines.add(line_at(brace.start()))
            report(
                ("'{{' is never closed with '}}'" if opening else "'}}' has no '{{' before it")
                + ": a merge field is written {{ subscriber.first_name }}",
                brace.start(),
            )
        if problems:
            problems.sort(key=lambda p: p.line or 0)
            raise InputErrors(problems)
        return "".join(pieces)

    def _analyse_all(
        self, sources: list[str]
    ) -> dict[str, tuple[frozenset[str], nodes.Node] | str]:
        """Each source -> (its columns, its tree), or what is wrong with it.

        Parsing one expression at a time costs about a millisecond in Jinja's parser set-up,
        which made a draft with 20,000 fields take half a minute; so all are parsed as one
        template, one per line, and only on a syntax error one by one to find which.
        """
        if not sources:
            return {}
        trees: list[nodes.Node] | None
        try:
            tree = ENVIRONMENT.parse("\n".join("{{ " + s + " }}" for s in sources))
            found: dict[int, nodes.Node] = {}
            for output in tree.find_all(nodes.Output):
                for node in output.nodes:
                    if not isinstance(node, nodes.TemplateData):
                        found.setdefault(node.lineno, node)
            trees = [found[i + 1] for i in range(len(sources))]
            if len(found) != len(sources):
                trees = None  # an expression spread over lines: take the slow path
        except (jinja2.TemplateSyntaxError, RecursionError, KeyError):
            trees = None
        result: dict[str, tuple[frozenset[str], nodes.Node] | str] = {}
        for index, source in enumerate(sources):
            try:
                expression = trees[index] if trees is not None else parse_expression(source)
                result[source] = (analyse(expression), expression)
            except jinja2.TemplateSyntaxError as exc:
                result[source] = f"is not a valid expression: {exc.message}"
            except FieldNotAllowed as exc:
                result[source] = f"is not allowed: {exc}"
            except RecursionError:
                result[source] = "is not allowed: it is nested too deeply"
        return result


class _LineCounter:
    """Offset -> file line by bisection over the newline offsets: linear in the text, where
    counting newlines from the start for every field was quadratic."""

    def __init__(self, text: str, first_line: int) -> None:
        self._newlines = [match.start() for match in re.finditer("\n", text)]
        self._first_line = first_line

    def __call__(self, offset: int) -> int:
        return self._first_line + bisect.bisect_left(self._newlines, offset)
