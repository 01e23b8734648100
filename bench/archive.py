"""How long `newsletter archive` takes for 100 issues: a first build, an unchanged rebuild,
and a rebuild after editing one issue.  Runs the CLI as a person would (a fresh process each
time, so Python's start-up and imports are counted).

    .venv/bin/python bench/archive.py [--issues 100]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from _common import REPO, SAMPLE_ISSUE, machine

NEWSLETTER = str(Path(sys.executable).with_name("newsletter"))


def project(root: Path, count: int) -> Path:
    (root / "newsletters").mkdir(parents=True)
    for name in ("newsletter.toml", "subscribers.csv"):
        shutil.copyfile(REPO / name, root / name)
    sample = (REPO / SAMPLE_ISSUE).read_text(encoding="utf-8")
    start = date(2024, 1, 1)
    for number in range(count):
        day = start + timedelta(days=7 * number)
        text = sample.replace("send_at: 2025-07-21 07:00", f"send_at: {day} 07:00").replace(
            "subject: Why Hip Rotation Matters More Than You Think",
            f"subject: Issue {number + 1} - why hip rotation matters",
        )
        (root / "newsletters" / f"{day}-issue-{number + 1}.md").write_text(text, encoding="utf-8")
    return root


def timed(root: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [NEWSLETTER, "archive"], cwd=root, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - started, result.stdout.strip().split(": ", 1)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=100)
    count = parser.parse_args().issues
    with tempfile.TemporaryDirectory() as folder:
        root = project(Path(folder), count)
        print(f"{machine()}; {count} issues")
        first, said = timed(root)
        print(f"first build:       {first:6.2f} s  ({said})")
        again, said = timed(root)
        print(f"unchanged rebuild: {again:6.2f} s  ({said})")
        edited = sorted((root / "newsletters").glob("*.md"))[count // 2]
        edited.write_text(edited.read_text(encoding="utf-8") + "\nOne more line.\n", "utf-8")
        one, said = timed(root)
        print(f"one issue edited:  {one:6.2f} s  ({said})")


if __name__ == "__main__":
    main()
