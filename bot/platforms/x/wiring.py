"""Builds the X adapter from `Settings`: the one place that turns configuration into a TweepyXApi.

Kept apart from `bot.app` so that commands which never talk to X (audit, balances) do not
need X credentials, and so that tests can build the real client against a fake host.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from bot.config import Settings
from bot.platforms.x.api import TweepyXApi
from escrow.ledger import utcnow


class XNotConfigured(Exception):
    """The settings lack what is needed to read from X (the message names the keys)."""


def x_reads_configured(settings: Settings) -> bool:
    """True when mentions and users can be read: the bot's user id and a bearer token."""
    return bool(settings.x_bot_user_id and settings.x_bearer_token)


def build_x_api(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = 10.0,
    max_retries: int = 3,
) -> TweepyXApi:
    """The real X client for `settings` (reads with the bearer token, posts as the bot)."""
    missing = [
        key
        for key, value in (
            ("X_BOT_USER_ID", settings.x_bot_user_id),
            ("X_BEARER_TOKEN", settings.x_bearer_token),
        )
        if not value
    ]
    if missing:
        raise XNotConfigured(f"{' and '.join(missing)} must be set to talk to X")
    return TweepyXApi(
        bot_user_id=settings.x_bot_user_id,
        bot_handle=settings.x_bot_username,
        bearer_token=settings.x_bearer_token,
        consumer_key=settings.x_api_key,
        consumer_secret=settings.x_api_secret,
        access_token=settings.x_access_token,
        access_token_secret=settings.x_access_token_secret,
        base_url=settings.x_api_base_url,
        timeout=timeout,
        max_retries=max_retries,
        sleep=sleep,
        clock=clock,
    )
