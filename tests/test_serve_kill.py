"""SIGKILL ``newsletter serve`` in the middle of a burst of one-click opt-outs (issue 10).

An opt-out is answered once it is in the ledger; the list follows in one rewrite after the
burst.  A kill at any moment (mid-burst, mid-commit, mid-rewrite) must lose no opt-out that
was answered 200: the next start applies the queue.  The list stays whole: every row no
opt-out touched is byte for byte as it was (quotes, blank lines, CRLF), the file keeps its
mode, and no temporary copy of it is left beside it.  ``FAULT_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from pipeline.messages.secret import load_secret
from pipeline.messages.unsubscribe import make_token

from .test_web import start_serve
from .web_helpers import with_signup

ROUNDS = 3
READERS = 2000
ONE_CLICK = b"List-Unsubscribe=One-Click"


def reader(i: int) -> bytes:
    name = b'"R%d"' % i if i % 7 == 0 else b"R%d" % i  # quoted cells stay quoted
    return b"reader%04d@example.org,%s,Number %d,subscribed,runners" % (i, name, i)


def original() -> bytes:
    lines = [b"email,first_name,last_name,status,tags"]
    for i in range(READERS):
        lines.append(reader(i))
        if i % 500 == 7:
            lines.append(b"")  # a blank line is kept as it is
    return b"\r\n".join(lines) + b"\r\n"


def test_sigkill_mid_burst_loses_no_answered_opt_out(project: Path) -> None:
    seed = int(os.environ.get("FAULT_SEED") or random.randrange(1_000_000))
    chance = random.Random(seed)
    settings = with_signup(project)
    settings.subscribers.write_bytes(original())
    settings.subscribers.chmod(0o640)
    answered: set[int] = set()
    tried: set[int] = set()
    for _ in range(ROUNDS):
        server, url = start_serve(project)
        secret = load_secret(settings.state_dir, {})
        stop = threading.Event()

        def leave(i: int, url: str = url, secret: bytes = secret) -> None:
            tried.add(i)
            token = make_token(secret, f"reader{i:04d}@example.org")
            try:
                answer = requests.post(f"{url}/unsubscribe?token={token}", data=ONE_CLICK)
            except requests.ConnectionError:
                return  # killed before answering: not acknowledged, a mail client retries
            if answer.status_code == 200:
                answered.add(i)

        def burst(stop: threading.Event = stop) -> None:
            with ThreadPoolExecutor(max_workers=8) as pool:
                while not stop.is_set():
                    list(pool.map(leave, [chance.randrange(READERS) for _ in range(16)]))

        bursting = threading.Thread(target=burst)
        bursting.start()
        threading.Event().wait(chance.uniform(0.3, 1.5))
        server.kill()
        server.communicate(timeout=30)
        stop.set()
        bursting.join()
    server, _ = start_serve(project)  # applies what the killed ones left queued
    server.terminate()
    server.communicate(timeout=60)

    where = f"(FAULT_SEED={seed})"
    data = settings.subscribers.read_bytes()
    after = data.split(b"\r\n")
    before = original().split(b"\r\n")
    assert len(after) == len(before), where
    left = set()
    for old, new in zip(before, after, strict=True):
        if old == new:
            continue
        assert new.replace(b'"', b"") == old.replace(b'"', b"").replace(
            b",subscribed,", b",unsubscribed,"
        ), where
        left.add(int(old[6:10]))
    assert answered and answered <= left <= tried, where
    assert settings.subscribers.stat().st_mode & 0o777 == 0o640, where
    leftovers = [p.name for p in project.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [], where
