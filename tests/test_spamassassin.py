"""The sample issue as a spam filter reads it: SpamAssassin's local rules on the real .eml.

The message is the one the outbox provider writes on `newsletter send`, byte for byte, so the
score covers the headers, the MIME structure and both bodies.  Needs Debian's `spamassassin`
(.ci/run installs it); without it the test skips locally and fails in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli

from .conftest import SAMPLE_ISSUE

SPAMASSASSIN = shutil.which("spamassassin")


def spamassassin_report(raw: bytes) -> tuple[float, list[str]]:
    """The score and the names of the rules hit (`spamassassin -L -t`: local rules only)."""
    assert SPAMASSASSIN is not None, "CI must have spamassassin (.ci/run installs it)"
    result = subprocess.run(
        [SPAMASSASSIN, "-L", "-t"], input=raw, capture_output=True, timeout=300, check=False
    )
    report = result.stdout.decode("utf-8", "replace")
    # The "Content analysis details" table: " 0.7 HTML_FONT_LOW_CONTRAST BODY: ..."
    details = report.partition("Content analysis details:")[2]
    assert details, f"no SpamAssassin report in its output: {report[-2000:]}"
    score = re.search(r"\((-?[\d.]+) points", details)
    assert score, details[:500]
    rules = re.findall(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s", details, re.MULTILINE)
    return float(score[1]), [f"{name} {points}" for points, name in rules]


@pytest.mark.skipif(
    SPAMASSASSIN is None and not os.environ.get("CI"), reason="spamassassin is not installed"
)
def test_sample_scores_zero_with_local_rules(make_project: Callable[..., Path]) -> None:
    root = make_project()
    old = Path.cwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(cli, ["send", SAMPLE_ISSUE, "--yes"], obj={})
    finally:
        os.chdir(old)
    assert result.exit_code == 0, result.output
    raw = (root / "outbox/2025-07-21-hip-rotation/ada.runner@example.org.eml").read_bytes()
    score, rules = spamassassin_report(raw)
    scoring = [rule for rule in rules if float(rule.split()[1]) != 0]
    assert score == 0.0 and not scoring, f"SpamAssassin score {score}: {', '.join(rules)}"
