"""Message -> RFC 5322 bytes: multipart/alternative, text part first, UTF-8 throughout.

Used by the providers that hand over whole messages (outbox files, SMTP).  Bodies are
quoted-printable with 76-character lines, whatever the HTML's line lengths.
"""

from __future__ import annotations

import io
from email import policy
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import formatdate

from pipeline.messages.compose import Message

# Bodies: quoted-printable lines of at most 76 characters (RFC 2045 section 6.7; the
# email package would otherwise use the policy's 78).
BODY_POLICY = policy.SMTP.clone(max_line_length=76)
# Headers are written under one that lets a line run to RFC 5322's hard limit of 998 octets
# instead of folding at 78: the List-Unsubscribe URL is one long word, and folding it would
# turn it into an RFC 2047 encoded-word, which Gmail and others do not read as a URL.
HEADER_POLICY = policy.SMTP.clone(max_line_length=998)


def to_mime(message: Message, date: str | None = None) -> bytes:
    mime = EmailMessage(policy=BODY_POLICY)
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
    out = io.BytesIO()
    BytesGenerator(out, policy=HEADER_POLICY).flatten(mime)
    return out.getvalue()
