"""`newsletter check`: each rule has a failing and a passing case."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings, setting_line
from pipeline.render.checks import check_issue

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
