"""Signed links and form stamps for the web app, made with itsdangerous (Flask's own signer).

- The confirmation token carries what the form said (address, first name, ticked interests)
  and when it was issued, signed with the project's secret (``messages.secret``) under its
  own salt, so it can never pass for an unsubscribe token or the other way round.  It
  expires (``[signup] confirm_expiry``, 7 days by default).  Nothing is stored until the
  person confirms: an unconfirmed signup leaves no row in the list.
- The form stamp is the time the signup page was served, signed: a post that comes back
  sooner than ``[signup] min_fill_seconds`` was filled in by a program.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

CONFIRM_SALT = "newsletter-confirm"
FORM_SALT = "newsletter-form"


@dataclass(frozen=True)
class SignupRequest:
    email: str
    first_name: str
    tags: tuple[str, ...]
    issued_at: str  # consent.timestamp() when the confirmation was made


class TokenProblem(StrEnum):
    INVALID = "invalid"  # forged, altered, cut short
    EXPIRED = "expired"


class Signer:
    def __init__(self, secret: bytes, expiry: timedelta) -> None:
        self.confirm = URLSafeTimedSerializer(secret, salt=CONFIRM_SALT)
        self.form = URLSafeTimedSerializer(secret, salt=FORM_SALT)
        self.expiry = expiry

    def confirmation_token(self, request: SignupRequest) -> str:
        payload = {
            "e": request.email,
            "n": request.first_name,
            "t": list(request.tags),
            "i": request.issued_at,
        }
        return str(self.confirm.dumps(payload))

    def read_confirmation(self, token: str) -> SignupRequest | TokenProblem:
        try:
            payload: Any = self.confirm.loads(token, max_age=int(self.expiry.total_seconds()))
        except SignatureExpired:
            return TokenProblem.EXPIRED
        except BadSignature:
            return TokenProblem.INVALID
        try:
            return SignupRequest(
                email=str(payload["e"]),
                first_name=str(payload["n"]),
                tags=tuple(str(t) for t in payload["t"]),
                issued_at=str(payload["i"]),
            )
        except (KeyError, TypeError):
            return TokenProblem.INVALID

    def form_stamp(self) -> str:
        return str(self.form.dumps("signup"))

    def form_age(self, stamp: str) -> float | None:
        """Seconds since the page with this stamp was served; None if it is not ours."""
        try:
            _, signed_at = self.form.loads(stamp, max_age=86400, return_timestamp=True)
        except BadSignature:
            return None
        age: float = (datetime.now(UTC) - signed_at).total_seconds()
        return age
