"""An in-memory X that implements the platform port (`bot.platforms.x.api.XApi`), for tests.

It behaves like the real adapter where a caller could notice: mentions come newest first in
pages of 5..100 with a `next_token`, `since_id` is exclusive, only the 800 newest mentions are
reachable, unknown handles are absent from lookups, a repeated reply text is refused with
`DuplicateContent`, and any call can be made to fail once with `fail_next`.

    x = FakeXApi(bot_username="flattr")
    bob = x.add_user("bob")
    tip = x.add_mention("alice", "@flattr @bob €2")     # alice is created on the fly
    page = x.mentions(since_id=None)
    x.fail_next("reply", RateLimited(reset_at))
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bot.platforms import (
    DuplicateContent,
    Mention,
    MentionsPage,
    PermanentError,
    PlatformUser,
    Unauthorized,
)
from bot.platforms.x.api import (
    ENDPOINT_MENTIONS,
    PLATFORM,
    RateLimit,
    clamp_max_results,
    is_valid_username,
)
from tests.support.x_payloads import mentioned_usernames, snowflake

PORT_METHODS = frozenset(
    {"mentions", "lookup_users", "lookup_users_by_id", "get_user", "me", "reply", "send_dm"}
)
REACHABLE_MENTIONS = 800  # X serves only the newest 800 mentions of a user


class FakeXApi:
    """State is public on purpose: tests read `.posted`, `.dms`, `.calls` and `.users`."""

    def __init__(
        self,
        *,
        bot_username: str = "flattr",
        bot_user_id: str = "999",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._clock = clock or (lambda: datetime(2024, 3, 1, 12, 0, tzinfo=UTC))
        self.users: dict[str, PlatformUser] = {}  # by id
        self._mentions: list[Mention] = []
        self.posted: list[tuple[str, str]] = []  # (text, in_reply_to_tweet_id)
        self.posted_ids: list[str] = []  # the tweet id returned for each entry of .posted
        self.dms: list[tuple[str, str]] = []  # (user_id, text)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []  # (method, arguments), in order
        self.tokens: dict[str, str] = {}  # OAuth2 access token -> user id, for me()
        self.rate_limits_seen: dict[str, RateLimit] = {}
        self._failures: defaultdict[str, deque[BaseException]] = defaultdict(deque)
        self._user_ids = itertools.count(1001)
        self._sequence = itertools.count(1)
        self.bot = self.add_user(bot_username, bot_user_id)

    @property
    def name(self) -> str:
        return PLATFORM

    @property
    def bot_user_id(self) -> str:
        return self.bot.user_id

    @property
    def bot_handle(self) -> str:
        return self.bot.handle

    # ----------------------------------------------------------------- arranging

    def add_user(
        self, username: str, user_id: str | None = None, *, name: str = "", protected: bool = False
    ) -> PlatformUser:
        """Create (or replace) an account; the handle must be free."""
        existing = self.user_named(username)
        if existing is not None and existing.user_id != user_id:
            raise ValueError(f"@{username} is taken; rename_user first to recycle it")
        new = PlatformUser(
            platform=PLATFORM,
            user_id=user_id or str(next(self._user_ids)),
            handle=username,
            name=name or username.title(),
            protected=protected,
        )
        self.users[new.user_id] = new
        return new

    def rename_user(self, old_username: str, new_username: str) -> PlatformUser:
        """The account keeps its id; the old handle becomes free for someone else."""
        found = self.user_named(old_username)
        if found is None:
            raise KeyError(old_username)
        renamed = PlatformUser(PLATFORM, found.user_id, new_username, found.name, found.protected)
        self.users[found.user_id] = renamed
        return renamed

    def user_named(self, username: str) -> PlatformUser | None:
        key = username.lstrip("@").casefold()
        return next((u for u in self.users.values() if u.handle.casefold() == key), None)

    def add_token(self, access_token: str, user: PlatformUser | str) -> None:
        """Make `me(access_token)` answer as `user` (as after a completed OAuth sign-in)."""
        found = self._resolve(user)
        self.tokens[access_token] = found.user_id

    def add_mention(
        self,
        author: PlatformUser | str,
        text: str,
        in_reply_to_user: PlatformUser | str | None = None,
        created_at: datetime | None = None,
        retweet: bool = False,
        edit_of: Mention | None = None,
    ) -> Mention:
        """Publish a tweet that shows up in the bot's mentions; unknown authors are created."""
        writer = self._resolve(author)
        replied_to = self._resolve(in_reply_to_user) if in_reply_to_user is not None else None
        moment = (created_at or self._clock()).astimezone(UTC)
        tweet_id = snowflake(moment, next(self._sequence))
        mentioned: dict[str, str] = {}
        for handle in mentioned_usernames(text):
            known = self.user_named(handle)
            if known is not None:
                mentioned.setdefault(handle.casefold(), known.user_id)
        mention = Mention(
            platform=PLATFORM,
            id=tweet_id,
            original_id=edit_of.original_id if edit_of else tweet_id,
            text=text,
            author_id=writer.user_id,
            author_handle=writer.handle,
            created_at=moment,
            in_reply_to_user_id=replied_to.user_id if replied_to else None,
            in_reply_to_handle=replied_to.handle if replied_to else None,
            is_repost=retweet,
            conversation_id=(edit_of.conversation_id if edit_of else None) or tweet_id,
            mentioned_ids=mentioned,
        )
        self._mentions.append(mention)
        return mention

    def fail_next(self, method_name: str, exc: BaseException) -> None:
        """The next call of `method_name` raises `exc` instead of doing anything (queued)."""
        if method_name not in PORT_METHODS:
            raise ValueError(f"not a port method: {method_name}")
        self._failures[method_name].append(exc)

    def set_rate_limit(self, endpoint: str, limit: int, remaining: int, reset_at: datetime) -> None:
        self.rate_limits_seen[endpoint] = RateLimit(limit, remaining, reset_at)

    def _resolve(self, who: PlatformUser | str) -> PlatformUser:
        if isinstance(who, PlatformUser):
            self.users.setdefault(who.user_id, who)
            return who
        return self.user_named(who) or self.add_user(who.lstrip("@"))

    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        if self._failures[method]:
            raise self._failures[method].popleft()

    def calls_to(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == method]

    # ----------------------------------------------------------------- the port

    @property
    def rate_limits(self) -> Mapping[str, RateLimit]:
        return dict(self.rate_limits_seen)

    def mentions(
        self, *, since_id: str | None, pagination_token: str | None = None, max_results: int = 100
    ) -> MentionsPage:
        self._enter("mentions", since_id, pagination_token, max_results)
        newest_first = sorted(self._mentions, key=lambda m: int(m.id), reverse=True)
        reachable = newest_first[:REACHABLE_MENTIONS]
        if since_id is not None:
            reachable = [m for m in reachable if int(m.id) > int(since_id)]
        if pagination_token is not None:
            if not pagination_token.startswith("next-"):
                raise PermanentError(
                    "invalid pagination_token", endpoint=ENDPOINT_MENTIONS, status=400
                )
            below = int(pagination_token.removeprefix("next-"))
            reachable = [m for m in reachable if int(m.id) < below]
        size = clamp_max_results(max_results)
        chosen = tuple(reachable[:size])
        next_token = f"next-{chosen[-1].id}" if len(reachable) > size else None
        involved: dict[str, PlatformUser] = {}
        for m in chosen:
            ids = [m.author_id, m.in_reply_to_user_id, *m.mentioned_ids.values()]
            involved.update((i, self.users[i]) for i in ids if i is not None and i in self.users)
        return MentionsPage(
            mentions=chosen,
            newest_id=chosen[0].id if chosen else None,
            next_token=next_token,
            users=involved,
        )

    def lookup_users(self, handles: Sequence[str]) -> dict[str, PlatformUser]:
        self._enter("lookup_users", tuple(handles))
        found: dict[str, PlatformUser] = {}
        for name in handles:
            name = name[1:] if name.startswith(("@", "＠")) else name
            if not is_valid_username(name):
                continue
            user = self.user_named(name)
            if user is not None:
                found[user.handle.casefold()] = user
        return found

    def lookup_users_by_id(self, user_ids: Sequence[str]) -> dict[str, PlatformUser]:
        self._enter("lookup_users_by_id", tuple(user_ids))
        return {u: self.users[u] for u in user_ids if u in self.users}

    def get_user(self, user_id: str) -> PlatformUser | None:
        self._enter("get_user", user_id)
        return self.users.get(user_id)

    def me(self, access_token: str) -> PlatformUser:
        self._enter("me", access_token)
        user_id = self.tokens.get(access_token)
        if user_id is None or user_id not in self.users:
            raise Unauthorized("Unauthorized", endpoint="GET /2/users/me", status=401)
        return self.users[user_id]

    def reply(self, text: str, in_reply_to_id: str) -> str:
        self._enter("reply", text, in_reply_to_id)
        if any(posted_text == text for posted_text, _ in self.posted):
            raise DuplicateContent(
                "You are not allowed to create a Tweet with duplicate content.",
                endpoint="POST /2/tweets",
                status=403,
            )
        tweet_id = snowflake(self._clock(), next(self._sequence))
        self.posted.append((text, in_reply_to_id))
        self.posted_ids.append(tweet_id)
        return tweet_id

    def send_dm(self, user_id: str, text: str) -> str:
        self._enter("send_dm", user_id, text)
        self.dms.append((user_id, text))
        return snowflake(self._clock(), next(self._sequence))
