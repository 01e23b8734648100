"""Provider adapters, one module each.  Adding one means adding a module and a registry line."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from pipeline.config import Settings, setting_line
from pipeline.delivery.provider import Options, Provider, ProviderInfo
from pipeline.delivery.providers import (
    brevo,
    mailgun,
    outbox,
    postmark,
    resend,
    sendgrid,
    ses,
    smtp,
)
from pipeline.errors import ConfigError

REGISTRY: dict[str, ProviderInfo] = {
    info.name: info
    for info in (
        outbox.INFO,
        smtp.INFO,
        postmark.INFO,
        sendgrid.INFO,
        mailgun.INFO,
        ses.INFO,
        resend.INFO,
        brevo.INFO,
    )
}


def create_provider(settings: Settings, environ: Mapping[str, str]) -> Provider:
    """The configured provider, its settings and secrets checked; nothing is sent."""
    return registered(settings).create(settings, environ)


def registered(settings: Settings) -> ProviderInfo:
    """The configured provider's entry, or one line naming the setting and the close name."""
    name = settings.provider.name
    info = REGISTRY.get(name)
    if info is None:
        close = difflib.get_close_matches(name.lower(), list(REGISTRY), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"unknown provider {name!r} ({hint}choose from: {', '.join(sorted(REGISTRY))})",
            path=settings.config_path,
            line=setting_line(settings.config_path, "provider", "name"),
            field="[provider] name",
        )
    return info


def provider_problems(settings: Settings) -> list[ConfigError]:
    """What a send would refuse in ``[provider]`` (its name, its settings), checked as the
    send checks them but without the secrets, which ``check`` does not need and may not
    have: each secret is a stand-in here, and nothing is sent or connected to."""
    from pipeline.delivery.loop import DeliveryPolicy  # the loop's settings: batch_size, rate

    try:
        info = registered(settings)
        stand_ins = {secret.split()[0]: "stand-in-for-check" for secret in info.secrets}
        provider = info.create(settings, stand_ins)
        try:
            DeliveryPolicy.from_options(Options(settings, info.options), provider)
        finally:
            provider.close()
    except ConfigError as exc:
        return [exc]
    return []
