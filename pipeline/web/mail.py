"""The web app's own emails, one address at a time: the signup confirmation and the welcome.

Both go through the same render stage as an issue (Markdown -> Jinja layout -> MJML, themed),
and through the configured provider.  On Postmark they use a transactional stream
(``[provider] confirm_stream``, default ``outbound``): Postmark's broadcast streams are for
newsletters, and a confirmation is a message the person asked for
(https://postmarkapp.com/support/article/1207-how-to-create-and-send-through-message-streams).

- The confirmation: ``templates/web/confirmation.md`` if the project has one, else the built-in
  ``pipeline/web/emails/confirmation.md``; ``{{ subscriber.confirm_url }}`` is the link.  It
  carries no List-Unsubscribe: the person is not on any list yet.
- The welcome: ``newsletters/welcome.md`` if it exists, a normal draft (``newsletter check``
  checks it); sent with the list headers, like an issue.  ``mail_once`` in the ledger holds
  one row per address: inserted before the send, so a crash or restart never sends it twice.
"""

from __future__ import annotations

import dataclasses
import secrets
import sqlite3
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.config import Settings, ViewInBrowser
from pipeline.content.issue import WELCOME_DRAFT, load_issue
from pipeline.delivery.provider import Outcome, Provider
from pipeline.delivery.providers import create_provider, postmark
from pipeline.errors import NewsletterError
from pipeline.ledger.consent import timestamp
from pipeline.messages.compose import Message, MessageFactory
from pipeline.messages.headers import clean_header, mailbox
from pipeline.messages.unsubscribe import make_token, unsubscribe_url
from pipeline.render.compile import CompiledEmail, compile_issue

BUILTIN_CONFIRMATION = Path(__file__).parent / "emails" / "confirmation.md"
CONFIRMATION = "confirmation"
WELCOME = "welcome"


def transactional_provider(settings: Settings, environ: Mapping[str, str]) -> Provider:
    """The configured provider, on its transactional stream where it has one."""
    if settings.provider.name == "postmark":
        return postmark.create_transactional(settings, environ)
    return create_provider(settings, environ)


def inbox_key(key: str) -> str:
    """The inbox an address lands in, for the limits that protect a person's inbox:
    ``pat+news@example.org`` and ``pat+1@example.org`` reach ``pat@example.org``'s (Gmail,
    Outlook, Fastmail and most others deliver plus-addressed mail to the plain address)."""
    local, at, domain = key.rpartition("@")
    if not at:
        return key
    return f"{local.split('+', 1)[0] or local}@{domain}"


def confirmations_within(db: sqlite3.Connection, key: str, since: datetime) -> int:
    """Confirmations sent (or being sent) to this address's inbox since ``since`` (to it, or
    to a plus-addressed variant of it)."""
    inbox = inbox_key(key)
    # An hour's confirmations are few (the per-IP limit bounds them): compared here, not in SQL.
    rows = db.execute(
        "SELECT key FROM mail_once WHERE kind = ? AND at > ? AND outcome != 'failed'",
        (CONFIRMATION, timestamp(since)),
    ).fetchall()
    return sum(1 for (found,) in rows if inbox_key(str(found)) == inbox)


def _describe_days(expiry: timedelta) -> str:
    hours = round(expiry.total_seconds() / 3600)
    if hours % 24 == 0:
        days = hours // 24
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{hours} hour{'s' if hours != 1 else ''}"


class Mailer:
    """Builds and sends the confirmation and the welcome; records each in ``mail_once``.

    Used from one worker thread (the app's mail queue), so the provider, which keeps an
    HTTP session or an SMTP connection, is never shared between threads."""

    def __init__(self, settings: Settings, environ: Mapping[str, str], secret: bytes) -> None:
        # Neither email is a page of the web edition: a "View in browser" link would point
        # at <archive url>confirmation/ or welcome/, which do not exist.
        self.settings = dataclasses.replace(
            settings,
            archive=dataclasses.replace(settings.archive, view_in_browser=ViewInBrowser.OFF),
        )
        self.environ = environ
        self.secret = secret
        self.domain = settings.sender_address.rpartition("@")[2]
        self._provider: Provider | None = None
        self._compiled: dict[str, tuple[float, CompiledEmail]] = {}

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            self._provider = transactional_provider(self.settings, self.environ)
        return self._provider

    def close(self) -> None:
        if self._provider is not None:
            self._provider.close()
            self._provider = None

    @property
    def welcome_path(self) -> Path:
        return self.settings.newsletters_dir / WELCOME_DRAFT

    def confirmation_path(self) -> Path:
        custom = self.settings.templates_dir / "web" / f"{CONFIRMATION}.md"
        return custom if custom.is_file() else BUILTIN_CONFIRMATION

    def _compile(
        self, path: Path, settings: Settings, *, forwardable: bool = True
    ) -> CompiledEmail:
        """Compiled once, again only when the file changes (she may edit the welcome while
        the server runs)."""
        mtime = path.stat().st_mtime
        cached = self._compiled.get(str(path))
        if cached is not None and cached[0] == mtime:
            return cached[1]
        issue = load_issue(path, settings.timezone)
        compiled = compile_issue(issue, settings, forwardable=forwardable)
        self._compiled[str(path)] = (mtime, compiled)
        return compiled

    def _deliver(self, db: sqlite3.Connection, message: Message, row: int) -> str:
        """Send one message and record how it went; a refusal or a network fault is
        'failed' with its reason (it does not count against the hourly limit: the person
        can simply try again)."""
        answer = self.provider.send([message])
        result = answer.results[0]
        outcome = "sent" if result.outcome is Outcome.SENT else "failed"
        reason = answer.stop or result.reason or None
        db.execute(
            "UPDATE mail_once SET outcome = ?, provider_id = ?, reason = ? WHERE id = ?",
            (outcome, result.provider_id or None, reason, row),
        )
        return outcome if reason is None else f"{outcome}: {reason}"

    def send_confirmation(
        self, db: sqlite3.Connection, key: str, email: str, first_name: str, confirm_url: str
    ) -> str:
        """Send one confirmation; returns what happened, for the log."""
        # No call to action in a confirmation: one button, the one that confirms.  And the
        # footer says why this person got it: not "you subscribed" (they have not, yet).
        domain = self.settings.base_url.split("://", 1)[-1].split("/")[0]
        settings = dataclasses.replace(
            self.settings,
            cta=None,
            why=f"You are receiving this because this address was entered in the signup form "
            f"of {self.settings.name} at {domain}.",
        )
        compiled = self._compile(self.confirmation_path(), settings, forwardable=False)
        fields = {
            "email": email,
            "first_name": first_name,
            "confirm_url": confirm_url,
            "expires_in": _describe_days(self.settings.signup.confirm_expiry),
        }
        parts = compiled.personalise(
            fields, unsubscribe_url(self.settings.base_url, make_token(self.secret, key))
        )
        message = Message(
            issue=CONFIRMATION,
            key=key,
            to_email=email,
            to=mailbox(first_name, email),
            sender=clean_header(self.settings.sender),
            reply_to=clean_header(self.settings.reply_to or self.settings.sender),
            subject=clean_header(parts.subject),
            body=parts,
            message_id=f"<confirm.{secrets.token_hex(10)}@{self.domain}>",
            headers=(),
        )
        row = db.execute(
            "INSERT INTO mail_once (key, kind, at, outcome) VALUES (?, ?, ?, 'sending')",
            (key, CONFIRMATION, timestamp()),
        ).lastrowid
        assert row is not None
        return self._deliver(db, message, row)

    def send_welcome(
        self, db: sqlite3.Connection, key: str, email: str, fields: Mapping[str, str]
    ) -> str | None:
        """The welcome, once per address ever; None when there is none to send."""
        path = self.welcome_path
        if not path.is_file():
            return None
        try:
            row = db.execute(
                "INSERT INTO mail_once (key, kind, at, outcome) VALUES (?, ?, ?, 'sending')",
                (key, WELCOME, timestamp()),
            ).lastrowid
        except sqlite3.IntegrityError:
            return None  # welcomed before (or a crash mid-send: never twice)
        assert row is not None
        try:
            compiled = self._compile(path, self.settings)
            factory = MessageFactory(
                compiled,
                self.settings,
                self.secret,
                managed_unsubscribe=self.provider.managed_unsubscribe,
            )
            message = factory.build(key, email, {**fields, "email": email})
        except NewsletterError as exc:
            db.execute(
                "UPDATE mail_once SET outcome = 'failed', reason = ? WHERE id = ?",
                (str(exc), row),
            )
            return f"failed: {exc}"
        return self._deliver(db, message, row)
