"""Shared by the benchmarks: generated lists and projects, sinks in their own processes,
and running a command while measuring its wall time and peak memory."""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ISSUE = "newsletters/2025-07-21-hip-rotation.md"
PYTHON = sys.executable
TOKEN = "bench-token"

# The baseline send at its best: glibc's malloc keeping the memory it frees (no trim of the
# heap's top under 256 MB, 64 MB of padding when it grows, buffers under 32 MB from the heap),
# so that its large strings reuse pages instead of faulting fresh ones in.  Left to glibc's
# adaptive thresholds, its time swung with changes it does not run: 8.7 or 11.3 s of CPU for
# the same 50,000 (1.1 or 2.4 million page faults, 29,000 or 39,000 brk calls) after a method
# was added to pipeline/render/fill.py, which it imports; with these, 6.2-6.5 s, 2026-12-07.
# Only the baseline runs so: the pipeline is measured as `newsletter send` runs (it gained
# nothing from them in the same trial: 4.9 s against 4.7-5.0 without).
BASELINE_ENV = {
    "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=268435456:glibc.malloc.top_pad=67108864"
    ":glibc.malloc.mmap_threshold=33554432"
}


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}"
    )


def write_list(path: Path, count: int) -> None:
    """``count`` subscribed rows with names and a tag, streamed to disk."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,first_name,last_name,status,tags,city\r\n")
        for i in range(count):
            out.write(
                f"reader{i:07d}@example.org,Reader{i},Number{i},subscribed,runners,Town{i % 97}\r\n"
            )


def make_project(folder: Path, count: int, provider: str) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "newsletters").mkdir(parents=True)
    shutil.copyfile(REPO / SAMPLE_ISSUE, folder / SAMPLE_ISSUE)
    config = (REPO / "newsletter.toml").read_text(encoding="utf-8").split("[provider]")[0]
    (folder / "newsletter.toml").write_text(config + "[provider]\n" + provider + "\n")
    write_list(folder / "subscribers.csv", count)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measured(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``command`` through bench/measure.py: its wall seconds and peak RSS in MB."""
    result = subprocess.run(
        [PYTHON, str(REPO / "bench" / "measure.py"), *command],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    figures: dict[str, float] = json.loads(lines[-1])
    if figures.get("exit", 0) not in (0,):
        raise SystemExit(f"{' '.join(command)} exited {figures['exit']}:\n{result.stderr[-3000:]}")
    return figures


# A sink that speaks Postmark's batch API and answers at once --------------------------------


def _postmark_sink(port: int, latency: float, counter: multiprocessing.Value) -> None:  # type: ignore[type-arg]
    answers: dict[int, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            # Count messages without parsing the bodies: one "To" key per message.
            count = body.count(b'"To":')
            if latency:
                time.sleep(latency)
            if count not in answers:
                answers[count] = json.dumps(
                    [{"ErrorCode": 0, "Message": "OK", "MessageID": "m", "To": "x"}] * count
                ).encode()
            with counter.get_lock():
                counter.value += count
            data = answers[count]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


@contextmanager
def postmark_sink(latency: float = 0.0) -> Iterator[tuple[str, multiprocessing.Value]]:  # type: ignore[type-arg]
    port = free_port()
    counter = multiprocessing.Value("q", 0)
    process = multiprocessing.Process(
        target=_postmark_sink, args=(port, latency, counter), daemon=True
    )
    process.start()
    _wait_for_port(port)
    try:
        yield f"http://127.0.0.1:{port}", counter
    finally:
        process.terminate()
        process.join()


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


# An SMTP sink (aiosmtpd) ----------------------------------------------------------------------


def _smtp_sink(port: int, counter: multiprocessing.Value) -> None:  # type: ignore[type-arg]
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    class SharedPortController(Controller):
        """Binds with SO_REUSEPORT: the kernel hands each new connection to one of the
        processes listening on the port."""

        def _create_server(self):  # type: ignore[no-untyped-def]
            return self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port, reuse_port=True
            )

    controller = SharedPortController(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    while True:
        time.sleep(3600)


@contextmanager
def smtp_sink(processes: int = 2) -> Iterator[tuple[int, multiprocessing.Value]]:  # type: ignore[type-arg]
    """aiosmtpd in ``processes`` processes sharing one port, as a relay serves connections in
    parallel (Postfix runs an smtpd per connection): one asyncio process would make the
    sink, not the client, what a benchmark with several connections measures."""
    port = free_port()
    counter = multiprocessing.Value("q", 0)
    sinks = [
        multiprocessing.Process(target=_smtp_sink, args=(port, counter), daemon=True)
        for _ in range(processes)
    ]
    for process in sinks:
        process.start()
    _wait_for_port(port)
    try:
        yield port, counter
    finally:
        for process in sinks:
            process.terminate()
            process.join()


# Reporting to bench/all.py -------------------------------------------------------------------


def emit(figures: dict[str, float]) -> None:
    """This run's figures as one line for bench/all.py, which runs each benchmark several
    times and reports the median and the spread of each figure."""
    print("BENCH-FIGURES " + json.dumps(figures), flush=True)


def baseline_first() -> bool:
    """bench/all.py numbers its rounds; odd rounds run the baseline (or peer) first, so a
    machine that speeds up or slows down during a run does not always favour one side."""
    return int(os.environ.get("BENCH_ROUND", "0")) % 2 == 1


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
