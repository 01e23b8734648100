"""The rules ``newsletter check`` applies to an issue before it may go out.

Each rule returns problems as InputErrors (file:line where there is one).  The rules read the
same Markdown tree and the same compiled email that sending uses, so a clean check means the
send will not trip over the content.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from jinja2 import meta
from markdown_it.tree import SyntaxTreeNode
from markupsafe import escape

from pipeline.audience.csv_source import read_columns, read_rows
from pipeline.audience.sample import sample_subscriber
from pipeline.audience.subscribers import parse_tags
from pipeline.config import Settings
from pipeline.content.issue import Issue, load_issue
from pipeline.content.merge_fields import ENVIRONMENT, TOKEN_PATTERN
from pipeline.errors import InputError, InputErrors
from pipeline.render.compile import UNSUBSCRIBE_FIELD, CompiledEmail, compile_issue
from pipeline.render.fill import STANDARD_COLUMNS
from pipeline.render.markdown import is_button, only_child, parse, plain_text

GMAIL_CLIP_BYTES = 102 * 1024
ALLOWED_SCHEMES = ("http://", "https://", "mailto:")
PLACEHOLDER_MARK = "REPLACE"


def known_columns(settings: Settings) -> set[str]:
    columns = set(STANDARD_COLUMNS)
    if settings.subscribers.is_file():
        columns.update(read_columns(settings.subscribers))
    return columns


def check_merge_fields(issue: Issue, columns: set[str]) -> list[InputError]:
    problems = []
    for field in issue.merge_fields.fields:
        names = meta.find_undeclared_variables(ENVIRONMENT.parse("{{ " + field.source + " }}"))
        for name in sorted(names - {"subscriber", UNSUBSCRIBE_FIELD}):
            problems.append(
                InputError(
                    f"unknown merge field '{name}': write subscriber.<column>, "
                    f"e.g. {{{{ subscriber.first_name }}}}",
                    path=issue.path,
                    line=field.line,
                )
            )
        for column in sorted(field.subscriber_columns() - columns):
            problems.append(
                InputError(
                    f"unknown merge field subscriber.{column}: no such column in the list "
                    f"(columns: {', '.join(sorted(columns))})",
                    path=issue.path,
                    line=field.line,
                )
            )
    return problems


def _link_problem(href: str) -> str | None:
    if not href.strip():
        return "is empty"
    if not href.lower().startswith(ALLOWED_SCHEMES):
        return f"'{href}' is not an http(s) or mailto link"
    if href.lower() in ("http://", "https://", "mailto:"):
        return f"'{href}' has no address after the scheme"
    return None


def check_body(issue: Issue) -> list[InputError]:
    """Images without alt text, bad links, buttons without a URL."""
    problems: list[InputError] = []

    def report(message: str, line: int) -> None:
        problems.append(InputError(message, path=issue.path, line=line))

    def visit(node: SyntaxTreeNode, line: int) -> None:
        if not node.is_root and node.map is not None:
            line = issue.body_line + node.map[0]
        single = only_child(node) if node.type == "paragraph" else None
        if is_button(single) and single is not None and single.type == "span":
            label = plain_text(single)
            report(f"button '{label}' has no URL: write [{label}](https://...){{.button}}", line)
        if node.type == "image":
            if not plain_text(node).strip():
                src = node.attrs.get("src", "")
                report(f"image '{src}' has no alt text: write ![what it shows]({src})", line)
            problem = _link_problem(str(node.attrs.get("src", "")))
            if problem:
                report(f"image source {problem}", line)
        if node.type == "link":
            problem = _link_problem(str(node.attrs.get("href", "")))
            if problem:
                kind = "button" if is_button(node) else "link"
                report(f"{kind} '{plain_text(node)}' {problem}", line)
        for child in node.children:
            visit(child, line)

    visit(parse(issue.body), issue.body_line)
    return problems


def check_compiled(
    compiled: CompiledEmail, settings: Settings, sample: dict[str, str]
) -> list[InputError]:
    """Size and the legally required footer, on the email as a subscriber receives it."""
    path = compiled.issue.path
    problems = []
    marker = "https://unsubscribe.check.invalid/token"
    try:
        email = compiled.personalise(sample, marker)
    except InputError as exc:
        return [exc]
    size = len(email.html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        over = size - GMAIL_CLIP_BYTES
        problems.append(
            InputError(
                f"the HTML is {size / 1024:.1f} KB; Gmail clips messages over 102 KB, "
                f"so cut at least {over / 1024:.1f} KB",
                path=path,
            )
        )
    address = settings.postal_address
    if PLACEHOLDER_MARK in address:
        problems.append(
            InputError(
                "postal_address is still the placeholder: put the practice's postal address",
                path=settings.config_path,
                field="[newsletter] postal_address",
            )
        )
    folded_text = " ".join(email.text.split())  # the text part wraps long lines
    if str(escape(address)) not in email.html or " ".join(address.split()) not in folded_text:
        problems.append(
            InputError("the footer is missing the postal address (required by CAN-SPAM)", path=path)
        )
    if f'href="{marker}"' not in email.html or marker not in email.text:
        problems.append(
            InputError(
                "the footer is missing the unsubscribe link: the templates must use "
                "{{ unsubscribe_url }} in the HTML (as a link) and in the text part",
                path=path,
            )
        )
    return problems


def fields_shown(problems: list[InputError], issue: Issue) -> list[InputError]:
    """Problems quoting the draft's text show its merge fields as she wrote them
    (``{{ subscriber.first_name }}``), never the internal tokens compiling uses."""

    def source(match: re.Match[str]) -> str:
        return "{{ " + issue.merge_fields.fields[int(match[1])].source + " }}"

    return [
        InputError(
            TOKEN_PATTERN.sub(source, problem.message),
            path=problem.path,
            line=problem.line,
            field=problem.field,
        )
        if TOKEN_PATTERN.search(problem.message)
        else problem
        for problem in problems
    ]


def unmatched_tag(tags: Sequence[str], list_tags: Mapping[str, int]) -> str | None:
    """Why a front-matter tag reaches nobody, naming the tags the list has; None if all match.

    ``list_tags`` counts subscribed readers per tag (lower case, as the list is matched).
    """
    missing = [tag for tag in tags if tag.lower() not in list_tags]
    if not missing:
        return None
    names = ", ".join(f"'{tag}'" for tag in missing)
    message = f"no subscribed reader has the tag {names}"
    if list_tags:
        message += " (the list's tags: " + ", ".join(sorted(list_tags)) + ")"
        hint = difflib.get_close_matches(missing[0].lower(), list(list_tags), n=1)
        if hint:
            message += f"; did you mean '{hint[0]}'?"
    else:
        message += " (nobody on the list has any tag: put them in its 'tags' column)"
    return message


def check_tags(issue: Issue, settings: Settings) -> list[InputError]:
    """A ``tags:`` value no subscribed reader has: the issue would reach nobody with it
    (most often a typo, ``runner`` for ``runners``)."""
    if not issue.tags or not settings.subscribers.is_file():
        return []
    # Rows marked subscribed, without validating every address (a 100k list: 0.2 s, not 4):
    # a tag only invalid rows carry still reaches nobody, and `send` refuses that, saying so.
    tags: Counter[str] = Counter()
    try:
        for row in read_rows(settings.subscribers):
            if row.values.get("status", "").strip().lower() in ("", "subscribed"):
                tags.update(parse_tags(row.values.get("tags", "")))
        message = unmatched_tag(issue.tags, tags)
    except InputError as exc:
        return [exc]
    if message is None:
        return []
    line = next(
        (
            number
            for number, text in enumerate(issue.path.read_text("utf-8-sig").splitlines(), 1)
            if text.startswith("tags:")
        ),
        None,
    )
    return [InputError(message, path=issue.path, line=line, field="tags")]


def check_issue(path: Path, settings: Settings) -> list[InputError]:
    """Every problem with the issue at ``path``; an empty list means it may go out."""
    try:
        issue = load_issue(path, settings.timezone)
    except InputErrors as exc:
        return list(exc.problems)
    except InputError as exc:
        return [exc]
    try:
        columns = known_columns(settings)
    except InputError as exc:
        return [exc]
    problems = check_merge_fields(issue, columns) + fields_shown(check_body(issue), issue)
    if problems:
        # Compiling would fail on an unknown field; the lines above already say why.
        return problems + check_tags(issue, settings)
    try:
        compiled = compile_issue(issue, settings)
        problems += check_compiled(compiled, settings, sample_subscriber(settings))
    except InputError as exc:
        problems.append(exc)
    return problems + check_tags(issue, settings)
