"""7. Each provider's request: microseconds per recipient to turn a batch of 250 personalised
messages into the request body its API takes (personalisation included), against the
Postmark payload tuned for bench/send.py, in the same run.  No network: this is the work
our side does per call, whatever the provider's speed.

    .venv/bin/python bench/providers.py
    .venv/bin/python bench/providers.py --small    # CI
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from urllib.parse import urlencode

from _common import REPO, SAMPLE_ISSUE, emit, machine, table

from pipeline.config import load_settings
from pipeline.content.issue import load_issue
from pipeline.delivery.providers.brevo import BrevoProvider
from pipeline.delivery.providers.http import HttpApi
from pipeline.delivery.providers.mailgun import MailgunProvider
from pipeline.delivery.providers.postmark import PostmarkProvider
from pipeline.delivery.providers.resend import ResendProvider
from pipeline.delivery.providers.sendgrid import SendGridProvider
from pipeline.delivery.providers.ses import SesProvider
from pipeline.delivery.providers.sigv4 import Credentials
from pipeline.messages.compose import Message, MessageFactory
from pipeline.render.compile import compile_issue

BATCH = 250


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    rounds = 3 if parser.parse_args().small else 15
    settings = load_settings(REPO / "newsletter.toml")
    compiled = compile_issue(load_issue(REPO / SAMPLE_ISSUE, settings.timezone), settings)
    factory = MessageFactory(compiled, settings, b"bench-secret")
    rows_in = [
        (
            f"reader{i:04d}@example.org",
            {
                "email": f"reader{i:04d}@example.org",
                "first_name": f"Reader{i}",
                "last_name": "Bench",
            },
        )
        for i in range(BATCH)
    ]

    def messages() -> list[Message]:
        return [factory.build(email, email, fields) for email, fields in rows_in]

    api = HttpApi("bench", "http://127.0.0.1:9", {})
    postmark = PostmarkProvider(api, "outbound", managed_unsubscribe=False)
    sendgrid = SendGridProvider(api)
    mailgun = MailgunProvider(api, "movementsolutions.example")
    resend = ResendProvider(api)
    brevo = BrevoProvider(api)
    ses = SesProvider(api, Credentials("AKID", "secret"), "us-east-1")

    def postmark_body() -> object:
        return postmark.batch_body(messages())  # the bytes a send posts

    def resend_body() -> object:
        return "[" + ", ".join(resend.payload_json(m) for m in messages()) + "]"

    cases: list[tuple[str, Callable[[], object]]] = [
        ("postmark: JSON batch (the tuned reference)", postmark_body),
        (
            "sendgrid: personalizations + substitutions",
            lambda: json.dumps(sendgrid.payload(messages())),
        ),
        ("mailgun: form with recipient-variables", lambda: urlencode(mailgun.form(messages()))),
        ("resend: JSON batch", resend_body),
        ("brevo: messageVersions", lambda: brevo.body(messages())),
        (
            "ses: raw MIME per message, base64 in JSON",
            lambda: [ses.request_body(m) for m in messages()],
        ),
    ]
    figures = {}
    for name, build in cases:
        timings = []
        for _ in range(rounds):
            start = time.perf_counter()
            build()
            timings.append((time.perf_counter() - start) / BATCH * 1e6)
        figures[name] = statistics.median(timings)
    reference = figures[cases[0][0]]
    rows = [("request body, per recipient", "us (median)", "vs postmark")]
    rows += [(n, f"{f:.1f}", f"{f / reference:.2f}x") for n, f in figures.items()]
    print(f"machine: {machine()}; batches of {BATCH}, {rounds} rounds")
    print(table(rows))
    emit({name.split(":")[0]: value for name, value in figures.items()})


if __name__ == "__main__":
    main()
