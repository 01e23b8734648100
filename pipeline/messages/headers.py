"""Header hygiene: no subscriber value can add a header or break one.

CR, LF and every other control character become a space before a value reaches a header, so a
first name like ``"Eve\\r\\nBcc: all@example.com"`` stays part of the display name.
"""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.utils import parseaddr

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


def clean_header(value: str) -> str:
    return " ".join(_CONTROL.sub(" ", value).split())


_PLAIN_NAME = re.compile(r"[A-Za-z0-9 !#$%&'*+/=?^_`{|}~-]*")


def mailbox(name: str, address: str) -> str:
    """``Name <address>``, quoted where the name needs it; the name cleaned of controls."""
    name = clean_header(name)
    if _PLAIN_NAME.fullmatch(name) and address.isascii():
        # The common case needs no quoting: skip the (slow) general formatter.
        return f"{name} <{address}>" if name else address
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=name, username=local, domain=domain))


def split_mailbox(value: str) -> tuple[str, str]:
    """``Name <address>`` -> (name, address), unquoted: for APIs that take them apart."""
    name, address = parseaddr(value)
    return name, address
