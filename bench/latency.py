"""6. Latency: the local Postmark sink adds 100 ms to every call, like a real API far away.
Throughput then comes from having several batches in flight: `[provider] concurrency`.
At this latency the default window keeps one batch in flight (answers slower than
`slow_answer`, 0.15 s: README, "The kill window"), so this bench sets `slow_answer = 10` to
measure what concurrency buys a sender who chooses speed over a small kill window.

    .venv/bin/python bench/latency.py            # 20,000 subscribers, batches of 500
    .venv/bin/python bench/latency.py --small    # 2,000 subscribers, batches of 100 (CI)
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

LATENCY = 0.1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    small = parser.parse_args().small
    count, batch = (2_000, 100) if small else (20_000, 500)
    rows = [("concurrency", "seconds", "recipients/s", "calls")]
    figures: dict[str, float] = {}
    for concurrency in (1, 2, 4, 8):
        with tempfile.TemporaryDirectory() as temp, postmark_sink(LATENCY) as (url, received):
            project = make_project(
                Path(temp) / "p",
                count,
                f'name = "postmark"\nbase_url = "{url}"\nbatch_size = {batch}\n'
                f"concurrency = {concurrency}\nslow_answer = 10",
            )
            run = measured(
                [PYTHON, "-m", "pipeline", "send", SAMPLE_ISSUE, "--yes"],
                cwd=project,
                env={"POSTMARK_SERVER_TOKEN": TOKEN, "PYTHONPATH": str(REPO)},
            )
            if received.value != count:
                sys.exit(f"the sink received {received.value}, not {count}")
        figures[f"rate_{concurrency}"] = count / run["seconds"]
        rows.append(
            (
                str(concurrency),
                f"{run['seconds']:.2f}",
                f"{count / run['seconds']:,.0f}",
                str(count // batch),
            )
        )
    print(f"machine: {machine()}; {count:,} subscribers, {LATENCY * 1000:.0f} ms per call")
    print(table(rows))
    emit(figures)


if __name__ == "__main__":
    main()
