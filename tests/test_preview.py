"""`newsletter preview`: a real HTTP server on 127.0.0.1 that re-renders on change."""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.preview import PreviewRenderer, make_server


@pytest.fixture
def served(project: Path) -> Iterator[tuple[str, Path]]:
    issue = project / "newsletters/2025-07-21-hip-rotation.md"
    renderer = PreviewRenderer(issue, lambda: load_settings(project / "newsletter.toml"))
    server = make_server(renderer, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", issue
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode("utf-8"))


def touch_later(path: Path, change: Callable[[str], str]) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(change(text), encoding="utf-8")
    stamp = time.time() + 5  # mtime resolution is coarse on some file systems
    os.utime(path, (stamp, stamp))


def test_page_shows_desktop_and_phone(served: tuple[str, Path]) -> None:
    base, _ = served
    page = get(base + "/")
    assert 'width="700"' in page and 'width="375"' in page
    assert "Why Hip Rotation Matters" in get(base + "/email.html")
    assert "Hi Ada," in get(base + "/email.txt")


def test_rerenders_when_the_draft_changes(served: tuple[str, Path]) -> None:
    base, issue = served
    version = get(base + "/version")
    assert get(base + "/version") == version  # nothing changed: no re-render
    touch_later(
        issue, lambda t: t.replace("Tight hips = tight stride.", "Loose hips, long stride.")
    )
    assert get(base + "/version") != version
    assert "Loose hips, long stride." in get(base + "/email.html")


def test_rerenders_when_a_template_appears(served: tuple[str, Path], project: Path) -> None:
    base, _ = served
    get(base + "/version")
    (project / "templates").mkdir()
    override = project / "templates" / "signature.mjml.j2"
    override.write_text(
        "<mj-section><mj-column><mj-text>Signed, the preview test</mj-text></mj-column>"
        "</mj-section>",
        encoding="utf-8",
    )
    touch_later(override, lambda t: t)
    assert "Signed, the preview test" in get(base + "/email.html")


def test_an_error_shows_in_the_page_and_recovers(served: tuple[str, Path]) -> None:
    base, issue = served
    good = issue.read_text(encoding="utf-8")
    touch_later(issue, lambda t: t.replace("subject:", "subjet:"))
    page = get(base + "/email.html")
    assert "Cannot render" in page and "did you mean &#x27;subject&#x27;" in page
    touch_later(issue, lambda t: good)
    assert "Why Hip Rotation Matters" in get(base + "/email.html")
