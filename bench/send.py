"""3. End to end: `newsletter send` of generated subscribers through the postmark provider
to a local server speaking Postmark's batch API, against a baseline doing only the
unavoidable work (bench/baseline_send.py), in the same run.  Targets: within 1.5x of the
baseline, at least 5,000 recipients/s.

    .venv/bin/python bench/send.py            # 100,000 subscribers
    .venv/bin/python bench/send.py --small    # 1,000 (CI)
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
    machine,
    make_project,
    measured,
    postmark_sink,
    table,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--count", type=int)
    args = parser.parse_args()
    count = args.count or (1_000 if args.small else 100_000)
    with tempfile.TemporaryDirectory() as temp, postmark_sink() as (url, received):
        project = make_project(
            Path(temp) / "project", count, f'name = "postmark"\nbase_url = "{url}"'
        )
        ours = measured(
            [PYTHON, "-m", "pipeline", "send", SAMPLE_ISSUE, "--yes"],
            cwd=project,
            env={"POSTMARK_SERVER_TOKEN": TOKEN, "PYTHONPATH": str(REPO)},
        )
        if received.value != count:
            sys.exit(f"the sink received {received.value} messages, not {count}")
        received.value = 0
        base = measured(
            [PYTHON, str(REPO / "bench" / "baseline_send.py"), str(project), url],
            cwd=project,
            env={"PYTHONPATH": str(REPO)},
        )
        if received.value != count:
            sys.exit(f"the baseline delivered {received.value} messages, not {count}")
    rows = [
        ("send of", "seconds", "recipients/s", "peak RSS MB"),
        (
            f"newsletter send ({count:,})",
            f"{ours['seconds']:.2f}",
            f"{count / ours['seconds']:,.0f}",
            f"{ours['max_rss_mb']:.0f}",
        ),
        (
            f"baseline ({count:,})",
            f"{base['seconds']:.2f}",
            f"{count / base['seconds']:,.0f}",
            f"{base['max_rss_mb']:.0f}",
        ),
    ]
    print(f"machine: {machine()}")
    print(table(rows))
    ratio = ours["seconds"] / base["seconds"]
    print(
        f"ratio pipeline/baseline: {ratio:.2f}x (target <= 1.5x); "
        f"{count / ours['seconds']:,.0f} recipients/s (target >= 5,000)"
    )


if __name__ == "__main__":
    main()
