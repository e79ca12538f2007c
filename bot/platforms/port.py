"""The platform port: what the bot needs from a social platform, in the platform's absence.

The listener, the outbox relay, the notice planner, the web claim and the CLI speak only
to these types. An adapter (`bot.platforms.x` for X; a Mastodon one would sit beside it)
turns its platform's client and JSON into them and its failures into the errors below:

- `RateLimited`: skip this run until `reset_at` (never sleep inside a job);
- `TransientError`: the platform is down or answered nonsense; try again later, nothing is lost;
- `PermanentError` (and `DuplicateContent`, `Unauthorized`, `NotFound`): retrying will not help.

People are known by `(platform, user_id)`, an id the platform never reuses; a handle is
only a snapshot of what the platform showed at the time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

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


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class PlatformUser:
    """An account on a platform: its immutable id and the handle it showed when seen."""

    platform: str
    user_id: str
    handle: str
    name: str = ""
    protected: bool = False


@dataclass(frozen=True)
class Mention:
    """A post that mentions the bot, as the platform delivered it.

    `original_id` is the root of the post's edit history (the post's own id when it was
    never edited): the idempotency key of whatever the post asks for.
    """

    platform: str
    id: str
    original_id: str
    text: str
    author_id: str
    author_handle: str | None
    created_at: datetime  # UTC, aware
    in_reply_to_user_id: str | None
    in_reply_to_handle: str | None
    is_repost: bool
    conversation_id: str | None
    # casefolded handle -> user id, for the handles in the text that the platform resolved
    mentioned_ids: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Code point indices [start, end) of the author's own text inside `text`, when the
    # platform says where leading reply mentions / trailing media links sit (None: all).
    display_range: tuple[int, int] | None = None
    # Links in `text` that are the post's own media or quoted post, not something it says.
    attachment_urls: frozenset[str] = frozenset()
    visibility: str | None = None  # e.g. Mastodon's public/unlisted/private/direct

    @property
    def is_edit(self) -> bool:
        return self.original_id != self.id

    @property
    def author(self) -> PlatformUser:
        return PlatformUser(self.platform, self.author_id, self.author_handle or "")


@dataclass(frozen=True)
class MentionsPage:
    mentions: tuple[Mention, ...]  # as the platform returns them: newest first
    newest_id: str | None  # the cursor to read after next time (None: nothing new)
    next_token: str | None  # the next (older) page of this read, if any
    users: Mapping[str, PlatformUser] = field(default_factory=dict, hash=False)  # by id


# --------------------------------------------------------------------------- errors


class PlatformError(Exception):
    """Base of every failure of a platform adapter. Messages never carry credentials."""

    def __init__(
        self, message: str = "", *, endpoint: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status


class RateLimited(PlatformError):
    """The endpoint's window is used up; try again at `reset_at`."""

    def __init__(
        self, reset_at: datetime, *, endpoint: str | None = None, message: str | None = None
    ) -> None:
        text = message or f"{endpoint or 'platform'}: rate limited until {reset_at.isoformat()}"
        super().__init__(text, endpoint=endpoint, status=429)
        self.reset_at = reset_at


class TransientError(PlatformError):
    """The platform failed (5xx, timeout, connection, malformed body); retry later."""


class PermanentError(PlatformError):
    """The platform refused the request for good; retrying the same request will not help."""

    default_reason = "refused"

    def __init__(
        self, reason: str | None = None, *, endpoint: str | None = None, status: int | None = None
    ) -> None:
        self.reason = reason or self.default_reason
        prefix = endpoint or "platform"
        text = f"{prefix}: HTTP {status}: {self.reason}" if status else f"{prefix}: {self.reason}"
        super().__init__(text, endpoint=endpoint, status=status)


class DuplicateContent(PermanentError):
    """The platform refused a post as a duplicate of one it already has."""

    default_reason = "duplicate content"


class Unauthorized(PermanentError):
    default_reason = "unauthorized"


class NotFound(PermanentError):
    default_reason = "not found"


class SignInError(Exception):
    """A web sign-in cannot go on. `reason` is for the person, `detail` for the log.

    Neither ever holds a code, a verifier, a token or a response body.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------- the ports


@runtime_checkable
class Platform(Protocol):
    """What the listener, the relay and the CLI do with a platform, as the bot's account."""

    @property
    def name(self) -> str:
        """The platform's key in identities and state keys: "x", "mastodon"."""
        ...

    @property
    def bot_user_id(self) -> str:
        """The bot's own user id (its posts are skipped, tips to it refused)."""
        ...

    @property
    def bot_handle(self) -> str:
        """The bot's handle as people write it after "@" ("" when the adapter was not told:
        the listener then falls back on the deployment's setting for that platform)."""
        ...

    def mentions(
        self, *, since_id: str | None, pagination_token: str | None = None, max_results: int = 100
    ) -> MentionsPage:
        """One page of the mentions newer than `since_id` (exclusive), newest first."""
        ...

    def lookup_users(self, handles: Sequence[str]) -> dict[str, PlatformUser]:
        """The accounts behind `handles` (with or without "@"), by casefolded handle;
        unknown or invalid handles are absent."""
        ...

    def get_user(self, user_id: str) -> PlatformUser | None:
        """The account `user_id`, or None when it is unknown or suspended."""
        ...

    def me(self, access_token: str) -> PlatformUser:
        """The account a user's OAuth access token belongs to."""
        ...

    def reply(self, text: str, in_reply_to_id: str) -> str:
        """Post `text` as a reply to the post `in_reply_to_id`; the new post's id."""
        ...

    def send_dm(self, user_id: str, text: str) -> str:
        """Send a direct message to `user_id`; the message's id."""
        ...


@runtime_checkable
class BackfillsMentions(Protocol):
    """A platform whose mentions timeline holds only the newest `mentions_window` posts,
    and which can search further back (X: 800 mentions, then 7 days of recent search).

    The listener uses it so that a long outage loses no tip silently.
    """

    @property
    def mentions_window(self) -> int: ...

    @property
    def search_reach(self) -> timedelta:
        """How far back `search_mentions` reaches."""
        ...

    def posted_at(self, post_id: str) -> datetime | None:
        """When the post `post_id` was made, read from its id (None if it cannot say)."""
        ...

    def search_mentions(
        self,
        *,
        since_id: str,
        until_id: str | None = None,
        pagination_token: str | None = None,
        max_results: int = 100,
    ) -> MentionsPage:
        """One page (newest first) of the bot's mentions with since_id < id < until_id."""
        ...


@runtime_checkable
class SignIn(Protocol):
    """The OAuth 2.0 (PKCE) sign-in the web claim uses to learn who a visitor is.

    The state and verifier are kept by the caller (`bot.web.oauth`); an access token lives
    only between `exchange_code` and `current_user` and is never stored or logged.
    Every failure raises `SignInError`.
    """

    @property
    def platform(self) -> str:
        """The platform of the accounts this sign-in proves: "x", "mastodon"."""
        ...

    @property
    def label(self) -> str:
        """The platform's name for people: "X", "Mastodon"."""
        ...

    @property
    def configured(self) -> bool:
        """Whether the deployment has the client credentials to offer this sign-in."""
        ...

    def authorize_url(self, state: str, code_challenge: str) -> str:
        """Where the browser goes to consent (S256 PKCE with `code_challenge`)."""
        ...

    def exchange_code(self, code: str, verifier: str) -> str:
        """The user's access token for the authorization `code`."""
        ...

    def current_user(self, access_token: str) -> PlatformUser:
        """The account the access token belongs to (handle "" when not given)."""
        ...


@runtime_checkable
class KnowsUsersById(Protocol):
    """A platform whose handles can change hands (X): it names its accounts by id now."""

    def lookup_users_by_id(self, user_ids: Sequence[str]) -> dict[str, PlatformUser]:
        """The accounts as the platform knows them now, by user id, in as few calls as it
        allows; an id it no longer knows (deactivated, suspended) is absent."""
        ...
