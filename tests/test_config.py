"""newsletter.toml: every bad value is one line with file:line and the key, and a suggestion
where one can be made (time zones as people write them)."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipeline.config import load_settings, parse_timezone
from pipeline.content.issue import parse_send_at
from pipeline.errors import ConfigError


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("PST", "America/Los_Angeles"),
        ("Pacific", "America/Los_Angeles"),
        ("America/Portland", "America/Los_Angeles"),
        ("america/los_angeles", "America/Los_Angeles"),
        ("America/Los Angeles", "America/Los_Angeles"),
        ("Eastern", "America/New_York"),
        ("CST", "America/Chicago"),
        ("Europe/Londn", "Europe/London"),
        ("Seattle", "America/Los_Angeles"),
        ("Los Angeles", "America/Los_Angeles"),
        ("Denver", "America/Denver"),
        ("london", "Europe/London"),
    ],
)
def test_time_zone_did_you_mean(project: Path, written: str, meant: str) -> None:
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('"America/Los_Angeles"', f'"{written}"'), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = caught.value.location_message()
    assert message.startswith(f"{config}:8: [newsletter] timezone: unknown time zone")
    assert f"did you mean '{meant}'?" in message
    assert "\n" not in message


def test_fixed_offset_abbreviation_is_refused_with_the_zone() -> None:
    with pytest.raises(ValueError, match="no daylight saving: use 'America/New_York'"):
        parse_timezone("EST")
    assert parse_timezone("US/Pacific") == ZoneInfo("US/Pacific")


@pytest.mark.parametrize(
    ("written", "example"),
    [
        ("UTC-8", "America/Los_Angeles"),
        ("GMT-8", "America/Los_Angeles"),
        ("UTC -5", "America/New_York"),
        ("GMT+1", None),
    ],
)
def test_an_offset_is_not_mistaken_for_utc(written: str, example: str | None) -> None:
    # difflib once offered 'GMT-0' for 'GMT-8' and 'UTC' for 'UTC-8': eight hours off.
    with pytest.raises(ValueError) as caught:
        parse_timezone(written)
    message = str(caught.value)
    assert "did you mean" not in message
    assert "daylight saving" in message
    if example is not None:
        assert f"'{example}'" in message


def test_nonsense_time_zone_has_no_suggestion_but_an_example() -> None:
    with pytest.raises(ValueError) as caught:
        parse_timezone("Mars/Olympus")
    assert "did you mean" not in str(caught.value)
    assert "'America/New_York'" in str(caught.value)


def test_bad_toml_names_its_line(project: Path) -> None:
    config = project / "newsletter.toml"
    lines = config.read_text(encoding="utf-8").splitlines()
    lines[4] = "name = Movement Solutions"  # unquoted
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = caught.value.location_message()
    assert message.startswith(f"{config}:5: not valid TOML: ") and "(at line" not in message


def test_config_that_is_a_folder_or_binary(tmp_path: Path) -> None:
    folder = tmp_path / "newsletter.toml"
    folder.mkdir()
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(folder)
    binary = tmp_path / "other.toml"
    binary.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(binary)


LA = ZoneInfo("America/Los_Angeles")


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("2026-12-02 7:00", "(did you mean '2026-12-02 07:00'?)"),
        ("2026-12-02 07:00 PST", "(did you mean '2026-12-02 07:00'? the time zone is"),
        ("2026-12-02 7:00 pm EST", "(did you mean '2026-12-02 19:00'? the time zone is"),
    ],
)
def test_send_at_one_digit_hour_or_a_zone_gets_a_suggestion(written: str, hint: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_send_at(written, LA)
    assert hint in str(caught.value)


@pytest.mark.parametrize("written", ["2026-13-02 07:00", "2026-02-30", "13/45/2026 7:00"])
def test_send_at_suggests_no_date_that_does_not_exist(written: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_send_at(written, LA)
    assert "did you mean" not in str(caught.value)


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("07/21/2025 7:00 PM", "did you mean '2025-07-21 19:00'?"),
        ("2025-07-21 7pm", "did you mean '2025-07-21 19:00'?"),
        ("2025-07-21", "did you mean '2025-07-21 07:00'? add the time"),
        ("7/4/2025", "did you mean '2025-07-04 07:00'? add the time"),
        ("soon", ""),
        ("2025-13-45 07:00", ""),
    ],
)
def test_send_at_shows_both_forms_and_a_suggestion(written: str, hint: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_send_at(written, LA)
    message = str(caught.value)
    assert hint in message
    assert "'2025-07-21 07:00'" in message and "'2025-07-21T07:00:00-07:00'" in message
