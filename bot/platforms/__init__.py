"""The platforms the bot lives on: the neutral port (`bot.platforms.port`) and one adapter
package per platform (`bot.platforms.x`). Only an adapter imports its platform's client."""

from bot.platforms.port import (
    BackfillsMentions,
    DuplicateContent,
    KnowsUsersById,
    Mention,
    MentionsPage,
    NotFound,
    PermanentError,
    Platform,
    PlatformError,
    PlatformUser,
    RateLimited,
    SignIn,
    SignInError,
    TransientError,
    Unauthorized,
)

__all__ = [
    "BackfillsMentions",
    "DuplicateContent",
    "KnowsUsersById",
    "Mention",
    "MentionsPage",
    "NotFound",
    "PermanentError",
    "Platform",
    "PlatformError",
    "PlatformUser",
    "RateLimited",
    "SignIn",
    "SignInError",
    "TransientError",
    "Unauthorized",
]
