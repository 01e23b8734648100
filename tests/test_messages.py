"""Compiled email + subscriber -> Message -> RFC 5322: headers, escaping, tokens."""

from __future__ import annotations

import email
import os
import re
import stat
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from pipeline.audience.subscribers import Subscriber, scan
from pipeline.config import load_settings
from pipeline.content.issue import load_issue
from pipeline.errors import ConfigError
from pipeline.messages.compose import MessageFactory
from pipeline.messages.mime import to_mime
from pipeline.messages.secret import load_secret
from pipeline.messages.unsubscribe import make_token, read_token
from pipeline.render.compile import compile_issue

from .conftest import MESSY_CSV, SAMPLE_ISSUE

SECRET = b"test-secret"


@pytest.fixture
def factory_and_list(make_project: Callable[..., Path]) -> tuple[MessageFactory, list[Subscriber]]:
    root = make_project(csv=MESSY_CSV)
    settings = load_settings(root / "newsletter.toml")
    compiled = compile_issue(load_issue(root / SAMPLE_ISSUE, settings.timezone), settings)
    audience = [s for s in scan(settings.subscribers) if isinstance(s, Subscriber)]
    return MessageFactory(compiled, settings, SECRET), audience


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_headers_and_structure(factory_and_list: tuple[MessageFactory, list[Subscriber]]) -> None:
    factory, audience = factory_and_list
    ada = audience[0]
    raw = to_mime(factory.build(ada.key, ada.email, ada.fields))
    mime = parsed(raw)
    sender = mime["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == (
        "Dr. Connie Hutchins",
        "connie@movementsolutions.example",
    )
    assert mime["To"] == "Ada Runner <ada@example.org>"
    assert mime["Reply-To"] == "connie@movementsolutions.example"
    assert mime["Subject"] == "Why Hip Rotation Matters More Than You Think"
    assert mime["Date"]
    assert re.fullmatch(
        r"<2025-07-21-hip-rotation\.[0-9a-f]{20}@movementsolutions\.example>", mime["Message-ID"]
    )
    token = make_token(SECRET, "ada@example.org")
    url = f"https://movementsolutions.example/unsubscribe?token={token}"
    # No mailto: by default: it would land in her reply inbox, to be handled by hand.
    assert mime["List-Unsubscribe"] == f"<{url}>"
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mime["X-Newsletter-Issue"] == "2025-07-21-hip-rotation"
    assert mime.get_content_type() == "multipart/alternative"
    text_part, html_part = mime.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    assert text_part.get_content_charset() == html_part.get_content_charset() == "utf-8"
    assert "Hi Ada," in text_part.get_content()
    assert f'href="{url}"' in html_part.get_content()
    assert f"Unsubscribe with one click: {url}" in text_part.get_content()
    head, body = raw.split(b"\r\n\r\n", 1)
    # The signed URL is one long word: it must not be folded into an RFC 2047 encoded-word.
    assert f"List-Unsubscribe: <{url}>".encode() in head
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    # Quoted-printable bodies keep to 76 characters (SpamAssassin's MIME_QP_LONG_LINE).
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


def test_hostile_values_are_escaped_and_never_reach_headers(
    factory_and_list: tuple[MessageFactory, list[Subscriber]],
) -> None:
    factory, audience = factory_and_list
    hax, crlf = audience[2], audience[3]
    hax_mime = parsed(to_mime(factory.build(hax.key, hax.email, hax.fields)))
    html = hax_mime.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt;," in html
    assert hax_mime["To"].addresses[0].display_name == "<script>alert(1)</script> Smith & Co"

    raw = to_mime(factory.build(crlf.key, crlf.email, crlf.fields))
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert "\nBcc:" not in head and "\rBcc:" not in head
    mime = parsed(raw)
    assert mime["Bcc"] is None
    assert mime["To"].addresses[0].addr_spec == "crlf@example.org"
    assert mime["To"].addresses[0].display_name == "Mallory Bcc: victim@example.net X"
    assert len(mime["To"].addresses) == 1


def test_message_id_is_stable_per_recipient(
    factory_and_list: tuple[MessageFactory, list[Subscriber]],
) -> None:
    factory, audience = factory_and_list
    a, b = audience[0], audience[1]
    first = factory.build(a.key, a.email, a.fields)
    assert factory.build(a.key, a.email, a.fields).message_id == first.message_id
    assert factory.build(b.key, b.email, b.fields).message_id != first.message_id
    assert factory.build(a.key, a.email, a.fields, test=True).subject.startswith("[Test] ")


def test_tokens_round_trip_and_forgeries_fail() -> None:
    token = make_token(SECRET, "ada@example.org")
    assert read_token(SECRET, token) == "ada@example.org"
    assert read_token(b"another-secret", token) is None
    _, signature = token.split(".")
    forged = make_token(b"attacker", "victim@example.org").split(".")[0] + "." + signature
    assert read_token(SECRET, forged) is None
    for junk in ("", "abc", "....", "%%%.%%%"):
        assert read_token(SECRET, junk) is None


def test_a_dedicated_unsubscribe_mailbox_goes_into_list_unsubscribe(
    make_project: Callable[..., Path],
) -> None:
    root = make_project()
    config = root / "newsletter.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "[newsletter]\n",
            '[newsletter]\nunsubscribe_mailto = "mailto:unsubscribe@movementsolutions.example"\n',
        ),
        encoding="utf-8",
    )
    settings = load_settings(config)
    compiled = compile_issue(load_issue(root / SAMPLE_ISSUE, settings.timezone), settings)
    factory = MessageFactory(compiled, settings, SECRET)
    mime = parsed(to_mime(factory.build("ada@example.org", "ada@example.org", {})))
    token = make_token(SECRET, "ada@example.org")
    assert mime["List-Unsubscribe"] == (
        f"<https://movementsolutions.example/unsubscribe?token={token}>, "
        f"<mailto:unsubscribe@movementsolutions.example?subject=unsubscribe%20{token}>"
    )
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mime["Reply-To"] == "connie@movementsolutions.example"

    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "mailto:unsubscribe@movementsolutions.example", "unsubscribe at movementsolutions"
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "[newsletter] unsubscribe_mailto" in str(caught.value)
    assert "not a valid address" in str(caught.value)


def test_secret_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    state = tmp_path / ".newsletter"
    first = load_secret(state, {})
    assert len(first) == 64
    assert stat.S_IMODE(os.stat(state / "secret").st_mode) == 0o600
    assert load_secret(state, {}) == first
    from_env = "from-the-environment-" + "e" * 20
    assert load_secret(state, {"NEWSLETTER_SECRET": from_env}) == from_env.encode()


def test_non_ascii_names_and_subjects_round_trip(make_project: Callable[..., Path]) -> None:
    root = make_project(csv='email,first_name,last_name\nleo@example.org,Léo "🚴",Cyclé\n')
    settings = load_settings(root / "newsletter.toml")
    issue = root / SAMPLE_ISSUE
    issue.write_text(
        issue.read_text(encoding="utf-8").replace(
            "subject: Why Hip", "subject: 🏃 {{ subscriber.first_name }}, why hip"
        ),
        encoding="utf-8",
    )
    compiled = compile_issue(load_issue(issue, settings.timezone), settings)
    (leo,) = [s for s in scan(settings.subscribers) if isinstance(s, Subscriber)]
    raw = to_mime(MessageFactory(compiled, settings, SECRET).build(leo.key, leo.email, leo.fields))
    assert raw.split(b"\r\n\r\n", 1)[0].isascii()
    mime = parsed(raw)
    assert mime["Subject"] == '🏃 Léo "🚴", why hip Rotation Matters More Than You Think'
    (to,) = mime["To"].addresses
    assert (to.display_name, to.addr_spec) == ('Léo "🚴" Cyclé', "leo@example.org")
    text = mime.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert 'Hi Léo "🚴",' in text


def test_bodies_encoded_from_pieces_read_as_the_whole_body_encoded() -> None:
    """``Template.fill_qp`` encodes the static pieces once per issue and only the values per
    recipient: a mail program must read exactly the text ``quoted_printable`` would give,
    with every line CRLF-ended and no longer than that encoder makes them."""
    import binascii
    import random

    from pipeline.render.fill import Template, quoted_printable

    rng = random.Random(14)
    alphabet = ["x", " ", "\t", "=", "é", ".", "\n", "\r\n", "\r", "From ", "😀", "<p>", "-- "]

    def text(most: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, most)))

    def longest(encoded: bytes) -> int:
        return max(len(line) for line in encoded.split(b"\r\n"))

    pieced = 0
    for _ in range(3000):
        pieces = [text(200) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.9:  # a bare CR (old Mac line end) now and then, not always
            pieces = [p.replace("\r\n", "\n").replace("\r", "") for p in pieces]
        template = Template.split(
            "".join(
                p + (f"MFX{i % 2}XFM" if i < len(pieces) - 1 else "") for i, p in enumerate(pieces)
            )
        )
        values = [text(90).replace("\r", "").replace("\n", "") if rng.random() < 0.9 else text(9)]
        values.append(rng.choice(["", "Ada", "=?", " x ", "ünïcode " * 12]))
        fast = template.fill_qp(values)
        whole = quoted_printable(template.fill(values))
        assert binascii.a2b_qp(fast) == binascii.a2b_qp(whole)
        assert fast.endswith(b"\r\n") and b"\n" not in fast.replace(b"\r\n", b"")
        assert longest(fast) <= max(76, longest(whole))
        pieced += fast != whole
    assert pieced > 1000  # most bodies did take the pieced path
