"""The one small interface every provider implements, and what it returns.

A provider takes finished messages and says, per recipient, what happened.  It never retries,
sleeps, batches or writes the ledger: the delivery loop does that, once, for all of them.

Outcomes, per recipient:
- SENT: accepted; ``provider_id`` is the provider's message id.
- FAILED: permanently refused for this recipient only (e.g. Postmark 406, SMTP 550).
- RETRY: certainly not delivered, worth trying again (connection refused, 429, 5xx, 4xx).
- UNKNOWN: may or may not have been delivered (a timeout after the request was sent).
A batch may also carry ``stop``: the provider refused the account or the request itself (bad
token, unverified sender).  The loop settles what it can and stops the send with that message.

A provider is ``idempotent`` when it sends an idempotency key derived from the messages
(``batch_key``): the same batch posted again is delivered once.  For those the loop retries an
``unknown`` answer with the same batch instead of leaving it to the operator.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pipeline.config import Settings, setting_line
from pipeline.errors import ConfigError
from pipeline.messages.compose import Message


class Outcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    RETRY = "retry"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class RecipientResult:
    key: str
    outcome: Outcome
    provider_id: str = ""
    reason: str = ""
    retry_after: float | None = None  # seconds, when the provider said


@dataclass(frozen=True)
class BatchResult:
    results: list[RecipientResult]
    stop: str | None = None  # an account- or request-level refusal: stop the whole send

    @classmethod
    def all(
        cls,
        messages: Sequence[Message],
        outcome: Outcome,
        reason: str,
        *,
        retry_after: float | None = None,
        stop: str | None = None,
        provider_id: str = "",
    ) -> BatchResult:
        return cls(
            [RecipientResult(m.key, outcome, provider_id, reason, retry_after) for m in messages],
            stop,
        )

    @classmethod
    def refused(cls, messages: Sequence[Message], reason: str) -> BatchResult:
        """The provider refused the account or the request: nothing of it was sent, and the
        send stops with ``reason`` (the messages wait, pending, for the run after the fix)."""
        return cls.all(messages, Outcome.RETRY, reason, stop=reason)


class Provider(Protocol):
    name: str
    max_batch: int  # the most messages one send() may take
    max_concurrency: int  # the most batches it may have in flight at once (threads)
    # Postmark broadcast streams insert their own unsubscribe link: its placeholder, or None.
    managed_unsubscribe: str | None
    # Sends an idempotency key made by ``batch_key``: a repeated batch is delivered once.
    idempotent: bool
    # One call per message (an SMTP transaction, an SES request, a file): a batch's answer
    # takes that many calls, so the kill window (delivery/loop.py, ``Window``) times a call.
    one_call_per_message: bool

    def send(self, messages: Sequence[Message]) -> BatchResult: ...

    def close(self) -> None: ...


@runtime_checkable
class Reconciling(Protocol):
    """A provider that can tell, without sending, whether a message was delivered."""

    def reconcile(self, messages: Sequence[Message]) -> list[RecipientResult]: ...


@runtime_checkable
class Searching(Protocol):
    """A provider whose API can say, by searching what it accepted, whether a message whose
    answer was lost went out (Postmark's outbound message search, Mailgun's events, SendGrid's
    Email Activity where the account has it, Brevo's email list).

    ``find_accepted`` returns, for the messages it finds, key -> the provider's message id;
    raises ``SearchFailed`` when it cannot ask.  A search may lag behind what was accepted:
    ``search_grace`` seconds after a batch was handed over, a message still not found is
    taken as never accepted, and sent."""

    search_grace: float
    # Batches younger than this are not asked about: an idempotent provider replays them
    # under their key, which only works while the batch is whole (0 for the others).
    search_after: float
    # How long the search remembers (seconds; None: longer than any resume).  A row handed
    # over longer ago than that and not found proves nothing: it stays unknown, never sent.
    search_keeps: float | None

    def find_accepted(self, messages: Sequence[Message]) -> dict[str, str]: ...


@dataclass(frozen=True)
class ProviderInfo:
    """How ``newsletter providers`` and config validation describe one provider."""

    name: str
    summary: str
    create: Callable[[Settings, Mapping[str, str]], Provider]
    secrets: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)


def _plain(number: float) -> str:
    """A bound as a person writes it: 1,000,000,000, not 1e+09."""
    return f"{number:,.0f}" if number == int(number) else f"{number:,}"


# A key someone meant for the provider's secret (which comes from the environment only).
_SECRET_LIKE = re.compile(r"key|token|secret|password|passwd", re.IGNORECASE)


class Options:
    """A provider's non-secret settings from [provider], with errors naming the key."""

    def __init__(self, settings: Settings, known: Mapping[str, str]) -> None:
        self.path = settings.config_path
        self.values = dict(settings.provider.options)
        self.provider = settings.provider.name
        for key in self.values:
            if key not in known and key not in COMMON_OPTIONS:
                if _SECRET_LIKE.search(key):
                    raise self.error(
                        key,
                        "a secret never goes in newsletter.toml: a provider that needs"
                        " one reads it from the environment (`newsletter providers` names"
                        " each one's; for cron, see README's 'Scheduling with cron');"
                        " delete this line",
                    )
                allowed = ", ".join(sorted({*known, *COMMON_OPTIONS}))
                hint = difflib.get_close_matches(key, sorted({*known, *COMMON_OPTIONS}), n=1)
                close = f"did you mean {hint[0]!r}? " if hint else ""
                raise self.error(
                    key, f"not a setting of the {self.provider} provider ({close}{allowed})"
                )

    def error(self, key: str, message: str) -> ConfigError:
        line = setting_line(self.path, "provider", key) if self.path else None
        return ConfigError(message, path=self.path, line=line, field=f"[provider] {key}")

    def string(self, key: str, default: str) -> str:
        value = self.values.get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {value!r}")
        return value

    def number(
        self, key: str, default: float, *, minimum: float = 0, maximum: float = 10**9
    ) -> float:
        value = self.values.get(key, default)
        # TOML has nan and inf: neither is below the minimum, and either (or a number too
        # large for a date) made a traceback of every send that used it, so both are refused.
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not minimum <= value <= maximum
        ):
            raise self.error(
                key, f"must be a number from {_plain(minimum)} to {_plain(maximum)}, not {value!r}"
            )
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int = 1, maximum: int = 10**9) -> int:
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise self.error(
                key, f"must be a whole number from {minimum} to {maximum}, not {value!r}"
            )
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {value!r}")
        return value


# Read by the delivery loop for every provider.
COMMON_OPTIONS = {
    "rate": "messages per second at most (default: no limit)",
    "batch_size": "messages per call (default 250, at most the provider's limit)",
    "max_attempts": "tries per batch for transient errors (default 5)",
    "max_retry_seconds": "give up retrying a batch after this long (default 300)",
    "max_consecutive_failures": "pause the send after this many failed recipients in a row"
    " (default 50)",
    "concurrency": "batches in flight at once (default 4, or the provider's maximum if lower)",
    "slow_answer": "seconds: a batch answered slower than this halves the batches in flight"
    " (default 0.15)",
    "suppressions_sync": "send --due first reads the provider's suppression lists into the"
    " list, where it has them (default true)",
}


def batch_key(messages: Sequence[Message]) -> str:
    """The same for the same recipients of the same issue content, whatever their order, and
    different for anything else: an idempotency key a resumed run can derive again.  The
    content is in it so that a send continued with ``--force`` after an edit is not taken
    for a replay of the old version."""
    digest = hashlib.sha256()
    first = messages[0]
    digest.update(f"{first.issue}\0{first.body.fingerprint}\0".encode())
    # Message-IDs are stable per issue and recipient, and random for a test copy (which is
    # never the same send twice).
    for message_id in sorted(m.message_id for m in messages):
        digest.update(message_id.encode("utf-8") + b"\0")
    return digest.hexdigest()


def require_secret(
    environ: Mapping[str, str], name: str, provider: str, *, token: bool = True
) -> str:
    """The secret ``name`` from the environment, or a ConfigError naming it (never its value).

    ``token``: it goes into an HTTP header, as every provider's API key or token does, so it
    must be printable ASCII with no space in it.  A key pasted with an en dash or a line
    break in it was refused only by the HTTP library, mid-send, after the batch was marked in
    flight: every reader of it became "unknown" (or a traceback), for a request never made."""
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigError(
            f"the {provider} provider needs {name} set in the environment (never in"
            " newsletter.toml; for cron, see README's 'Scheduling with cron')"
        )
    if token and not (value.isascii() and value.isprintable() and value.split() == [value]):
        raise ConfigError(
            f"{name} has a character no {provider} key has (a space, a line break, or one"
            " outside plain ASCII such as a curly quote or a dash from a word processor):"
            " copy it again from the provider's dashboard"
        )
    return value
