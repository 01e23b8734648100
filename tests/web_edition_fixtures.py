"""A project whose archive has something to hide: the sample (published by its send_at), an
issue sent by hand (published by the ledger), one scheduled for 2099 and a draft.

The sample goes to the outbox, as README's first command sends it; the issue sent by hand
goes out for real, through the smtp provider to a local SMTP server, since an issue only
written to the outbox was sent to nobody and is not published by the ledger.  What that
server received is kept as .eml files in ``mailbox/<slug>/``, beside ``outbox/<slug>/``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from aiosmtpd.controller import Controller
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


MAILBOX = "mailbox"  # what the local SMTP server received, one folder per issue


def send_for_real(root: Path, slug: str, *options: str) -> tuple[int, str, str]:
    """``newsletter send newsletters/<slug>.md --yes`` through a real provider (smtp, to a
    local server), then the project's [provider] as it was; each message received is
    written to ``mailbox/<slug>/``."""
    from .test_smtp import Relay, free_port

    relay = Relay()
    port = free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    config = root / "newsletter.toml"
    before = config.read_text(encoding="utf-8")
    config.write_text(
        before.split("[provider]")[0] + "[provider]\n"
        f'name = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n',
        encoding="utf-8",
    )
    controller.start()
    try:
        result = newsletter(root, "send", f"newsletters/{slug}.md", "--yes", *options)
    finally:
        controller.stop()
        config.write_text(before, encoding="utf-8")
    folder = root / MAILBOX / slug
    folder.mkdir(parents=True, exist_ok=True)
    for number, (_, data) in enumerate(relay.received):
        (folder / f"{number:04d}.eml").write_bytes(data)
    return result


def sent_emails(root: Path) -> Iterator[Path]:
    """Every message the project's sends wrote (outbox/) or delivered (mailbox/)."""
    for folder in ("outbox", MAILBOX):
        yield from sorted((root / folder).rglob("*.eml"))


def archive_project(root: Path) -> Path:
    write_project(root)
    folder = root / "newsletters"
    (folder / f"{SENT_BY_HAND}.md").write_text(DESK_POSTURE, encoding="utf-8")
    (folder / f"{FUTURE}.md").write_text(FUTURE_ISSUE, encoding="utf-8")
    (folder / f"{DRAFT}.md").write_text(DRAFT_ISSUE, encoding="utf-8")
    code, out, err = newsletter(root, "send", "newsletters/2025-07-21-hip-rotation.md", "--yes")
    assert code == 0, out + err
    code, out, err = send_for_real(root, SENT_BY_HAND)
    assert code == 0, out + err
    assert "sent via smtp" in out, out
    return root
