"""2. Per recipient: microseconds to personalise one message of the compiled sample issue:
subject, body, headers, unsubscribe token (target: under 50 us), and what each kind of
provider then asks of it (JSON bodies for HTTP APIs, MIME bytes for SMTP and the outbox).

    .venv/bin/python bench/personalise.py
    .venv/bin/python bench/personalise.py --small    # CI
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import REPO, SAMPLE_ISSUE, emit, machine, table

from pipeline.config import load_settings
from pipeline.content.issue import load_issue
from pipeline.messages.compose import MessageFactory
from pipeline.messages.mime import to_mime
from pipeline.render.compile import compile_issue

FIELDS = {
    "email": "ada.runner@example.org",
    "first_name": "Ada",
    "last_name": "Runner",
    "status": "subscribed",
    "tags": "runners",
    "city": "Springfield",
}


def per_call_us(function: object, calls: int, rounds: int) -> float:
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            function()  # type: ignore[operator]
        results.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    small = parser.parse_args().small
    calls, rounds = (500, 3) if small else (5000, 9)
    settings = load_settings(REPO / "newsletter.toml")
    compiled = compile_issue(load_issue(REPO / SAMPLE_ISSUE, settings.timezone), settings)
    factory = MessageFactory(compiled, settings, b"bench-secret")
    key, email = "ada.runner@example.org", "ada.runner@example.org"

    def build() -> None:
        factory.build(key, email, FIELDS)

    def build_json() -> None:
        message = factory.build(key, email, FIELDS)
        message.body.html_json  # noqa: B018 (what an HTTP provider asks for)
        message.body.text_json  # noqa: B018

    def build_strings() -> None:
        message = factory.build(key, email, FIELDS)
        message.html  # noqa: B018
        message.text  # noqa: B018

    def build_mime() -> None:
        to_mime(factory.build(key, email, FIELDS))

    rows = [("per recipient", "us (median)")]
    figures = {}
    for name, function in (
        ("fields, subject, headers, token (Message)", build),
        ("+ HTML and text bodies as JSON (HTTP APIs)", build_json),
        ("+ HTML and text bodies as str", build_strings),
        ("+ RFC 5322 MIME bytes (SMTP, outbox)", build_mime),
    ):
        figures[name] = per_call_us(function, calls if "MIME" not in name else calls // 5, rounds)
        rows.append((name, f"{figures[name]:.1f}"))
    print(f"machine: {machine()}; {calls} calls x {rounds} rounds")
    print(table(rows))
    headline = figures["+ HTML and text bodies as JSON (HTTP APIs)"]
    print(f"personalising one message, bodies included: {headline:.1f} us (target < 50 us)")
    keys = ("message_us", "json_us", "str_us", "mime_us")
    emit(dict(zip(keys, figures.values(), strict=True)))


if __name__ == "__main__":
    main()
