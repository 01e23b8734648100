"""The one-click unsubscribe endpoint: what ``List-Unsubscribe`` and the footer link open.

``newsletter unsubscribe-server`` serves ``/unsubscribe?token=...`` (put it behind the
practice's site at ``base_url``, e.g. an nginx ``location /unsubscribe``):

- ``POST`` unsubscribes at once.  This is RFC 8058 one-click: a mail client (Gmail, Yahoo,
  Apple Mail) posts ``List-Unsubscribe=One-Click`` to the URL, with no person on a page.
  The confirmation page's button posts the same way.
- ``GET`` only shows a page with that button: link scanners and previews fetch URLs from
  mail, and must not unsubscribe anyone by doing so (RFC 8058 section 3.2 and section 4).

The token is the HMAC-signed address (``messages.unsubscribe``): a forged or altered one
changes nothing.  The list is changed by ``audience.unsubscribe.set_status``: atomically,
under a lock.  Answers never say whether an address is on the list.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from pipeline.audience.unsubscribe import set_status
from pipeline.config import Settings
from pipeline.errors import NewsletterError
from pipeline.messages.unsubscribe import read_token

PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; font-size: 17px;
       line-height: 1.5; color: #222; max-width: 34em; margin: 3em auto; padding: 0 1em; }}
button {{ font-size: 17px; min-height: 48px; padding: 0 1.5em; border: 0; border-radius: 6px;
         background: {accent}; color: #fff; cursor: pointer; }}
</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def _mask(address: str) -> str:
    """``c***@example.org``: enough for a reader to recognise, not to harvest."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def make_server(
    settings: Settings,
    secret: bytes,
    host: str = "127.0.0.1",
    port: int = 0,
    log: Callable[[str], None] = lambda line: None,
) -> ThreadingHTTPServer:
    """The endpoint, not yet serving; ``log`` hears one line per opt-out applied."""
    name = settings.name

    def page(title: str, body: str) -> bytes:
        return PAGE.format(
            lang=html.escape(settings.language),
            title=html.escape(title),
            accent=html.escape(settings.theme.accent),
            body=body,
        ).encode("utf-8")

    class Handler(BaseHTTPRequestHandler):
        def _token(self) -> tuple[str, str | None]:
            parts = urlsplit(self.path)
            if parts.path.rstrip("/") != "/unsubscribe":
                return "", None
            token = parse_qs(parts.query).get("token", [""])[0]
            return token, read_token(secret, token)

        def _answer(self, status: int, title: str, body: str) -> None:
            data = page(title, body)
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            self.wfile.write(data)

        def _invalid(self) -> None:
            self._answer(
                400,
                "This link is not valid",
                "<p>It may have been cut short by your mail program. Reply to any issue "
                "with “unsubscribe” and we will take you off the list.</p>",
            )

        def do_GET(self) -> None:
            token, key = self._token()
            if key is None:
                self._invalid()
                return
            action = html.escape(f"/unsubscribe?token={token}", quote=True)
            self._answer(
                200,
                f"Unsubscribe from {name}?",
                f"<p>{html.escape(_mask(key))} will get no more emails from "
                f"{html.escape(name)}.</p>"
                f'<form method="post" action="{action}">'
                '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                '<button type="submit">Unsubscribe</button></form>',
            )

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(min(length, 10_000))  # List-Unsubscribe=One-Click; nothing else
            _, key = self._token()
            if key is None:
                self._invalid()
                return
            try:
                changed = set_status(settings.subscribers, key, "unsubscribed")
            except (NewsletterError, OSError) as exc:
                # The list is untouched (temp file, then rename): say so, and ask for mail.
                log(f"{key}: NOT unsubscribed: {exc}")
                self._answer(
                    503,
                    "We could not record that just now",
                    "<p>Nothing was changed. Please try the link again later, or reply to any "
                    "issue with “unsubscribe” and we will take you off the list.</p>",
                )
                return
            log(f"{key}: unsubscribed ({changed} row{'s' if changed != 1 else ''} changed)")
            self._answer(
                200,
                "You are unsubscribed",
                f"<p>{html.escape(_mask(key))} will get no more emails from "
                f"{html.escape(name)}. Sorry to see you go.</p>",
            )

        def log_message(self, format: str, *args: object) -> None:
            pass  # requests carry tokens: not logged

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
