"""The key that signs unsubscribe tokens: NEWSLETTER_SECRET, or one made once for this project.

Made with ``secrets`` and written 0600 into the state folder, so the default setup works with no
configuration; set NEWSLETTER_SECRET to share one key between machines.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

ENV_NAME = "NEWSLETTER_SECRET"
FILE_NAME = "secret"


def load_secret(state_dir: Path, environ: Mapping[str, str]) -> bytes:
    from_env = environ.get(ENV_NAME, "").strip()
    if from_env:
        return from_env.encode("utf-8")
    path = state_dir / FILE_NAME
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two first runs at once cannot both write a key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip().encode("ascii")
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return path.read_text(encoding="ascii").strip().encode("ascii")
