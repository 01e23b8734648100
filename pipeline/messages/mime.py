"""Message -> RFC 5322 bytes: multipart/alternative, text part first, UTF-8 throughout.

Used by the providers that hand over whole messages (outbox files, SMTP).  Written directly
rather than through ``email.message``: that package spent 2 ms a message parsing headers we
already built and quoted-printable-encoding in pure Python; here the bodies go through the C
encoder (``binascii.b2a_qp``) and only non-ASCII header text is RFC 2047-encoded.

- Bodies: quoted-printable, lines of at most 76 characters (RFC 2045 section 6.7), CRLF.
- Headers: never folded inside a word; a line may run to RFC 5322's limit of 998 octets, so
  the List-Unsubscribe URL stays one readable URL (folding would make it an encoded-word,
  which Gmail and others do not read).
- The boundary starts with "=_", which quoted-printable output can never contain.
"""

from __future__ import annotations

import secrets
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr

from pipeline.messages.compose import Message
from pipeline.render.fill import quoted_printable


def _text(value: str) -> str:
    """An unstructured header value: as it is if ASCII, else RFC 2047 encoded-words."""
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=76).encode(linesep="\r\n")


def _address(value: str) -> str:
    """``Name <addr>`` with a non-ASCII name RFC 2047-encoded and specials quoted."""
    if value.isascii():
        return value
    name, address = parseaddr(value)
    return formataddr((name, address), charset="utf-8")


__all__ = ["quoted_printable", "to_mime"]


def to_mime(message: Message, date: str | None = None) -> bytes:
    boundary = "=_" + secrets.token_hex(12)
    headers = [
        f"From: {_address(message.sender)}",
        f"To: {_address(message.to)}",
    ]
    if message.reply_to and message.reply_to != message.sender:
        headers.append(f"Reply-To: {_address(message.reply_to)}")
    headers += [
        f"Subject: {_text(message.subject)}",
        f"Date: {date or formatdate(localtime=True)}",
        f"Message-ID: {message.message_id}",
        *(f"{name}: {_text(value)}" for name, value in message.headers),
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    part = "Content-Type: text/{}; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable"
    # The HTML (mrml writes it as a few very long lines, which quoted-printable cuts every 76
    # characters anyway) from pieces encoded once per issue; the short text part whole, so
    # its lines stay as written ("Hi Ada," on one line).
    body = message.body
    return b"".join(
        (
            "\r\n".join(headers).encode("ascii"),
            f"\r\n\r\n--{boundary}\r\n{part.format('plain')}\r\n\r\n".encode("ascii"),
            quoted_printable(message.text),
            f"--{boundary}\r\n{part.format('html')}\r\n\r\n".encode("ascii"),
            body.compiled.html.fill_qp(body.html_values),
            f"--{boundary}--\r\n".encode("ascii"),
        )
    )
