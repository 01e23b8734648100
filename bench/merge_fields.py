"""8. Merge fields: `check` then compile (what `send` does before its first message) of drafts
with 2,500 to 20,000 distinct merge fields, to show the time grows linearly with their number
(it was quadratic: counting lines from the top for every field, and one Jinja parse and compile
per field, twice).

    .venv/bin/python bench/merge_fields.py            # 2,500 .. 20,000 fields, 3 runs each
    .venv/bin/python bench/merge_fields.py --small    # 1,000 and 2,000 fields, 1 run (CI)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import REPO, emit, machine, table

from pipeline.config import load_settings
from pipeline.content.issue import load_issue
from pipeline.render.checks import check_issue
from pipeline.render.compile import compile_issue


def draft(fields: int) -> str:
    lines = (f"Line {i}: {{{{ subscriber.first_name | default('x{i}') }}}}" for i in range(fields))
    return "---\nsubject: Many fields\n---\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    sizes, runs = ([1000, 2000], 1) if args.small else ([2500, 5000, 10000, 20000], 3)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name in ("newsletter.toml", "subscribers.csv"):
            shutil.copyfile(REPO / name, root / name)
        (root / "newsletters").mkdir()
        settings = load_settings(root / "newsletter.toml")
        rows: list[tuple[str, ...]] = [
            ("fields", "check + compile (median)", "spread", "per field", "vs half as many")
        ]
        previous = None
        per_field: dict[int, float] = {}
        for size in sizes:
            path = root / "newsletters" / f"2025-08-01-fields-{size}.md"
            path.write_text(draft(size), encoding="utf-8")
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                check_issue(path, settings)  # the Gmail size problem is expected: ignored
                compile_issue(load_issue(path, settings.timezone), settings)
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            growth = f"{median / previous:.2f}x" if previous else ""
            rows.append(
                (
                    f"{size:,}",
                    f"{median:.2f} s",
                    f"{min(times):.2f}-{max(times):.2f} s",
                    f"{median / size * 1e6:.0f} us",
                    growth,
                )
            )
            previous = median
            per_field[size] = median / size * 1e6
    print(machine())
    print(table(rows))
    smallest, largest = min(per_field), max(per_field)
    emit(
        {
            "fields": float(largest),
            "seconds": float(previous or 0),
            "small_us": per_field[smallest],
            "large_us": per_field[largest],
            # Linear time keeps the cost per field flat: this ratio stays near 1.
            "growth": per_field[largest] / per_field[smallest],
        }
    )


if __name__ == "__main__":
    main()
