"""5. Peer: the same 2,000-subscriber send over SMTP to a local aiosmtpd sink, by our smtp
provider and by mailmerge (PyPI: the established Python CSV + Jinja2 + SMTP tool, installed
here with pip if missing, run with --no-limit --no-dry-run), in one run.

    .venv/bin/python bench/peer.py
    .venv/bin/python bench/peer.py --small    # 200 subscribers (CI)
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import (
    PYTHON,
    REPO,
    SAMPLE_ISSUE,
    baseline_first,
    emit,
    machine,
    make_project,
    measured,
    smtp_sink,
    table,
)

from pipeline.config import load_settings
from pipeline.content.issue import load_issue
from pipeline.render.compile import compile_issue


def mailmerge_files(project: Path, port: int) -> list[str]:
    """mailmerge's template (our compiled HTML, merge fields as Jinja2), list and config."""
    settings = load_settings(project / "newsletter.toml")
    compiled = compile_issue(load_issue(project / SAMPLE_ISSUE, settings.timezone), settings)
    # Each merge field as mailmerge writes it: a CSV column, or a fixed unsubscribe URL.
    as_jinja = {
        'subscriber.first_name | default("there")': "{{ first_name }}",
        "unsubscribe_url": "https://movementsolutions.example/unsubscribe",
    }
    fields = [as_jinja[f.source] for f in compiled.fields.fields]
    html = compiled.html.pieces[0] + "".join(
        fields[slot] + piece
        for slot, piece in zip(compiled.html.slots, compiled.html.pieces[1:], strict=True)
    )
    # Raw blocks keep the CSS and Outlook comments away from Jinja2.
    html = re.sub(r"(<style.*?</style>)", r"{% raw %}\1{% endraw %}", html, flags=re.DOTALL)
    (project / "template.txt").write_text(
        "TO: {{ email }}\n"
        f"FROM: {settings.sender}\n"
        "SUBJECT: Why Hip Rotation Matters More Than You Think\n"
        "CONTENT-TYPE: text/html\n\n" + html,
        encoding="utf-8",
    )
    (project / "server.conf").write_text(
        f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nsecurity = Never\n"
    )
    # Its console script: `python -m mailmerge` fails in mailmerge 2.3 (its __main__ calls
    # main() before defining a helper).
    return [
        str(Path(PYTHON).parent / "mailmerge"),
        "--template",
        "template.txt",
        "--database",
        "subscribers.csv",
        "--config",
        "server.conf",
        "--no-limit",
        "--no-dry-run",
        "--output-format",
        "raw",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    count = 200 if parser.parse_args().small else 2_000
    if importlib.util.find_spec("mailmerge") is None:
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", "mailmerge"], check=True)
    with tempfile.TemporaryDirectory() as temp, smtp_sink() as (port, received):
        project = make_project(
            Path(temp) / "p",
            count,
            f'name = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"',
        )
        command = mailmerge_files(project, port)

        def run_ours() -> dict[str, float]:
            received.value = 0
            figures = measured(
                [PYTHON, "-m", "pipeline", "send", SAMPLE_ISSUE, "--yes"],
                cwd=project,
                env={"PYTHONPATH": str(REPO)},
            )
            if received.value != count:
                sys.exit(f"ours: the sink received {received.value}, not {count}")
            return figures

        def run_peer() -> dict[str, float]:
            received.value = 0
            figures = measured(command, cwd=project)
            if received.value != count:
                sys.exit(f"mailmerge: the sink received {received.value}, not {count}")
            return figures

        if baseline_first():
            peer, ours = run_peer(), run_ours()
        else:
            ours, peer = run_ours(), run_peer()
    rows = [
        ("over SMTP to a local aiosmtpd", "seconds", "messages/s", "peak RSS MB"),
        (
            "newsletter send (smtp)",
            f"{ours['seconds']:.2f}",
            f"{count / ours['seconds']:,.0f}",
            f"{ours['max_rss_mb']:.0f}",
        ),
        (
            "mailmerge 2 (--no-limit --no-dry-run)",
            f"{peer['seconds']:.2f}",
            f"{count / peer['seconds']:,.0f}",
            f"{peer['max_rss_mb']:.0f}",
        ),
    ]
    print(f"machine: {machine()}; {count:,} subscribers")
    print(table(rows))
    print(f"ratio: ours sends {peer['seconds'] / ours['seconds']:.1f}x as many messages per second")
    emit(
        {
            "count": count,
            "ours_s": ours["seconds"],
            "peer_s": peer["seconds"],
            "ours_rss": ours["max_rss_mb"],
            "peer_rss": peer["max_rss_mb"],
            "ratio": peer["seconds"] / ours["seconds"],
        }
    )


if __name__ == "__main__":
    main()
