"""Shared fixtures: a throw-away copy of the sample project, and the golden-file switch."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ISSUE = "newsletters/2025-07-21-hip-rotation.md"
ARTIFACTS = REPO / "tests" / "artifacts"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden/ from the current output instead of comparing",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the repository's newsletter: config, list and the sample issue."""
    root = tmp_path / "project"
    (root / "newsletters").mkdir(parents=True)
    for name in ("newsletter.toml", "subscribers.csv", SAMPLE_ISSUE):
        shutil.copyfile(REPO / name, root / name)
    return root


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project / "newsletter.toml")


@pytest.fixture
def write_issue(project: Path) -> Callable[..., Path]:
    """Write a draft into the project: front matter keys and a Markdown body."""

    def write(body: str, name: str = "2025-08-01-test.md", front: str | None = None) -> Path:
        if front is None:
            front = "subject: Test issue\n"
        path = project / "newsletters" / name
        path.write_text(f"---\n{front}---\n\n{body}", encoding="utf-8")
        return path

    return write


# A list as it arrives from a spreadsheet: BOM, CRLF, a quoted newline, stray spaces, the same
# address in another case, invalid rows, every status, a hostile name and a header injection.
MESSY_CSV = (
    "\ufeffemail,first_name,last_name,status,tags,city\r\n"
    "ada@example.org,Ada,Runner,subscribed,runners,Springfield\r\n"
    "ADA@Example.ORG,Ada,Again,subscribed,runners,Springfield\r\n"
    ' ben@example.org , Ben ,Lifter,,runners;seniors,"Shelby\r\nville"\r\n'
    "not-an-email,Nobody,,subscribed,,\r\n"
    "carl@localhost,Carl,,subscribed,,\r\n"
    "eve@example.org,Eve,Gone,unsubscribed,runners,\r\n"
    "frank@example.org,Frank,,bounced,,\r\n"
    "gina@example.org,Gina,,complained,,\r\n"
    'hax@example.org,"<script>alert(1)</script>",Smith & Co,subscribed,,\r\n'
    'crlf@example.org,"Mallory\r\nBcc: victim@example.net",X,subscribed,,\r\n'
    "ivy@example.org,Ivy,,SUBSCRIBED,seniors,\r\n"
    "jo@example.org,Jo,,subscribd,,\r\n"
    "kim@example.org,Kim,,subscribed,,\r\n"
    "KIM@example.org,Kim,,unsubscribed,,\r\n"
)
MESSY_AUDIENCE = [
    "ada@example.org",
    "ben@example.org",
    "hax@example.org",
    "crlf@example.org",
    "ivy@example.org",
]


def write_project(root: Path, provider: str = 'name = "outbox"', csv: str | None = None) -> Path:
    """A project folder with the sample issue, the given [provider] body and list."""
    (root / "newsletters").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / SAMPLE_ISSUE, root / SAMPLE_ISSUE)
    config = (REPO / "newsletter.toml").read_text(encoding="utf-8")
    config = config.split("[provider]")[0] + "[provider]\n" + provider + "\n"
    (root / "newsletter.toml").write_text(config, encoding="utf-8")
    if csv is None:
        shutil.copyfile(REPO / "subscribers.csv", root / "subscribers.csv")
    else:
        (root / "subscribers.csv").write_text(csv, encoding="utf-8", newline="")
    return root


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def make(provider: str = 'name = "outbox"', csv: str | None = None) -> Path:
        return write_project(tmp_path / f"p{next(counter)}", provider, csv)

    return make
