"""Issue -> compiled email: every construct of the draft format, escaping, templates, filling."""

from __future__ import annotations

import email
import re
from collections.abc import Callable
from email import policy
from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.content.issue import load_issue
from pipeline.errors import InputError
from pipeline.messages.compose import MessageFactory
from pipeline.messages.mime import to_mime
from pipeline.render.compile import CompiledEmail, compile_issue

EVERY_CONSTRUCT = """\
Hi {{ subscriber.first_name | default("there") }} from {{ subscriber.city }},

# Heading one

## Heading two

### Heading three

Some **bold**, some *italic*, some `code` and an emoji 🏃‍♀️.

1. First step
2. Second step

- A bullet
- Another bullet

> A quote from a runner.

[Watch Demo Video](https://example.com/video?a=1&b=2){.button}

::: callout
**Bottom Line:**

Tight hips = tight stride.
:::

![A runner stretching](https://example.com/stretch.png)

| Drill | Reps |
|:------|-----:|
| 90-90 | 5 |
| CARs  | 8 |

Read [the study](https://example.com/study) & <b>this</b> "quoted" text.
"""

SUBSCRIBER = {"email": "ada@example.org", "first_name": "Ada", "city": "Springfield"}


@pytest.fixture
def compiled(write_issue: Callable[..., Path], settings: Settings) -> CompiledEmail:
    path = write_issue(EVERY_CONSTRUCT, front="subject: 'Drills for {{ subscriber.first_name }}'\n")
    return compile_issue(load_issue(path, settings.timezone), settings)


def test_every_construct_renders_in_html(compiled: CompiledEmail) -> None:
    html = compiled.personalise(SUBSCRIBER, "https://u.example/x").html
    assert "Hi Ada from Springfield," in html
    for level, text in ((1, "Heading one"), (2, "Heading two"), (3, "Heading three")):
        assert re.search(rf"<h{level} style=\"[^\"]+\">{text}</h{level}>", html)
    assert re.search(r"<strong>bold</strong>.*<em>italic</em>.*<code[^>]*>code</code>", html)
    assert "🏃‍♀️" in html
    assert re.search(r"<ol style=[^>]+><li style=[^>]+>First step</li>", html)
    assert re.search(r"<ul style=[^>]+><li style=[^>]+>A bullet</li>", html)
    assert re.search(r"<blockquote style=[^>]+>\s*<p style=[^>]+>A quote from a runner.</p>", html)
    # The button is MJML's table button: a cell with the accent background around the link.
    assert re.search(
        r'<td[^>]*bgcolor="#1f7a6d"[^>]*><a href="https://example.com/video\?a=1&amp;b=2"'
        r"[^>]*>Watch Demo Video</a>",
        html,
    )
    # The callout is a tinted block.
    assert re.search(r'background:#e8f3f1[^"]*"[^>]*>.*Bottom Line:', html, re.DOTALL)
    assert re.search(
        r'<img alt="A runner stretching"[^>]*src="https://example.com/stretch.png"', html
    )
    assert re.search(r"<th style=\"[^\"]*text-align:left\">Drill</th>", html)
    assert re.search(r"<td style=\"[^\"]*text-align:right\">5</td>", html)
    assert '<a href="https://example.com/study"' in html


def test_every_construct_renders_in_text(compiled: CompiledEmail) -> None:
    text = compiled.personalise(SUBSCRIBER, "https://u.example/x").text
    assert "Hi Ada from Springfield," in text
    assert "Heading one\n===========" in text
    assert "Heading two\n-----------" in text
    assert "1. First step\n2. Second step" in text
    assert "- A bullet\n- Another bullet" in text
    assert "> A quote from a runner." in text
    assert "Watch Demo Video: https://example.com/video?a=1&b=2" in text
    assert "Bottom Line:\n\nTight hips = tight stride.\n----" in text
    assert "[A runner stretching]" in text
    assert "Drill | Reps\n------+-----\n90-90 | 5\nCARs  | 8" in text
    assert 'Read the study (https://example.com/study) & <b>this</b> "quoted" text.' in text
    assert "Unsubscribe with one click: https://u.example/x" in text
    assert "<" not in text.replace("<b>this</b>", "")


def test_html_special_characters_in_content_are_escaped(compiled: CompiledEmail) -> None:
    html = compiled.personalise(SUBSCRIBER, "https://u.example/x").html
    assert "&amp; &lt;b&gt;this&lt;/b&gt; &quot;quoted&quot; text." in html
    assert "<b>this</b>" not in html


def test_subscriber_values_are_escaped_in_html_not_in_text(compiled: CompiledEmail) -> None:
    evil = {**SUBSCRIBER, "first_name": '<script>alert("x")</script>', "city": "A&B"}
    email = compiled.personalise(evil, "https://u.example/?a=1&b=2")
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in email.html
    assert "from A&amp;B," in email.html
    assert 'href="https://u.example/?a=1&amp;b=2"' in email.html
    assert 'Hi <script>alert("x")</script> from A&B,' in email.text
    assert email.subject == 'Drills for <script>alert("x")</script>'


def test_default_applies_to_a_blank_first_name(compiled: CompiledEmail) -> None:
    email = compiled.personalise({**SUBSCRIBER, "first_name": ""}, "https://u.example/x")
    assert "Hi there from Springfield," in email.text
    assert email.subject == "Drills for"


def test_one_compile_fills_many_recipients(compiled: CompiledEmail) -> None:
    first = compiled.personalise(SUBSCRIBER, "https://u.example/first")
    second = compiled.personalise({**SUBSCRIBER, "first_name": "Ben"}, "https://u.example/second")
    assert "Hi Ada" in first.html and "Hi Ben" in second.html
    assert "u.example/first" in first.html and "u.example/second" in second.html
    assert first.html.replace("Ada", "Ben").replace("/first", "/second") == second.html


def test_layout_has_lang_preheader_footer(settings: Settings, project: Path) -> None:
    issue = load_issue(project / "newsletters/2025-07-21-hip-rotation.md", settings.timezone)
    html = compile_issue(issue, settings).personalise(SUBSCRIBER, "https://u.example/x").html
    assert re.search(r'<html lang="en"', html)
    assert re.search(r'<div style="display:none;[^"]*">A few targeted mobility drills', html)
    assert settings.postal_address in html
    assert '<a href="https://u.example/x"' in html
    assert "📩 Ready to Move Better?" in html
    assert "July 21, 2025" in html


def test_user_template_overrides_one_file(
    write_issue: Callable[..., Path], project: Path, settings: Settings
) -> None:
    (project / "templates").mkdir()
    (project / "templates" / "signature.mjml.j2").write_text(
        "<mj-section><mj-column><mj-text>Cheers, {{ subscriber.first_name }}'s PT</mj-text>"
        "</mj-column></mj-section>",
        encoding="utf-8",
    )
    issue = load_issue(write_issue("Body text."), settings.timezone)
    html = compile_issue(issue, settings).personalise(SUBSCRIBER, "https://u.example/x").html
    assert "Cheers, Ada&#39;s PT" in html or "Cheers, Ada's PT" in html
    assert "Dr. Connie &amp; the Movement Solutions Team" not in html
    assert settings.postal_address in html  # the built-in footer still renders


def test_template_error_names_the_template(
    write_issue: Callable[..., Path], project: Path, settings: Settings
) -> None:
    (project / "templates").mkdir()
    (project / "templates" / "footer.mjml.j2").write_text("{% if %}", encoding="utf-8")
    issue = load_issue(write_issue("Body"), settings.timezone)
    with pytest.raises(InputError) as caught:
        compile_issue(issue, settings)
    assert "footer.mjml.j2:1" in caught.value.location_message()


def test_project_without_templates_folder_still_renders(tmp_path: Path, project: Path) -> None:
    settings = load_settings(project / "newsletter.toml")
    assert not settings.templates_dir.exists()
    issue = load_issue(project / "newsletters/2025-07-21-hip-rotation.md", settings.timezone)
    assert "<mjml" in compile_issue(issue, settings).mjml


def test_a_field_missing_at_send_time_names_its_line(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    path = write_issue("Hello\n\nFrom {{ subscriber.city }} to {{ subscriber.shoe_size }}.\n")
    compiled = compile_issue(load_issue(path, settings.timezone), settings)
    with pytest.raises(InputError) as caught:
        compiled.personalise(SUBSCRIBER, "https://u.example/x")
    assert caught.value.location_message() == (
        f"{path}:7: merge field {{{{ subscriber.shoe_size }}}}: "
        "the list has no column 'shoe_size' (its columns: city, email, first_name, "
        "last_name, status, tags)"
    )


def _sample_html(settings: Settings, project: Path) -> str:
    issue = load_issue(project / "newsletters/2025-07-21-hip-rotation.md", settings.timezone)
    return compile_issue(issue, settings).personalise(SUBSCRIBER, "https://u.example/x").html


def _style(declarations: str) -> dict[str, str]:
    pairs = (part.split(":", 1) for part in declarations.split(";") if ":" in part)
    return {name.strip().lower(): value.strip().lower() for name, value in pairs}


def test_preheader_is_hidden_without_low_contrast_and_ends_in_a_spacer(
    settings: Settings, project: Path
) -> None:
    html = _sample_html(settings, project)
    match = re.search(r'<div style="(display:none;[^"]*)">A few targeted mobility drills', html)
    assert match, "the preheader is not the first hidden text of the body"
    style = _style(match[1])
    # Hidden in every client (mso-hide for Outlook), but not the way spam filters read as
    # hiding: no text the colour of the background (HTML_FONT_LOW_CONTRAST), no 0/1px font
    # (FONT_INVIS rules).
    assert style["mso-hide"] == "all" and style["max-height"] in ("0", "0px")
    assert style["color"] == settings.theme.text_color
    assert "font-size" not in style
    assert (
        "<mj-preview"
        not in compile_issue(
            load_issue(project / "newsletters/2025-07-21-hip-rotation.md", settings.timezone),
            settings,
        ).mjml
    )
    # The spacer after it keeps the inbox preview from running on into "MOVEMENT SOLUTIONS".
    after = html[match.end() :].split("</div>", 1)[0]
    assert re.search(r"preventing injury\.((?:&#847;&zwnj;&nbsp;){80,})$", after), after[:200]


def test_iphone_does_not_turn_dates_and_addresses_into_links(
    settings: Settings, project: Path
) -> None:
    html = _sample_html(settings, project)
    head = html.split("</head>", 1)[0]
    assert '<meta name="x-apple-disable-message-reformatting"' in head
    detection = re.search(r'<meta name="format-detection" content="([^"]+)"', head)
    assert detection, "no format-detection meta"
    assert {part.strip() for part in detection[1].split(",")} >= {
        "telephone=no",
        "date=no",
        "address=no",
        "email=no",
        "url=no",
    }
    rule = re.search(r"a\[x-apple-data-detectors\]\s*\{([^}]*)\}", head)
    assert rule, "no a[x-apple-data-detectors] rule"
    declarations = _style(rule[1].replace("!important", ""))
    for name in ("color", "text-decoration", "font-size", "font-family", "font-weight"):
        assert declarations.get(name) in ("inherit", "none"), (name, declarations)


def test_declares_one_light_colour_scheme(settings: Settings, project: Path) -> None:
    head = _sample_html(settings, project).split("</head>", 1)[0]
    assert '<meta name="color-scheme" content="light only"' in head
    assert '<meta name="supported-color-schemes" content="light only"' in head
    assert re.search(r":root\s*\{[^}]*color-scheme:\s*light only", head)


def test_text_signature_separator_is_dash_dash_space(settings: Settings, project: Path) -> None:
    issue = load_issue(project / "newsletters/2025-07-21-hip-rotation.md", settings.timezone)
    compiled = compile_issue(issue, settings)
    text = compiled.personalise(SUBSCRIBER, "https://u.example/x").text
    # RFC 3676 4.3: "-- " alone on its line, once, before the footer.
    assert text.split("\n").count("-- ") == 1
    assert "\n--\n" not in text
    footer = text.split("\n-- \n", 1)[1]
    assert settings.postal_address in footer and "https://u.example/x" in footer
    # The trailing space survives quoted-printable and a reader's parser.
    raw = to_mime(MessageFactory(compiled, settings, b"secret").build("a", "ada@example.org", {}))
    message = email.message_from_bytes(raw, policy=policy.default)
    plain = message.get_body(("plain",))
    assert "\n-- \n" in plain.get_content().replace("\r\n", "\n")


CALLOUT_WITH_BUTTON = """\
Intro.

- A bullet
- Another bullet

1. First
2. Second

::: callout
**Book now:**

[Book a session](https://example.com/book){.button}
:::
"""


def test_lists_indent_with_margins_outlook_keeps(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    html = compile_issue(load_issue(write_issue(CALLOUT_WITH_BUTTON), settings.timezone), settings)
    page = html.personalise(SUBSCRIBER, "https://u.example/x").html
    for tag in ("ul", "ol"):
        match = re.search(rf'<{tag} style="([^"]*)"', page)
        assert match, tag
        style = _style(match[1])
        # Outlook desktop ignores list padding: the indent must be a left margin.
        assert style["padding"] in ("0", "0px"), style
        assert style["margin"].split()[3] in ("24px", "28px", "32px"), style
    for item in re.findall(r'<li style="([^"]*)"', page):
        assert _style(item)["padding"] in ("0", "0px")


def test_callout_button_is_bulletproof_and_the_callout_has_its_own_look(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    compiled = compile_issue(
        load_issue(write_issue(CALLOUT_WITH_BUTTON), settings.timezone), settings
    )
    page = compiled.personalise(SUBSCRIBER, "https://u.example/x").html
    theme = settings.theme
    # The button: a link inside a cell that carries the colour and, for Outlook, the padding.
    button = re.search(
        r'<td align="center" bgcolor="([^"]+)"[^>]*style="([^"]*)"><a href="https://example.com/book"'
        r'[^>]*style="([^"]*)">Book a session</a>',
        page,
    )
    assert button, "the callout's button is not a table cell around its link"
    assert button[1] == theme.accent
    assert _style(button[2])["mso-padding-alt"] == "14px 24px"
    link = _style(button[3])
    assert link["display"] == "inline-block" and link["padding"] == "14px 24px"
    # The callout: its own tint and an accent bar, and not the closing CTA's tint.
    callout = re.search(r'<td bgcolor="([^"]+)" style="([^"]*)">\s*<p', page)
    assert callout, "the callout is not a tinted cell"
    assert callout[1] == theme.callout_background
    assert _style(callout[2])["border-left"] == f"4px solid {theme.accent}"
    assert theme.cta_background != theme.callout_background
    before_cta = page.split("📩 Ready to Move Better?")[0]
    backgrounds = re.findall(r"background-color:(#[0-9a-fA-F]{3,6})", before_cta)
    assert backgrounds[-1] == theme.cta_background
