"""Where the time of a send goes: cProfile of `newsletter send` of 50,000 subscribers through
the postmark provider to the same local sink as bench/send.py (a process of its own), the
send run in this process so that its main thread, the one that builds every message and
keeps the ledger, is the one profiled (the delivery workers, which mostly wait for the sink,
are not).  Prints the share of the main thread's time in each stage, then the functions
with the most time of their own.  The profiler inflates every figure; the shares are what
count.  Nothing is compared here: README's summary under the table is made from this.

    .venv/bin/python bench/profile_send.py                 # 50,000 subscribers
    .venv/bin/python bench/profile_send.py --count 5000
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
from pathlib import Path

from _common import REPO, SAMPLE_ISSUE, TOKEN, machine, make_project, postmark_sink, table

# Stage -> the (file, function) whose cumulative time is the stage's (no two of them call
# one another).
STAGES = {
    "build the messages (merge fields, headers, unsubscribe links)": [
        ("delivery/loop.py", "build_each")
    ],
    "claim batches in the ledger": [("ledger/store.py", "claim")],
    "settle batches in the ledger": [("ledger/store.py", "settle")],
    "record the audience (the list pass included)": [("ledger/store.py", "add_recipients")],
    "compile the issue (Markdown, Jinja, MJML)": [("render/compile.py", "compile_issue")],
    "wait for the delivery workers' answers": [("concurrent/futures/_base.py", "wait")],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50_000)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from pipeline.config import load_settings
    from pipeline.delivery.providers import create_provider
    from pipeline.sending import send_issue

    with tempfile.TemporaryDirectory() as temp, postmark_sink() as (url, received):
        project = make_project(
            Path(temp) / "project", args.count, f'name = "postmark"\nbase_url = "{url}"'
        )
        environ = {**os.environ, "POSTMARK_SERVER_TOKEN": TOKEN}
        old = Path.cwd()
        os.chdir(project)
        try:
            settings = load_settings(project / "newsletter.toml")
            provider = create_provider(settings, environ)
            profile = cProfile.Profile()
            profile.enable()
            report = send_issue(project / SAMPLE_ISSUE, settings, provider, environ=environ)
            profile.disable()
        finally:
            os.chdir(old)
        if report is None or report.counts.sent != args.count:
            sys.exit(f"the send did not send all {args.count}: {report}")
        if received.value != args.count:
            sys.exit(f"the sink received {received.value} messages, not {args.count}")
    stats = pstats.Stats(profile)
    entries = stats.stats  # type: ignore[attr-defined]
    total = max(ct for _, _, _, ct, _ in entries.values())

    def cumulative(file: str, function: str) -> float:
        found = [
            ct
            for (path, _, name), (_, _, _, ct, _) in entries.items()
            if name == function and path.endswith(file)
        ]
        return max(found, default=0.0)

    rows = [("stage of the main thread", "seconds", "share")]
    for stage, names in STAGES.items():
        seconds = sum(cumulative(f, n) for f, n in names)
        rows.append((stage, f"{seconds:.2f}", f"{seconds / total:.0%}"))
    rows.append(("the whole send, profiled", f"{total:.2f}", "100%"))
    print(f"# cProfile of newsletter send of {args.count:,} through postmark ({machine()})")
    print(table(rows))
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
    print("functions with the most time of their own:")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-2000:])
    if os.environ.get("PROFILE_CALLERS"):
        pstats.Stats(profile).sort_stats("tottime").print_callers(os.environ["PROFILE_CALLERS"])


if __name__ == "__main__":
    main()
