"""One body for a whole batch, with per-recipient values substituted by the provider.

SendGrid (``substitutions``) and Mailgun (``recipient-variables``) take a single HTML and
text body per call and fill each recipient's values in themselves.  The compiled issue is
already split at its merge fields (``render.fill.Template``), so the shared body is that
split joined with the provider's placeholders, built once per issue, and a recipient's
values are the ones we already computed: HTML-escaped for the HTML, raw for the text.
Neither provider escapes what it substitutes, so what we send is what arrives.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.messages.compose import Message
from pipeline.render.compile import CompiledEmail
from pipeline.render.fill import Template


@dataclass(frozen=True)
class SharedBody:
    html: str
    text: str
    html_slots: tuple[int, ...]  # the distinct merge fields each body uses
    text_slots: tuple[int, ...]


def _with_placeholders(template: Template, placeholder: Callable[[int], str]) -> str:
    values = [placeholder(i) for i in range(max(template.slots, default=-1) + 1)]
    return template.fill(values)


class SharedBodies:
    """One provider's placeholders -> each issue's shared body (built once, thread-safe).

    A slot's name is ``h<n>`` in the HTML and ``t<n>`` in the text (``n`` the merge field);
    ``placeholder`` turns a name into what stands in the body, ``value_key`` into the key of
    a recipient's values (Mailgun: the bare name; SendGrid: the placeholder itself)."""

    def __init__(
        self,
        placeholder: Callable[[str], str],
        value_key: Callable[[str], str] | None = None,
    ) -> None:
        self.placeholder = placeholder
        self.value_key = value_key or placeholder
        self._bodies: dict[str, SharedBody] = {}
        self._lock = threading.Lock()

    def body(self, message: Message) -> SharedBody:
        compiled = message.body.compiled
        key = compiled.fingerprint
        with self._lock:
            found = self._bodies.get(key)
            if found is None:
                found = self._bodies[key] = self._build(compiled)
        return found

    def _build(self, compiled: CompiledEmail) -> SharedBody:
        return SharedBody(
            html=_with_placeholders(compiled.html, lambda i: self.placeholder(f"h{i}")),
            text=_with_placeholders(compiled.text, lambda i: self.placeholder(f"t{i}")),
            html_slots=tuple(sorted(set(compiled.html.slots))),
            text_slots=tuple(sorted(set(compiled.text.slots))),
        )

    def values(self, message: Message) -> dict[str, str]:
        """This recipient's values, for the slots the bodies use, keyed by ``value_key``."""
        shared = self.body(message)
        html, text = message.body.html_values, message.body.text_values
        key = self.value_key
        found = {key(f"h{i}"): html[i] for i in shared.html_slots}
        found.update({key(f"t{i}"): text[i] for i in shared.text_slots})
        return found


def split_headers(messages: Sequence[Message]) -> tuple[dict[str, str], list[str]]:
    """The headers that are the same for every message of the batch (List-Id, the issue
    slug: sent once per call) and the names of those that differ (List-Unsubscribe: sent per
    recipient)."""
    first = dict(messages[0].headers)
    varying = {
        name
        for message in messages[1:]
        for name, value in message.headers
        if first.get(name) != value
    }
    shared = {name: value for name, value in first.items() if name not in varying}
    return shared, sorted(varying)
