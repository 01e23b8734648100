"""The sample issue as a person sees it: headless Chromium at phone and desktop widths.

Checks what matters on a phone (no sideways scrolling, buttons big enough to tap) and keeps
screenshots in tests/artifacts/ to look at.  Needs Debian's `chromium` (.ci/run installs it);
without it the tests skip locally and fail in CI.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.build import render_sample
from pipeline.config import load_settings

from .conftest import ARTIFACTS, REPO, SAMPLE_ISSUE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI"):
    raise RuntimeError("CI must have Chromium: .ci/run installs Debian's chromium package")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

# Flags for a closed network and a root user (see the machine notes in README).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]

# Headless Chromium will not open a window narrower than 500px, so the email is shown in an
# iframe exactly as wide as the screen being tested: its media queries see that width.
HARNESS = """<!doctype html><html><body style="margin:0">
<iframe id="email" style="border:0;display:block;width:{width}px;height:3000px"
 srcdoc="{srcdoc}"></iframe>
<script>
document.getElementById('email').addEventListener('load', function () {{
  var doc = this.contentDocument, win = this.contentWindow;
  var buttons = Array.prototype.slice.call(doc.querySelectorAll('td[bgcolor] > a'));
  var left = function (selector) {{
    return Array.prototype.slice.call(doc.querySelectorAll(selector)).map(function (e) {{
      return e.getBoundingClientRect().left;
    }});
  }};
  var metrics = {{
    viewport: win.innerWidth,
    scrollWidth: doc.documentElement.scrollWidth,
    paragraphLeft: Math.min.apply(null, left('p')),
    listItemLeft: left('li'),
    buttons: buttons.map(function (a) {{
      var box = a.getBoundingClientRect();
      return {{label: a.textContent.trim(), height: box.height, right: box.right}};
    }})
  }};
  this.style.height = doc.documentElement.scrollHeight + 'px';
  document.body.setAttribute('data-metrics', JSON.stringify(metrics));
}});
</script></body></html>
"""


def chromium(args: list[str], tmp_path: Path) -> str:
    assert CHROMIUM is not None
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    result = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


@pytest.fixture(scope="module")
def sample_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A module-scoped copy of the sample project, rendered once for all widths.
    root = tmp_path_factory.mktemp("browser")
    (root / "newsletters").mkdir()
    for name in ("newsletter.toml", "subscribers.csv", SAMPLE_ISSUE):
        shutil.copyfile(REPO / name, root / name)
    settings = load_settings(root / "newsletter.toml")
    html = render_sample(root / SAMPLE_ISSUE, settings).email.html
    page = root / "email.html"
    page.write_text(html, encoding="utf-8")
    return page


def measure(page: Path, width: int, name: str, tmp_path: Path) -> dict[str, Any]:
    """The email at ``width`` px: its layout metrics, and a screenshot in tests/artifacts/."""
    harness = page.with_name(f"harness-{name}-{width}.html")
    harness.write_text(
        HARNESS.format(width=width, srcdoc=html.escape(page.read_text(encoding="utf-8"))),
        encoding="utf-8",
    )
    # Tall enough for the whole sample at phone width, footer included, in the screenshot.
    window = f"--window-size={max(width, 500) + 20},{4400 if width < 500 else 3200}"
    dom = chromium([window, "--virtual-time-budget=5000", "--dump-dom", harness.as_uri()], tmp_path)
    match = re.search(r'data-metrics="([^"]+)"', dom)
    assert match, "the measuring script did not run"
    metrics: dict[str, Any] = json.loads(html.unescape(match[1]))
    assert metrics["viewport"] == width
    assert metrics["scrollWidth"] <= width, f"scrolls sideways at {width}px: {metrics}"
    for button in metrics["buttons"]:
        assert button["height"] >= 44, f"button too small to tap at {width}px: {button}"
        assert button["right"] <= width, f"button runs off the screen at {width}px: {button}"
    # List items sit indented from the text, so their bullets and numbers stay inside.
    for item_left in metrics["listItemLeft"]:
        assert item_left - metrics["paragraphLeft"] >= 20, f"list not indented: {metrics}"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}-{width}.png"
    chromium(
        [window, "--virtual-time-budget=5000", f"--screenshot={shot}", harness.as_uri()], tmp_path
    )
    assert shot.stat().st_size > 10_000
    return metrics


@pytest.mark.parametrize("width", [375, 700])
def test_fits_the_screen_and_buttons_are_tappable(
    sample_html: Path, tmp_path: Path, width: int
) -> None:
    metrics = measure(sample_html, width, "hip-rotation", tmp_path)
    labels = [b["label"] for b in metrics["buttons"]]
    assert labels.count("⬇ Watch Demo Video ⬇") == 3
    assert any("schedule your 15-minute free phone consultation" in label for label in labels)
    assert len(metrics["listItemLeft"]) == 14


CALLOUTS = """---
subject: Callouts and lists
---

Hi {{ subscriber.first_name | default("there") }},

1. First, a numbered step long enough to wrap onto a second line on a phone screen.
2. Second step

- A bullet
- Another bullet, also long enough to wrap onto a second line on a phone screen.

::: callout
**Free screening this month**

Bring your running shoes; we will watch you run and suggest one change.

[Book your free screening now, while places last](https://movementsolutions.example/book){.button}
:::

::: callout
**Bottom Line:** tight hips = tight stride.
:::
"""


@pytest.mark.parametrize("width", [375, 700])
def test_callout_buttons_are_tappable_and_lists_indented(
    sample_html: Path, tmp_path: Path, width: int
) -> None:
    root = sample_html.parent
    draft = root / "newsletters" / "2025-08-04-callouts.md"
    draft.write_text(CALLOUTS, encoding="utf-8")
    page = root / "callouts.html"
    settings = load_settings(root / "newsletter.toml")
    page.write_text(render_sample(draft, settings).email.html, encoding="utf-8")
    metrics = measure(page, width, "callouts", tmp_path)
    labels = [b["label"] for b in metrics["buttons"]]
    assert "Book your free screening now, while places last" in labels
    assert len(metrics["listItemLeft"]) == 4


# Dark mode as a reader's client applies it: the system asks for dark
# (prefers-color-scheme: dark) and Chromium darkens any page that does not opt out, as Gmail's
# and Outlook's apps do.  The email declares "light only": it must keep its designed colours.
DARK = ["--force-dark-mode", "--enable-features=WebContentsForceDark"]
PROBE = """<script>
(function () {
  var box = function (e) { var r = e.getBoundingClientRect();
    return [Math.ceil(r.left), Math.ceil(r.top), Math.floor(r.right), Math.floor(r.bottom)]; };
  var text = Array.prototype.slice.call(document.querySelectorAll('p')).filter(function (p) {
    return p.textContent.indexOf('When it comes to running well') === 0; })[0];
  var button = document.querySelector('td[bgcolor] > a');
  document.body.setAttribute('data-probe', JSON.stringify({
    dark: matchMedia('(prefers-color-scheme: dark)').matches,
    text: box(text), button: box(button)}));
})();
</script></body>"""


def luminance(rgb: tuple[int, ...]) -> float:
    """WCAG 2 relative luminance."""
    channels = [c / 255 for c in rgb[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def ground_and_ink(shot: Path, box: list[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """In one box of a screenshot: the background (the commonest colour) and the ink (the
    colour that stands out most from it: the core of the glyphs)."""
    from PIL import Image  # a dev dependency, only these tests need it

    with Image.open(shot) as image:
        region = image.convert("RGB").crop(tuple(box))
        colours = region.getcolors(region.width * region.height)
    assert colours, f"empty box {box}"
    ground = max(colours)[1]
    ink = max(colours, key=lambda c: contrast(c[1], ground))[1]
    return ground, ink


def hex_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    if len(colour) == 3:
        colour = "".join(c * 2 for c in colour)
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def test_dark_mode_keeps_the_designed_colours_and_contrast(
    sample_html: Path, tmp_path: Path
) -> None:
    page = sample_html.with_name("email-dark.html")
    page.write_text(
        sample_html.read_text(encoding="utf-8").replace("</body>", PROBE, 1), encoding="utf-8"
    )
    window = "--window-size=720,1400"
    dom = chromium([*DARK, window, "--dump-dom", page.as_uri()], tmp_path)
    match = re.search(r'data-probe="([^"]+)"', dom)
    assert match, "the probing script did not run"
    probe = json.loads(html.unescape(match[1]))
    assert probe["dark"], "Chromium did not emulate prefers-color-scheme: dark"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "hip-rotation-dark.png"
    chromium([*DARK, window, f"--screenshot={shot}", page.as_uri()], tmp_path)
    theme = load_settings(sample_html.parent / "newsletter.toml").theme

    ground, ink = ground_and_ink(shot, probe["text"])
    assert ground == hex_rgb(theme.content_background), f"body background became {ground}"
    assert contrast(ground, ink) >= 7, f"body text {ink} on {ground}"

    ground, ink = ground_and_ink(shot, probe["button"])
    assert ground == hex_rgb(theme.accent), f"button became {ground}, not the accent"
    assert contrast(ground, ink) >= 4.5, f"button label {ink} on {ground}"
