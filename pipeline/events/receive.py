"""One webhook request -> verified, parsed, stored once, applied: the answer to give.

The web view only turns HTTP into a ``WebhookRequest`` and back; everything here is called
directly by tests.  An unverifiable request is answered 401 (400 for one that is verified but
unreadable) before anything is written; a verified one is stored, then answered 200, and
applied (by the app's thread, or before answering without one).  If applying fails (the list
cannot be read), the events are already stored: the next request, the app's next start or
``newsletter suppressions sync`` applies them, and the provider does not retry what we have.
"""

from __future__ import annotations

import difflib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pipeline.config import Settings
from pipeline.delivery.providers import (
    brevo_events,
    mailgun_events,
    postmark_events,
    resend_events,
    sendgrid_events,
    ses_events,
)
from pipeline.errors import NewsletterError
from pipeline.events.apply import Applied, apply_pending
from pipeline.events.base import NotConfigured, Refused, WebhookRequest, WebhookSource
from pipeline.ledger.events import claim_nonce, store
from pipeline.ledger.store import Ledger
from pipeline.sending import open_ledger as default_open_ledger

logger = logging.getLogger("newsletter.webhooks")

Factory = Callable[[Settings, Mapping[str, str]], WebhookSource]


def factories(sns_fetch: ses_events.Fetch = ses_events.fetch_https) -> dict[str, Factory]:
    """Each provider's webhook, by the name in its URL (/webhooks/<name>)."""
    return {
        "postmark": postmark_events.webhook,
        "sendgrid": sendgrid_events.webhook,
        "mailgun": mailgun_events.webhook,
        "ses": lambda settings, environ: ses_events.webhook(settings, environ, sns_fetch),
        "resend": resend_events.webhook,
        "brevo": brevo_events.webhook,
    }


# What each provider's webhook needs, for ``newsletter providers`` (the modules check it).
WEBHOOK_SECRETS = {
    "postmark": "NEWSLETTER_WEBHOOK_SECRET (user:password, in the webhook URL)",
    "sendgrid": "SENDGRID_WEBHOOK_VERIFICATION_KEY (Signed Event Webhook)",
    "mailgun": "MAILGUN_WEBHOOK_SIGNING_KEY",
    "ses": "[provider] sns_topic_arn (SNS over HTTPS; no secret)",
    "resend": "RESEND_WEBHOOK_SECRET (whsec_...)",
    "brevo": "NEWSLETTER_WEBHOOK_SECRET (user:password, in the webhook URL)",
}


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    applied: Applied | None = None


# Where each provider's webhook secret comes from (README: Bounces, complaints and provider
# events); SES needs none (its topic is in newsletter.toml).
SECRET_VARIABLES = (
    "NEWSLETTER_WEBHOOK_SECRET",
    "MAILGUN_WEBHOOK_SIGNING_KEY",
    "SENDGRID_WEBHOOK_VERIFICATION_KEY",
    "RESEND_WEBHOOK_SECRET",
)


class WebhookReceiver:
    """Built once per app from the settings and the environment: each provider whose
    secret is set takes events; the others refuse every request (and say why in the log).

    With ``background``, a verified request is answered as soon as its events are stored
    (a few milliseconds), and a thread applies them: rewriting a 100,000-row list takes
    a second or so, longer than a provider should wait.  Without it (tests, scripts), they
    are applied before the answer."""

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        sns_fetch: ses_events.Fetch = ses_events.fetch_https,
        clock: Callable[[], float] = time.time,
        open_ledger: Callable[[Settings], Ledger] | None = None,
        log: Callable[[str], None] | None = None,
        background: bool = False,
    ) -> None:
        self.settings = settings
        self.environ = environ
        self.clock = clock
        self.log = log or (lambda line: logger.warning("%s", line))
        self.sources: dict[str, WebhookSource | NotConfigured] = {}
        for name, factory in factories(sns_fetch).items():
            try:
                self.sources[name] = factory(settings, environ)
            except NotConfigured as exc:
                self.sources[name] = exc
        self.open_ledger = open_ledger or default_open_ledger
        self.wake = threading.Event()
        self.idle = threading.Event()
        self.signal = threading.Lock()  # wake and idle change together
        self.idle.set()
        self.worker: threading.Thread | None = None
        if background:
            self.worker = threading.Thread(target=self._apply_forever, daemon=True)
            self.wake.set()  # events a previous process stored but never applied
            self.idle.clear()
            self.worker.start()

    def refused_secrets(self) -> list[str]:
        """Why each provider whose secret IS set (not empty) still refuses every request: a
        short password, a key that is not one.  For the start-up log, so a secret she set
        never reads as "none configured"; the messages name the variable, never its value."""
        return [
            f"{name}: {source}"
            for name, source in sorted(self.sources.items())
            if isinstance(source, NotConfigured)
            and any(v in str(source) and self.environ.get(v, "").strip() for v in SECRET_VARIABLES)
        ]

    def configured(self) -> list[str]:
        return sorted(n for n, s in self.sources.items() if not isinstance(s, NotConfigured))

    def receive(self, provider: str, request: WebhookRequest) -> Answer:
        # The name is typed by hand into the provider's dashboard: "Postmark" is postmark.
        source = self.sources.get(provider.lower())
        if source is None:
            close = difflib.get_close_matches(provider.lower(), list(self.sources), n=1)
            hint = f"did you mean /webhooks/{close[0]}? " if close else ""
            why = (
                f"no provider named {provider!r} ({hint}the webhook URLs are /webhooks/"
                + ", /webhooks/".join(sorted(self.sources))
                + ")"
            )
            # Logged too: a typo in the URL at the provider would otherwise only ever be
            # seen in its own delivery log, and every bounce would be lost without a word.
            self.log(f"refused a webhook at /webhooks/{provider}: {why}")
            return Answer(404, why)
        provider = provider.lower()
        if isinstance(source, NotConfigured):
            self.log(f"refused a {provider} webhook: {source}")
            return Answer(401, f"{provider} webhooks are not configured on this server")
        try:
            nonce = source.verify(request, self.clock())
            events = source.parse(request)
        except Refused as refused:
            self.log(f"refused a {provider} webhook: {refused.reason}")
            return Answer(refused.status, refused.reason)
        ledger = self.open_ledger(self.settings)
        applied = None
        try:
            if nonce is not None and not claim_nonce(ledger, provider, nonce):
                self.log(f"refused a {provider} webhook: a token already used with another body")
                return Answer(401, "this signature was already used")
            new = store(ledger, events)
            if self.worker is None:
                applied = self._apply(ledger)
        finally:
            ledger.close()
        if self.worker is not None and new:
            with self.signal:
                self.idle.clear()
                self.wake.set()
        count = len(events)
        return Answer(200, f"{count} event{'s' if count != 1 else ''} received, {new} new", applied)

    def wait_applied(self, timeout: float = 30) -> bool:
        """Until the background thread has applied everything stored (tests, shutdown)."""
        return self.idle.wait(timeout)

    def _apply(self, ledger: Ledger) -> Applied | None:
        try:
            applied = apply_pending(self.settings, ledger)
        except NewsletterError as exc:
            self.log(f"provider events stored, but not applied yet: {exc}")
            return None
        for effect in applied.changed:
            self.log(f"{effect.provider} event: {effect.email} is now {effect.status}")
        return applied

    def _apply_forever(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            ledger = self.open_ledger(self.settings)
            try:
                self._apply(ledger)
            except Exception as exc:  # the thread must outlive one bad moment
                self.log(f"applying provider events failed: {type(exc).__name__}: {exc}")
            finally:
                ledger.close()
            with self.signal:
                if not self.wake.is_set():
                    self.idle.set()
