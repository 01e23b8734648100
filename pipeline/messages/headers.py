"""Header hygiene: no subscriber value can add a header or break one.

CR, LF and every other control character become a space before a value reaches a header, so a
first name like ``"Eve\\r\\nBcc: all@example.com"`` stays part of the display name.
"""

from __future__ import annotations

import re
from email.headerregistry import Address

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


def clean_header(value: str) -> str:
    return " ".join(_CONTROL.sub(" ", value).split())


def mailbox(name: str, address: str) -> str:
    """``Name <address>``, quoted where the name needs it; the name cleaned of controls."""
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=clean_header(name), username=local, domain=domain))
