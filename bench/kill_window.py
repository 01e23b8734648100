"""How many readers a SIGKILL leaves unsettled through Postmark, with the default settings,
and what the next runs do with them.

A real `newsletter send` subprocess sends to a local server speaking Postmark's batch API
and its outbound message search (tests/fake_providers.py), each call answered after
``--latency`` seconds; it is SIGKILLed once ``--after`` batches have been answered.  Then:
the run right after (Postmark is asked; what it accepted is settled, what it never got waits
for the search grace period), and a run after the grace period (``search_grace = 0``
stands for ten minutes later).

    .venv/bin/python bench/kill_window.py [--count 5000] [--latency 0.2] [--after 2]
"""

from __future__ import annotations

import argparse
import os
import signal
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


def send(root: Path, *, kill_when: int | None = None, server: FakePostmark | None = None) -> None:
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
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    process.wait()


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
    parser.add_argument("--after", type=int, default=2, help="batches answered before the kill")
    args = parser.parse_args()
    server = FakePostmark()
    server.latency = args.latency
    # A request cut off by the kill is half a body: nothing to report.
    server.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = project(Path(folder) / "p", server.url, args.count)
            send(root, kill_when=args.after, server=server)
            time.sleep(args.latency + 0.5)  # the server finishes what the dead run sent
            sent, unknown, _ = counts(root)
            print(f"{machine()}; {args.count} readers, {args.latency:.1f} s a call, defaults")
            print(f"after the kill: {sent} sent, {unknown} unknown (in flight at the kill)")
            searches = server.searches
            send(root)
            sent, unknown, pending = counts(root)
            print(
                f"next run: {server.searches - searches} searches; {sent} sent, {unknown} still"
                f" unknown (not found yet: waiting for the search grace), {pending} pending"
            )
            config = root / "newsletter.toml"
            config.write_text(config.read_text() + "search_grace = 0\n")
            send(root)
            sent, unknown, pending = counts(root)
            twice = sum(1 for n in server.delivered.values() if n > 1)
            print(
                f"a run after the grace: {sent} sent, {unknown} unknown, {pending} pending;"
                f" {len(server.delivered)} readers delivered, {twice} twice"
            )
    finally:
        server.close()


if __name__ == "__main__":
    main()
