"""The cached address check gives email-validator's own verdict for every address."""

from __future__ import annotations

import itertools

import pytest
from email_validator import EmailNotValidError, validate_email

from pipeline.audience import addresses
from pipeline.audience.addresses import normalise

LOCALS = [
    "reader",
    "Reader.Name",
    "a+tag",
    "o'brien",
    "Postmaster",
    "ABUSE",
    "x" * 64,
    "x" * 65,
    "a..b",
    ".a",
    "a.",
    "",
    "ünïcode",
    "e\u0301",  # e + combining acute: NFC changes it
    '"john doe"',
    '"a@b"',
    '"plain"',
    "sp ace",
    "tab\t",
    "名前",
    "a\u200bb",  # zero-width space
]
DOMAINS = [
    "example.org",
    "EXAMPLE.ORG",
    "Example.Co.Uk",
    "münchen.de",
    "MÜNCHEN.DE",
    "xn--mnchen-3ya.de",
    "XN--MNCHEN-3YA.DE",
    "例え.テスト",
    "xn--r8jz45g.xn--zckzah",
    "bücher.example",
    "example",
    "localhost",
    "example..org",
    "-bad.org",
    "bad-.org",
    "a_b.org",
    "example.org.",
    "ex ample.org",
    "example.local",
    "example.invalid",
    "test",
    "123.com",
    "[192.0.2.1]",
    "[IPv6:2001:db8::1]",
    "b@c.org",
    "\u0301example.org",  # a combining mark right after the @-sign
    "exa\u0301mple.org",
    "ｅｘａｍｐｌｅ．ｏｒｇ",  # full-width letters and dot
    "example。org",  # ideographic full stop
    "⒈.org",
    "😀.example",
    "a" * 64 + ".org",
    ".".join(["a" * 60] * 4) + ".org",  # over 253 characters
    "x" * 5000 + ".org",  # a broken export's run-on cell: never kept in the cache
    "",
    "example.org ",
    "example.org\n",
]
ODD = [
    "",
    "@",
    "plain",
    "no-at-sign.example.org",
    "full＠width.org",
    "small﹫at.org",
    "Bob <bob@example.org>",
    "<bob@example.org>",
    " lead@example.org",
    "x" * 64 + "@" + ".".join(["a" * 60] * 3) + ".org",  # too long as a whole
    "a@b@c.org",
    "a<b@example.org",
    '"unterminated@example.org',
    "é@é.org",
]


def test_the_options_are_the_pipelines() -> None:
    """The comparison below is with the options a send uses: no SMTPUTF8 local parts."""
    assert addresses.ALLOW_SMTPUTF8 is False
    with pytest.raises(EmailNotValidError, match="Internationalized characters"):
        normalise("ünïcode@example.org")


def verdict(address: str) -> tuple[str, str]:
    try:
        return "ok", str(
            validate_email(address, check_deliverability=False, allow_smtputf8=False).normalized
        )
    except EmailNotValidError as exc:
        return type(exc).__name__, str(exc)


def cached_verdict(address: str) -> tuple[str, str]:
    try:
        return "ok", normalise(address)
    except EmailNotValidError as exc:
        return type(exc).__name__, str(exc)


ADDRESSES = [f"{local}@{domain}" for local, domain in itertools.product(LOCALS, DOMAINS)] + ODD


def test_every_verdict_is_email_validators() -> None:
    addresses._domain_verdict.cache_clear()
    valid = 0
    for _ in range(2):  # the second round answers every domain from the cache
        for address in ADDRESSES:
            expected = verdict(address)
            assert cached_verdict(address) == expected, address
            valid += expected[0] == "ok"
    info = addresses._domain_verdict.cache_info()
    assert info.misses < len(DOMAINS) < info.hits  # each domain validated once, the long one never
    assert 50 < valid < len(ADDRESSES)  # the list has both kinds, plenty of each
    before = addresses._domain_verdict.cache_info().currsize
    for index in range(100):  # a broken export's run-on cells: refused, never cached
        assert cached_verdict(f"r@{index}{'x' * 5000}.org") == verdict(f"r@{index}{'x' * 5000}.org")
    assert addresses._domain_verdict.cache_info().currsize == before


def test_a_full_cache_still_gives_the_right_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    addresses._domain_verdict.cache_clear()
    for index in range(addresses.DOMAIN_CACHE_SIZE + 50):
        normalise(f"r{index}@d{index}.example.org")
    assert addresses._domain_verdict.cache_info().currsize == addresses.DOMAIN_CACHE_SIZE
    for address in ADDRESSES[:200]:
        assert cached_verdict(address) == verdict(address), address


def test_the_libraries_settings_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """email-validator's module-level defaults change its verdicts; they change ours too."""
    import email_validator

    addresses._domain_verdict.cache_clear()
    for setting, value in [("STRICT", True), ("GLOBALLY_DELIVERABLE", False)]:
        monkeypatch.setattr(email_validator, setting, value)
        for address in ADDRESSES:
            assert cached_verdict(address) == verdict(address), (setting, address)
        monkeypatch.undo()
