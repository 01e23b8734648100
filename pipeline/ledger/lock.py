"""One send at a time per project: an ``flock`` that a killed process can never leave behind.

The kernel drops the lock when its holder dies, however it dies.  The holder writes who it is
into the lock file, so the run that finds it taken can say who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from pipeline.errors import NewsletterError


class LockHeld(NewsletterError):
    def __init__(self, holder: str) -> None:
        super().__init__(
            f"another send is running ({holder}); not starting a second one: let it finish "
            "(newsletter status shows how far it is), then run again if anything is left"
        )
        self.holder = holder


class SendLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "send.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            os.close(fd)
            raise LockHeld(_describe(holder)) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SendLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def send_running(state_dir: Path) -> bool:
    """Whether a send holds the lock now (for ``status``: a send that is "sending" with
    nobody running it was stopped or killed, and waits for the next run)."""
    path = state_dir / "send.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # no lock file: no send has ever run here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _describe(text: str) -> str:
    from pipeline.wording import local_time  # only when a lock is held: kept off the imports

    try:
        info = json.loads(text)
        since = local_time(datetime.fromisoformat(info["since"]), UTC)
        return f"pid {info['pid']} on {info['host']} since {since}: {info['command']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not said who it is yet"
