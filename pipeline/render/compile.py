"""Issue -> ``CompiledEmail``: Jinja2 layout -> MJML -> HTML, plus the plain-text part.

Runs once per issue.  Per-recipient values (``subscriber.*``, ``unsubscribe_url``) stay as
placeholder tokens through Jinja, Markdown and MJML, so a recipient costs a few string joins
(``CompiledEmail.personalise``), never a recompile.
"""

from __future__ import annotations

import hashlib
import re
import traceback
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from pipeline.config import Settings
from pipeline.content.issue import Issue
from pipeline.content.merge_fields import MergeField, MergeFields
from pipeline.errors import InputError
from pipeline.render.email_body import body_to_mjml
from pipeline.render.fill import (
    MAX_MESSAGE_CHARACTERS,
    FieldEvaluator,
    SubscriberFields,
    Template,
    TooLarge,
    escape_all,
    json_escaped,
)
from pipeline.render.markdown import parse
from pipeline.render.plain_text import body_to_text, wrap
from pipeline.web_edition.urls import issue_url, signup_url

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
HTML_TEMPLATE = "email.mjml.j2"
TEXT_TEMPLATE = "email.txt.j2"
UNSUBSCRIBE_FIELD = "unsubscribe_url"


class PersonalisedEmail:
    """One recipient's email: the field values, and the bodies built only when asked for.

    A provider that posts JSON asks for ``html_json``/``text_json`` (joined from pre-escaped
    pieces); one that sends MIME asks for ``html``/``text``.  Nothing is built twice, and a
    batch in memory is field values, not 20 KB of HTML per recipient.
    """

    __slots__ = ("_compiled", "_values", "subject")

    def __init__(self, compiled: CompiledEmail, subject: str, values: list[str]) -> None:
        self._compiled = compiled
        self._values = values
        self.subject = subject

    @property
    def html(self) -> str:
        return self._compiled.html.fill(escape_all(self._values))

    @property
    def text(self) -> str:
        return self._compiled.text.fill(self._values)

    @property
    def compiled(self) -> CompiledEmail:
        return self._compiled

    @property
    def fingerprint(self) -> str:
        return self._compiled.fingerprint

    @property
    def html_values(self) -> list[str]:
        """The merge fields' values as they stand in the HTML (escaped), by slot."""
        return escape_all(self._values)

    @property
    def text_values(self) -> list[str]:
        return list(self._values)

    @property
    def html_json(self) -> str:
        """The HTML as a JSON string literal: ``add_html_json``'s pieces, as one text."""
        out: list[bytes] = []
        self.add_html_json(out)
        return b"".join(out).decode("ascii")

    @property
    def text_json(self) -> str:
        """The text as a JSON string literal: ``add_text_json``'s pieces, as one text."""
        out: list[bytes] = []
        self.add_text_json(out)
        return b"".join(out).decode("ascii")

    def add_html_json(self, out: list[bytes]) -> None:
        """``html_json`` appended to ``out`` as bytes pieces (see ``Template.add_json``)."""
        escaped = [json_escaped(value).encode("ascii") for value in escape_all(self._values)]
        self._compiled.html.add_json(escaped, out)

    def add_text_json(self, out: list[bytes]) -> None:
        """``text_json`` appended to ``out`` as bytes pieces (see ``Template.add_json``)."""
        escaped = [json_escaped(value).encode("ascii") for value in self._values]
        self._compiled.text.add_json(escaped, out)


@dataclass(frozen=True)
class CompiledEmail:
    """One issue, compiled: the MJML and HTML with tokens, ready to fill per recipient."""

    issue: Issue
    mjml: str
    html: Template
    text: Template
    subject: Template
    fields: FieldEvaluator

    @cached_property
    def fingerprint(self) -> str:
        """A hash of what every recipient gets: changes when the draft or a template does."""
        digest = hashlib.sha256()
        for template in (self.subject, self.html, self.text):
            for piece in template.pieces:
                digest.update(piece.encode("utf-8") + b"\0")
            digest.update(repr(template.slots).encode("ascii"))
        for field in self.fields.fields:
            digest.update(field.source.encode("utf-8") + b"\0")
        return digest.hexdigest()

    def field_index(self, source: str) -> int | None:
        for index, field in enumerate(self.fields.fields):
            if field.source == source:
                return index
        return None

    def personalise(self, subscriber: dict[str, str], unsubscribe_url: str) -> PersonalisedEmail:
        values = self.fields.evaluate(
            {"subscriber": SubscriberFields(subscriber), UNSUBSCRIBE_FIELD: unsubscribe_url}
        )
        # One short value used many times still makes a long email: counted before the
        # bodies are built (they are built when a provider asks), with HTML escaping's worst.
        longest = max(
            self.html.filled_length(values, growth=5),
            self.text.filled_length(values),
        )
        if longest > MAX_MESSAGE_CHARACTERS:
            raise TooLarge(self.fields.path)
        return PersonalisedEmail(self, " ".join(self.subject.fill(values).split()), values)


class _SubscriberTokens:
    """``subscriber`` inside the layout templates: each column read becomes a token."""

    def __init__(self, table: MergeFields) -> None:
        self._table = table

    def __getattr__(self, name: str) -> Markup:
        if name.startswith("_"):
            raise AttributeError(name)
        return Markup(self._table.token(f"subscriber.{name}"))

    def __getitem__(self, name: str) -> Markup:
        return Markup(self._table.token(f"subscriber[{name!r}]"))


def template_environment(settings: Settings) -> jinja2.Environment:
    """The user's templates/ first, file by file, then the built-in ones."""
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(settings.templates_dir),
            jinja2.FileSystemLoader(BUILTIN_TEMPLATES),
        ]
    )
    env = jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(enabled_extensions=("mjml.j2",)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = wrap
    return env


def issue_date(issue: Issue, settings: Settings) -> date | None:
    if issue.send_at is not None:
        return issue.send_at.astimezone(settings.timezone).date()
    match = re.match(r"(\d{4}-\d{2}-\d{2})", issue.slug)
    if match:
        try:
            return date.fromisoformat(match[1])
        except ValueError:
            return None
    return None


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """Render one of the templates (built-in, or hers from templates/): a mistake in it is
    one line with its file and line, never a traceback.  The email and the web edition both
    render through this."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(
            f"template error: {exc.message}", path=exc.filename, line=exc.lineno
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise InputError(f"template not found: {exc.name}") from None
    except (jinja2.UndefinedError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
        # A mistake in a template of hers ({{ page.title + 1 }}): its file and line, as Jinja
        # put them in the traceback, never the traceback itself.
        path, line = _template_place(exc, name)
        why = exc.message if isinstance(exc, jinja2.UndefinedError) else str(exc)
        raise InputError(f"template error: {why}", path=path, line=line) from None


def _template_place(exc: BaseException, name: str) -> tuple[str, int | None]:
    """The template file and line where ``exc`` happened (Jinja rewrites its frames)."""
    place: tuple[str, int | None] = (name, None)
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(".j2"):
            place = (frame.filename, frame.lineno)
    return place


def compile_issue(issue: Issue, settings: Settings, *, forwardable: bool = True) -> CompiledEmail:
    """``forwardable``: False for an email nobody should pass on (the signup confirmation,
    whose button subscribes its reader), which then has no "Forwarded this? Sign up"."""
    import mjml  # imported here: the Rust extension is only needed when compiling

    table = issue.merge_fields.copy()
    tree = parse(issue.body)
    when = issue_date(issue, settings)
    context: dict[str, Any] = {
        "settings": settings,
        "theme": settings.theme,
        "cta": settings.cta,
        "issue": issue,
        "title": Markup(issue.title),  # tokens and text; escaped below where needed
        "date": f"{when:%B} {when.day}, {when.year}" if when else "",
        "subscriber": _SubscriberTokens(table),
        UNSUBSCRIBE_FIELD: Markup(table.token(UNSUBSCRIBE_FIELD)),
        # The web edition: the same URL the archive gives this issue's page.
        "view_in_browser": str(settings.archive.view_in_browser),
        "view_in_browser_url": issue_url(settings, issue.slug),
        "signup_url": signup_url(settings) if forwardable else "",
    }
    env = template_environment(settings)

    mjml_source = render_template(
        env,
        HTML_TEMPLATE,
        context
        | {
            "title": escape(issue.title),
            "preheader": escape(issue.preheader),
            "body": Markup(body_to_mjml(tree, settings.theme)),
        },
    )
    text = render_template(
        env,
        TEXT_TEMPLATE,
        context | {"title": issue.title, "body": body_to_text(tree)},
    )
    try:
        html = mjml.mjml2html(mjml_source, disable_comments=True)
    except Exception as exc:  # mrml raises its own error types; all mean "invalid MJML"
        raise InputError(f"the templates produced MJML that does not compile: {exc}") from None

    fields: list[MergeField] = table.fields
    return CompiledEmail(
        issue=issue,
        mjml=mjml_source,
        html=Template.split(html),
        text=Template.split(_tidy_text(text)),
        subject=Template.split(issue.subject),
        fields=FieldEvaluator(fields, str(issue.path)),
    )


SIGNATURE_SEPARATOR = "-- "  # RFC 3676 section 4.3: its trailing space is what makes it one


def _tidy_text(text: str) -> str:
    """At most one blank line in a row; no trailing spaces but the signature separator's."""
    lines = [line if line == SIGNATURE_SEPARATOR else line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
