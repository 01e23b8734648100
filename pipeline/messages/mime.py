"""Message -> RFC 5322 bytes: multipart/alternative, text part first, UTF-8 throughout.

Used by the providers that hand over whole messages (outbox files, SMTP).  Quoted-printable
keeps every line under SMTP's 998-octet limit whatever the HTML's line lengths.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.utils import formatdate

from pipeline.messages.compose import Message

# Header lines may run to RFC 5322's hard limit of 998 octets instead of folding at 78: the
# List-Unsubscribe URL is one long word, and folding it would turn it into an RFC 2047
# encoded-word, which Gmail and others do not read as a URL.
POLICY = policy.SMTP.clone(max_line_length=998)


def to_mime(message: Message, date: str | None = None) -> bytes:
    mime = EmailMessage(policy=POLICY)
    mime["From"] = message.sender
    mime["To"] = message.to
    if message.reply_to and message.reply_to != message.sender:
        mime["Reply-To"] = message.reply_to
    mime["Subject"] = message.subject
    mime["Date"] = date or formatdate(localtime=True)
    mime["Message-ID"] = message.message_id
    for name, value in message.headers:
        mime[name] = value
    mime.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    mime.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return mime.as_bytes()
