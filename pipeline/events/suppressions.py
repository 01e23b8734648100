"""Which providers have a suppression list we can read, and running a sync for the
configured one (``newsletter suppressions sync``, and ``send --due`` before it sends)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from pipeline.config import Settings, setting_line
from pipeline.delivery.provider import Options
from pipeline.delivery.providers import (
    REGISTRY,
    brevo_events,
    mailgun_events,
    postmark_events,
    registered,
    sendgrid_events,
    ses_events,
)
from pipeline.errors import ConfigError
from pipeline.events.sync import SuppressionReader, SyncReport, sync_suppressions
from pipeline.sending import open_ledger

Reader = Callable[[Settings, Mapping[str, str], Callable[[float], None]], SuppressionReader]

READERS: dict[str, Reader] = {
    "postmark": postmark_events.suppressions,
    "sendgrid": sendgrid_events.suppressions,
    "mailgun": mailgun_events.suppressions,
    "ses": ses_events.suppressions,
    "brevo": brevo_events.suppressions,
}
NOT_OFFERED = {
    "resend": "Resend's API offers no way to read its suppression list; its webhooks"
    " (/webhooks/resend) are how its bounces and complaints reach the list",
    "smtp": "an SMTP relay has no suppression list to read",
    "outbox": "the outbox sends nothing, so nothing bounces",
}


def supported(settings: Settings) -> bool:
    return settings.provider.name in READERS


def sync_before_send(settings: Settings) -> bool:
    """``[provider] suppressions_sync`` (default true where the provider has a list)."""
    if not supported(settings):
        return False
    options = Options(settings, REGISTRY[settings.provider.name].options)
    return options.boolean("suppressions_sync", True)


def run_sync(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncReport:
    """Read the configured provider's suppression lists into the list; idempotent."""
    name = settings.provider.name
    registered(settings)  # a misspelt name says so, with the name it was probably meant to be
    factory = READERS.get(name)
    if factory is None:
        why = NOT_OFFERED.get(name, "it has no suppression list this tool can read")
        raise ConfigError(
            f"the {name} provider has no suppression list to sync: {why}",
            path=settings.config_path,
            line=setting_line(settings.config_path, "provider", "name"),
            field="[provider] name",
        )
    reader = factory(settings, environ, sleep)
    ledger = open_ledger(settings)
    try:
        return sync_suppressions(settings, ledger, reader)
    finally:
        reader.close()
        ledger.close()
