"""``POST /webhooks/<provider>``: provider events into the pipeline, verified each provider's
own way (pipeline/delivery/providers/<name>_events.py).

A thin Flask view over ``pipeline.events.receive.WebhookReceiver``: it reads the raw body
(signatures cover the bytes as sent, so it is never parsed and re-serialised first), refuses
bodies over a limit, and answers with the receiver's status and one line of text.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from flask import Blueprint, Response, request

from pipeline.config import Settings
from pipeline.events.base import WebhookRequest
from pipeline.events.receive import WebhookReceiver

# SendGrid batches events; its posts stay well under this.  (The app's own limit, for forms,
# is far smaller: this route raises it for itself.)
MAX_BODY = 8 * 1024 * 1024


def webhooks_blueprint(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    *,
    receiver: WebhookReceiver | None = None,
    log: Callable[[str], None] | None = None,
    background: bool = True,
) -> Blueprint:
    """The webhook routes, for ``create_app`` to register.  ``background``: answer once the
    events are stored and apply them in a thread (off: apply before answering)."""
    found = receiver or WebhookReceiver(
        settings, os.environ if environ is None else environ, log=log, background=background
    )
    if log is not None and receiver is None:
        taken = found.configured()
        refused = found.refused_secrets()
        none = "none working" if refused else "none configured"
        log(
            "webhooks: "
            # Each URL written out whole, as she will paste it at the provider (a shell's
            # "{a,b}" is not something to paste).
            + ("taking " + ", ".join(f"/webhooks/{name}" for name in taken) if taken else none)
            + " (see README: Bounces, complaints and provider events)"
        )
        for reason in refused:
            log(f"webhooks: refusing {reason}")
    blueprint = Blueprint("webhooks", __name__)

    @blueprint.post("/webhooks/<provider>")
    def receive(provider: str) -> Response:
        request.max_content_length = MAX_BODY
        length = request.content_length
        if length is not None and length > MAX_BODY:
            return _answer(413, "the body is too large")
        body = request.stream.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return _answer(413, "the body is too large")
        answer = found.receive(provider, WebhookRequest.of(request.headers.items(), body))
        return _answer(answer.status, answer.text)

    return blueprint


def _answer(status: int, text: str) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")
