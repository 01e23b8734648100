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
  var metrics = {{
    viewport: win.innerWidth,
    scrollWidth: doc.documentElement.scrollWidth,
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


@pytest.mark.parametrize("width", [375, 700])
def test_fits_the_screen_and_buttons_are_tappable(
    sample_html: Path, tmp_path: Path, width: int
) -> None:
    harness = sample_html.with_name(f"harness-{width}.html")
    harness.write_text(
        HARNESS.format(width=width, srcdoc=html.escape(sample_html.read_text(encoding="utf-8"))),
        encoding="utf-8",
    )
    window = f"--window-size={max(width, 500) + 20},3200"
    dom = chromium([window, "--virtual-time-budget=5000", "--dump-dom", harness.as_uri()], tmp_path)
    match = re.search(r'data-metrics="([^"]+)"', dom)
    assert match, "the measuring script did not run"
    metrics = json.loads(html.unescape(match[1]))
    assert metrics["viewport"] == width
    assert metrics["scrollWidth"] <= width, f"scrolls sideways at {width}px: {metrics}"
    labels = [b["label"] for b in metrics["buttons"]]
    assert labels.count("⬇ Watch Demo Video ⬇") == 3
    assert any("schedule your 15-minute free phone consultation" in label for label in labels)
    for button in metrics["buttons"]:
        assert button["height"] >= 44, f"button too small to tap at {width}px: {button}"
        assert button["right"] <= width, f"button runs off the screen at {width}px: {button}"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"hip-rotation-{width}.png"
    chromium(
        [window, "--virtual-time-budget=5000", f"--screenshot={shot}", harness.as_uri()], tmp_path
    )
    assert shot.stat().st_size > 10_000
