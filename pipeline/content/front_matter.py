"""The YAML block between ``---`` lines at the top of a draft, with a line number per key.

Timestamps are deliberately left as strings: ``send_at`` is read by our own rules (local time
in the newsletter's zone, or ISO 8601 with an offset), not by YAML's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import InputError


class _Loader(yaml.SafeLoader):
    """SafeLoader without the implicit timestamp type."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


# Keys whose value is one line of text: a subject such as ``Knee pain: 3 fixes`` is what she
# means, even though YAML wants it in quotes.
TEXT_KEYS = ("subject", "preheader", "title")
# A value may start with a merge field (`subject: {{ subscriber.first_name }}, 3 tips`), which
# YAML would read as a mapping ("found unhashable key"); any other YAML sign at its start
# (a quote, [, {, |, >, & ...) means she wrote YAML, and YAML reads it.
_UNQUOTED_TEXT = re.compile(
    r"^(?P<key>" + "|".join(TEXT_KEYS) + r")[ \t]*:[ \t]+"
    r"(?P<value>(?:\{\{|[^\s\"'|>\[{&*!%@`]).*?)[ \t]*$"
)


@dataclass(frozen=True)
class FrontMatter:
    values: dict[str, Any]
    lines: dict[str, int]  # key -> line in the file
    body: str
    body_line: int  # line in the file where the body starts
    problems: list[InputError] = field(default_factory=list)  # e.g. a key given twice


def _quote_text_lines(yaml_text: str) -> str:
    """Each unquoted ``subject:``/``preheader:``/``title:`` line with its value quoted."""
    lines = yaml_text.split("\n")
    for index, line in enumerate(lines):
        match = _UNQUOTED_TEXT.match(line)
        if match:
            lines[index] = f"{match['key']}: {json.dumps(match['value'], ensure_ascii=False)}"
    return "\n".join(lines)


def _parse(yaml_text: str) -> tuple[Any, yaml.Node | None]:
    node = yaml.compose(yaml_text, Loader=_Loader)
    values = yaml.load(yaml_text, Loader=_Loader)
    return values, node


def split_front_matter(text: str, path: Path) -> FrontMatter:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise InputError(
            "a draft starts with front matter: a '---' line, 'subject: ...', then '---'",
            path=path,
            line=1,
        )
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            end = index
            break
    else:
        raise InputError("front matter is never closed with a '---' line", path=path, line=1)

    yaml_text = "".join(lines[1:end])
    # The text keys are read as the whole rest of their line, as she meant them: YAML would
    # refuse "Knee pain: 3 fixes", cut "Tip #3 for knees" to "Tip" and read "no" as false.
    # Only if that does not parse (a subject continued on the next line) is YAML's own
    # reading used; if neither parses, the error reported is the quoted reading's, which names
    # the line really at fault rather than the subject we would have accepted.
    quoted = _quote_text_lines(yaml_text)
    try:
        try:
            values, node = _parse(quoted)
        except yaml.MarkedYAMLError as quoted_error:
            if quoted == yaml_text:
                raise
            try:
                values, node = _parse(yaml_text)
            except yaml.MarkedYAMLError:
                raise quoted_error from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        hint = ""
        if "simple key" in str(exc.context) and exc.context_mark is not None:
            # "send_at:2026-12-21 07:00": YAML gives up on the line after; the key is here.
            mark = exc.context_mark
            seen = yaml_text.splitlines()
            written = seen[mark.line] if mark.line < len(seen) else ""
            key, colon, value = written.strip().partition(":")
            if colon and value and not value.startswith(" "):
                hint = f' (a key needs a space after its colon: "{key}: {value}")'
        line = mark.line + 2 if mark is not None else 1
        if "mapping values are not allowed" in str(exc.problem):
            hint = ' (a value with ": " in it must be in quotes: key: "a: b")'
        raise InputError(
            f"front matter is not valid YAML: {exc.problem}{hint}", path=path, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(f"front matter is not valid YAML: {exc}", path=path, line=2) from None
    except RecursionError:
        raise InputError(
            "front matter is nested too deeply to be 'key: value' lines", path=path, line=2
        ) from None
    if values is None:
        values, node = {}, None
    if not isinstance(values, dict):
        raise InputError("front matter must be 'key: value' lines", path=path, line=2)

    key_lines: dict[str, int] = {}
    problems: list[InputError] = []
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            key, line = str(key_node.value), key_node.start_mark.line + 2
            if key in key_lines:  # YAML keeps the last silently; she meant one of them
                problems.append(
                    InputError(
                        f"given twice (also on line {key_lines[key]}): keep one",
                        path=path,
                        line=line,
                        field=key,
                    )
                )
            key_lines.setdefault(key, line)
    return FrontMatter(
        values={str(k): v for k, v in values.items()},
        lines=key_lines,
        body="".join(lines[end + 1 :]),
        body_line=end + 2,
        problems=problems,
    )
