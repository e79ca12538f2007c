"""The platforms a deployment serves: one adapter per name in PLATFORMS, built on demand.

The composition root of the worker and of `tipjar poll`/`notices send`: X is built by
`bot.platforms.x.wiring`, Mastodon by `bot.platforms.mastodon.wiring`; each is imported
only when enabled, so a deployment without Mastodon never loads Mastodon.py.
"""

from __future__ import annotations

from bot.config import Settings
from bot.platforms.port import Platform


class PlatformNotConfigured(Exception):
    """An enabled platform lacks its keys (the message names them)."""


def build_platforms(settings: Settings) -> list[Platform]:
    """The adapters of every platform in PLATFORMS, in that order."""
    built: list[Platform] = []
    for name in settings.platforms:
        if name == "x":
            from bot.platforms.x.wiring import XNotConfigured, build_x_api

            try:
                built.append(build_x_api(settings))
            except XNotConfigured as e:
                raise PlatformNotConfigured(str(e)) from None
        elif name == "mastodon":
            from bot.platforms.mastodon.wiring import MastodonNotConfigured, build_mastodon_platform

            try:
                built.append(build_mastodon_platform(settings))
            except MastodonNotConfigured as e:
                raise PlatformNotConfigured(str(e)) from None
    return built
