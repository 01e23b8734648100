"""What the kill window costs a healthy SMTP relay: the same send of 2,000 over SMTP to a
local aiosmtpd sink (bench/_common.py's, two processes), with the default window and with
`slow_answer = 10` (every batch counts as fast: `concurrency` connections from the start,
as before the window), alternating, several runs each.

SMTP sends a batch as one transaction per message, so the window times each message, not
the batch (pipeline/delivery/loop.py, ``Window``).

    .venv/bin/python bench/smtp_window.py [--count 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from _common import PYTHON, REPO, SAMPLE_ISSUE, machine, make_project, measured, smtp_sink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"default window": [], "slow_answer = 10": []}
    with tempfile.TemporaryDirectory() as temp, smtp_sink() as (port, received):
        for _ in range(args.runs):
            for label in times:
                extra = "\nslow_answer = 10" if label != "default window" else ""
                project = make_project(
                    Path(temp) / "p",
                    args.count,
                    f'name = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"' + extra,
                )
                received.value = 0
                figures = measured(
                    [PYTHON, "-m", "pipeline", "send", SAMPLE_ISSUE, "--yes"],
                    cwd=project,
                    env={"PYTHONPATH": str(REPO)},
                )
                if received.value != args.count:
                    sys.exit(f"the sink received {received.value}, not {args.count}")
                times[label].append(figures["seconds"])
    print(f"machine: {machine()}; {args.count:,} over SMTP, {args.runs} runs each")
    for label, seconds in times.items():
        print(
            f"{label}: median {statistics.median(seconds):.2f} s"
            f" ({min(seconds):.2f}-{max(seconds):.2f})"
        )


if __name__ == "__main__":
    main()
