"""The web app served for real by waitress on 127.0.0.1, in a thread of the test process."""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from pathlib import Path

from flask import Flask

from pipeline.config import Settings, load_settings
from pipeline.messages.secret import load_secret
from pipeline.web import create_app
from pipeline.web.app import subscriptions_of
from pipeline.web.server import make_server, stop_server
from pipeline.web.subscriptions import Subscriptions

SIGNUP_CONFIG = '\n[signup]\ntags = ["runners", "seniors"]\nmin_fill_seconds = 0\n'


@dataclass
class Served:
    url: str
    app: Flask
    subscriptions: Subscriptions
    log: list[str]
    secret: bytes
    settings: Settings

    def settle(self) -> None:
        """Wait for the emails asked for, then apply the queued list changes."""
        self.subscriptions.drain()
        self.subscriptions.flush()


def with_signup(project: Path, extra: str = SIGNUP_CONFIG) -> Settings:
    config = project / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return load_settings(config)


@contextmanager
def serve(
    settings: Settings, *, background: bool = False, threads: int = 8, proxies: int = 0
) -> Iterator[Served]:
    lines: list[str] = []
    app = create_app(
        settings, environ={}, log=lines.append, background=background, trusted_proxies=proxies
    )
    server = make_server(app, "127.0.0.1", 0, threads=threads)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    port = server.effective_port  # type: ignore[union-attr]
    try:
        yield Served(
            f"http://127.0.0.1:{port}",
            app,
            subscriptions_of(app),
            lines,
            load_secret(settings.state_dir, {}),
            settings,
        )
    finally:
        stop_server(server)
        subscriptions_of(app).close()
        thread.join(timeout=10)


def rows(settings: Settings) -> list[dict[str, str]]:
    with settings.subscribers.open(newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def rows_for(settings: Settings, address: str) -> list[dict[str, str]]:
    return [r for r in rows(settings) if r["email"].strip().lower() == address.lower()]


def outbox_mail(settings: Settings, kind: str) -> list[Message]:
    folder = settings.root / "outbox" / kind
    return [message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]


def text_part(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode("utf-8")
    raise AssertionError("no text part")


def confirm_link(message: Message, settings: Settings, url: str) -> str:
    found = re.search(r"(https?://\S+/confirm\?token=[A-Za-z0-9_.\-]+)", text_part(message))
    assert found, text_part(message)
    return found.group(1).replace(settings.base_url, url)
