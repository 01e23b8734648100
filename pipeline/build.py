"""Compose the stages for one person looking at one issue: draft -> compiled -> filled -> files.

``build_issue`` is what ``newsletter build`` and ``newsletter preview`` run; it fills the
compiled email for a sample subscriber: the first subscribed row of the list, or placeholders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.audience.sample import sample_subscriber
from pipeline.config import Settings
from pipeline.content.issue import Issue, load_issue
from pipeline.render.compile import CompiledEmail, PersonalisedEmail, compile_issue
from pipeline.render.fill import Template


def preview_unsubscribe_url(settings: Settings) -> str:
    return f"{settings.base_url}/unsubscribe?token=preview"


@dataclass(frozen=True)
class Built:
    issue: Issue
    compiled: CompiledEmail
    email: PersonalisedEmail

    @property
    def mjml(self) -> str:
        """The MJML source as this subscriber's email was made from it: merge fields filled
        (escaped, as in the HTML), never the internal tokens compiling uses."""
        return Template.split(self.compiled.mjml).fill(self.email.html_values)


def render_sample(issue_path: Path, settings: Settings) -> Built:
    issue = load_issue(issue_path, settings.timezone)
    compiled = compile_issue(issue, settings)
    email = compiled.personalise(sample_subscriber(settings), preview_unsubscribe_url(settings))
    return Built(issue, compiled, email)


@dataclass(frozen=True)
class BuildOutput:
    html: Path
    text: Path
    mjml: Path
    html_bytes: int


def build_issue(issue_path: Path, settings: Settings, out_dir: Path | None = None) -> BuildOutput:
    """Write build/<slug>/email.html, email.txt and email.mjml."""
    built = render_sample(issue_path, settings)
    folder = out_dir or settings.build_dir / built.issue.slug
    folder.mkdir(parents=True, exist_ok=True)
    html_bytes = built.email.html.encode("utf-8")
    paths = BuildOutput(
        html=folder / "email.html",
        text=folder / "email.txt",
        mjml=folder / "email.mjml",
        html_bytes=len(html_bytes),
    )
    paths.html.write_bytes(html_bytes)
    paths.text.write_text(built.email.text, encoding="utf-8")
    paths.mjml.write_text(built.mjml, encoding="utf-8")
    return paths
