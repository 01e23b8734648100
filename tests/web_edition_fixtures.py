"""A project whose archive has something to hide: the sample (published by its send_at), an
issue sent by hand (published by the ledger), one scheduled for 2099 and a draft."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import cli

from .conftest import write_project

SENT_BY_HAND = "2025-08-04-desk-posture"
FUTURE = "2099-01-05-future-knees"
DRAFT = "2025-09-01-draft-shoulders"

DESK_POSTURE = """---
subject: "{{ subscriber.first_name | default('Friend') }}, your desk is shaping your back"
title: Your desk is shaping your back
preheader: Three resets for the hours you spend sitting.
---

Hi {{ subscriber.first_name | default("there") }},

Sitting in {{ subscriber.city | default("your town") }} or anywhere else, your spine adapts to
the shape you hold most.

![A person stretching at a standing desk](https://movementsolutions.example/img/desk.jpg)

## Three resets

1. Stand up every 30 minutes.
2. Roll your shoulders back and down.
3. Look at something far away.

| reset | how often |
|---|---|
| stand | every 30 minutes |
| look away | every 20 minutes |

::: callout
**Bottom Line:** move a little, often.

[Book a desk assessment](https://movementsolutions.example/book){.button}
:::

[Watch the two-minute routine](https://movementsolutions.example/videos/desk){.button}
"""

FUTURE_ISSUE = """---
subject: Secret future issue about knees
send_at: 2099-01-05 07:00
---

Hi {{ subscriber.first_name | default("there") }}, this must not be public before 2099.
"""

DRAFT_ISSUE = """---
subject: Unfinished draft about shoulders
---

Hi there, this draft must never be public.
"""


def newsletter(root: Path, *args: str) -> tuple[int, str, str]:
    old = Path.cwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(cli, list(args), obj={})
    finally:
        os.chdir(old)
    return result.exit_code, result.stdout, result.stderr


def archive_project(root: Path) -> Path:
    write_project(root)
    folder = root / "newsletters"
    (folder / f"{SENT_BY_HAND}.md").write_text(DESK_POSTURE, encoding="utf-8")
    (folder / f"{FUTURE}.md").write_text(FUTURE_ISSUE, encoding="utf-8")
    (folder / f"{DRAFT}.md").write_text(DRAFT_ISSUE, encoding="utf-8")
    for slug in ("2025-07-21-hip-rotation", SENT_BY_HAND):
        code, out, err = newsletter(root, "send", f"newsletters/{slug}.md", "--yes")
        assert code == 0, out + err
    return root
