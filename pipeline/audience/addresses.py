"""Address syntax: email-validator's verdict, with each distinct domain validated once.

``validate_email`` spends about two thirds of its time on the part after the @-sign (IDNA,
UTS-46, a character check per letter), and that work is the same for every address on one
domain: a list of a million readers has a few thousand domains.  ``normalise`` gives the
verdict ``validate_email`` gives with the pipeline's options (the same normalised address, or
the same error message) for every input; tests compare the two on a varied list.

It does so by following ``validate_email`` step by step for the usual shape of address (an
unquoted ASCII local part, no display name, no bracketed IP address) with the domain's
verdict taken from a bounded cache; any other address goes to ``validate_email`` itself.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import email_validator
from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
    EMAIL_MAX_LENGTH,
)
from email_validator.syntax import validate_email_domain_name, validate_email_length

# Distinct domains remembered at once: far more than any real list has, few enough that the
# cache stays a few megabytes when every address has a domain of its own.
DOMAIN_CACHE_SIZE = 20_000

_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
# What the pipeline asks of email-validator.  No SMTPUTF8: an address with non-ASCII before
# the @ cannot go through formataddr, most relays or most providers' APIs, so it is an invalid
# row (with this reason), not a crash at send time.  (A non-ASCII domain is fine: it is sent
# in its IDNA form.)
ALLOW_SMTPUTF8 = False


@lru_cache(maxsize=DOMAIN_CACHE_SIZE)
def _domain_verdict(
    domain: str, test_environment: bool, globally_deliverable: bool
) -> tuple[str, str, int] | tuple[type[EmailNotValidError], str, int]:
    """(domain, ascii_domain, longest of the three forms in UTF-8 bytes) as email-validator
    normalises the part after the @-sign, or (error class, message, 0).  Errors are cached as
    values: ``lru_cache`` does not keep exceptions."""
    try:
        info = validate_email_domain_name(
            domain, test_environment=test_environment, globally_deliverable=globally_deliverable
        )
    except EmailNotValidError as exc:
        return type(exc), str(exc), 0
    forms = (domain, info["domain"], info["ascii_domain"])
    return info["domain"], info["ascii_domain"], max(len(form.encode()) for form in forms)


def _plain(address: str) -> str:
    valid = validate_email(address, check_deliverability=False, allow_smtputf8=ALLOW_SMTPUTF8)
    return str(valid.normalized)


def normalise(address: str) -> str:
    """The address as it will be sent to; raises EmailNotValidError with email-validator's
    message, exactly as ``_plain`` (``validate_email`` itself) would."""
    local, at, domain_part = address.partition("@")
    # The usual shape: an unquoted dot-atom of ASCII letters before the first @-sign.  Then
    # email-validator's split_email splits at that @-sign (no quote or "<" can come before
    # it), finds no display name, and its local-part check accepts the text unchanged (so
    # allow_smtputf8, which is about the local part, makes no difference).  With
    # a non-ASCII domain, the @-sign must also survive NFC as split_email checks it does.
    if (
        not at
        or email_validator.STRICT  # the local part's length limit: validate_email knows it
        or DOT_ATOM_TEXT.match(local) is None
        or (domain_part.startswith("[") and domain_part.endswith("]"))  # an IP address
        or len(domain_part) > 255  # refused at once for its length: not worth a cache entry
        or (
            not domain_part.isascii()
            and unicodedata.normalize("NFC", address[len(local) : len(local) + 32])[0] != "@"
        )
    ):
        return _plain(address)
    # RFC 2142 mailbox names (postmaster, abuse, ...) are lower-cased, as validate_email does.
    ascii_local = local.lower() if local.lower() in _CASE_INSENSITIVE else local
    if not domain_part:
        return _plain(address)  # "There must be something after the @-sign."
    first, second, longest = _domain_verdict(
        domain_part, email_validator.TEST_ENVIRONMENT, email_validator.GLOBALLY_DELIVERABLE
    )
    if not isinstance(first, str):
        raise first(second)
    assert isinstance(second, str)
    normalized = f"{ascii_local}@{first}"
    if len(local) + 1 + longest > EMAIL_MAX_LENGTH:
        # One of the three forms validate_email measures may be too long: let it say which.
        result = ValidatedEmail()
        result.original = address
        result.local_part = result.ascii_local_part = ascii_local
        result.domain, result.ascii_domain = first, second
        result.normalized = normalized
        result.ascii_email = f"{ascii_local}@{second}"
        validate_email_length(result)
    return normalized
