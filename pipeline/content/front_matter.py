"""The YAML block between ``---`` lines at the top of a draft, with a line number per key.

Timestamps are deliberately left as strings: ``send_at`` is read by our own rules (local time
in the newsletter's zone, or ISO 8601 with an offset), not by YAML's.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class FrontMatter:
    values: dict[str, Any]
    lines: dict[str, int]  # key -> line in the file
    body: str
    body_line: int  # line in the file where the body starts


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
    try:
        node = yaml.compose(yaml_text, Loader=_Loader)
        values = yaml.load(yaml_text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 2 if mark is not None else 1
        raise InputError(
            f"front matter is not valid YAML: {exc.problem}", path=path, line=line
        ) from None
    if values is None:
        values, node = {}, None
    if not isinstance(values, dict):
        raise InputError("front matter must be 'key: value' lines", path=path, line=2)

    key_lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            key_lines[str(key_node.value)] = key_node.start_mark.line + 2
    return FrontMatter(
        values={str(k): v for k, v in values.items()},
        lines=key_lines,
        body="".join(lines[end + 1 :]),
        body_line=end + 2,
    )
