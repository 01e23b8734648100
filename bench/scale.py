"""4. Scale: peak RSS and time of `newsletter send` at 10k, 100k and 1,000,000 subscribers
(through the postmark provider to a local sink).  Memory should stay flat, time linear.

    .venv/bin/python bench/scale.py                 # 10k, 100k, 1M (several minutes)
    .venv/bin/python bench/scale.py --small         # 1k, 5k (CI)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import (
    PYTHON,
    REPO,
    SAMPLE_ISSUE,
    TOKEN,
    emit,
    machine,
    make_project,
    measured,
    postmark_sink,
    table,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--sizes", help="comma-separated, e.g. 10000,100000")
    args = parser.parse_args()
    sizes = [1_000, 5_000] if args.small else [10_000, 100_000, 1_000_000]
    if args.sizes:
        sizes = [int(size) for size in args.sizes.split(",")]
    figures: dict[str, float] = {}
    rows = [("subscribers", "seconds", "us per recipient", "recipients/s", "peak RSS MB")]
    for size in sizes:
        with tempfile.TemporaryDirectory() as temp, postmark_sink() as (url, received):
            project = make_project(Path(temp) / "p", size, f'name = "postmark"\nbase_url = "{url}"')
            run = measured(
                [PYTHON, "-m", "pipeline", "send", SAMPLE_ISSUE, "--yes"],
                cwd=project,
                env={"POSTMARK_SERVER_TOKEN": TOKEN, "PYTHONPATH": str(REPO)},
            )
            if received.value != size:
                sys.exit(f"{size}: the sink received {received.value}")
        rows.append(
            (
                f"{size:,}",
                f"{run['seconds']:.1f}",
                f"{run['seconds'] / size * 1e6:.0f}",
                f"{size / run['seconds']:,.0f}",
                f"{run['max_rss_mb']:.0f}",
            )
        )
        print(f"  {size:,} done", file=sys.stderr)
        figures |= {
            f"s_{size}": run["seconds"],
            f"us_{size}": run["seconds"] / size * 1e6,
            f"rss_{size}": run["max_rss_mb"],
        }
    print(f"machine: {machine()}")
    print(table(rows))
    emit(figures)


if __name__ == "__main__":
    main()
