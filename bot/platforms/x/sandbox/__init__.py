"""The loopback sandbox: a local fake of the few X API v2 endpoints tipjar uses.

`Sandbox` serves the fake on 127.0.0.1 for `tipjar demo`, `tipjar demo --serve` and
tests; its `World` is the control API (users, mentions, renames, faults, clock) and the
record of what the bot did (posts, DMs, requests). Importing this package starts nothing.
"""

from bot.platforms.x.sandbox.server import AuthorizeError, Sandbox, SandboxSettings, create_app
from bot.platforms.x.sandbox.world import (
    DirectMessage,
    Fault,
    ManualClock,
    MentionEntity,
    PostRefused,
    RequestRecord,
    Tweet,
    User,
    World,
    find_mentions,
    pkce_challenge,
)

__all__ = [
    "AuthorizeError",
    "DirectMessage",
    "Fault",
    "ManualClock",
    "MentionEntity",
    "PostRefused",
    "RequestRecord",
    "Sandbox",
    "SandboxSettings",
    "Tweet",
    "User",
    "World",
    "create_app",
    "find_mentions",
    "pkce_challenge",
]
