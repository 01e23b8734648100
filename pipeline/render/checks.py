"""The rules ``newsletter check`` applies to an issue before it may go out.

Each rule returns problems as InputErrors (file:line where there is one).  The rules read the
same Markdown tree and the same compiled email that sending uses, so a clean check means the
send will not trip over the content.
"""

from __future__ import annotations

import bisect
import difflib
import re
import tomllib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
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
from pipeline.render.markdown import (
    BUTTON_CLASS,
    CALLOUT,
    CLASSES,
    CONTAINERS,
    is_button,
    only_child,
    parse,
    plain_text,
)

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


# Markdown the parser did not take as markup is printed as it is, in every reader's email: a
# link with a space in its address, a '{.button}' with a space before it, a '::: Callout'.
# Each of these is found in the text nodes of the parsed tree (never in code, where such text
# is meant), with a \ufffc where a link, image, span or code span stood, so what is left is
# exactly the characters the reader will see.
_OBJECT = "\ufffc"
_DONE = "\x00"  # what a reported piece of text is overwritten with, so it is reported once
_ADDRESS_START = r"\s*(?:https?:|mailto:|www\.|MFX\d+XFM)"  # MFX..XFM: a merge field
# '[words](...' or '[words] (https://...': the words may not hold brackets or a link.
_LINK_TEXT = re.compile(
    r"(?P<bang>!?)\[(?P<words>[^\[\]\ufffc\x00]{0,300})\](?:\(|(?P<gap>[ \t]+)\((?="
    + _ADDRESS_START
    + "))"
)
# '[words(https://...': with no ']' later on the line, the ']' was forgotten.
_NO_CLOSE_BRACKET = re.compile(
    r"(?P<bang>!?)\[(?P<words>[^\[\]()\ufffc\x00\n]{0,300})\((?=" + _ADDRESS_START + ")"
)
_STRAY_CLOSE = re.compile(r"\]\(")
# One pair of braces: '{{ ... }}' is a merge field (one refused when the draft was read is
# still in the body as written, and that message says what is wrong with it).
_BRACES = re.compile(r"(?<!\{)\{(?P<inside>[^{}\n]{1,200})\}(?!\})")
_ATTRIBUTE = re.compile(r"(?P<mark>[.#]?)(?P<name>[A-Za-z][\w-]*)(?P<value>=\S+)?")
_FENCE = re.compile(r"^[ \t]*:{3,}[ \t]*(?P<rest>.*)$")


def _inline_text(inline: SyntaxTreeNode) -> tuple[str, dict[int, SyntaxTreeNode]]:
    """What a reader sees of an inline run, markup as _OBJECT and breaks as newlines, with the
    link or image ending at each offset."""
    parts: list[str] = []
    ends: dict[int, SyntaxTreeNode] = {}
    size = 0

    def add(text: str) -> None:
        nonlocal size
        parts.append(text)
        size += len(text)

    def walk(node: SyntaxTreeNode) -> None:
        for child in node.children:
            if child.type == "text":
                add(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                add("\n")
            elif child.type == "code_inline":
                add(_OBJECT)
            elif child.type in ("link", "image", "span"):
                add(_OBJECT)
                walk(child)
                add(_OBJECT)
                ends[size] = child
            else:  # emphasis, strong, strikethrough: what they hold is text like any other
                walk(child)

    walk(inline)
    return "".join(parts), ends


def _markup(node: SyntaxTreeNode) -> str:
    """A link or image as she would write it, without attributes."""
    words = plain_text(node)
    if node.type == "image":
        return f"![{words}]({node.attrs.get('src', '')})"
    if node.type == "span":
        return f"[{words}]"
    return f"[{words}]({node.attrs.get('href', '')})"


def _class_hint(name: str, cutoff: float = 0.6) -> str | None:
    match = difflib.get_close_matches(name.lower(), CLASSES, n=1, cutoff=cutoff)
    return match[0] if match else None


_REACH = 500  # how far a piece of leftover syntax is followed: farther than any address


def _blanked(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` with each span overwritten by _DONE (its newlines kept, so lines still count)."""
    pieces, at = [], 0
    for start, end in spans:
        pieces += [text[at:start], re.sub(r"[^\n]", _DONE, text[start:end])]
        at = end
    return "".join([*pieces, text[at:]])


class _Run:
    """One inline run's text as the reader sees it, with its lines, for the scans below."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.newlines = [match.start() for match in re.finditer("\n", text)]
        self._last_bracket: dict[int, int] = {}

    def line_of(self, offset: int) -> int:
        return bisect.bisect_left(self.newlines, offset)

    def line_end(self, offset: int) -> int:
        index = bisect.bisect_left(self.newlines, offset)
        return self.newlines[index] if index < len(self.newlines) else len(self.text)

    def line_start(self, offset: int) -> int:
        index = bisect.bisect_left(self.newlines, offset)
        return self.newlines[index - 1] + 1 if index else 0

    def close_paren(self, start: int) -> int:
        """Where the ')' after ``start`` is, on its line and within reach; -1 if nowhere."""
        return self.text.find(")", start, min(self.line_end(start), start + _REACH))

    def address(self, start: int) -> tuple[str, int]:
        """The address written from ``start``: up to a ')', a space or the end of the line."""
        end, stop = start, min(self.line_end(start), start + _REACH)
        while end < stop and self.text[end] not in ") \t" + _OBJECT + _DONE:
            end += 1
        return self.text[start:end], end

    def attributes_after(self, end: int) -> int:
        """The end of a '{...}' right after ``end``, reported with what it follows."""
        match = _BRACES.match(self.text, end)
        return match.end() if match else end

    def bracket_after(self, offset: int) -> bool:
        """Whether a ']' comes later on the line of ``offset``."""
        line_end = self.line_end(offset)
        if line_end not in self._last_bracket:
            self._last_bracket[line_end] = self.text.rfind("]", self.line_start(offset), line_end)
        return self._last_bracket[line_end] >= offset


class _Leftovers:
    """Link, attribute and callout syntax left as text, one inline run after another (in the
    order of the file: a ':::' line closes a wrongly opened callout reported before it)."""

    def __init__(self) -> None:
        self.open_fence = False  # an unknown '::: name' was reported and not yet closed

    def problems(self, inline: SyntaxTreeNode) -> list[tuple[int, str]]:
        """(line offset in the run, message) for each piece of leftover syntax.

        One scan after another, each over what the ones before left unreported, so a piece
        of text is reported once, by the scan that knows best what it is; a scan yields
        pieces in order, none starting inside the one before.
        """
        text, ends = _inline_text(inline)
        run = _Run(text)
        found: list[tuple[int, str]] = []
        for scan in (self._links, self._no_close_bracket, self._stray_close):
            spans: list[tuple[int, int]] = []
            for start, end, message in scan(run):
                found.append((run.line_of(start), message))
                spans.append((start, end))
            run.text = _blanked(run.text, spans)
        for match in _BRACES.finditer(run.text):
            braces = self._braces(run.text, match, ends)
            if braces:
                found.append((run.line_of(match.start()), braces))
        for number, line in enumerate(run.text.split("\n")):
            fence = _FENCE.match(line)
            if fence:
                fenced = self._fence(line.strip(), fence["rest"].split())
                if fenced:
                    found.append((number, fenced))
        return found

    @staticmethod
    def _links(run: _Run) -> Iterator[tuple[int, int, str]]:
        """'[words](VIDEO LINK HERE)', '[words] (https://...)', '[words](https://... words'."""
        done = 0
        for match in _LINK_TEXT.finditer(run.text):
            if match.start() < done:
                continue
            kind = "an image" if match["bang"] else "a link"
            opening = f"{match['bang']}[{match['words']}]"
            close = run.close_paren(match.end())
            if match["gap"] is not None or close < 0:
                address, end = run.address(match.end())
                if match["gap"] is not None:
                    message = (
                        f"'{opening}{match['gap']}({address})' — write {opening}({address}), "
                        "with no space between ] and ("
                    )
                else:
                    message = (
                        f"'{opening}({address}' has no ')' after its address — write "
                        f"{opening}({address})"
                    )
            else:
                address, end = run.text[match.end() : close], close + 1
                form = "![what it shows]" if match["bang"] else "[words]"
                message = f"'{opening}({address})' — {kind} is {form}(https://address)"
                if address.split() != [address]:
                    message += ", with no spaces in the address"
            done = run.attributes_after(end)
            yield match.start(), done, f"{kind} was not understood: {message}"

    @staticmethod
    def _no_close_bracket(run: _Run) -> Iterator[tuple[int, int, str]]:
        """'[words(https://...)': the ']' forgotten (none later on the line)."""
        done = 0
        for match in _NO_CLOSE_BRACKET.finditer(run.text):
            if match.start() < done or run.bracket_after(match.end()):
                continue  # '[an aside (https://...) in brackets]': prose
            kind = "an image" if match["bang"] else "a link"
            address, end = run.address(match.end())
            closed = end < len(run.text) and run.text[end] == ")"
            written = f"{match['bang']}[{match['words']}({address}{')' if closed else ''}"
            done = run.attributes_after(end + 1 if closed else end)
            yield (
                match.start(),
                done,
                f"{kind} was not understood: '{written}' has no ']' after its words — write "
                f"{match['bang']}[{match['words'].rstrip()}]({address})",
            )

    @staticmethod
    def _stray_close(run: _Run) -> Iterator[tuple[int, int, str]]:
        """'words](https://...)': the '[' forgotten."""
        text = run.text
        done = 0
        for match in _STRAY_CLOSE.finditer(text):
            if match.start() < done:
                continue
            # Quoted from the words before it: from the line's start, the last piece of
            # markup or punctuation, and never more than four words.
            since = max(run.line_start(match.start()), match.start() - _REACH, done)
            marks = (_OBJECT, _DONE, "[", ". ", ", ", ": ", "; ", "(")
            found_at = [(text.rfind(mark, since, match.start()), len(mark)) for mark in marks]
            start = max((at + size for at, size in found_at if at >= 0), default=since)
            words = text[start : match.start()].split()
            if len(words) > 4:
                start = text.rindex(words[-4], start, match.start())
            close = run.close_paren(match.end())
            end = close + 1 if close >= 0 else run.address(match.end())[1]
            done = run.attributes_after(end)
            yield (
                start,
                done,
                f"a link was not understood: '{text[start:end].strip()}' has no '[' before its "
                "words — a link is [words](https://address)",
            )

    @staticmethod
    def _braces(text: str, match: re.Match[str], ends: Mapping[int, SyntaxTreeNode]) -> str | None:
        """Why '{...}' left as text is a mistake, or None for braces in prose ('{3, 5, 8}')."""
        pieces = match["inside"].split()
        attributes = [_ATTRIBUTE.fullmatch(piece) for piece in pieces]
        if not pieces or not all(attributes):
            return None
        fixed = []
        dotless = []
        for piece, attribute in zip(pieces, attributes, strict=True):
            assert attribute is not None
            hint = _class_hint(attribute["name"], cutoff=0.75)
            if attribute["mark"] or attribute["value"]:
                fixed.append(piece)
            elif hint is None:
                return None  # a bare word that is no class's name: '{sic}', prose
            else:
                fixed.append("." + hint)
                dotless.append(attribute["name"])
        corrected = "{" + " ".join(fixed) + "}"
        raw = match[0]
        gap = 0
        while gap < match.start() and text[match.start() - gap - 1] in " \t":
            gap += 1
        node = ends.get(match.start() - gap)
        if node is None or node.type != "link":
            target = "[words](https://address)" + (corrected if "." in corrected else "{.button}")
            return f"'{raw}' is shown as text: it goes right after a link, as in {target}"
        reasons = []
        if gap:
            reasons.append("no space before the {")
        reasons += [f"a dot before '{name}'" for name in dotless]
        what = "a button" if f".{BUTTON_CLASS}" in corrected else "part of the link"
        return (
            f"'{raw}' is shown as text, not read as {what}: write "
            f"{_markup(node)}{corrected}, with " + " and ".join(reasons)
        )

    def _fence(self, line: str, words: list[str]) -> str | None:
        """A ':::' line left as text: a callout written wrongly, or one closing nothing."""
        how = (
            "a callout is ::: callout on a line of its own, its text, then ::: on a line of its own"
        )
        if not words:
            if self.open_fence:
                self.open_fence = False  # the end of the wrong one, already reported
                return None
            return f"'{line}' is shown as text: it closes no callout — {how}"
        name = words[0]
        self.open_fence = True
        if name in CONTAINERS:
            return (
                f"'{line}' is shown as text here: start a callout on a line of its own, "
                f"with a blank line before it and not inside a list — {how}"
            )
        if name.lower() in CONTAINERS:
            return f"'{line}' is shown as text: write ::: {name.lower()}, in small letters"
        names = ", ".join(f"::: {known}" for known in CONTAINERS)
        hint = difflib.get_close_matches(name.lower(), CONTAINERS, n=1)
        guess = f"did you mean ::: {hint[0]}? " if hint else ""
        return (
            f"'{line}' is shown as text: {guess}'{name}' is not a kind of box this newsletter "
            f"has (it has {names}) — {how}"
        )


def _not_a_button_because(link: SyntaxTreeNode) -> str | None:
    """Why a ``{.button}`` link is drawn as an ordinary link, or None where it is a button.

    The email's writer (``email_body.body_to_mjml``) makes a button of a link alone in its
    paragraph, where that paragraph is at the top of the body or directly in a top-level
    callout; anywhere else the link keeps its class and looks like any other link.
    """
    inline = link.parent
    if inline is not None and inline.type != "inline":
        return "is inside bold, italic or crossed-out text"
    paragraph = inline.parent if inline is not None else None
    if paragraph is not None and paragraph.type == "heading":
        return "is in a heading"
    if paragraph is None or paragraph.type != "paragraph":
        return "is in a table"
    if only_child(paragraph) is not link:
        return "shares its paragraph with other text"
    holder = paragraph.parent
    if holder is None or holder.is_root:
        return None
    if holder.type == CALLOUT and holder.parent is not None and holder.parent.is_root:
        return None
    kinds = [node.type for node in _ancestors(holder)]
    if "list_item" in kinds:
        return "is in a list"
    if "blockquote" in kinds:
        return "is in a quote"
    return "is in a callout inside another"


def _ancestors(node: SyntaxTreeNode) -> list[SyntaxTreeNode]:
    found = []
    current: SyntaxTreeNode | None = node
    while current is not None and not current.is_root:
        found.append(current)
        current = current.parent
    return found


def check_body(issue: Issue) -> list[InputError]:
    """Images without alt text, bad links, buttons without a URL or where they cannot be one,
    and Markdown shown as text (a link, a {.button} or a ::: callout written wrongly)."""
    problems: list[InputError] = []
    leftovers = _Leftovers()

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

    def classes(node: SyntaxTreeNode, line: int) -> None:
        what = {"link": "link", "image": "image", "span": "text"}[node.type]
        if node.type == "link" and is_button(node):
            what = "button"
        label = plain_text(node)
        for name in str(node.attrs.get("class", "")).split():
            if name == BUTTON_CLASS:
                if node.type == "image":
                    report(
                        f"image '{label}' has {{.{name}}}, but only a link can be a button: "
                        "write [words](https://address){.button}",
                        line,
                    )
                continue
            hint = _class_hint(name)
            known = ", ".join(f"{{.{known}}}" for known in CLASSES)
            advice = (
                f"did you mean {{.{hint}}}?"
                if hint
                else f"the only one it knows is {known}, which makes a link a button"
            )
            report(
                f"{what} '{label}' has {{.{name}}}, which this newsletter does not know "
                f"(it changes nothing): {advice}",
                line,
            )

    def inline(node: SyntaxTreeNode, line: int) -> int:
        """The rules for the links, images and spans in an inline run; the line it ends on."""
        for child in node.children:
            if child.type in ("softbreak", "hardbreak"):
                line += 1
                continue
            if child.type == "image":
                if not plain_text(child).strip():
                    src = child.attrs.get("src", "")
                    report(f"image '{src}' has no alt text: write ![what it shows]({src})", line)
                problem = address_problem(str(child.attrs.get("src", "")))
                if problem:
                    report(f"image source {problem}", line)
            if child.type == "link":
                problem = address_problem(str(child.attrs.get("href", "")))
                kind = "button" if is_button(child) else "link"
                if problem:
                    report(f"{kind} '{plain_text(child)}' {problem}", line)
                why = _not_a_button_because(child) if kind == "button" else None
                if why:
                    report(
                        f"button '{plain_text(child)}' {why}, so it shows as an ordinary link, "
                        f"not a button: put {_markup(child)}{{.button}} on a line of its own, "
                        "outside lists and quotes, with a blank line before and after it",
                        line,
                    )
            if child.type == "span" and is_button(child):
                label = plain_text(child)
                report(
                    f"button '{label}' has no URL: write [{label}](https://...){{.button}}", line
                )
            if child.type in ("link", "image", "span"):
                classes(child, line)
            line = inline(child, line)
        return line

    def visit(node: SyntaxTreeNode, line: int) -> None:
        if not node.is_root and node.map is not None:
            line = issue.body_line + node.map[0]
        if node.type == CALLOUT:
            name, *words = node.info.split()
            if words:
                report(
                    f"the words after '::: {name}' ('{' '.join(words)}') are not "
                    "shown to readers: put them on the next line, inside the callout",
                    line,
                )
        if node.type == "inline":
            for offset, message in leftovers.problems(node):
                report(message, line + offset)
            inline(node, line)
            return
        for child in node.children:
            visit(child, line)

    visit(parse(issue.body), issue.body_line)
    problems.sort(key=lambda problem: problem.line or 0)
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
