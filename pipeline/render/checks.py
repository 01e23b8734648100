"""The rules ``newsletter check`` applies to an issue before it may go out.

Each rule returns problems as InputErrors (file:line where there is one).  The rules read the
same Markdown tree and the same compiled email that sending uses, so a clean check means the
send will not trip over the content.
"""

from __future__ import annotations

import difflib
import tomllib
from collections import Counter
from collections.abc import Mapping, Sequence
from email.utils import parseaddr
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from markdown_it.tree import SyntaxTreeNode
from markupsafe import escape

from pipeline.audience.csv_source import read_columns, read_rows
from pipeline.audience.sample import sample_subscriber
from pipeline.audience.subscribers import parse_tags
from pipeline.config import Settings, setting_line
from pipeline.content.issue import Issue, read_issue
from pipeline.content.merge_fields import ENVIRONMENT, TOKEN_PATTERN, UNSUBSCRIBE_FIELD
from pipeline.errors import InputError
from pipeline.project import STARTER
from pipeline.render.compile import CompiledEmail, compile_issue
from pipeline.render.fill import STANDARD_COLUMNS, unknown_column
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
    """Columns the list does not have.  (Names other than ``subscriber`` and anything outside
    the allowed subset were refused when the draft was read.)"""
    problems = []
    for field in issue.merge_fields.fields:
        for column in sorted(field.subscriber_columns() - columns):
            problems.append(
                InputError(
                    f"unknown merge field subscriber.{column}: {unknown_column(column, columns)}",
                    path=issue.path,
                    line=field.line,
                )
            )
    return problems


@cache
def _starter_issue_lines() -> frozenset[str]:
    """The example lines ``newsletter new`` writes (read from the starter itself, so the two
    cannot drift apart), but for the greeting and the callout fences, which are hers to keep,
    and links, which the link rule reports."""
    text = (STARTER / "issue.md").read_text(encoding="utf-8")
    body = text.split("\n---\n", 1)[1]
    return frozenset(
        line.strip()
        for line in body.splitlines()
        if line.strip() and "{{" not in line and not line.startswith(":::") and "](" not in line
    )


@cache
def _starter_settings() -> dict[str, dict[str, str]]:
    with (STARTER / "newsletter.toml").open("rb") as file:
        return tomllib.load(file)


def _placeholder_host(url: str) -> bool:
    starter_host = urlsplit(_starter_settings()["newsletter"]["base_url"]).hostname
    host = urlsplit(url.strip()).hostname or ""
    return host == starter_host or host.endswith(f".{starter_host}")


def check_scaffold(issue: Issue) -> list[InputError]:
    """Lines still as ``newsletter new`` wrote them: the untouched scaffold must not go out."""
    examples = _starter_issue_lines()
    return [
        InputError(
            f"'{line.strip()}' is the example text from `newsletter new`: "
            "write your own, or delete the line",
            path=issue.path,
            line=issue.body_line + number,
        )
        for number, line in enumerate(issue.body.splitlines())
        if line.strip() in examples
    ]


def check_settings(settings: Settings) -> list[InputError]:
    """Values still as ``newsletter init`` wrote them: a reader must never see them."""
    starter = _starter_settings()
    news = starter["newsletter"]
    problems = []

    def report(section: str, key: str, message: str) -> None:
        problems.append(
            InputError(
                message,
                path=settings.config_path,
                line=setting_line(settings.config_path, section, key),
                field=f"[{section}] {key}",
            )
        )

    if PLACEHOLDER_MARK in settings.postal_address:
        report(
            "newsletter",
            "postal_address",
            "postal_address is still the placeholder: put the practice's postal address",
        )
    if settings.name == news["name"]:
        report(
            "newsletter", "name", f"still the placeholder '{news['name']}': put the practice's name"
        )
    starter_name, starter_address = parseaddr(news["from"])
    name, address = parseaddr(settings.sender)
    if address.lower() == starter_address or name == starter_name:
        report(
            "newsletter",
            "from",
            f"still the placeholder '{news['from']}': put the sender's name and address, "
            'written "Name <address>"',
        )
    if settings.reply_to and parseaddr(settings.reply_to)[1].lower() == starter_address:
        report(
            "newsletter",
            "reply_to",
            f"still the placeholder '{starter_address}': put the address replies should go to",
        )
    starter_signer = news["signature"].lstrip("–—- ").strip()
    if starter_signer and starter_signer in settings.signature:
        report("newsletter", "signature", f"still signed '{starter_signer}': put your name")
    urls = [
        ("newsletter", "base_url", settings.base_url),
        ("theme", "logo_url", settings.theme.logo_url),
    ]
    if settings.cta is not None:
        urls.append(("cta", "url", settings.cta.url))
    for section, key, url in urls:
        if url and _placeholder_host(url):
            report(section, key, f"'{url}' is the placeholder address: put the real one")
    problems.sort(key=lambda problem: problem.line or 0)  # in the order of the file
    return problems


def _constant_fields(href: str, issue: Issue) -> str | None:
    """``href`` with its merge fields filled, when none of them differs per reader; None when
    one does (``{{ unsubscribe_url }}``, ``{{ subscriber.site }}``): that value is the address."""
    fields = issue.merge_fields.fields
    values: dict[str, str] = {}
    for match in TOKEN_PATTERN.finditer(href):
        field = fields[int(match[1])]
        if field.columns or UNSUBSCRIBE_FIELD in field.source:
            return None
        try:
            values[match[0]] = str(ENVIRONMENT.compile_expression(field.source)())
        except Exception:  # any failure: let the send-time evaluation say it
            return None
    return TOKEN_PATTERN.sub(lambda m: values[m[0]], href)


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
        # As she wrote it: merge fields, not the tokens that stand for them while compiling.
        shown = TOKEN_PATTERN.sub(
            lambda m: "{{ " + issue.merge_fields.fields[int(m[1])].source + " }}", message
        )
        problems.append(InputError(shown, path=issue.path, line=line))

    def address_problem(raw: str) -> str | None:
        address = _constant_fields(raw, issue)
        if address is None:
            return None  # a per-reader merge field: its value is the address
        problem = _link_problem(address)
        if problem is None and _placeholder_host(address):
            problem = f"'{address}' is a placeholder address: put the real one"
        return problem

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
            problem = address_problem(str(node.attrs.get("src", "")))
            if problem:
                report(f"image source {problem}", line)
        if node.type == "link":
            problem = address_problem(str(node.attrs.get("href", "")))
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


def unmatched_tag(
    tags: Sequence[str], list_tags: Mapping[str, int], *, anyone_subscribed: bool = True
) -> str | None:
    """Why a front-matter tag reaches nobody, naming the tags the list has; None if all match.

    ``list_tags`` counts subscribed readers per tag (lower case, as the list is matched);
    ``anyone_subscribed`` is False when the list has no subscribed reader at all, which is
    then the thing to fix, not the tags column.
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
    elif not anyone_subscribed:
        message += " (nobody on the list is subscribed yet: add readers to it)"
    else:
        message += " (no subscribed reader has any tag: put them in the list's 'tags' column)"
    return message


def check_tags(issue: Issue, settings: Settings) -> list[InputError]:
    """A ``tags:`` value no subscribed reader has: the issue would reach nobody with it
    (most often a typo, ``runner`` for ``runners``)."""
    if not issue.tags or not settings.subscribers.is_file():
        return []
    # Rows marked subscribed, without validating every address (a 100k list: 0.2 s, not 4):
    # a tag only invalid rows carry still reaches nobody, and `send` refuses that, saying so.
    tags: Counter[str] = Counter()
    subscribed = 0
    try:
        for row in read_rows(settings.subscribers):
            if row.values.get("status", "").strip().lower() in ("", "subscribed"):
                subscribed += 1
                tags.update(parse_tags(row.values.get("tags", "")))
        message = unmatched_tag(issue.tags, tags, anyone_subscribed=subscribed > 0)
    except InputError as exc:
        return [exc]
    if message is None:
        return []
    return [InputError(message, path=issue.path, line=issue.key_lines.get("tags"), field="tags")]


def _provider_problems(settings: Settings) -> list[InputError]:
    """``[provider]`` as a send reads it: a reach into delivery, named, so that ``check``
    (and ``status``, which runs it for cron's issues) says "ok" only of what a send takes."""
    from pipeline.delivery.providers import provider_problems

    return list(provider_problems(settings))


def check_issue(path: Path, settings: Settings) -> list[InputError]:
    """Every problem with the issue at ``path``; an empty list means it may go out.

    Reports all it can in one run: the front matter, the merge fields, the body and the
    settings' placeholders; the compiled email's rules need a draft without problems.
    """
    issue, problems = read_issue(path, settings.timezone)
    if issue is None:
        return problems + check_settings(settings) + _provider_problems(settings)
    try:
        columns = known_columns(settings)
    except InputError as exc:
        return [*problems, exc]
    problems += check_merge_fields(issue, columns) + check_tags(issue, settings)
    try:
        problems += check_body(issue)
    except InputError as exc:  # Markdown nested too deeply: read_issue gave it its line
        if not problems:
            problems.append(exc)
    problems += check_scaffold(issue)
    problems.sort(key=lambda problem: problem.line or 0)  # in the order of the file
    problems += check_settings(settings) + _provider_problems(settings)
    if problems:
        # Compiling would fail on an unknown field; the lines above already say why.
        return problems
    try:
        compiled = compile_issue(issue, settings)
        problems += check_compiled(compiled, settings, sample_subscriber(settings))
    except InputError as exc:
        problems.append(exc)
    return problems
