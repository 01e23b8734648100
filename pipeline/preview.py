"""``newsletter preview``: the issue as a subscriber sees it, on a desktop and on a phone.

A small HTTP server on 127.0.0.1.  The page shows the email at 700 px and at 375 px side by
side, and the text part below; it polls ``/version`` and reloads when the draft, a template,
the config or the list changes, re-rendering only then.
"""

from __future__ import annotations

import errno
import html
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pipeline.build import render_sample
from pipeline.config import Settings
from pipeline.errors import InputError, NewsletterError

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Preview: {name}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; background: #e9eceb; color: #222; }}
header {{ padding: 10px 16px; background: #fff; border-bottom: 1px solid #ccc; }}
main {{ display: flex; gap: 24px; padding: 16px; align-items: flex-start; flex-wrap: wrap; }}
figure {{ margin: 0; }} figcaption {{ font-size: 13px; color: #555; margin-bottom: 4px; }}
iframe {{ border: 1px solid #bbb; background: #fff; height: 85vh; }}
pre {{ white-space: pre-wrap; background: #fff; padding: 12px; max-width: 80ch; }}
</style></head>
<body><header><strong>{name}</strong> · <span id="status">live: reloads when you save</span>
· <a href="/email.txt" target="_blank">text part</a></header>
<main>
<figure><figcaption>Desktop, 700 px</figcaption>
<iframe id="desktop" src="/email.html" width="700" title="Desktop view"></iframe></figure>
<figure><figcaption>Phone, 375 px</figcaption>
<iframe id="phone" src="/email.html" width="375" title="Phone view"></iframe></figure>
</main>
<script>
let version = null;
async function poll() {{
  try {{
    const v = await (await fetch('/version', {{cache: 'no-store'}})).text();
    if (version !== null && v !== version) {{
      for (const id of ['desktop', 'phone']) document.getElementById(id).src = '/email.html';
    }}
    version = v;
    document.getElementById('status').textContent = 'live: reloads when you save';
  }} catch (e) {{
    document.getElementById('status').textContent = 'preview server stopped';
  }}
  setTimeout(poll, 700);
}}
poll();
</script></body></html>
"""


def watched_files(issue_path: Path, settings: Settings) -> Iterable[Path]:
    yield issue_path
    if settings.config_path:
        yield settings.config_path
    yield settings.subscribers
    if settings.templates_dir.is_dir():
        yield from sorted(settings.templates_dir.rglob("*"))


def _fingerprint(paths: Iterable[Path]) -> tuple[tuple[str, int], ...]:
    stamps = []
    for path in paths:
        try:
            stamps.append((str(path), path.stat().st_mtime_ns))
        except FileNotFoundError:
            stamps.append((str(path), 0))
    return tuple(stamps)


@dataclass
class Rendering:
    version: int
    html: str
    text: str


class PreviewRenderer:
    """Re-renders the issue when any watched file changed since the last request."""

    def __init__(self, issue_path: Path, load_settings: Callable[[], Settings]) -> None:
        self.issue_path = issue_path
        self.load_settings = load_settings
        self._lock = threading.Lock()
        self._fingerprint: tuple[tuple[str, int], ...] | None = None
        self._current = Rendering(0, "", "")

    def current(self) -> Rendering:
        with self._lock:
            try:
                settings = self.load_settings()
                stamp = _fingerprint(watched_files(self.issue_path, settings))
                if stamp != self._fingerprint:
                    self._fingerprint = stamp
                    built = render_sample(self.issue_path, settings)
                    self._current = Rendering(
                        self._current.version + 1, built.email.html, built.email.text
                    )
            except NewsletterError as exc:
                message = str(exc)
                if message != self._current.text:
                    error_page = (
                        "<!doctype html><meta charset='utf-8'><body style='font-family:sans-serif'>"
                        f"<h2>Cannot render</h2><pre>{html.escape(message)}</pre>"
                    )
                    self._current = Rendering(self._current.version + 1, error_page, message)
                self._fingerprint = None
            return self._current


def make_server(renderer: PreviewRenderer, port: int = 0) -> ThreadingHTTPServer:
    name = renderer.issue_path.name

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/":
                body, kind = PAGE.format(name=html.escape(name)), "text/html"
            elif path == "/email.html":
                body, kind = renderer.current().html, "text/html"
            elif path == "/email.txt":
                body, kind = renderer.current().text, "text/plain"
            elif path == "/version":
                body, kind = str(renderer.current().version), "text/plain"
            else:
                self.send_error(404)
                return
            data = body.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a request log would drown the terminal; errors show in the page

    try:
        return ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = f"port {port} is already in use (another preview, or another program)"
        else:
            why = f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})"
        raise InputError(f"{why}; try --port 0 for any free port", field="--port") from None
