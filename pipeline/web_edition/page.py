"""An issue -> the HTML of its web page's content: the second renderer of the same draft.

The email writer (``pipeline.render.email_body``) turns the parsed Markdown into MJML with
inline styles; this one turns the very same tree into plain semantic HTML (real headings with
anchors, lists, ``<a class="button">``, ``<div class="callout">``) that the site's stylesheet
dresses.  Merge fields take the value a reader with an empty row would get: the page is for
everyone, so ``{{ subscriber.first_name | default("there") }}`` reads "there", and nothing
personal (no address, no unsubscribe token) can reach it.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import jinja2
from jinja2 import nodes
from markdown_it.token import Token
from markupsafe import Markup, escape

from pipeline.content.issue import Issue
from pipeline.content.merge_fields import ENVIRONMENT, TOKEN_PATTERN, MergeField
from pipeline.render.fill import FieldEvaluator
from pipeline.render.markdown import parse, parser

UNSUBSCRIBE_FIELD = "unsubscribe_url"


class _Nobody:
    """``subscriber`` for the web: every column blank, so each field takes its default."""

    def __getattr__(self, name: str) -> jinja2.Undefined:
        if name.startswith("_"):
            raise AttributeError(name)
        return jinja2.Undefined(name=name)

    def __getitem__(self, name: str) -> jinja2.Undefined:
        return jinja2.Undefined(name=name)

    def __str__(self) -> str:
        # ``{{ subscriber }}`` alone: an empty row reads as nothing, never as this object's
        # name and memory address (an internal token, and new bytes on every build).
        return ""


@dataclass(frozen=True)
class WebContent:
    """An issue's words as the public page shows them (text, not HTML, except ``body``)."""

    title: str
    subject: str
    preheader: str
    body: Markup
    image: str  # the first image's URL, for link previews; "" if none


def _public_values(issue: Issue) -> list[str]:
    fields = FieldEvaluator(issue.merge_fields.fields, str(issue.path))
    # An unsubscribe link has no meaning on a public page: it becomes empty, never a token.
    return fields.evaluate({"subscriber": _Nobody(), UNSUBSCRIBE_FIELD: ""})


def _fill(text: str, values: Sequence[str], *, html: bool) -> str:
    def value(match: re.Match[str]) -> str:
        found = values[int(match[1])]
        return str(escape(found)) if html else found

    return TOKEN_PATTERN.sub(value, text)


def _slugify(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _dress(tokens: list[Token]) -> str:
    """Give headings stable ids (for links into a drill) and images lazy loading."""
    seen: dict[str, int] = {}
    first_image = ""
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and index + 1 < len(tokens):
            words = "".join(
                child.content
                for child in tokens[index + 1].children or []
                if child.type in ("text", "code_inline")
            )
            anchor = _slugify(TOKEN_PATTERN.sub("", words))
            seen[anchor] = seen.get(anchor, 0) + 1
            token.attrSet("id", anchor if seen[anchor] == 1 else f"{anchor}-{seen[anchor]}")
        for child in token.children or []:
            if child.type == "image":
                child.attrSet("loading", "lazy")
                first_image = first_image or str(child.attrs.get("src", ""))
    return first_image


def blank_fields(issue: Issue) -> list[MergeField]:
    """The subscriber fields with no default: nobody's value, so the page shows nothing
    there ("Hi ,").  The unsubscribe link is blank on purpose and is not one of them."""
    values = _public_values(issue)
    return [
        field
        for field, value in zip(issue.merge_fields.fields, values, strict=True)
        if not value.strip() and field.subscriber_columns() and not _has_default(field)
    ]


def _has_default(field: MergeField) -> bool:
    """Whether the expression gives a default of its own (even an empty one: her choice)."""
    tree = ENVIRONMENT.parse("{{ " + field.source + " }}")
    return any(f.name in ("default", "d") for f in tree.find_all(nodes.Filter))


def public_title(issue: Issue) -> str:
    """The issue's title as everyone reads it (merge fields at their defaults)."""
    return _fill(issue.title, _public_values(issue), html=False)


def render_issue(issue: Issue) -> WebContent:
    tree = parse(issue.body)
    tokens = tree.to_tokens()
    image = _dress(tokens)
    md = parser()
    body = str(md.renderer.render(tokens, md.options, {}))
    values = _public_values(issue)
    return WebContent(
        title=_fill(issue.title, values, html=False),
        subject=_fill(issue.subject, values, html=False),
        preheader=_fill(issue.preheader, values, html=False),
        body=Markup(_fill(body, values, html=True)),
        image=_fill(image, values, html=False),
    )


_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.DOTALL)
_GREETING = re.compile(r"^(hi|hello|hey|dear|good (morning|afternoon|evening))\b.{0,40},$", re.I)


def _words(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def summary(content: WebContent, limit: int = 200) -> str:
    """The preheader, or the words of the body's paragraphs: what the index and previews
    show.  Her opening words, not "Hi there," (the same on every issue), nor headings,
    list items and buttons, which run together without their layout."""
    if content.preheader:
        return content.preheader
    body = str(content.body)
    paragraphs = [_words(p) for p in _PARAGRAPH.findall(body) if 'class="button"' not in p]
    if paragraphs and _GREETING.match(paragraphs[0]):
        paragraphs = paragraphs[1:]
    text = " ".join(p for p in paragraphs if p) or _words(body)
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
