"""Run every benchmark several times and print README's table: each figure's median and its
spread (min-max) over the runs, each compared with its baseline or peer measured in the
same run (never with a figure from another day).

    .venv/bin/python bench/all.py            # full: send at 50k and 1M, lists of 1M (~1 hour)
    .venv/bin/python bench/all.py --quick    # send at 50k, list of 1M, scale to 100k (~10 min)
    .venv/bin/python bench/all.py --small    # CI: one run of each, tiny sizes, so none rots
    .venv/bin/python bench/all.py --quick --runs 5 --only send,peer

Runs go in rounds (every benchmark once, then again), and odd rounds run the baseline side
first, so a machine that gets busier during the run does not always favour one side.  The
date, the machine and its load average are printed with the table: on a shared machine the
spread says how far to trust a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from _common import machine

HERE = Path(__file__).resolve().parent
Figures = dict[str, float]


def spread(runs: list[Figures], key: str, fmt: str = "{:,.2f}") -> str:
    """``median (min-max)`` of one figure over the runs."""
    values = [run[key] for run in runs]
    median = fmt.format(statistics.median(values))
    if len(values) == 1:
        return median
    return f"{median} ({fmt.format(min(values))}-{fmt.format(max(values))})"


@dataclass
class Bench:
    name: str
    script: str
    args: dict[str, list[str]]  # per mode: "full", "quick", "small"
    question: str
    summary: Callable[[list[Figures]], tuple[str, str, str]]  # ours, compared with, headline
    runs: list[Figures] = field(default_factory=list)

    def command(self, mode: str) -> str:
        return " ".join([".venv/bin/python", f"bench/{self.script}", *self.args[mode]])


def _render(runs: list[Figures]) -> tuple[str, str, str]:
    ours = (
        f"{spread(runs, 'ours_ms')} ms whole; {spread(runs, 'mrml_ms', '{:.3f}')} ms MJML -> HTML"
    )
    if "official_ms" not in runs[0]:
        return ours, "official mjml: npm/node not found", "-"
    return (
        ours,
        f"official `mjml` 4 (npm): {spread(runs, 'official_ms')} ms, MJML -> HTML",
        f"mrml {spread(runs, 'ratio', '{:.0f}')}x faster on the same MJML",
    )


def _personalise(runs: list[Figures]) -> tuple[str, str, str]:
    return (
        f"Message {spread(runs, 'message_us', '{:.1f}')} us; + JSON bodies "
        f"{spread(runs, 'json_us', '{:.1f}')} us; "
        f"+ MIME bytes {spread(runs, 'mime_us', '{:.1f}')} us",
        "target 50 us",
        f"{spread(runs, 'json_us', '{:.1f}')} us a message, bodies included",
    )


def _audience(runs: list[Figures]) -> tuple[str, str, str]:
    return (
        f"{spread(runs, 'ours_us', '{:.1f}')} us a row, {spread(runs, 'ours_rss', '{:.0f}')} MB",
        f"`bench/baseline_check.py` (DictReader + validate_email): "
        f"{spread(runs, 'base_us', '{:.1f}')} us a row, {spread(runs, 'base_rss', '{:.0f}')} MB",
        f"**{spread(runs, 'ratio')}x** the baseline's time; "
        f"{spread(runs, 'ours_us', '{:.1f}')} us a row (target < 15)",
    )


def _send(runs: list[Figures]) -> tuple[str, str, str]:
    return (
        f"{spread(runs, 'ours_s')} s, {spread(runs, 'ours_rate', '{:,.0f}')}/s, "
        f"{spread(runs, 'ours_rss', '{:.0f}')} MB",
        f"`bench/baseline_send.py`: {spread(runs, 'base_s')} s, "
        f"{spread(runs, 'base_rss', '{:.0f}')} MB",
        f"**{spread(runs, 'ratio')}x** the baseline's time (target <= 1.0)",
    )


def _scale(runs: list[Figures]) -> tuple[str, str, str]:
    sizes = sorted(int(key[2:]) for key in runs[0] if key.startswith("s_"))
    times = "; ".join(
        f"{size:,}: {spread(runs, f's_{size}', '{:.1f}')} s, "
        f"{spread(runs, f'us_{size}', '{:.0f}')} us each"
        for size in sizes
    )
    memory = " / ".join(spread(runs, f"rss_{size}", "{:.0f}") for size in sizes)
    peak = max(run[f"rss_{size}"] for run in runs for size in sizes)
    return times, f"peak RSS {memory} MB", f"peak RSS at most {peak:.0f} MB (target < 150)"


def _peer(runs: list[Figures]) -> tuple[str, str, str]:
    for run in runs:
        run["ours_rate"], run["peer_rate"] = (
            run["count"] / run["ours_s"],
            run["count"] / run["peer_s"],
        )
    return (
        f"{spread(runs, 'ours_s')} s, {spread(runs, 'ours_rate', '{:,.0f}')} msg/s, "
        f"{spread(runs, 'ours_rss', '{:.0f}')} MB",
        f"`mailmerge` 2: {spread(runs, 'peer_s')} s, {spread(runs, 'peer_rate', '{:,.0f}')} msg/s",
        f"**{spread(runs, 'ratio', '{:.1f}')}x** mailmerge's rate (target >= 3)",
    )


def _latency(runs: list[Figures]) -> tuple[str, str, str]:
    levels = sorted(int(key[5:]) for key in runs[0] if key.startswith("rate_"))
    for run in runs:
        run["gain"] = run[f"rate_{levels[-2]}"] / run[f"rate_{levels[0]}"]
    rates = "; ".join(f"{level}: {spread(runs, f'rate_{level}', '{:,.0f}')}/s" for level in levels)
    return (
        f"concurrency {rates}",
        "the same calls, one at a time",
        f"{spread(runs, 'gain', '{:.1f}')}x at concurrency {levels[-2]}"
        " (the default concurrency, with slow_answer = 10)",
    )


def _ledger(runs: list[Figures]) -> tuple[str, str, str]:
    return (
        f"claim {spread(runs, 'claim_us', '{:.1f}')} + settle {spread(runs, 'settle_us', '{:.1f}')}"
        " us a recipient",
        f"SQLite alone, the same writes and fsyncs on the ledger's tables and indexes, an "
        f"UPDATE a row to settle: {spread(runs, 'bare_us', '{:.1f}')} us (on the table before "
        f"migration 9: {spread(runs, 'before_us', '{:.1f}')}; the floor, a table of (rowid,"
        f" status, batch, provider id), no data read: {spread(runs, 'floor_us', '{:.1f}')}; with"
        f" the data read back, a claim of one batch row and no row marked:"
        f" {spread(runs, 'floor_data_us', '{:.1f}')})",
        f"**{spread(runs, 'ours_us', '{:.1f}')} us** a recipient (target < 5); "
        f"{spread(runs, 'ratio')}x SQLite alone; this disk's fdatasync of 40 KB"
        f" {spread(runs, 'fdatasync_us', '{:.0f}')} us, a claim's commit waits for one",
    )


def _providers(runs: list[Figures]) -> tuple[str, str, str]:
    names = [name for name in runs[0] if name != "postmark"]
    return (
        "; ".join(f"{name} {spread(runs, name, '{:.1f}')}" for name in names),
        f"postmark {spread(runs, 'postmark', '{:.1f}')} us (the tuned reference)",
        "us per recipient, personalisation included",
    )


def _merge_fields(runs: list[Figures]) -> tuple[str, str, str]:
    fields = int(runs[0]["fields"])
    return (
        f"{fields:,} fields: {spread(runs, 'seconds')} s, {spread(runs, 'large_us', '{:.0f}')} us"
        " a field",
        f"the smallest draft, same run: {spread(runs, 'small_us', '{:.0f}')} us a field",
        f"**{spread(runs, 'growth')}x** the cost per field at the largest size (1.0 = linear)",
    )


def _optout(runs: list[Figures]) -> tuple[str, str, str]:
    count = int(runs[0]["count"])
    return (
        f"p50 {spread(runs, 'p50_ms', '{:.0f}')} ms, p95 {spread(runs, 'p95_ms', '{:.0f}')} ms,"
        f" max {spread(runs, 'max_ms', '{:.0f}')} ms; {spread(runs, 'rewrites', '{:.0f}')}"
        " rewrites of the list; the server's CPU "
        f"{spread(runs, 'server_cpu_ms', '{:.2f}')} ms an answer",
        "the front door alone, a fixed page at once, the same clients: p50 "
        f"{spread(runs, 'floor_p50_ms', '{:.0f}')} ms, max {spread(runs, 'floor_max_ms', '{:.0f}')}"
        " ms; waitress alone (serve before its front door, at best): max "
        f"{spread(runs, 'waitress_max_ms', '{:.0f}')} ms (target: each answered in under 100 ms)",
        f"**{spread(runs, 'recorded', '{:.0f}')} of {int(runs[0].get('everyone', count))}**"
        " recorded in the list (all waves); the waves after the first, meeting the list's"
        f" rewrite: max {spread(runs, 'waves_max_ms', '{:.0f}')} ms (the rewrite in the"
        f" server's thread, as before: {spread(runs, 'waves_before_max_ms', '{:.0f}')} ms)",
    )


BENCHES = [
    Bench(
        "render",
        "render.py",
        {"full": [], "quick": [], "small": ["--small"]},
        "compile the sample issue (median of 50)",
        _render,
    ),
    Bench(
        "personalise",
        "personalise.py",
        {"full": [], "quick": [], "small": ["--small"]},
        "personalise one message (median, 5,000 x 9)",
        _personalise,
    ),
    Bench(
        "audience",
        "audience.py",
        {"full": [], "quick": [], "small": ["--small"]},
        "`subscribers check` of 1,000,000 rows (the list pass of a send)",
        _audience,
    ),
    Bench(
        "ledger",
        "ledger.py",
        {"full": [], "quick": [], "small": ["--small"]},
        "ledger: claim and settle, batches of 250 (50,000, median of 5)",
        _ledger,
    ),
    Bench(
        "send",
        "send.py",
        {"full": [], "quick": [], "small": ["--small"]},
        "send 50,000 through `postmark` to a local sink",
        _send,
    ),
    Bench(
        "send-1m",
        "send.py",
        {"full": ["--count", "1000000"], "quick": [], "small": []},
        "send 1,000,000 through `postmark` to a local sink",
        _send,
    ),
    Bench(
        "scale",
        "scale.py",
        {"full": [], "quick": ["--sizes", "10000,100000"], "small": ["--small"]},
        "scale: time and peak memory by list size",
        _scale,
    ),
    Bench(
        "peer",
        "peer.py",
        {"full": [], "quick": [], "small": ["--small"]},
        "2,000 over SMTP to aiosmtpd",
        _peer,
    ),
    Bench(
        "latency",
        "latency.py",
        {"full": [], "quick": [], "small": ["--small"]},
        "20,000 with 100 ms added to every API call",
        _latency,
    ),
    Bench(
        "merge-fields",
        "merge_fields.py",
        {"full": [], "quick": [], "small": ["--small"]},
        "`check` + compile of drafts with 2,500 to 20,000 merge fields",
        _merge_fields,
    ),
    Bench(
        "optout",
        "optout_load.py",
        {"full": [], "quick": [], "small": ["--small"]},
        "200 one-click opt-outs at once on a 100,000-row list",
        _optout,
    ),
    Bench(
        "providers",
        "providers.py",
        {"full": [], "quick": [], "small": ["--small"]},
        "each provider's request body, batches of 250",
        _providers,
    ),
]
ONLY_IN_FULL = {"send-1m"}


def run_once(bench: Bench, mode: str, round_number: int) -> Figures:
    command = [sys.executable, str(HERE / bench.script), *bench.args[mode]]
    result = subprocess.run(
        command,
        env={**os.environ, "BENCH_ROUND": str(round_number)},
        capture_output=True,
        text=True,
        check=False,
    )
    figures: Figures | None = None
    for line in result.stdout.splitlines():
        if line.startswith("BENCH-FIGURES "):
            figures = json.loads(line.split(" ", 1)[1])
        else:
            print(f"    {line}")
    if result.returncode != 0 or figures is None:
        sys.exit(f"bench/{bench.script} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="send at 50k only, scale to 100k")
    parser.add_argument("--small", action="store_true", help="CI: tiny sizes, one run each")
    parser.add_argument(
        "--runs", type=int, help="runs of each benchmark (default 3; 1 with --small)"
    )
    parser.add_argument(
        "--only", help="comma-separated names: " + ", ".join(b.name for b in BENCHES)
    )
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args()
    mode = "small" if args.small else "quick" if args.quick else "full"
    runs = args.runs or (1 if args.small else 3)
    benches = [b for b in BENCHES if mode == "full" or b.name not in ONLY_IN_FULL]
    if args.only:
        wanted = set(args.only.split(","))
        benches = [b for b in benches if b.name in wanted]
    started, load_before = datetime.now(UTC), os.getloadavg()[0]
    clock = time.monotonic()
    for round_number in range(runs):
        for bench in benches:
            print(f"## round {round_number + 1}/{runs}: {bench.command(mode)}", flush=True)
            bench.runs.append(run_once(bench, mode, round_number))
    minutes, load_after = (time.monotonic() - clock) / 60, os.getloadavg()[0]
    if args.json:
        args.json.write_text(
            json.dumps({b.name: b.runs for b in benches}, indent=1) + "\n", encoding="utf-8"
        )
    print(
        f"\nRun on {started:%Y-%m-%d} (UTC {started:%H:%M}, {minutes:.0f} minutes) with "
        f"`.venv/bin/python bench/all.py{' --' + mode if mode != 'full' else ''}"
        f"{f' --runs {runs}' if args.runs else ''}`, {runs} run{'s' if runs > 1 else ''} of "
        f"each: median (min-max).  {machine()}; load average {load_before:.1f} at the start, "
        f"{load_after:.1f} at the end.\n"
    )
    if mode == "small":
        print("(--small: every size is smaller than its question says; for CI, not for README)\n")
    print("| benchmark | command | ours | compared with, same run | headline |")
    print("|---|---|---|---|---|")
    for bench in benches:
        ours, compared, headline = bench.summary(bench.runs)
        print(f"| {bench.question} | `{bench.command(mode)}` | {ours} | {compared} | {headline} |")


if __name__ == "__main__":
    main()
