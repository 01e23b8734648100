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
