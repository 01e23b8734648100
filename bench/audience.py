"""8. The list pass: `newsletter subscribers check` on a generated list (the same pass a
send makes over the list before anything is built), microseconds per row, against
bench/baseline_check.py (csv.DictReader + email-validator on every row) in the same run.
Target: under 15 us a row at 1,000,000 rows.

    .venv/bin/python bench/audience.py                 # 1,000,000 rows
    .venv/bin/python bench/audience.py --count 200000
    .venv/bin/python bench/audience.py --small         # 5,000 (CI)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import (
    PYTHON,
    REPO,
    baseline_first,
    emit,
    machine,
    make_project,
    measured,
    table,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--count", type=int)
    args = parser.parse_args()
    count = args.count or (5_000 if args.small else 1_000_000)
    with tempfile.TemporaryDirectory() as temp:
        project = make_project(Path(temp) / "p", count, 'name = "outbox"')

        def ours() -> dict[str, float]:
            return measured(
                [PYTHON, "-m", "pipeline", "subscribers", "check"],
                cwd=project,
                env={"PYTHONPATH": str(REPO)},
            )

        def base() -> dict[str, float]:
            return measured(
                [PYTHON, str(REPO / "bench" / "baseline_check.py"), "subscribers.csv"],
                cwd=project,
                env={"PYTHONPATH": str(REPO)},
            )

        if baseline_first():
            theirs, mine = base(), ours()
        else:
            mine, theirs = ours(), base()
    ours_us, base_us = mine["seconds"] / count * 1e6, theirs["seconds"] / count * 1e6
    rows = [
        (f"list pass over {count:,} rows", "seconds", "us per row", "peak RSS MB"),
        (
            "newsletter subscribers check",
            f"{mine['seconds']:.2f}",
            f"{ours_us:.1f}",
            f"{mine['max_rss_mb']:.0f}",
        ),
        (
            "baseline: DictReader + validate_email",
            f"{theirs['seconds']:.2f}",
            f"{base_us:.1f}",
            f"{theirs['max_rss_mb']:.0f}",
        ),
    ]
    print(f"machine: {machine()}")
    print(table(rows))
    print(f"ratio ours/baseline: {ours_us / base_us:.2f}x; {ours_us:.1f} us a row (target < 15)")
    emit(
        {
            "count": count,
            "ours_us": ours_us,
            "base_us": base_us,
            "ours_rss": mine["max_rss_mb"],
            "base_rss": theirs["max_rss_mb"],
            "ratio": ours_us / base_us,
        }
    )


if __name__ == "__main__":
    main()
