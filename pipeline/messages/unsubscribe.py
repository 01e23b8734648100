"""Per-recipient unsubscribe tokens: the address, signed with HMAC-SHA256.

The token goes into the one-click URL (RFC 8058) and the footer link; ``read_token`` gives the
address back only if the signature matches, so nobody can unsubscribe someone else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_SIGNATURE_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, address_key: str) -> bytes:
    mac = hmac.new(secret, b"unsubscribe\0" + address_key.encode("utf-8"), hashlib.sha256)
    return mac.digest()[:_SIGNATURE_BYTES]


def make_token(secret: bytes, address_key: str) -> str:
    return f"{_b64(address_key.encode('utf-8'))}.{_b64(_signature(secret, address_key))}"


def read_token(secret: bytes, token: str) -> str | None:
    """The address key a token was made for, or None if it is malformed or forged."""
    try:
        payload, signature = token.strip().split(".", 1)
        address_key = _unb64(payload).decode("utf-8")
        given = _unb64(signature)
    except (ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(given, _signature(secret, address_key)):
        return None
    return address_key


def unsubscribe_url(base_url: str, token: str) -> str:
    # base64url and "." are URL-safe: the token goes in as it is.
    return f"{base_url}/unsubscribe?token={token}"
