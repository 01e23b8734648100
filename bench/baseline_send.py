"""The baseline for bench/send.py: only the unavoidable work of a personalised send.

Read the CSV, fill the compiled HTML and text (plain str.replace of the merge-field tokens),
JSON-encode, POST batches of 500 on one requests session.  No validation, no
de-duplication, no escaping, no unsubscribe tokens, no ledger: the floor to compare with.
Usage: baseline_send.py PROJECT_FOLDER API_URL
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import requests

from pipeline.config import load_settings
from pipeline.content.issue import load_issue
from pipeline.render.compile import compile_issue


def main() -> None:
    folder, url = Path(sys.argv[1]), sys.argv[2]
    settings = load_settings(folder / "newsletter.toml")
    compiled = compile_issue(
        load_issue(folder / "newsletters/2025-07-21-hip-rotation.md", settings.timezone), settings
    )
    html = "".join(
        piece + (f"MFX{slot}XFM" if i < len(compiled.html.slots) else "")
        for i, (piece, slot) in enumerate(
            zip(compiled.html.pieces, [*compiled.html.slots, 0], strict=True)
        )
    )
    text = "".join(
        piece + (f"MFX{slot}XFM" if i < len(compiled.text.slots) else "")
        for i, (piece, slot) in enumerate(
            zip(compiled.text.pieces, [*compiled.text.slots, 0], strict=True)
        )
    )
    session = requests.Session()
    session.headers["X-Postmark-Server-Token"] = "bench-token"
    batch = []
    with (folder / "subscribers.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            values = [row["first_name"], "https://example.org/unsubscribe"]
            body, plain = html, text
            for index, value in enumerate(values):
                body = body.replace(f"MFX{index}XFM", value)
                plain = plain.replace(f"MFX{index}XFM", value)
            batch.append(
                {
                    "From": settings.sender,
                    "To": row["email"],
                    "Subject": "Why Hip Rotation Matters More Than You Think",
                    "HtmlBody": body,
                    "TextBody": plain,
                    "MessageStream": "broadcast",
                }
            )
            if len(batch) == 500:
                session.post(url + "/email/batch", json=batch, timeout=60).raise_for_status()
                batch = []
    if batch:
        session.post(url + "/email/batch", json=batch, timeout=60).raise_for_status()


if __name__ == "__main__":
    main()
