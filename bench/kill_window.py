"""How many readers a SIGKILL leaves unsettled through Postmark, with the default settings,
and what the next runs do with them.

A real `newsletter send` subprocess sends to a local server speaking Postmark's batch API
and its outbound message search (tests/fake_providers.py), each call answered after
``--latency`` seconds.  ``--kills`` fresh sends are each SIGKILLed at a random moment (after
a random number of answered batches, plus a random part of a call); the readers each kill
left in flight (``unknown`` for the next run) are counted, with their maximum and median.
Then, for the last one: the run right after (Postmark is asked; what it accepted is settled,
what it never got waits for the search grace period), and a run after the grace period
(``search_grace = 0`` stands for ten minutes later).  Last, one send left alone, timed: what
the window costs at that latency.

    .venv/bin/python bench/kill_window.py [--count 5000] [--latency 0.2] [--kills 8] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PYTHON, REPO, SAMPLE_ISSUE, machine, write_list
from pipeline.config import load_settings
from pipeline.sending import open_ledger
from tests.fake_providers import POSTMARK_TOKEN, FakePostmark

ISSUE = "2025-07-21-hip-rotation"


def project(root: Path, url: str, count: int) -> Path:
    (root / "newsletters").mkdir(parents=True)
    for name in ("newsletter.toml", SAMPLE_ISSUE):
        (root / name).write_bytes((REPO / name).read_bytes())
    config = root / "newsletter.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            '[provider]\nname = "outbox"', f'[provider]\nname = "postmark"\nbase_url = "{url}"'
        ),
        encoding="utf-8",
    )
    write_list(root / "subscribers.csv", count)
    return root


def send(
    root: Path,
    *,
    kill_when: int | None = None,
    server: FakePostmark | None = None,
    then: float = 0.0,
) -> None:
    """One `newsletter send --yes`; SIGKILLed ``then`` seconds after ``kill_when`` batches
    were answered, if given."""
    env = {**os.environ, "POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [PYTHON, "-m", "pipeline", "send", SAMPLE_ISSUE, "--yes"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if kill_when is not None and server is not None:
        while process.poll() is None and len(server.requests) < kill_when:
            time.sleep(0.005)
        time.sleep(then)
        process.send_signal(signal.SIGKILL)
    process.wait()


def quiet_server(latency: float) -> FakePostmark:
    server = FakePostmark()
    server.latency = latency
    # A request cut off by the kill is half a body: nothing to report.
    server.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
    return server


def counts(root: Path) -> tuple[int, int, int]:
    """(sent, unknown or in flight, pending): rows a dead run left in flight become unknown
    when the next run starts."""
    ledger = open_ledger(load_settings(root / "newsletter.toml"))
    try:
        found = ledger.counts(ISSUE)
        (in_flight,) = ledger.db.execute(
            "SELECT count(*) FROM recipients WHERE issue = ? AND status = 'inflight'", (ISSUE,)
        ).fetchone()
        return found.sent, found.unknown + in_flight, found.pending - in_flight
    finally:
        ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--kills", type=int, default=8, help="sends killed, one kill each")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    chance = random.Random(args.seed)
    batches = args.count // 250  # the default batch size
    print(f"{machine()}; {args.count} readers, {args.latency:.2f} s a call, defaults")
    left: list[int] = []
    with tempfile.TemporaryDirectory() as folder:
        for number in range(args.kills):
            server = quiet_server(args.latency)
            try:
                root = project(Path(folder) / f"p{number}", server.url, args.count)
                after = chance.randint(1, max(1, batches * 2 // 3))
                send(root, kill_when=after, server=server, then=chance.uniform(0, args.latency))
                time.sleep(args.latency + 0.5)  # the server finishes what the dead run sent
                sent, unknown, _ = counts(root)
                left.append(unknown)
                print(
                    f"kill {number + 1} (after {after} answers): {sent} sent, {unknown} in flight"
                )
                if number == args.kills - 1:
                    settle_after(root, server)
            finally:
                server.close()
        print(
            f"readers in flight at the kill, {len(left)} kills: max {max(left)},"
            f" median {statistics.median(left):g}, each {left}"
        )
        server = quiet_server(args.latency)
        try:
            root = project(Path(folder) / "whole", server.url, args.count)
            began = time.perf_counter()
            send(root)
            seconds = time.perf_counter() - began
            print(
                f"a whole send at {args.latency:.2f} s a call: {seconds:.1f} s"
                f" ({args.count / seconds:,.0f} readers/s, start-up included),"
                f" calls at once at most: {server.most_at_once}"
            )
        finally:
            server.close()


def settle_after(root: Path, server: FakePostmark) -> None:
    """The runs after a kill: asked, then sent after the grace period; exactly once."""
    searches = server.searches
    send(root)
    sent, unknown, pending = counts(root)
    print(
        f"  next run: {server.searches - searches} searches; {sent} sent, {unknown} still"
        f" unknown (not found yet: waiting for the search grace), {pending} pending"
    )
    config = root / "newsletter.toml"
    config.write_text(config.read_text() + "search_grace = 0\n")
    send(root)
    sent, unknown, pending = counts(root)
    twice = sum(1 for n in server.delivered.values() if n > 1)
    print(
        f"  a run after the grace: {sent} sent, {unknown} unknown, {pending} pending;"
        f" {len(server.delivered)} readers delivered, {twice} twice"
    )


if __name__ == "__main__":
    main()
