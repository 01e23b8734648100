"""Golden output for the sample issue: the HTML's structure and the whole text part.

Regenerate after an intended change with ``pytest tests/test_golden.py --update-golden`` and
read the diff before committing it.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from pipeline.build import render_sample
from pipeline.config import Settings

GOLDEN = Path(__file__).parent / "golden"
KEPT_ATTRIBUTES = ("href", "src", "alt", "lang", "role", "bgcolor", "width")
VOID = {"meta", "img", "br", "hr", "link", "input", "col"}


class Outline(HTMLParser):
    """Indented element tree with the attributes that carry meaning and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.depth = 0
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        kept = " ".join(f'{k}="{v}"' for k, v in attrs if k in KEPT_ATTRIBUTES)
        self.lines.append("  " * self.depth + f"<{tag}{' ' + kept if kept else ''}>")
        if tag in ("style", "script"):
            self.skip += 1
        if tag not in VOID:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self.skip -= 1
        if tag not in VOID:
            self.depth = max(0, self.depth - 1)

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if text and not self.skip:
            self.lines.append("  " * self.depth + text)


def outline(html: str) -> str:
    parser = Outline()
    parser.feed(html)
    return "\n".join(parser.lines) + "\n"


def compare(name: str, actual: str, update: bool) -> None:
    path = GOLDEN / name
    if update:
        path.write_text(actual, encoding="utf-8")
        return
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{name} changed; if intended, rerun with --update-golden"


def test_sample_issue_html_structure(
    project: Path, settings: Settings, update_golden: bool
) -> None:
    built = render_sample(project / "newsletters/2025-07-21-hip-rotation.md", settings)
    compare("hip-rotation.html.outline", outline(built.email.html), update_golden)


def test_sample_issue_text_part(project: Path, settings: Settings, update_golden: bool) -> None:
    built = render_sample(project / "newsletters/2025-07-21-hip-rotation.md", settings)
    compare("hip-rotation.txt", built.email.text, update_golden)
