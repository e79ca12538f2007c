"""The loopback Mastodon stand-in: two instances (the bot's and a creator's) in real shapes."""

from bot.platforms.mastodon.sandbox.server import MastodonSandbox, SandboxInstance, create_app
from bot.platforms.mastodon.sandbox.world import Account, Fault, Fediverse, Status

__all__ = [
    "Account",
    "Fault",
    "Fediverse",
    "MastodonSandbox",
    "SandboxInstance",
    "Status",
    "create_app",
]
