"""Compiled email + one subscriber -> a finished ``Message``: what a provider sends.

``MessageFactory`` does once per issue everything that is the same for every recipient (sender,
reply-to, list headers, the domain of Message-IDs); ``build`` then costs one fill of the
compiled email, one HMAC for the unsubscribe token and one for the Message-ID.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from pipeline.config import Settings
from pipeline.errors import NewsletterError
from pipeline.messages.headers import clean_header, mailbox
from pipeline.messages.unsubscribe import make_token, unsubscribe_url
from pipeline.render.compile import CompiledEmail, PersonalisedEmail

ISSUE_HEADER = "X-Newsletter-Issue"

# Control characters other than tab and line ends: a NUL or a BEL pasted into a spreadsheet
# cell means nothing to a reader and breaks templates and headers downstream.
_CONTROL_IN_VALUE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A display name longer than this is cut (RFC 5322 section 2.1.1: a header line is at most 998
# octets; a 100 KB first name once made a 100 KB To: line).  64 characters encode, even as
# four-byte UTF-8 in an RFC 2047 encoded-word, to well under that.
MAX_NAME = 64
# Subjects carry merge fields too; past this a subject is a hostile value, not an author's.
MAX_SUBJECT = 250


class UnsendableMessage(NewsletterError):
    """This one reader's message cannot be built; the reader is ``failed``, the send goes on."""


def shorten(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word where one is near, marked with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "\u2026"


def sendable_address(email: str) -> str:
    """The address as it goes on the wire: ASCII, an international domain in its IDNA form.
    The list keeps (and keys) the validator's Unicode form; only the envelope needs this."""
    if email.isascii():
        return email
    try:
        # Only non-ASCII addresses get here (rare): the validator's own IDNA encoding.
        valid = validate_email(email, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        # Validation refuses these now; a ledger loaded by an older version may hold one.
        raise UnsendableMessage(
            f"{email}: this address cannot be sent to ({exc}); ask the reader for another"
        ) from None
    return str(valid.ascii_email)


def clean_value(value: str) -> str:
    return _CONTROL_IN_VALUE.sub("", value)


@dataclass(frozen=True, slots=True)
class Message:
    issue: str  # the issue's slug
    key: str  # the recipient's identity in the ledger
    to_email: str
    to: str  # "Name <address>"
    sender: str
    reply_to: str
    subject: str
    body: PersonalisedEmail  # the bodies, built when a provider asks (see .html, .text)
    message_id: str  # "<...@sender-domain>"
    headers: tuple[tuple[str, str], ...]  # List-Unsubscribe, List-Id, X-Newsletter-Issue, ...

    @property
    def html(self) -> str:
        return self.body.html

    @property
    def text(self) -> str:
        return self.body.text


class MessageFactory:
    """Builds each recipient's Message from the issue compiled once."""

    def __init__(
        self,
        compiled: CompiledEmail,
        settings: Settings,
        secret: bytes,
        *,
        managed_unsubscribe: str | None = None,
    ) -> None:
        self.compiled = compiled
        self.slug = compiled.issue.slug
        self.secret = secret
        self.sender = clean_header(settings.sender)
        self.reply_to = clean_header(settings.reply_to or settings.sender)
        self.domain = settings.sender_address.rpartition("@")[2]
        self.base_url = settings.base_url
        # Only a mailbox kept for unsubscribe requests: her reply inbox would turn every
        # mailto: unsubscribe into a letter to answer by hand.
        self.unsubscribe_mailbox = settings.unsubscribe_mailto
        # Providers that manage unsubscribes themselves (Postmark broadcast streams) give the
        # placeholder they replace, and refuse list headers of ours.
        self.managed_unsubscribe = managed_unsubscribe
        list_id = f"{clean_header(settings.name)} <newsletter.{self.domain}>"
        self.fixed_headers: tuple[tuple[str, str], ...] = (
            ("List-Id", list_id),
            (ISSUE_HEADER, self.slug),
        )

    def message_id(self, key: str) -> str:
        """Stable per issue and recipient: a re-send carries the same id, which lets
        receivers that de-duplicate by Message-ID (Gmail does) drop the copy."""
        digest = hmac.new(self.secret, f"mid\0{self.slug}\0{key}".encode(), hashlib.sha256)
        return f"<{self.slug}.{digest.hexdigest()[:20]}@{self.domain}>"

    def build(
        self, key: str, email: str, fields: Mapping[str, str], *, test: bool = False
    ) -> Message:
        if self.managed_unsubscribe is not None:
            url = self.managed_unsubscribe
            headers = self.fixed_headers
        else:
            token = make_token(self.secret, key)
            url = unsubscribe_url(self.base_url, token)
            targets = f"<{url}>"
            if self.unsubscribe_mailbox:
                # The token is base64url and a dot: nothing in it needs quoting in a URL.
                mailto = f"mailto:{self.unsubscribe_mailbox}?subject=unsubscribe%20{token}"
                targets += f", <{mailto}>"
            headers = (
                ("List-Unsubscribe", targets),
                # RFC 8058 one-click: required by Gmail and Yahoo for bulk senders.
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
                *self.fixed_headers,
            )
        to_email = sendable_address(email)
        values = {name: clean_value(value) for name, value in fields.items()}
        email_parts = self.compiled.personalise(values, url)
        name = shorten(
            clean_header(f"{values.get('first_name', '')} {values.get('last_name', '')}"),
            MAX_NAME,
        )
        subject = shorten(clean_header(email_parts.subject), MAX_SUBJECT)
        message_id = self.message_id(key)
        if test:
            subject = f"[Test] {subject}"
            message_id = f"<test.{secrets.token_hex(8)}.{self.slug}@{self.domain}>"
        return Message(
            issue=self.slug,
            key=key,
            to_email=to_email,
            to=mailbox(name, to_email),
            sender=self.sender,
            reply_to=self.reply_to,
            subject=subject,
            body=email_parts,
            message_id=message_id,
            headers=headers,
        )
