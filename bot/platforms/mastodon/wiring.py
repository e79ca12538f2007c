"""Builds the Mastodon adapter from `Settings`: MASTODON_BASE_URL, _ACCESS_TOKEN, _BOT_ACCT."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.config import Settings
from bot.platforms.mastodon.api import MastodonPlatform
from escrow.ledger import utcnow


class MastodonNotConfigured(Exception):
    """The settings lack what is needed to talk to Mastodon (the message names the keys)."""


def build_mastodon_platform(
    settings: Settings, *, clock: Callable[[], datetime] = utcnow, timeout: float = 10.0
) -> MastodonPlatform:
    """The bot's Mastodon account for `settings`."""
    missing = [
        key
        for key, value in (
            ("MASTODON_BASE_URL", settings.mastodon_base_url),
            ("MASTODON_ACCESS_TOKEN", settings.mastodon_access_token),
            ("MASTODON_BOT_ACCT", settings.mastodon_bot_acct),
        )
        if not value
    ]
    if missing:
        raise MastodonNotConfigured(f"{' and '.join(missing)} must be set to talk to Mastodon")
    return MastodonPlatform(
        base_url=settings.mastodon_base_url,
        access_token=settings.mastodon_access_token,
        bot_acct=settings.mastodon_bot_acct,
        timeout=timeout,
        clock=clock,
    )
