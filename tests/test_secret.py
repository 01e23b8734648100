"""The signing key: made whole or not at all, and an empty or short one is refused.

A full disk once left a 0-byte key file, and every later run signed unsubscribe tokens with an
empty key (anyone could forge one); four first runs at once read the file before it was
written in 5 of 200 trials."""

from __future__ import annotations

import multiprocessing
import os
import resource
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.messages.secret import MIN_LENGTH, SecretError, load_secret

from .conftest import REPO, SAMPLE_ISSUE
from .test_send import newsletter

TRIALS = 150
AT_ONCE = 4


def _first_run(state: str, start: multiprocessing.synchronize.Barrier, out: object) -> None:
    start.wait()
    try:
        key = load_secret(Path(state), {}).decode("ascii")
    except SecretError as exc:
        key = f"refused: {exc}"
    out.put(key)  # type: ignore[attr-defined]


def test_concurrent_first_runs_all_read_the_same_whole_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    keys: list[list[str]] = []
    for trial in range(TRIALS):
        state = tmp_path / str(trial)
        start = context.Barrier(AT_ONCE)
        out = context.Queue()
        runs = [
            context.Process(target=_first_run, args=(str(state), start, out))
            for _ in range(AT_ONCE)
        ]
        for run in runs:
            run.start()
        got = [out.get(timeout=30) for _ in runs]
        for run in runs:
            run.join()
        keys.append(got)
        # No temporary file is left beside the key.
        assert sorted(p.name for p in state.iterdir()) == ["secret"], trial
    bad = [(n, got) for n, got in enumerate(keys) if len(set(got)) != 1 or len(got[0]) < 64]
    assert not bad, f"{len(bad)} of {TRIALS} trials read a different or empty key: {bad[:3]}"


def test_the_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = load_secret(state, {})
    assert len(first) == 64
    assert stat.S_IMODE(os.stat(state / "secret").st_mode) == 0o600
    assert load_secret(state, {}) == first


@pytest.mark.parametrize("content", ["", "\n", "short-key\n", "\x00" * 64])
def test_an_empty_or_short_key_file_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "secret").write_text(content, encoding="latin-1")
    with pytest.raises(SecretError) as caught:
        load_secret(tmp_path, {})
    message = caught.value.location_message()
    assert str(tmp_path / "secret") in message and "delete the file" in message
    assert "\n" not in message


@pytest.mark.parametrize("value", ["", "   ", "from-env"])
def test_an_empty_or_short_environment_key_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(SecretError) as caught:
        load_secret(tmp_path, {"NEWSLETTER_SECRET": value})
    assert "NEWSLETTER_SECRET" in str(caught.value) and "token_hex" in str(caught.value)
    assert not (tmp_path / "secret").exists()


def test_a_long_enough_environment_key_is_used(tmp_path: Path) -> None:
    value = "e" * MIN_LENGTH
    assert load_secret(tmp_path, {"NEWSLETTER_SECRET": value}) == value.encode()
    assert not (tmp_path / "secret").exists()


def test_send_with_an_empty_key_file_is_one_line_exit_2(
    make_project: Callable[..., Path],
) -> None:
    root = make_project()
    (root / ".newsletter").mkdir()
    (root / ".newsletter" / "secret").write_bytes(b"")
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--yes")
    assert code == 2
    assert err.count("\n") == 1 and ".newsletter/secret" in err and "empty" in err
    assert not (root / "outbox").exists()
    code, _, err = newsletter(root, "send", SAMPLE_ISSUE, "--dry-run")
    assert code == 2 and "empty" in err


def _starved(state: Path) -> subprocess.CompletedProcess[str]:
    """load_secret in a process that may write files of at most 10 bytes (a full disk)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (10, 10))

    code = (
        "import sys; from pathlib import Path\n"
        "from pipeline.messages.secret import load_secret, SecretError\n"
        "try:\n"
        f"    load_secret(Path({str(state)!r}), {{}})\n"
        "except SecretError as exc:\n"
        "    print(exc); sys.exit(2)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


def test_a_full_disk_leaves_no_key_file_and_says_so(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = _starved(state)
    assert result.returncode == 2, result.stderr
    assert "could not write the signing key" in result.stdout
    assert list(state.iterdir()) == []  # neither an empty key nor a temporary file
    # With room again, the key is made whole.
    assert len(load_secret(state, {})) == 64


def test_a_one_character_environment_key_is_said_in_the_singular(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as caught:
        load_secret(tmp_path, {"NEWSLETTER_SECRET": "x"})
    assert "is only 1 character;" in str(caught.value)
