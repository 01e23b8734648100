"""One-click opt-outs under load (issue 10): 200 at once on a 100,000-row list.

Starts `newsletter serve` as it runs in production (its front door and waitress, its own
process), then 200 clients post RFC 8058 one-click requests at the same moment.  Prints each
request's latency (p50, p95, max), how many were answered 200, and, once the app's applier
has written them into subscribers.csv, how many rows are unsubscribed and how long that took.
In the same run, two floors, with the same clients: the front door alone answering a page of
the same size at once (no token, no ledger: what this design cannot beat), and waitress
alone doing the same (what `serve` before its front door could not beat).

The clients are one asyncio process of their own (the default: one thread, 200 connections
opened at once, as a load generator such as wrk is), or with `--client-kind threads` 200
threads of this process.  The threads cost the shared two cores more than 200 real mail
clients elsewhere would: against the front door answering a fixed page with nothing behind
it, the last of 200 thread clients waited 56-86 ms, the last of the asyncio client's 21-28 ms
(2026-12-07): with threads, most of what is measured is the clients.

    .venv/bin/python bench/optout_load.py                        # 200 opt-outs, 100,000 rows
    .venv/bin/python bench/optout_load.py --client-kind threads  # 200 client threads here
    .venv/bin/python bench/optout_load.py --small                # 50 opt-outs, 3,000 rows (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

from _common import PYTHON, emit, free_port, machine, make_project, table

from pipeline.messages.secret import load_secret
from pipeline.messages.unsubscribe import make_token


def one_click_request(port: int, token: str) -> bytes:
    body = b"List-Unsubscribe=One-Click"
    return (
        f"POST /unsubscribe?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def post(port: int, token: str, start: threading.Barrier) -> tuple[int, float]:
    """One mail client's RFC 8058 POST, on its own connection, timed from connect to the
    server closing it.  Raw socket, not http.client: the clients share the machine's two
    cores with the server, and http.client's header parsing cost the server's answers more
    than the server's own work did (p50 90-132 ms here against 70-85 ms, same server)."""
    request = one_click_request(port, token)
    start.wait()
    began = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(request)
            answer = connection.recv(65536)
            while connection.recv(65536):
                pass
        status = int(answer.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        status = 0  # reset, refused or garbled: lost
    return status, time.perf_counter() - began


def burst(
    port: int, tokens: list[str], clients: str = "threads"
) -> tuple[list[tuple[int, float]], float]:
    """Every token posted at the same moment: (status, seconds) per request, and the
    seconds until the last was answered.  ``clients``: "threads" (one client thread each,
    in this process) or "process" (``async_clients`` in a process of its own)."""
    if clients == "process":
        out = subprocess.run(
            [PYTHON, __file__, "--async-clients", str(port)],
            input="\n".join(tokens),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        answers, span = json.loads(out)
        return [(int(status), float(seconds)) for status, seconds in answers], float(span)
    start = threading.Barrier(len(tokens))
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def client(token: str) -> None:
        outcome = post(port, token, start)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=client, args=(t,)) for t in tokens]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - began


async def _async_clients(port: int, tokens: list[str]) -> tuple[list[tuple[int, float]], float]:
    async def one(token: str, go: asyncio.Event) -> tuple[int, float]:
        request = one_click_request(port, token)
        await go.wait()
        began = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            answer = await reader.read()
            writer.close()
            status = int(answer.split(b" ", 2)[1])
        except (OSError, ValueError, IndexError):
            status = 0
        return status, time.perf_counter() - began

    go = asyncio.Event()
    clients = [asyncio.create_task(one(token, go)) for token in tokens]
    await asyncio.sleep(0.05)  # every connection's task is waiting: then all at once
    began = time.perf_counter()
    go.set()
    answers = list(await asyncio.gather(*clients))
    return answers, time.perf_counter() - began


def async_clients(port: int) -> None:
    """``--client-kind process``: the tokens on stdin; on stdout the (status, seconds) of
    each, and the seconds from letting them all go to the last answer."""
    tokens = sys.stdin.read().split()
    print(json.dumps(asyncio.run(_async_clients(port, tokens))))


# The floors: the same servers answering a page of the same size with nothing behind it, to
# the same clients on the same two cores.  waitress alone, as `serve` sets it up without
# its front door (as it answered every request before the front door):
BARE_SERVER = """
import sys
from pipeline.web.server import make_server
page = b"x" * int(sys.argv[2])
def app(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(page)))])
    return [page]
server = make_server(app, "127.0.0.1", int(sys.argv[1]))
print("serving", flush=True)
server.run()
"""

# ...and the front door, answering every one-click POST at once with that page: no token to
# read, no ledger to wait for.
BARE_FRONT_DOOR = """
import sys
from pipeline.web.front_door import FrontDoor
from pipeline.web.server import CONNECTION_LIMIT, make_server
page = b"x" * int(sys.argv[2])
class Pages:
    failed = page
class Log:
    def log(self, line):
        pass
class AtOnce:
    pages, subscriptions = Pages(), Log()
    def take_soon(self, query, visitor, answered):
        answered("200 OK", page)
        return True
    def headers(self, body):
        return [("Content-Type", "text/html"), ("Content-Length", str(len(body)))]
def app(environ, start_response):
    start_response("404 Not Found", [("Content-Length", "0")])
    return [b""]
server = make_server(app, "127.0.0.1", int(sys.argv[1]))
door = FrontDoor([server], AtOnce(), connection_limit=CONNECTION_LIMIT)
door.start()
print("serving", flush=True)
server.run()
"""


PAGE_SIZE = 2_300  # the "You are unsubscribed" page (1,969 bytes) and its safety headers


def bare_floor(tokens: list[str], page_size: int, code: str, clients: str) -> list[float]:
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "-c", code, str(port), str(page_size)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()
        results, _ = burst(port, tokens, clients)
    finally:
        server.kill()
        server.wait()
    return [seconds * 1000 for status, seconds in results if status == 200]


def cpu_seconds(pid: int) -> float | None:
    """The process's user + system CPU time (Linux), to show what each answer costs the
    server whatever else the machine is doing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def queued(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/healthz")
    answer = json.loads(connection.getresponse().read())
    connection.close()
    return int(answer["queued"])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# `newsletter serve` with the list's background rewrite kept in the server's own thread, as
# before pipeline/web/list_applier.py: what the waves meet without the child process.
IN_THREAD_SERVE = """
import sys
import pipeline.web.list_applier as applier
applier.IN_A_CHILD_FROM = float("inf")
from pipeline.cli import main
sys.argv = ["newsletter", *sys.argv[1:]]
main()
"""

WAVE_GAP = 0.35  # seconds between waves: the list's rewrite starts 0.3 s after a burst


class ServerRun(NamedTuple):
    waves: list[list[tuple[int, float]]]  # (status, seconds) of each request, by wave
    answered: float  # seconds until the first wave's last answer
    applied: float  # seconds until the list had every opt-out
    cpu_ms: float  # the server's CPU per answer of the first wave (0: not known)
    unsubscribed: int  # rows unsubscribed in the list at the end
    rewrites: int
    children: bool  # the rewrites ran in a child process


def run_server(
    rows: int, waves: list[list[str]], threads: int, clients: str, *, in_thread: bool = False
) -> ServerRun:
    """A fresh project of ``rows`` rows served as `newsletter serve` runs (or with the list's
    rewrite in the server's thread: ``in_thread``); each wave of addresses posted at once,
    ``WAVE_GAP`` seconds apart, so that every wave after the first meets the rewrite of the
    one before."""
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project", rows, 'name = "outbox"')
        secret = load_secret(project / ".newsletter", {})
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        launch = [PYTHON, "-c", IN_THREAD_SERVE] if in_thread else [PYTHON, "-m", "pipeline"]
        server = subprocess.Popen(
            [*launch, "serve", "--port", str(port), "--threads", str(threads)],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        results: list[list[tuple[int, float]]] = []
        try:
            assert server.stdout is not None
            for line in server.stdout:  # lines before "serving": what the start applied
                if "serving" in line:
                    break
            else:
                raise SystemExit("the server did not start")
            answered = 0.0
            cpu_before = cpu_seconds(server.pid)
            cpu_after = None
            for number, addresses in enumerate(waves):
                if number:
                    time.sleep(WAVE_GAP)
                tokens = [make_token(secret, a) for a in addresses]
                wave, span = burst(port, tokens, clients)
                results.append(wave)
                if not number:
                    answered, cpu_after = span, cpu_seconds(server.pid)
            settled_from = time.perf_counter()
            while queued(port) > 0:
                time.sleep(0.05)
            applied = answered + time.perf_counter() - settled_from
            children = _has_children(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            output, _ = server.communicate(timeout=60)
        with (project / "subscribers.csv").open(newline="", encoding="utf-8") as handle:
            unsubscribed = sum(
                1 for row in csv.DictReader(handle) if row["status"] == "unsubscribed"
            )
    per_answer = 0.0
    if cpu_before is not None and cpu_after is not None:
        per_answer = (cpu_after - cpu_before) * 1000 / len(waves[0])
    rewrites = sum(1 for line in output.splitlines() if "list updated" in line)
    return ServerRun(results, answered, applied, per_answer, unsubscribed, rewrites, children)


def _has_children(pid: int) -> bool:
    """Whether the server has a child process now (its list applier's), from /proc."""
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return any((task / "children").read_text().split() for task in tasks if task.is_dir())
    except OSError:
        return False


def later_max(run: ServerRun) -> float:
    """The slowest answer of the waves after the first (those that met a rewrite), in ms."""
    later = [s * 1000 for wave in run.waves[1:] for status, s in wave if status == 200]
    return max(later) if later else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=16, help="serve --threads (its default)")
    parser.add_argument(
        "--waves",
        type=int,
        default=4,
        help="waves of --clients opt-outs, 0.35 s apart (the first is the one measured at "
        "once; the others meet the list's rewrite)",
    )
    parser.add_argument("--small", action="store_true", help="50 opt-outs, 3,000 rows (CI)")
    parser.add_argument(
        "--client-kind",
        choices=["threads", "process"],
        default="process",
        help="one asyncio process of 200 connections (default), or 200 client threads here",
    )
    parser.add_argument("--async-clients", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.async_clients:
        async_clients(args.async_clients)
        return
    if args.small:
        args.clients, args.rows, args.waves = 50, 3000, 2
    waves_of = max(1, args.waves)
    step = max(1, args.rows // (args.clients * waves_of))
    addresses = [f"reader{i:07d}@example.org" for i in range(0, args.rows, step)]
    waves = [addresses[n * args.clients : (n + 1) * args.clients] for n in range(waves_of)]
    ours = run_server(args.rows, waves, args.threads, args.client_kind)
    first = [seconds * 1000 for status, seconds in ours.waves[0] if status == 200]
    everyone = sum(len(w) for w in waves)
    ok = len(first)
    print(
        f"# one-click opt-outs: {len(waves[0])} at once, {args.rows:,} rows, "
        f"{args.threads} server threads, clients: {args.client_kind} ({machine()})"
    )
    print(
        table(
            [
                ("answered 200", "p50 ms", "p95 ms", "max ms", "all answered s", "in the list"),
                (
                    f"{ok}/{len(waves[0])}",
                    f"{percentile(first, 0.5):.0f}" if first else "-",
                    f"{percentile(first, 0.95):.0f}" if first else "-",
                    f"{max(first):.0f}" if first else "-",
                    f"{ours.answered:.2f}",
                    f"{ours.unsubscribed}/{everyone} after {ours.applied:.2f} s (all waves)",
                ),
            ]
        )
    )
    print(f"rewrites of the list: {ours.rewrites}")
    before = None
    if len(waves) > 1:
        before = run_server(args.rows, waves, args.threads, args.client_kind, in_thread=True)
        print(
            f"waves 2-{len(waves)}, {WAVE_GAP} s apart, each meeting the list's rewrite: "
            f"max {later_max(ours):.0f} ms with the rewrite in a child process (serve; "
            f"{'it had one' if ours.children else 'the list too short for one'}), "
            f"{later_max(before):.0f} ms with it in the server's thread (before); "
            f"answered 200: {sum(1 for w in ours.waves[1:] for c, _ in w if c == 200)}/"
            f"{sum(len(w) for w in waves[1:])}"
        )
    floor = bare_floor(waves[0], PAGE_SIZE, BARE_FRONT_DOOR, args.client_kind)
    print(
        f"the floor, the same clients against the front door alone (a fixed {PAGE_SIZE:,}-byte "
        f"page at once, nothing behind it): {len(floor)}/{len(waves[0])} answered, "
        f"p50 {percentile(floor, 0.5):.0f} ms, max {max(floor):.0f} ms"
    )
    waitress = bare_floor(waves[0], PAGE_SIZE, BARE_SERVER, args.client_kind)
    print(
        f"waitress alone, the same clients and page (how `serve` answered before its front "
        f"door, at best): {len(waitress)}/{len(waves[0])} answered, "
        f"p50 {percentile(waitress, 0.5):.0f} ms, max {max(waitress):.0f} ms"
    )
    if ours.cpu_ms:
        print(f"server CPU per answer: {ours.cpu_ms:.2f} ms (clock ticks of 10 ms: rough)")
    emit(
        {
            "count": float(len(waves[0])),
            "answered": float(ok),
            "recorded": float(ours.unsubscribed),
            "everyone": float(everyone),
            "p50_ms": percentile(first, 0.5) if first else 0.0,
            "p95_ms": percentile(first, 0.95) if first else 0.0,
            "max_ms": max(first) if first else 0.0,
            "waves": float(len(waves)),
            "waves_max_ms": later_max(ours),
            "waves_before_max_ms": later_max(before) if before else 0.0,
            "rewrites": float(ours.rewrites),
            "server_cpu_ms": ours.cpu_ms,
            "floor_p50_ms": percentile(floor, 0.5),
            "floor_max_ms": max(floor),
            "waitress_p50_ms": percentile(waitress, 0.5),
            "waitress_max_ms": max(waitress),
        }
    )


if __name__ == "__main__":
    main()
