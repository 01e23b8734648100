"""3. End to end: `newsletter send` of generated subscribers through the postmark provider
to a local server speaking Postmark's batch API, against a baseline doing only the
unavoidable work (bench/baseline_send.py: one thread, no validation, no ledger), in the same
run.  The sink is a process of its own (it shares no GIL with either side), and each send
is a process of its own (bench/measure.py reads its peak RSS).  The baseline runs with
glibc's malloc told to keep the memory it frees (``BASELINE_ENV``), its fastest; the
pipeline as `newsletter send` runs.  Target: a ratio of at most 1.0 (the pipeline no slower
than the baseline).

    .venv/bin/python bench/send.py                    # 50,000 subscribers
    .venv/bin/python bench/send.py --count 1000000
    .venv/bin/python bench/send.py --small            # 1,000 (CI)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import (
    BASELINE_ENV,
    PYTHON,
    REPO,
    SAMPLE_ISSUE,
    TOKEN,
    baseline_first,
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
    parser.add_argument("--count", type=int)
    args = parser.parse_args()
    count = args.count or (1_000 if args.small else 50_000)
    with tempfile.TemporaryDirectory() as temp, postmark_sink() as (url, received):
        project = make_project(
            Path(temp) / "project", count, f'name = "postmark"\nbase_url = "{url}"'
        )

        def ours() -> dict[str, float]:
            received.value = 0
            figures = measured(
                [PYTHON, "-m", "pipeline", "send", SAMPLE_ISSUE, "--yes"],
                cwd=project,
                env={"POSTMARK_SERVER_TOKEN": TOKEN, "PYTHONPATH": str(REPO)},
            )
            if received.value != count:
                sys.exit(f"the sink received {received.value} messages, not {count}")
            return figures

        def base() -> dict[str, float]:
            received.value = 0
            figures = measured(
                [PYTHON, str(REPO / "bench" / "baseline_send.py"), str(project), url],
                cwd=project,
                env={"PYTHONPATH": str(REPO), **BASELINE_ENV},
            )
            if received.value != count:
                sys.exit(f"the baseline delivered {received.value} messages, not {count}")
            return figures

        if baseline_first():
            theirs, mine = base(), ours()
        else:
            mine, theirs = ours(), base()
    rows = [
        ("send of", "seconds", "recipients/s", "peak RSS MB"),
        (
            f"newsletter send ({count:,})",
            f"{mine['seconds']:.2f}",
            f"{count / mine['seconds']:,.0f}",
            f"{mine['max_rss_mb']:.0f}",
        ),
        (
            f"baseline ({count:,})",
            f"{theirs['seconds']:.2f}",
            f"{count / theirs['seconds']:,.0f}",
            f"{theirs['max_rss_mb']:.0f}",
        ),
    ]
    print(f"machine: {machine()}")
    print(table(rows))
    ratio = mine["seconds"] / theirs["seconds"]
    print(
        f"ratio pipeline/baseline: {ratio:.2f}x (target <= 1.0); "
        f"{count / mine['seconds']:,.0f} recipients/s"
    )
    emit(
        {
            "count": count,
            "ours_s": mine["seconds"],
            "base_s": theirs["seconds"],
            "ours_rss": mine["max_rss_mb"],
            "base_rss": theirs["max_rss_mb"],
            "ours_rate": count / mine["seconds"],
            "ratio": ratio,
        }
    )


if __name__ == "__main__":
    main()
