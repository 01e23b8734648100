"""Hostile lengths on a phone: the web edition must never scroll sideways at 375 px."""

from __future__ import annotations

import html
import json
import re
import threading
from datetime import UTC, datetime
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.web_edition.site import build_site

from .test_browser import CHROMIUM, chromium
from .test_web_edition_browser import HARNESS, _Quiet
from .web_edition_fixtures import archive_project

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

LONG = "Supercalifragilistic" * 8  # 160 letters, no space to break at


def test_long_unbroken_words_fit_a_phone(tmp_path: Path) -> None:
    """A nav label with no space in it (a URL as its label) once made every page 987 px
    wide on a 375 px phone."""
    project = archive_project(tmp_path / "project")
    (project / "newsletters" / "2025-10-06-wide.md").write_text(
        f"---\nsubject: '{LONG} title'\npreheader: '{LONG}'\nsend_at: 2025-10-06 07:00\n---\n\n"
        f"Hi, see https://movementsolutions.example/{'a' * 200} and `{'code' * 60}`.\n\n"
        f"```\n{'x = 1; ' * 80}\n```\n\n"
        f"[{LONG}](https://movementsolutions.example/book){{.button}}\n\n## {LONG}\n",
        encoding="utf-8",
    )
    config = project / "newsletter.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            'label = "Our Services"', f'label = "https://movementsolutions.example/{LONG}"'
        ),
        encoding="utf-8",
    )
    www = tmp_path / "www"
    build_site(load_settings(config), www / "site", now=datetime(2026, 1, 1, tzinfo=UTC))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        for page in ("index.html", "issues/2025-10-06-wide/index.html"):
            (www / "harness.html").write_text(
                HARNESS.format(width=375, src=f"site/{page}"), encoding="utf-8"
            )
            dom = chromium(
                [
                    "--window-size=520,2400",
                    "--virtual-time-budget=5000",
                    "--dump-dom",
                    f"{base}/harness.html",
                ],
                tmp_path,
            )
            match = re.search(r'data-metrics="([^"]+)"', dom)
            assert match, "the measuring script did not run"
            metrics = json.loads(html.unescape(match[1]))
            assert metrics["viewport"] == 375
            assert metrics["scrollWidth"] <= 375, f"{page} scrolls sideways: {metrics}"
    finally:
        server.shutdown()
        server.server_close()
