"""The key that signs unsubscribe tokens: NEWSLETTER_SECRET, or one made once for this project.

Made with ``secrets`` and written 0600 into the state folder, so the default setup works with no
configuration; set NEWSLETTER_SECRET to share one key between machines.

An empty or short key makes every token forgeable (a full disk once left a 0-byte key file,
and later runs signed with it), so such a key is refused, never used.  The file is made whole
before it appears: written to a temporary file, flushed to disk, then hard-linked into place,
which fails if another run got there first (then that run's key is read, and it is whole too).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pipeline.errors import ConfigError

ENV_NAME = "NEWSLETTER_SECRET"
FILE_NAME = "secret"
MIN_LENGTH = 32  # characters; a made key has 64 (256 bits, hex)
_TEMP_PREFIX = ".secret-"
_TEMP_SUFFIX = ".tmp"
HOW_TO_MAKE = "python3 -c 'import secrets; print(secrets.token_hex(32))'"


class SecretError(ConfigError):
    """The signing key is missing, empty, short or cannot be written: refuse to run."""


def load_secret(
    state_dir: Path, environ: Mapping[str, str], *, sent_records: Path | None = None
) -> bytes:
    """``sent_records``: the folder of the records of issues already sent (``newsletters/
    .sent``); with one there, a missing key file is a lost key, not a first run."""
    if ENV_NAME in environ:
        return _from_environment(environ[ENV_NAME])
    path = state_dir / FILE_NAME
    for _ in range(10):
        try:
            key = _read(path)
        except FileNotFoundError:
            _refuse_a_lost_key(path, sent_records)
            _create(path)
            continue
        _clean_leftovers(state_dir)
        return key
    raise SecretError(f"could not create {path}: it keeps disappearing", path=path)


def _refuse_a_lost_key(path: Path, sent_records: Path | None) -> None:
    """A new laptop, or a deleted ``.newsletter/``: making a new key there would, without a
    word, turn every unsubscribe link in every issue already sent into "This link is not
    valid" (the readers' one way out, which the law requires to keep working)."""
    if sent_records is None:
        return
    try:
        sent = sorted(sent_records.glob("*.json"))
    except OSError:
        return
    if not sent:
        return
    issues = f"{len(sent)} issue{'' if len(sent) == 1 else 's'}"
    # The folder is made, so the command below works as printed (a new laptop has none).
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    raise SecretError(
        f"the key that signs unsubscribe links is missing, but {issues} went out signed with "
        f"it (see {sent_records}), and a new key would break every unsubscribe link in them: "
        "copy this file from the computer (or backup) they were sent from, or set "
        f"{ENV_NAME} to that key; only if it is lost for good, make a new one: "
        f"(umask 077; {HOW_TO_MAKE} > {shlex.quote(str(path))})",
        path=path,
    )


def _from_environment(value: str) -> bytes:
    value = value.strip()
    if len(value) < MIN_LENGTH:
        length = len(value)
        what = "empty" if not value else f"only {length} character{'' if length == 1 else 's'}"
        raise SecretError(
            f"{ENV_NAME} is {what}; it signs unsubscribe links, so it must be at least "
            f"{MIN_LENGTH} random characters: set it to the output of {HOW_TO_MAKE} "
            f"(or unset it to use the project's own key file)"
        )
    return value.encode("utf-8")


def _read(path: Path) -> bytes:
    try:
        text = path.read_bytes().decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    if len(text) < MIN_LENGTH or not text.isprintable():  # a crash can leave zeroed blocks
        raise SecretError(
            f"the signing key is {'empty' if not text else 'damaged or too short'} (a disk that "
            "was full when it was made?); delete the file and run again to make a new one "
            "(unsubscribe links in issues already sent then stop working: readers can still "
            f"unsubscribe by replying), or set {ENV_NAME}",
            path=path,
        )
    return text.encode("ascii")


def _create(path: Path) -> None:
    """Make the key file whole, or not at all; losing a race to another run is fine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = _temp_file(path.parent)
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write((secrets.token_hex(32) + "\n").encode("ascii"))
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temp, path)  # fails if it exists: never replaces another run's key
        except (FileExistsError, FileNotFoundError):
            # Another run made it first (and may have cleaned our temporary file away as a
            # leftover): the caller reads theirs.
            return
        except OSError as exc:
            raise SecretError(
                f"could not write the signing key ({exc.strerror or exc}); free some space or "
                f"fix the folder's permissions, then run again (or set {ENV_NAME})",
                path=path,
            ) from None
        _fsync_folder(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _temp_file(folder: Path) -> tuple[int, str]:
    try:
        # mkstemp makes it 0600, so the key is never readable by others, even for a moment.
        return tempfile.mkstemp(dir=folder, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX)
    except OSError as exc:
        raise SecretError(
            f"could not write the signing key ({exc.strerror or exc}); fix the folder, then "
            f"run again (or set {ENV_NAME})",
            path=folder / FILE_NAME,
        ) from None


def _fsync_folder(folder: Path) -> None:
    """The new name is durable too, not only the bytes (a power cut could lose the link)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _clean_leftovers(folder: Path) -> None:
    """Temporary files of runs killed between writing and linking (the key exists now, so no
    run still needs one: a run that loses its file here finds the key already made)."""
    for leftover in folder.glob(f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            leftover.unlink()
