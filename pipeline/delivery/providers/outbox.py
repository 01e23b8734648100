"""``outbox``: each message as an RFC 5322 ``.eml`` file in ``outbox/<issue>/``.

The embedded default: no account, no server, and a person can open the files in a mail
client.  Writing the same recipient's file again replaces it, and ``reconcile`` can tell
from the file whether a message was written, so an interrupted run settles without
duplicates.  Test copies (``send --to``) go to ``outbox/<issue>/tests/``, apart from the
real messages, each under a new name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pipeline.config import Settings
from pipeline.delivery.provider import (
    BatchResult,
    Options,
    Outcome,
    ProviderInfo,
    RecipientResult,
)
from pipeline.messages.compose import Message
from pipeline.messages.mime import to_mime

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]+")


def _file_stem(key: str) -> str:
    """A file name for the address ``key``: the address itself where it is safe as one, else
    its safe characters with a digest of the whole address, so that two readers never share
    a file (idn@bücher.example and idn@bécher.example were both idn@b_cher.example.eml, the
    second message over the first, and both counted sent)."""
    stem = _UNSAFE.sub("_", key)
    if stem == key and len(stem) <= 150:
        return stem
    return f"{stem[:130]}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}"


class OutboxProvider:
    name = "outbox"
    max_batch = 100
    max_concurrency = 1  # writing files: threads would only contend for the GIL
    one_call_per_message = True
    managed_unsubscribe: str | None = None
    idempotent = False

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, message: Message) -> Path:
        stem = _file_stem(message.key)
        if message.message_id.startswith("<test."):
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            return self.folder / message.issue / "tests" / f"{stamp}-{stem}.eml"
        return self.folder / message.issue / f"{stem}.eml"

    def send(self, messages: Sequence[Message]) -> BatchResult:
        results = []
        for message in messages:
            path = self.path_for(message)
            try:
                data = to_mime(message)
            except ValueError as exc:  # this message cannot be encoded: it alone fails
                results.append(RecipientResult(message.key, Outcome.FAILED, reason=str(exc)))
                continue
            temp = None
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Write then rename: a reader never sees half a message.
                fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(temp, path)
            except OSError as exc:
                if temp is not None:  # a full disk left one empty file a message behind
                    with contextlib.suppress(OSError):
                        os.unlink(temp)
                results.append(RecipientResult(message.key, Outcome.RETRY, reason=str(exc)))
                continue
            # The file's path within the issue's folder: what a person opens.
            where = path.relative_to(self.folder / message.issue).as_posix()
            results.append(RecipientResult(message.key, Outcome.SENT, provider_id=where))
        return BatchResult(results)

    def reconcile(self, messages: Sequence[Message]) -> list[RecipientResult]:
        results = []
        for message in messages:
            path = self.path_for(message)
            marker = f"Message-ID: {message.message_id}".encode("ascii")
            if path.is_file() and marker in path.read_bytes():
                results.append(RecipientResult(message.key, Outcome.SENT, provider_id=path.name))
            else:
                results.append(
                    RecipientResult(message.key, Outcome.RETRY, reason="no file was written")
                )
        return results

    def close(self) -> None:
        pass


def outbox_folder(settings: Settings) -> Path:
    return settings.root / Options(settings, OPTIONS).string("folder", "outbox")


def create(settings: Settings, environ: Mapping[str, str]) -> OutboxProvider:
    return OutboxProvider(outbox_folder(settings))


OPTIONS = {"folder": "where to write (default: outbox/, one folder per issue)"}
INFO = ProviderInfo(
    name="outbox",
    summary="writes each message as an .eml file (the default; sends nothing)",
    create=create,
    options=OPTIONS,
)
