"""`newsletter check`: each rule has a failing and a passing case."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings, setting_line
from pipeline.render.checks import check_issue
from pipeline.render.email_body import body_to_mjml
from pipeline.render.markdown import parse

from .conftest import SAMPLE_ISSUE

GOOD_BODY = (
    "Hi {{ subscriber.first_name }}.\n\n[Book](https://movementsolutions.example/book){.button}\n"
)


def messages(path: Path, settings: Settings) -> list[str]:
    return [p.location_message() for p in check_issue(path, settings)]


def test_sample_issue_is_clean(project: Path, settings: Settings) -> None:
    assert messages(project / "newsletters/2025-07-21-hip-rotation.md", settings) == []


def test_good_draft_is_clean(write_issue: Callable[..., Path], settings: Settings) -> None:
    assert messages(write_issue(GOOD_BODY), settings) == []


def test_missing_subject(write_issue: Callable[..., Path], settings: Settings) -> None:
    path = write_issue(GOOD_BODY, front="preheader: x\n")
    assert messages(path, settings) == [
        f"{path}:1: subject: missing: every issue needs a subject line"
    ]


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (
            "subscriber.frist_name",
            "unknown merge field subscriber.frist_name: the list has no column 'frist_name' "
            "(its columns: city, email, first_name, last_name, status, tags); "
            "did you mean subscriber.first_name?",
        ),
        (
            'subscriber["shoe size"]',
            "unknown merge field subscriber.shoe size: the list has no column 'shoe size'",
        ),
        (
            "first_name",
            "merge field {{ first_name }} is not allowed: 'first_name' is not a merge field "
            "(did you mean subscriber.first_name?",
        ),
    ],
)
def test_unknown_merge_field(
    write_issue: Callable[..., Path], settings: Settings, field: str, expected: str
) -> None:
    path = write_issue("Line one\n\nHi {{ " + field + " }}\n")
    (message,) = messages(path, settings)
    assert message.startswith(f"{path}:7: {expected}")


def test_any_csv_column_is_a_merge_field(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    assert messages(write_issue("From {{ subscriber.city }}.\n"), settings) == []


def test_unknown_merge_field_in_subject(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    path = write_issue("Body\n", front="preheader: p\nsubject: 'Hi {{ subscriber.nickname }}'\n")
    (message,) = messages(path, settings)
    assert message.startswith(f"{path}:3: unknown merge field subscriber.nickname")


def test_malformed_front_matter_and_send_at(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    bad_yaml = write_issue(GOOD_BODY, name="a.md", front="subject: [oops\n")
    assert "not valid YAML" in messages(bad_yaml, settings)[0]
    bad_time = write_issue(GOOD_BODY, name="b.md", front="subject: s\nsend_at: 2025-13-45 07:00\n")
    assert messages(bad_time, settings) == [
        f"{bad_time}:3: send_at: '2025-13-45 07:00' is not a valid date and time: write a "
        "local time such as '2025-07-21 07:00' (24-hour clock, in newsletter.toml's timezone) "
        "or a time with its offset such as '2025-07-21T07:00:00-07:00'"
    ]


def test_image_without_alt(write_issue: Callable[..., Path], settings: Settings) -> None:
    path = write_issue(
        "Text\n\n![](https://movementsolutions.example/a.png)\n\n![A drill](https://movementsolutions.example/b.png)\n"
    )
    assert messages(path, settings) == [
        f"{path}:7: image 'https://movementsolutions.example/a.png' has no alt text: "
        "write ![what it shows](https://movementsolutions.example/a.png)"
    ]


@pytest.mark.parametrize(
    ("link", "problem"),
    [
        ("[site]()", "link 'site' is empty"),
        ("[site](tel:5551234)", "link 'site' 'tel:5551234' is not an http(s)"),
        ("[site](/relative/page)", "link 'site' '/relative/page' is not an http(s)"),
        ("[site](ftp://example.com)", "is not an http(s) or mailto link"),
    ],
)
def test_bad_links(
    write_issue: Callable[..., Path], settings: Settings, link: str, problem: str
) -> None:
    path = write_issue(f"Para\n\nSee {link} now.\n")
    (message,) = messages(path, settings)
    assert message.startswith(f"{path}:7: ") and problem in message


def test_good_links(write_issue: Callable[..., Path], settings: Settings) -> None:
    body = (
        "[a](https://movementsolutions.example) [b](http://movementsolutions.example) "
        "[c](mailto:connie@example.org)\n"
    )
    assert messages(write_issue(body), settings) == []


def test_button_without_url(write_issue: Callable[..., Path], settings: Settings) -> None:
    path = write_issue("Para\n\n[Watch Demo Video]{.button}\n\n[Empty]({{ '' }}){.button}\n")
    found = messages(path, settings)
    assert found[0] == (
        f"{path}:7: button 'Watch Demo Video' has no URL: "
        "write [Watch Demo Video](https://...){.button}"
    )
    assert found[1].startswith(f"{path}:9: button 'Empty'")


def test_html_over_gmail_clip_limit(write_issue: Callable[..., Path], settings: Settings) -> None:
    paragraph = "Mobility work keeps the hips free and the stride long. " * 20
    path = write_issue("\n\n".join([paragraph] * 110))
    (message,) = messages(path, settings)
    assert message.startswith(f"{path}: the HTML is ")
    assert "Gmail clips messages over 102 KB, so cut at least" in message
    assert messages(write_issue("\n\n".join([paragraph] * 40), name="small.md"), settings) == []


def test_footer_without_postal_address_or_unsubscribe(
    write_issue: Callable[..., Path], project: Path, settings: Settings
) -> None:
    (project / "templates").mkdir()
    (project / "templates" / "footer.mjml.j2").write_text(
        "<mj-section><mj-column><mj-text>Thanks for reading</mj-text></mj-column></mj-section>",
        encoding="utf-8",
    )
    found = messages(write_issue(GOOD_BODY), settings)
    assert any("missing the postal address" in m for m in found)
    assert any("missing the unsubscribe link" in m for m in found)


def test_long_postal_address_wrapped_in_text_part_is_found(
    write_issue: Callable[..., Path], project: Path
) -> None:
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    long_address = "Building 7, 1234 Long Avenue Northwest, Suite 500, Springfield, ST 00000, USA"
    config.write_text(
        text.replace(
            'postal_address = "123 Example Street, Suite 4, Springfield, ST 00000"',
            f'postal_address = "{long_address}"',
        ),
        encoding="utf-8",
    )
    assert messages(write_issue(GOOD_BODY), load_settings(config)) == []


def test_placeholder_postal_address(write_issue: Callable[..., Path], project: Path) -> None:
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace('postal_address = "123', 'postal_address = "REPLACE with 123'),
        encoding="utf-8",
    )
    found = messages(write_issue(GOOD_BODY), load_settings(config))
    assert found == [
        f"{config}:11: [newsletter] postal_address: postal_address is still the placeholder: "
        "put the practice's postal address"
    ]


@pytest.mark.parametrize(
    ("provider", "says"),
    [
        (
            'name = "postmrk"',
            "[provider] name: unknown provider 'postmrk' (did you mean 'postmark'?",
        ),
        ('api_key = "abc"', "[provider] api_key: a secret never goes in newsletter.toml"),
        (
            'name = "postmark"\nserver_token = "abc"',
            "[provider] server_token: a secret never goes in newsletter.toml",
        ),
        (
            'name = "postmark"\nbatch_sise = 100',
            "[provider] batch_sise: not a setting of the postmark provider (did you mean"
            " 'batch_size'?",
        ),
        ('name = "postmark"\nbase_url = "http://127.0.0.1:99999"', "[provider] base_url: must be"),
        # The delivery loop's settings, read as the send reads them.
        ('name = "postmark"\nbatch_size = 9999', "[provider] batch_size: must be a whole number"),
        ('name = "postmark"\nrate = "fast"', "[provider] rate: must be a number"),
        ('name = "postmark"\nconcurrency = 0', "[provider] concurrency: must be a whole number"),
    ],
)
def test_check_reads_the_provider_settings_as_a_send_does(
    make_project: Callable[..., Path], provider: str, says: str
) -> None:
    """`check` said "ok" of a [provider] section every send then refused (and cron too, in a
    log she does not read); it needs no secret to say so."""
    root = make_project(provider=provider)
    config = root / "newsletter.toml"
    problems = check_issue(root / SAMPLE_ISSUE, load_settings(config))
    assert len(problems) == 1
    message = problems[0].location_message()
    key = says.split()[1].rstrip(":")
    assert message.startswith(f"{config}:{setting_line(config, 'provider', key)}: {says}")
    assert "abc" not in message


def test_check_needs_no_secret_for_a_good_provider_section(
    make_project: Callable[..., Path],
) -> None:
    for provider in (
        'name = "postmark"',
        'name = "ses"\nregion = "eu-west-1"',
        'name = "smtp"\nusername = "c"',
    ):
        root = make_project(provider=provider)
        assert check_issue(root / SAMPLE_ISSUE, load_settings(root / "newsletter.toml")) == []


# Markdown the parser did not take as markup is printed as it is, to every reader.
@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        (
            "[Watch Demo Video](VIDEO LINK HERE){.button}",
            "a link was not understood: '[Watch Demo Video](VIDEO LINK HERE)' — a link is "
            "[words](https://address), with no spaces in the address",
        ),
        (
            "[⬇ Watch Demo Video ⬇(https://example.org/v){.button}",
            "a link was not understood: '[⬇ Watch Demo Video ⬇(https://example.org/v)' has no "
            "']' after its words — write [⬇ Watch Demo Video ⬇](https://example.org/v)",
        ),
        (
            "Please watch the Demo Video](https://example.org/v) today.",
            "a link was not understood: 'watch the Demo Video](https://example.org/v)' has no '[' "
            "before its words — a link is [words](https://address)",
        ),
        (
            "![a lunge](lunge photo.png)",
            "an image was not understood: '![a lunge](lunge photo.png)' — an image is "
            "![what it shows](https://address), with no spaces in the address",
        ),
        (
            "[Book now](https://example.org/b) {.button}",
            "'{.button}' is shown as text, not read as a button: write "
            "[Book now](https://example.org/b){.button}, with no space before the {",
        ),
        (
            "[Book now](https://example.org/b){button}",
            "'{button}' is shown as text, not read as a button: write "
            "[Book now](https://example.org/b){.button}, with a dot before 'button'",
        ),
        (
            "Book now {button}",
            "'{button}' is shown as text: it goes right after a link, as in "
            "[words](https://address){.button}",
        ),
        (
            "![a lunge](https://example.org/l.png) {.button}",
            "'{.button}' is shown as text: it goes right after a link, as in "
            "[words](https://address){.button}",
        ),
        (
            "## Book now {.button}",
            "'{.button}' is shown as text: it goes right after a link, as in "
            "[words](https://address){.button}",
        ),
        (
            "[Book now](https://example.org/b){.buton}",
            "link 'Book now' has {.buton}, which this newsletter does not know (it changes "
            "nothing): did you mean {.button}?",
        ),
        (
            "[Book now](https://example.org/b){.Button}",
            "link 'Book now' has {.Button}, which this newsletter does not know (it changes "
            "nothing): did you mean {.button}?",
        ),
        (
            "[Book now](https://example.org/b){.button .big}",
            "button 'Book now' has {.big}, which this newsletter does not know (it changes "
            "nothing): the only one it knows is {.button}, which makes a link a button",
        ),
        (
            "Click [here]{.button} today.",
            "button 'here' has no URL: write [here](https://...){.button}",
        ),
        (
            "![a lunge](https://example.org/l.png){.button}",
            "image 'a lunge' has {.button}, but only a link can be a button: write "
            "[words](https://address){.button}",
        ),
        (
            "::: Callout\nhello\n:::",
            "'::: Callout' is shown as text: write ::: callout, in small letters",
        ),
        (
            "::: calout\nhello\n:::",
            "'::: calout' is shown as text: did you mean ::: callout? 'calout' is not a kind "
            "of box this newsletter has (it has ::: callout) — a callout is ::: callout on a "
            "line of its own, its text, then ::: on a line of its own",
        ),
        (
            "::: note\n\nhello\n\n:::",
            "'::: note' is shown as text: 'note' is not a kind of box this newsletter has (it "
            "has ::: callout) — a callout is ::: callout on a line of its own, its text, then "
            "::: on a line of its own",
        ),
        (
            "::: callout Bottom line\nhello\n:::",
            "the words after '::: callout' ('Bottom line') are not shown to readers: put them "
            "on the next line, inside the callout",
        ),
    ],
)
def test_markdown_shown_as_text(
    write_issue: Callable[..., Path], settings: Settings, markdown: str, expected: str
) -> None:
    path = write_issue(f"Para\n\n{markdown}\n")
    assert messages(path, settings) == [f"{path}:7: {expected}"]


def test_a_refused_merge_field_is_not_also_leftover_braces(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    path = write_issue("Para\n\nHi {{ button }}\n")
    (message,) = messages(path, settings)
    assert message.startswith(f"{path}:7: merge field {{{{ button }}}} is not allowed")


def test_a_callout_closed_twice(write_issue: Callable[..., Path], settings: Settings) -> None:
    path = write_issue("Para\n\n::: callout\nhello\n:::\n:::\n")
    assert messages(path, settings) == [
        f"{path}:10: ':::' is shown as text: it closes no callout — a callout is ::: callout on "
        "a line of its own, its text, then ::: on a line of its own"
    ]


def test_two_broken_links_in_one_sentence(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    path = write_issue(
        "Para\n\nSee the [study] (https://example.org/s) and\n"
        "[this one](https://example.org/t for details.\n"
    )
    assert messages(path, settings) == [
        f"{path}:7: a link was not understood: '[study] (https://example.org/s)' — write "
        "[study](https://example.org/s), with no space between ] and (",
        f"{path}:8: a link was not understood: '[this one](https://example.org/t' has no ')' "
        "after its address — write [this one](https://example.org/t)",
    ]


def test_leftover_names_its_own_line_in_a_long_paragraph(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    path = write_issue(
        "Para\n\nLine one with [a link](https://example.org/a),\n"
        "line two with `code`,\\\nline three [Book](https://example.org/b) {.button}\n"
        "and [a bad one](https://example.org/c){.buton}.\n"
    )
    found = messages(path, settings)
    assert [m.split(": ", 1)[0] for m in found] == [f"{path}:9", f"{path}:10"]
    assert "'{.button}' is shown as text" in found[0] and "{.buton}" in found[1]


@pytest.mark.parametrize(
    ("markdown", "where"),
    [
        ("- [Watch](https://example.org/w){.button}", "is in a list"),
        ("1. Step\n\n   [Watch](https://example.org/w){.button}", "is in a list"),
        ("> [Watch](https://example.org/w){.button}", "is in a quote"),
        (
            "Then [Watch](https://example.org/w){.button} it.",
            "shares its paragraph with other text",
        ),
        ("[Watch](https://example.org/w){.button}.", "shares its paragraph with other text"),
        (
            "[Watch](https://example.org/w){.button}\nand more",
            "shares its paragraph with other text",
        ),
        ("| a |\n|---|\n| [Watch](https://example.org/w){.button} |", "is in a table"),
        ("## [Watch](https://example.org/w){.button}", "is in a heading"),
        (
            "**[Watch](https://example.org/w){.button}**",
            "is inside bold, italic or crossed-out text",
        ),
        (
            "- item\n\n  ::: callout\n  [Watch](https://example.org/w){.button}\n  :::",
            "is in a list",
        ),
    ],
)
def test_button_where_it_is_an_ordinary_link(
    write_issue: Callable[..., Path], settings: Settings, markdown: str, where: str
) -> None:
    path = write_issue(f"Para\n\n{markdown}\n")
    (message,) = messages(path, settings)
    assert message.startswith(f"{path}:") and f"button 'Watch' {where}, so it shows" in message
    assert message.endswith(
        "as an ordinary link, not a button: put [Watch](https://example.org/w){.button} on a "
        "line of its own, outside lists and quotes, with a blank line before and after it"
    )


def test_the_email_has_no_button_where_check_says_so(settings: Settings) -> None:
    """What the rule above is about: the writer makes an ordinary link of these."""
    for markdown in (
        "- [Watch](https://example.org/w){.button}",
        "> [Watch](https://example.org/w){.button}",
        "Then [Watch](https://example.org/w){.button} it.",
        "**[Watch](https://example.org/w){.button}**",
    ):
        mjml = body_to_mjml(parse(markdown), settings.theme)
        assert "<mj-button" not in mjml and 'class="button"' in mjml
    assert "<mj-button" in body_to_mjml(
        parse("[Watch](https://example.org/w){.button}"), settings.theme
    )
    in_callout = "::: callout\n[Watch](https://example.org/w){.button}\n:::"
    assert "mso-padding-alt:14px 24px" in body_to_mjml(parse(in_callout), settings.theme)


def test_what_is_not_leftover_markdown(
    write_issue: Callable[..., Path], settings: Settings
) -> None:
    """Brackets, braces and colons in prose and code, merge fields and every correct form."""
    body = (
        'Hi {{ subscriber.first_name | default("there") }}, it said [sic] twice [1][2].\n'
        "The study [1] (Smith, 2020) and [see the notes] on a ratio of 2::1, a :: b.\n"
        "Sets of {3, 5, 8} reps, {sic} and {first name}; a [note (in brackets)] here,\n"
        "[an aside (https://movementsolutions.example/aside) in brackets].\n"
        "Code: `[a](b c){.button}`, `{.buton}`, `::: Callout` and `[x(https://e.org/y)`.\n\n"
        "```\n[Watch Demo Video](VIDEO LINK HERE){.button}\n::: Callout\n{button}\n:::\n```\n\n"
        "    [indented](code block){.button}\n\n"
        "[Book](https://movementsolutions.example/book){.button}\n\n"
        "[Site](https://movementsolutions.example/?n={{ subscriber.first_name }}) and "
        '[titled](https://movementsolutions.example "a title with spaces") and '
        "<https://movementsolutions.example/auto> and "
        "[spaced](<https://movementsolutions.example/a b>)\n\n"
        "::: callout\n**Bottom line:** {{ subscriber.first_name }}, move.\n\n"
        "[Book](https://movementsolutions.example/book){.button}\n:::\n\n"
        ":::: callout\nFour colons open one too.\n::::\n\n"
        "- [a link](https://movementsolutions.example/l) in a list\n"
    )
    assert messages(write_issue(body), settings) == []
