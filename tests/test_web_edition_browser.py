"""The web edition as a person sees it: served over HTTP from a folder, opened in headless
Chromium at phone and desktop widths, every internal link followed."""

from __future__ import annotations

import html
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

from pipeline.config import load_settings
from pipeline.web_edition.site import build_site

from .conftest import ARTIFACTS
from .test_browser import CHROMIUM, chromium
from .web_edition_fixtures import DRAFT, FUTURE, SENT_BY_HAND, archive_project

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

SAMPLE = "2025-07-21-hip-rotation"

# The page is shown in an iframe exactly as wide as the screen being tested (headless Chromium
# will not open a narrower window); same origin, so the script can measure inside it.
HARNESS = """<!doctype html><html><body style="margin:0">
<iframe id="page" style="border:0;display:block;width:{width}px;height:2000px" src="{src}"></iframe>
<script>
document.getElementById('page').addEventListener('load', function () {{
  var doc = this.contentDocument, win = this.contentWindow;
  var wide = Array.prototype.slice.call(doc.querySelectorAll('body *')).filter(function (el) {{
    return el.getBoundingClientRect().right > win.innerWidth + 0.5;
  }}).map(function (el) {{ return el.tagName + '.' + el.className; }});
  var buttons = Array.prototype.slice.call(doc.querySelectorAll('a.button, button'));
  var metrics = {{
    viewport: win.innerWidth,
    scrollWidth: doc.documentElement.scrollWidth,
    wide: wide.slice(0, 5),
    background: win.getComputedStyle(doc.body).backgroundColor,
    h1: doc.querySelectorAll('h1').length,
    buttons: buttons.map(function (b) {{
      var box = b.getBoundingClientRect();
      return {{label: b.textContent.trim(), height: box.height, right: box.right}};
    }})
  }};
  this.style.height = doc.documentElement.scrollHeight + 'px';
  document.body.setAttribute('data-metrics', JSON.stringify(metrics));
}});
</script></body></html>
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The archive built into <root>/site/ and served from <root> (so from a folder, not the
    domain's root), on 127.0.0.1."""
    root = tmp_path_factory.mktemp("webserve")
    project = archive_project(root / "project")
    settings = load_settings(project / "newsletter.toml")
    site = root / "www" / "site"
    build_site(settings, site, now=datetime(2026, 1, 1, tzinfo=UTC))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root / "www")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root / "www"
    finally:
        server.shutdown()
        server.server_close()


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and name in ("href", "src", "action"):
                self.links.append(value)


def test_every_internal_link_resolves(served: tuple[str, Path]) -> None:
    base, _ = served
    start = f"{base}/site/index.html"
    seen: set[str] = set()
    queue = [start]
    external: set[str] = set()
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
                kind = response.headers.get_content_type()
                body = response.read()
        except urllib.error.HTTPError as exc:
            pytest.fail(f"{url} -> {exc.code}")
        if kind != "text/html":
            continue
        parser = _Links()
        parser.feed(body.decode("utf-8"))
        for link in parser.links:
            target = urldefrag(urljoin(url, link))[0]
            if target.startswith(base):
                assert target.startswith(f"{base}/site/"), f"{link} in {url} leaves the folder"
                queue.append(target)
            else:
                external.add(target)
    pages = {urlsplit(u).path for u in seen}
    assert {
        "/site/index.html",
        f"/site/issues/{SAMPLE}/index.html",
        f"/site/issues/{SENT_BY_HAND}/index.html",
        "/site/feed.xml",
        "/site/assets/style.css",
    } <= pages
    assert not any(FUTURE in p or DRAFT in p for p in pages)
    # What leaves the site: her own site, the web app's signup, the links of her issues.
    hosts = {urlsplit(u).netloc for u in external}
    assert hosts <= {"movementsolutions.example", "pubmed.ncbi.nlm.nih.gov"}, hosts
    assert "https://movementsolutions.example/subscribe" in external


@pytest.mark.parametrize("width", [375, 1024])
@pytest.mark.parametrize(
    "page", ["index.html", f"issues/{SAMPLE}/index.html", f"issues/{SENT_BY_HAND}/index.html"]
)
def test_fits_the_screen(served: tuple[str, Path], tmp_path: Path, width: int, page: str) -> None:
    base, www = served
    name = f"harness-{width}-{page.replace('/', '-')}"
    (www / name).write_text(HARNESS.format(width=width, src=f"site/{page}"), encoding="utf-8")
    window = f"--window-size={max(width, 500) + 20},2400"
    dom = chromium([window, "--virtual-time-budget=5000", "--dump-dom", f"{base}/{name}"], tmp_path)
    match = re.search(r'data-metrics="([^"]+)"', dom)
    assert match, "the measuring script did not run"
    metrics = json.loads(html.unescape(match[1]))
    assert metrics["viewport"] == width
    assert metrics["scrollWidth"] <= width, f"scrolls sideways at {width}px: {metrics}"
    assert not metrics["wide"], f"wider than the screen at {width}px: {metrics['wide']}"
    assert metrics["background"] == "rgb(242, 245, 244)"  # the theme's, so the CSS loaded
    assert metrics["h1"] == 1
    for button in metrics["buttons"]:
        assert button["height"] >= 44, f"too small to tap at {width}px: {button}"
    if page.startswith("issues/"):
        labels = [b["label"] for b in metrics["buttons"]]
        assert any("schedule your 15-minute" in label for label in labels)  # the CTA
        assert "Sign up" in labels

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"web-{page.split('/')[-2] if '/' in page else 'index'}-{width}.png"
    chromium(
        [window, "--virtual-time-budget=5000", f"--screenshot={shot}", f"{base}/{name}"], tmp_path
    )
    assert shot.stat().st_size > 10_000
