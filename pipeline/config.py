"""newsletter.toml + environment -> one typed, validated ``Settings``.

Read once, in one place: defaults merged, paths made absolute relative to the config file,
every value checked.  A bad value is one line naming the key.  Secrets are never read from
this file: providers take them from the environment under their conventional names.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email

from pipeline.errors import ConfigError

CONFIG_NAME = "newsletter.toml"
STATE_DIR_NAME = ".newsletter"


@dataclass(frozen=True)
class Theme:
    """The look: one accent colour and readable type.  Used by the templates, never by code."""

    accent: str = "#1f7a6d"
    text_color: str = "#26302e"
    muted_color: str = "#5f6b69"
    background: str = "#f2f5f4"
    content_background: str = "#ffffff"
    callout_background: str = "#e8f3f1"
    cta_background: str = "#f6f0e4"  # the closing call to action: apart from any callout
    font_family: str = "Helvetica, Arial, sans-serif"
    font_size: int = 17
    logo_url: str = ""


@dataclass(frozen=True)
class CallToAction:
    """The "Ready to move better?" block closing every issue."""

    heading: str
    text: str
    button: str
    url: str


class ViewInBrowser(StrEnum):
    """Where an email shows its "View in browser" link."""

    TOP = "top"
    FOOTER = "footer"
    OFF = "off"


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str


@dataclass(frozen=True)
class ArchiveSettings:
    """The web edition (``[archive]``), and where "Sign up" points (``[signup] url``)."""

    url: str = ""  # where site/issues/ is served, ending in /issues/: a page is <url><slug>/
    nav: tuple[NavLink, ...] = ()
    view_in_browser: ViewInBrowser = ViewInBrowser.FOOTER
    signup_url: str = ""  # [signup] url; empty: the web app's <base_url>/subscribe
    signup_text: str = ""  # under "Sign up to receive regular emails like this"


@dataclass(frozen=True)
class ProviderSettings:
    name: str = "outbox"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SignupSettings:
    """``[signup]``: the signup form of ``newsletter serve`` and its double opt-in."""

    tags: tuple[str, ...] = ()  # interests offered on the form; ticked ones go to `tags`
    confirm_expiry: timedelta = timedelta(days=7)  # how long a confirmation link works
    min_fill_seconds: float = 2.0  # a form posted faster than this was filled by a bot
    per_ip_per_hour: int = 20  # signup posts from one IP address; beyond: 429
    per_address_per_hour: int = 5  # signup posts for one address; beyond: 429


@dataclass(frozen=True)
class Settings:
    root: Path
    config_path: Path | None
    name: str
    sender: str
    reply_to: str
    timezone: ZoneInfo
    postal_address: str
    base_url: str
    subscribers: Path
    language: str
    why: str
    signature: str
    theme: Theme
    cta: CallToAction | None
    max_lateness: timedelta
    provider: ProviderSettings
    # A mailbox that only takes unsubscribe requests, for List-Unsubscribe's mailto:; empty:
    # the header carries only the one-click https link (RFC 8058).
    unsubscribe_mailto: str = ""
    archive: ArchiveSettings = field(default_factory=ArchiveSettings)
    signup: SignupSettings = field(default_factory=SignupSettings)

    @property
    def newsletters_dir(self) -> Path:
        return self.root / "newsletters"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR_NAME

    @property
    def sender_address(self) -> str:
        return parseaddr(self.sender)[1]


def find_config(start: Path) -> Path | None:
    """newsletter.toml in ``start`` or the nearest parent folder that has one."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def load_settings(config_path: Path | None = None, *, start: Path | None = None) -> Settings:
    """Read and validate the settings; raise ConfigError naming the key on any problem."""
    path = config_path or find_config(start or Path.cwd())
    if path is None:
        where = (start or Path.cwd()).resolve()
        raise ConfigError(
            f"no {CONFIG_NAME} in {where} or its parents (run `newsletter init` to create one)"
        )
    path = path.resolve()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("file not found", path=path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason}): save it as UTF-8", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot be read: {exc.strerror}", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        # "Expected '=' after a key (at line 3, column 5)": the line goes where a person looks.
        found = re.search(r"\s*\(at line (\d+), column \d+\)$", str(exc))
        message = str(exc)[: found.start()] if found else str(exc)
        line = int(found[1]) if found else None
        raise ConfigError(
            f"not valid TOML: {message}{_toml_hint(path, line)}", path=path, line=line
        ) from None
    return parse_settings(data, root=path.parent, config_path=path)


def _toml_hint(path: Path, line: int | None) -> str:
    """What to write instead, for the mistake a person makes most in a TOML file: a text
    value without its quotes (``from = Dr. Connie <...>``, ``font_size = 17px``)."""
    if line is None:
        return ""
    try:
        written = path.read_text(encoding="utf-8").splitlines()[line - 1]
    except (OSError, UnicodeDecodeError, IndexError):
        return ""
    key, equals, value = written.partition("=")
    value, key = value.strip(), key.strip()
    if not equals or not value or key.startswith("#"):
        return ""
    if value[0] in "\"'" and value.count(value[0]) > 2:  # 'You're ...', "the "hip" lady"
        inner = value[1:].rsplit(value[0], 1)[0].replace('"', '\\"')
        return f' (the text has a quote inside it: write {key} = "{inner}")'
    if value[0] in "\"'[{":
        return ""
    if key in _DURATION_KEYS:
        return f' (a duration goes in double quotes: {key} = "{value.replace(" ", "")}")'
    if re.fullmatch(r"\d+(\.\d+)?\s*[a-z%]+", value):  # 17px, 24 h
        number = re.match(r"\d+(\.\d+)?", value)
        assert number is not None
        return f" (a number goes without its unit: {key.strip()} = {number[0]})"
    return f' (text goes in double quotes: {key.strip()} = "{value}")'


_SECTIONS = {"newsletter", "theme", "cta", "provider", "archive", "signup"}
_NEWSLETTER_KEYS = {
    "name",
    "from",
    "reply_to",
    "timezone",
    "postal_address",
    "base_url",
    "subscribers",
    "language",
    "why",
    "signature",
    "max_lateness",
    "unsubscribe_mailto",
}


def setting_line(path: Path | None, section: str, key: str) -> int | None:
    """The line of ``key = ...`` in ``[section]`` of newsletter.toml (tomllib keeps none)."""
    try:
        text = path.read_text(encoding="utf-8") if path is not None else ""
    except (OSError, UnicodeDecodeError):
        return None
    current = "top level"
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]", line)
        if header:
            current = header[1]
            if section == "top level" and current == key:
                return number
        elif current == section and re.match(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
            return number
    return None


class _Reader:
    """Typed access to one TOML table, with errors that name ``[table] key``."""

    def __init__(self, path: Path | None, table: str, data: Mapping[str, Any]) -> None:
        self.path, self.table, self.data = path, table, data

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(
            message,
            path=self.path,
            line=setting_line(self.path, self.table, key),
            field=f"[{self.table}] {key}",
        )

    def reject_unknown(self, known: set[str]) -> None:
        for key in self.data:
            if key not in known:
                hint = difflib.get_close_matches(key, sorted(known), n=1)
                suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise self.error(key, f"unknown setting{suffix}")

    def string(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise self.error(key, "required setting is missing")
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {type(value).__name__}")
        value = value.strip()
        if not value and default is None:
            raise self.error(key, "must not be empty")
        control = next((c for c in value if _CONTROL.match(c)), None)
        if control is not None:  # a NUL broke the MJML compile with no setting named
            raise self.error(
                key, f"has an invisible control character (U+{ord(control):04X}): retype it"
            )
        return value

    def integer(self, key: str, default: int) -> int:
        value = self.data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key, f"must be a whole number, not {value!r}")
        return value


# Control characters but the line break and the tab a multi-line TOML string may hold.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _check_address(reader: _Reader, key: str, value: str) -> str:
    if "\n" in value or "\t" in value:  # one header line: "A <a@b>\r\nBcc: x" folded into it
        raise reader.error(key, f"must be one line, a name and an address, not {value!r}")
    address = parseaddr(value)[1]
    try:
        # Every message carries it: a non-ASCII address would fail every one of them.
        valid = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise reader.error(key, f"not a valid address ({value!r}): {exc}") from None
    if not address.isascii():
        raise reader.error(key, f"write the domain in its ASCII form: {valid.ascii_email}")
    return value


def _check_url(reader: _Reader, key: str, value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise reader.error(key, f"must be an http(s) URL, not {value!r}")
    return value.rstrip("/")


_LOS_ANGELES, _DENVER, _CHICAGO, _NEW_YORK = (
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
)
# What people write for a time zone that is not an IANA name: abbreviations, regions, and
# cities that share a zone with the city it is named after.  Lower case, spaces for '_'.
ZONE_ALIASES = {
    **dict.fromkeys(("pst", "pdt", "pt", "pacific", "pacific time"), _LOS_ANGELES),
    **dict.fromkeys(("mdt", "mt", "mountain", "mountain time"), _DENVER),
    **dict.fromkeys(("cst", "cdt", "ct", "central", "central time"), _CHICAGO),
    **dict.fromkeys(("edt", "et", "eastern", "eastern time"), _NEW_YORK),
    **dict.fromkeys(("akst", "akdt", "alaska"), "America/Anchorage"),
    **dict.fromkeys(("hawaii", "hst"), "Pacific/Honolulu"),
    "arizona": "America/Phoenix",
    **dict.fromkeys(("bst", "uk", "british time"), "Europe/London"),
    **dict.fromkeys(("cest", "central european time"), "Europe/Berlin"),
    **dict.fromkeys(("aest", "aedt"), "Australia/Sydney"),
    **dict.fromkeys(
        (
            "portland",
            "seattle",
            "san francisco",
            "san diego",
            "san jose",
            "sacramento",
            "oakland",
            "las vegas",
            "spokane",
            "california",
            "oregon",
            "washington state",
        ),
        _LOS_ANGELES,
    ),
    **dict.fromkeys(("salt lake city", "albuquerque", "colorado", "utah"), _DENVER),
    **dict.fromkeys(
        (
            "dallas",
            "houston",
            "austin",
            "san antonio",
            "minneapolis",
            "st louis",
            "kansas city",
            "nashville",
            "new orleans",
            "milwaukee",
            "oklahoma city",
            "omaha",
            "texas",
        ),
        _CHICAGO,
    ),
    **dict.fromkeys(
        (
            "boston",
            "atlanta",
            "miami",
            "philadelphia",
            "washington",
            "washington dc",
            "baltimore",
            "pittsburgh",
            "charlotte",
            "orlando",
            "tampa",
            "cleveland",
            "columbus",
            "raleigh",
            "florida",
            "new york city",
        ),
        _NEW_YORK,
    ),
}
# Valid names that are a fixed offset all year: 'EST' in July is an hour off New York.
_FIXED_OFFSET_ZONES = {
    "EST": f"'EST' is UTC-5 all year, with no daylight saving: use '{_NEW_YORK}'",
    "MST": f"'MST' is UTC-7 all year, with no daylight saving: use '{_DENVER}' "
    "(or 'America/Phoenix' in Arizona)",
}


# 'UTC-8', 'GMT+1': an offset, which never changes for daylight saving.  Spelling-matching
# them against zone names offered 'GMT-0' for 'GMT-8', eight hours off.
_OFFSET = re.compile(r"^\s*(?:utc|gmt)\s*([+-])\s*(\d{1,2})(?::?00)?\s*$", re.IGNORECASE)
# The zone whose standard time is that offset, where one region is the clear meaning.
_ZONE_AT_OFFSET = {
    -5: _NEW_YORK,
    -6: _CHICAGO,
    -7: _DENVER,
    -8: _LOS_ANGELES,
    -9: "America/Anchorage",
    -10: "Pacific/Honolulu",
}


def _offset_message(name: str) -> str | None:
    """What to say of an offset written as a time zone (``UTC-8``); None if it is not one."""
    match = _OFFSET.match(name)
    if match is None:
        return None
    hours = int(match[2]) * (-1 if match[1] == "-" else 1)
    example = _ZONE_AT_OFFSET.get(hours)
    such_as = f"'{example}'" if example else "'America/New_York' or 'Europe/London'"
    return (
        f"{name.strip()!r} is a fixed offset, with no daylight saving, so half the year it "
        f"would be an hour off: write the zone of the practice's city, such as {such_as}"
    )


def suggest_timezone(name: str) -> str | None:
    """The IANA zone someone writing ``name`` most likely means, if any."""
    zones = sorted(available_timezones())
    key = " ".join(name.replace("_", " ").lower().split())
    by_lower = {zone.lower(): zone for zone in zones}
    # 'Los Angeles', 'london': the city a zone is named after, without its region.
    by_city = {zone.rsplit("/", 1)[-1].lower(): zone for zone in zones if "/" in zone}
    for candidate in (key, key.rsplit("/", 1)[-1], key.split(",")[0].strip()):
        if candidate in ZONE_ALIASES:
            return ZONE_ALIASES[candidate]
        if candidate.replace(" ", "_") in by_lower:
            return by_lower[candidate.replace(" ", "_")]
        if candidate.replace(" ", "_") in by_city:
            return by_city[candidate.replace(" ", "_")]
    close = difflib.get_close_matches(name.replace(" ", "_"), zones, n=1, cutoff=0.75)
    return close[0] if close else None


def parse_timezone(name: str) -> ZoneInfo:
    """An IANA time zone (``America/Los_Angeles``); ValueError with a suggestion otherwise."""
    if name in _FIXED_OFFSET_ZONES:
        raise ValueError(_FIXED_OFFSET_ZONES[name])
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    offset = _offset_message(name)
    if offset is not None:
        raise ValueError(offset)
    hint = suggest_timezone(name)
    suggestion = f"did you mean '{hint}'? " if hint else ""
    raise ValueError(
        f"unknown time zone {name!r}: {suggestion}A time zone is written Region/City, "
        "as in 'America/New_York' or 'Europe/London'"
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LONGEST_DURATION = timedelta(days=3650)
_DURATION_KEYS = {"max_lateness", "confirm_expiry"}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration such as '24h', '90m' or '2d'")
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    # A bound, so that no date arithmetic on it overflows (a traceback of every command).
    if seconds > _LONGEST_DURATION.total_seconds():
        raise ValueError(f"{text!r} is longer than any such setting needs (at most '3650d')")
    return timedelta(seconds=seconds)


def parse_settings(data: Mapping[str, Any], *, root: Path, config_path: Path | None) -> Settings:
    top = _Reader(config_path, "top level", data)
    for key, value in data.items():
        if key not in _SECTIONS or not isinstance(value, dict):
            hint = difflib.get_close_matches(key.lower(), sorted(_SECTIONS), n=1)
            suffix = f" (did you mean '[{hint[0]}]'?)" if hint else ""
            raise top.error(key, f"unknown section{suffix}")

    news = _Reader(config_path, "newsletter", data.get("newsletter", {}))
    news.reject_unknown(_NEWSLETTER_KEYS)
    name = news.string("name")
    sender = _check_address(news, "from", news.string("from"))
    reply_to = news.string("reply_to", "")
    if reply_to:
        _check_address(news, "reply_to", reply_to)
    try:
        timezone = parse_timezone(news.string("timezone"))
    except ValueError as exc:
        raise news.error("timezone", str(exc)) from None
    try:
        max_lateness = parse_duration(news.string("max_lateness", "24h"))
    except ValueError as exc:
        raise news.error("max_lateness", str(exc)) from None
    base_url = _check_url(news, "base_url", news.string("base_url"))
    domain = re.sub(r"^https?://", "", base_url).split("/")[0]

    unsubscribe_mailto = news.string("unsubscribe_mailto", "").removeprefix("mailto:")
    if unsubscribe_mailto:
        _check_address(news, "unsubscribe_mailto", unsubscribe_mailto)
        unsubscribe_mailto = parseaddr(unsubscribe_mailto)[1]

    theme_reader = _Reader(config_path, "theme", data.get("theme", {}))
    theme_fields = {f for f in Theme.__dataclass_fields__}
    theme_reader.reject_unknown(theme_fields)
    theme_values: dict[str, Any] = {}
    for key in theme_fields:
        if key not in theme_reader.data:
            continue
        if key == "font_size":
            theme_values[key] = theme_reader.integer(key, Theme.font_size)
            if not 14 <= theme_values[key] <= 24:
                raise theme_reader.error(key, "keep body text between 14 and 24 px")
        else:
            value = theme_reader.string(key, "")
            if key.endswith(("color", "accent", "background")) and not re.fullmatch(
                r"#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?", value
            ):
                raise theme_reader.error(key, f"must be a colour such as '#1f7a6d', not {value!r}")
            theme_values[key] = value

    cta: CallToAction | None = None
    if "cta" in data:
        cta_reader = _Reader(config_path, "cta", data["cta"])
        cta_reader.reject_unknown({"heading", "text", "button", "url"})
        cta = CallToAction(
            heading=cta_reader.string("heading"),
            text=cta_reader.string("text", ""),
            button=cta_reader.string("button"),
            url=_check_url(cta_reader, "url", cta_reader.string("url")),
        )

    signup = _signup_settings(_Reader(config_path, "signup", data.get("signup", {})))

    provider_data = dict(data.get("provider", {}))
    provider_reader = _Reader(config_path, "provider", provider_data)
    provider_name = provider_reader.string("name", "outbox") or "outbox"
    provider_data.pop("name", None)

    archive = _parse_archive(data, config_path, base_url)

    return Settings(
        root=root.resolve(),
        config_path=config_path,
        name=name,
        sender=sender,
        reply_to=reply_to,
        timezone=timezone,
        postal_address=news.string("postal_address"),
        base_url=base_url,
        subscribers=(root / news.string("subscribers", "subscribers.csv")).resolve(),
        language=news.string("language", "en") or "en",
        why=news.string(
            "why", f"You are receiving this because you subscribed to {name} at {domain}."
        )
        or f"You are receiving this because you subscribed to {name} at {domain}.",
        signature=news.string("signature", "") or name,
        theme=Theme(**theme_values),
        cta=cta,
        max_lateness=max_lateness,
        provider=ProviderSettings(name=provider_name, options=provider_data),
        unsubscribe_mailto=unsubscribe_mailto,
        archive=archive,
        signup=signup,
    )


def _parse_archive(
    data: Mapping[str, Any], config_path: Path | None, base_url: str
) -> ArchiveSettings:
    """``[archive]`` url, nav, view_in_browser; and ``[signup] url`` (the signup page, if it is
    not the web app's).  Other ``[signup]`` keys belong to the signup form and are not read here."""
    reader = _Reader(config_path, "archive", data.get("archive", {}))
    reader.reject_unknown({"url", "nav", "view_in_browser", "signup_text"})
    url = reader.string("url", "")
    url = _check_url(reader, "url", url) + "/" if url else f"{base_url}/issues/"
    if not url.endswith("/issues/"):
        # site/issues/<slug>/ is served at <url><slug>/, so the site's root is the folder above.
        raise reader.error(
            "url", f"must end in /issues/ (where the site's issues/ folder is served), not {url!r}"
        )
    where = reader.string("view_in_browser", ViewInBrowser.FOOTER)
    try:
        view_in_browser = ViewInBrowser(where)
    except ValueError:
        raise reader.error(
            "view_in_browser", f"must be 'top', 'footer' or 'off', not {where!r}"
        ) from None
    raw_nav = reader.data.get("nav", [])
    if isinstance(raw_nav, dict):  # [archive.nav] "Our Services" = "https://..."
        raw_nav = [{"label": label, "url": link} for label, link in raw_nav.items()]
    if not isinstance(raw_nav, list):
        raise reader.error(
            "nav", 'must be a list such as [{ label = "Our Services", url = "https://..." }]'
        )
    nav: list[NavLink] = []
    for number, item in enumerate(raw_nav, start=1):
        if not isinstance(item, dict):
            raise reader.error(
                "nav",
                f'link {number} must be {{ label = "...", url = "https://..." }}, not {item!r}',
            )
        if set(item) != {"label", "url"}:
            # Named in TOML's words: a Python dict ({'label': ...}) is not what she wrote.
            label = item.get("label")
            example = (
                f'{{ label = "{label if isinstance(label, str) else "..."}", url = "https://..." }}'
            )
            unknown = sorted(set(item) - {"label", "url"})
            problem = (
                f"unknown key {unknown[0]!r}"
                if unknown
                else f"{'url' if 'label' in item else 'label'} is missing"
            )
            raise reader.error("nav", f"link {number}: {problem}; write {example}")
        link = _Reader(config_path, "archive", item)
        target = link.string("url")
        if not re.match(r"^(https?://|mailto:|/)", target):
            # "www.example.com/services", as an address bar shows it: say the full link.
            looks_like_site = re.match(r"^[\w-]+(\.[\w-]+)+(/|$)", target)
            hint = f" (did you mean 'https://{target}'?)" if looks_like_site else ""
            raise reader.error(
                "nav", f"link {number}: {target!r} is not an http(s), mailto or /path link{hint}"
            )
        nav.append(NavLink(label=link.string("label"), url=target))
    signup = _Reader(config_path, "signup", data.get("signup", {}))
    signup_url = signup.string("url", "")
    if signup_url:
        signup_url = _check_url(signup, "url", signup_url)
    return ArchiveSettings(
        url=url,
        nav=tuple(nav),
        view_in_browser=view_in_browser,
        signup_url=signup_url,
        signup_text=reader.string("signup_text", ""),
    )


def _signup_settings(reader: _Reader) -> SignupSettings:
    # ``url`` (a signup page elsewhere, for the web edition's "Sign up" link) is read with
    # the [archive] settings; every other key is the form's.
    reader.reject_unknown({*SignupSettings.__dataclass_fields__, "url"})
    tags = reader.data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        raise reader.error("tags", 'must be a list of words, such as ["runners", "seniors"]')
    for tag in tags:
        if ";" in tag or "," in tag:
            raise reader.error("tags", f"{tag!r}: a tag cannot contain ';' or ','")
    try:
        expiry = parse_duration(reader.string("confirm_expiry", "7d") or "7d")
    except ValueError as exc:
        raise reader.error("confirm_expiry", str(exc)) from None
    min_fill = reader.data.get("min_fill_seconds", SignupSettings.min_fill_seconds)
    if not isinstance(min_fill, int | float) or isinstance(min_fill, bool) or min_fill < 0:
        raise reader.error("min_fill_seconds", f"must be a number of seconds, not {min_fill!r}")
    limits = {}
    for key in ("per_ip_per_hour", "per_address_per_hour"):
        limits[key] = reader.integer(key, getattr(SignupSettings, key))
        if limits[key] < 1:
            raise reader.error(key, "must be at least 1")
    return SignupSettings(
        tags=tuple(t.strip().lower() for t in tags),
        confirm_expiry=expiry,
        min_fill_seconds=float(min_fill),
        **limits,
    )
