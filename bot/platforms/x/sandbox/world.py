"""The sandbox's state: accounts, tweets, posts, DMs, OAuth grants, rate windows and faults.

`World` is the in-process control API of the loopback X API fake. Tests and `tipjar demo`
arrange a scene through it (users, mentions, renames, injected faults, a settable clock)
and read back what the bot did (posts, DMs, requests). The HTTP layer in
`bot.platforms.x.sandbox.server` only translates requests into calls on this object, so everything
here is guarded by one re-entrant lock and safe to use while the server thread runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]

#: Twitter's snowflake epoch (2010-11-04T01:42:54.657Z): ids carry milliseconds since it.
TWEPOCH = datetime(2010, 11, 4, 1, 42, 54, 657000, tzinfo=UTC)
#: Default user ids are snowflakes of 2020-01-01 plus a counter: realistic, and the same
#: on every run (the demo's database keeps accounts by user id between runs).
USER_ID_BASE = ((datetime(2020, 1, 1, tzinfo=UTC) - TWEPOCH) // timedelta(milliseconds=1)) << 22
#: The mentions timeline only reaches this many of the newest mentions.
MENTIONS_REACH = 800
#: Recent search reaches this far back.
SEARCH_REACH = timedelta(days=7)
#: Rate limit windows of the X API are 15 minutes long.
RATE_WINDOW = timedelta(minutes=15)
#: An authorization code lives this long (X's documented lifetime).
CODE_LIFETIME = timedelta(seconds=30)
#: User access tokens live this long (X's `expires_in`).
TOKEN_LIFETIME = timedelta(hours=2)
#: Weighted length limit of a post; a URL counts as 23 (t.co), as on the platform.
MAX_POST_LENGTH = 280
URL_WEIGHT = 23

#: How many answered requests `World.requests` remembers.
REQUEST_LOG_SIZE = 10_000

USERNAME_RE = re.compile(r"^[A-Za-z0-9_]{1,15}$")
_URL_RE = re.compile(r"https?://\S+", re.IGNORECASE)
# twitter-text's rule, reduced: an @ not preceded by a word character or one of !#$%&*@,
# followed by up to 20 username characters; not an email, not a list, not a URL scheme.
_MENTION_RE = re.compile(r"(?<![A-Za-z0-9_!#$%&*@＠])[@＠]([A-Za-z0-9_]{1,20})")
_MENTION_INVALID_AFTER = re.compile(r"[@＠]|[À-ÖØ-öø-ÿ]|://|/[A-Za-z]")

#: Real per-15-minute limits, as (app-only limit, per-user limit); None: context not allowed.
RATE_LIMITS: dict[str, tuple[int | None, int]] = {
    "GET /2/users/:id/mentions": (450, 300),
    "GET /2/tweets/search/recent": (450, 300),
    "GET /2/users/by": (300, 900),
    "GET /2/users": (300, 900),
    "GET /2/users/by/username/:username": (300, 900),
    "GET /2/users/:id": (300, 900),
    "GET /2/users/me": (None, 75),
    "POST /2/tweets": (None, 100),
    "POST /2/dm_conversations/with/:participant_id/messages": (None, 200),
}


def utc_now() -> datetime:
    """The wall clock; the default when no clock is injected."""
    return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to: `clock.advance(seconds=31)`, `clock.set(dt)`."""

    def __init__(self, start: datetime) -> None:
        _require_aware(start)
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        _require_aware(when)
        with self._lock:
            self._now = when

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by `delta` or by timedelta keyword arguments; returns the new time."""
        step = delta if delta is not None else timedelta(**kwargs)
        with self._lock:
            self._now += step
            return self._now


def _require_aware(when: datetime) -> None:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware: {when!r}")


def find_mentions(text: str) -> list[tuple[str, int, int]]:
    """@-mentions in `text` as (username, start, end), indices in code points.

    The sandbox's own small finder (close to twitter-text, not all of it) so that it does
    not depend on the bot's extractor, which it exists to test.
    """
    found: list[tuple[str, int, int]] = []
    for match in _MENTION_RE.finditer(text):
        name = match.group(1)
        if _MENTION_INVALID_AFTER.match(text, match.end()) or len(name) > 15:
            continue
        found.append((name, match.start(), match.end()))
    return found


def _prefilled_end(text: str, thread: list[str]) -> int:
    """Where a reply's own words start: after the thread's mentions X prefilled.

    X prefills the thread's people in order (the author may remove some) and hides them
    from the reply's display (`display_text_range`); a handle out of that order is typed.
    """
    order = [name.lower() for name in thread]
    pos = next_allowed = 0
    for name, start, end in find_mentions(text):
        lowered = name.lower()
        if text[pos:start].strip() or lowered not in order[next_allowed:]:
            break
        next_allowed = order.index(lowered, next_allowed) + 1
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return pos


def weighted_length(text: str) -> int:
    """The post length the platform counts: every URL weighs 23, other code points 1."""
    urls = _URL_RE.findall(text)
    return len(_URL_RE.sub("", text)) + URL_WEIGHT * len(urls)


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier: base64url(sha256(verifier)), no padding."""
    digest = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(eq=False)
class User:
    """An account on the fake platform. `username` changes on rename; `id` never does."""

    id: str
    username: str
    name: str
    created_at: datetime
    description: str = ""
    protected: bool = False
    verified: bool = False


@dataclass(frozen=True)
class MentionEntity:
    """One `entities.mentions[]` item; `user_id` is None when the handle named nobody."""

    start: int
    end: int
    username: str
    user_id: str | None


@dataclass(eq=False)
class Tweet:
    """A tweet: a mention written through the control API, or a post made over HTTP."""

    id: str
    author: User
    text: str
    created_at: datetime
    conversation_id: str
    in_reply_to: str | None = None
    in_reply_to_user_id: str | None = None
    retweet_of: str | None = None
    mentions: tuple[MentionEntity, ...] = ()
    edit_history: list[str] = field(default_factory=list)
    via_api: bool = False
    deleted: bool = False
    # Where the author's own words start: after the mentions X prefills in a reply.
    display_start: int = 0

    @property
    def has_link(self) -> bool:
        """Whether the text carries a URL (such posts cost far more on the platform)."""
        return bool(_URL_RE.search(self.text))

    @property
    def referenced_tweets(self) -> list[dict[str, str]]:
        if self.retweet_of is not None:
            return [{"type": "retweeted", "id": self.retweet_of}]
        if self.in_reply_to is not None:
            return [{"type": "replied_to", "id": self.in_reply_to}]
        return []


@dataclass(frozen=True)
class DirectMessage:
    """A DM sent over HTTP; `id` is the dm_event_id."""

    id: str
    conversation_id: str
    sender: User
    recipient: User
    text: str
    created_at: datetime


@dataclass
class Fault:
    """A scripted misbehaviour for the next `remaining` requests under `path_prefix`.

    `status=None` answers normally after `delay` seconds (a slow platform); `malformed`
    sends a truncated JSON body; `body` (bytes, str or a JSON-able object) replaces the
    default problem body.
    """

    path_prefix: str
    status: int | None
    remaining: int
    headers: dict[str, str]
    body: object = None
    delay: float = 0.0
    malformed: bool = False
    method: str | None = None


@dataclass(frozen=True)
class RequestRecord:
    """One request the sandbox answered (the query string is kept, bodies are not)."""

    method: str
    path: str
    query: str
    status: int
    at: datetime
    principal: str | None


@dataclass(frozen=True)
class RateStatus:
    """The state of one rate window after a request: the `x-rate-limit-*` header values."""

    limit: int
    remaining: int
    reset: int
    allowed: bool


@dataclass(frozen=True)
class AccessGrant:
    """What a user access token stands for."""

    user_id: str
    scope: str
    expires_at: datetime

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.scope.split())


@dataclass
class _RateWindow:
    limit: int
    used: int
    resets_at: datetime


@dataclass
class _AuthCode:
    client_id: str
    redirect_uri: str
    challenge: str
    method: str
    scope: str
    user_id: str
    issued_at: datetime
    used: bool = False


class PostRefused(Exception):
    """The platform refuses a post or DM; carries the problem the HTTP layer returns."""

    def __init__(self, status: int, title: str, detail: str, kind: str = "about:blank") -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind

    def problem(self) -> dict[str, object]:
        return {
            "detail": self.detail,
            "type": self.kind,
            "title": self.title,
            "status": self.status,
        }


class GrantRefused(Exception):
    """The token endpoint refuses a code exchange (an OAuth 2.0 error response)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


DUPLICATE_CONTENT = "You are not allowed to create a Tweet with duplicate content."
REPLY_TARGET_GONE = "You attempted to reply to a Tweet that is deleted or not visible to you."
TEXT_TOO_LONG = (
    "Your Tweet text is too long. For more information on how Twitter determines text "
    "length see https://github.com/twitter/twitter-text."
)
BAD_CODE = "Value passed for the authorization code was invalid."
REDIRECT_MISMATCH = "Value passed for the redirect uri did not match the authorization request."
VERIFIER_MISMATCH = "Value passed for the code verifier did not match the code challenge."

UserRef = User | str


class World:
    """Everything the fake platform knows, behind one lock; the control API of the sandbox."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or utc_now
        self.lock = threading.RLock()
        self.signed_in_user: User | None = None
        self._users: dict[str, User] = {}
        self._ids_by_name: dict[str, str] = {}
        self._tweets: dict[str, Tweet] = {}
        self._dms: list[DirectMessage] = []
        self._faults: list[Fault] = []
        self._rate_overrides: dict[str, int] = {}
        self._windows: dict[tuple[str, str], _RateWindow] = {}
        self._codes: dict[str, _AuthCode] = {}
        self._tokens: dict[str, AccessGrant] = {}
        # Bounded: a long `tipjar demo --serve` polls forever.
        self._requests: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_SIZE)
        self._last_id = 0
        self._user_seq = 0

    # -- time and ids ------------------------------------------------------------------

    def now(self) -> datetime:
        when = self.clock()
        _require_aware(when)
        return when.astimezone(UTC)

    def set_clock(self, clock: Clock) -> None:
        with self.lock:
            self.clock = clock

    def _next_id(self, at: datetime | None = None) -> str:
        millis = max(0, ((at or self.now()) - TWEPOCH) // timedelta(milliseconds=1))
        self._last_id = max(millis << 22, self._last_id + 1)
        return str(self._last_id)

    def _next_user_id(self) -> str:
        while True:
            self._user_seq += 1
            candidate = str(USER_ID_BASE + self._user_seq)
            if candidate not in self._users:
                return candidate

    # -- users -------------------------------------------------------------------------

    def add_user(self, username: str, name: str | None = None, user_id: str | None = None) -> User:
        """Create an account; usernames are unique case-insensitively, like the platform's."""
        username = username.lstrip("@")
        if not USERNAME_RE.match(username):
            raise ValueError(f"not a valid username: {username!r}")
        with self.lock:
            if username.lower() in self._ids_by_name:
                raise ValueError(f"username already taken: @{username}")
            if user_id is not None and (not user_id.isdigit() or user_id in self._users):
                raise ValueError(f"user id must be new and numeric: {user_id!r}")
            user = User(
                id=user_id or self._next_user_id(),
                username=username,
                name=name or username.capitalize(),
                created_at=self.now(),
            )
            self._users[user.id] = user
            self._ids_by_name[username.lower()] = user.id
            return user

    def user(self, ref: UserRef) -> User:
        """The account `ref` names: a User, or a username (with or without @)."""
        with self.lock:
            if isinstance(ref, User):
                if self._users.get(ref.id) is not ref:
                    raise KeyError(f"no such sandbox user: {ref.username}")
                return ref
            found = self.find_user(ref)
            if found is None:
                raise KeyError(f"no such sandbox user: @{ref.lstrip('@')}")
            return found

    def find_user(self, username: str) -> User | None:
        with self.lock:
            user_id = self._ids_by_name.get(username.lstrip("@").lower())
            return None if user_id is None else self._users[user_id]

    def user_by_id(self, user_id: str) -> User | None:
        with self.lock:
            return self._users.get(user_id)

    @property
    def users(self) -> list[User]:
        with self.lock:
            return list(self._users.values())

    def rename(self, user: UserRef, new_username: str) -> User:
        """Change a handle; the id stays, and the old handle becomes free for someone else."""
        new_username = new_username.lstrip("@")
        if not USERNAME_RE.match(new_username):
            raise ValueError(f"not a valid username: {new_username!r}")
        with self.lock:
            target = self.user(user)
            taken = self._ids_by_name.get(new_username.lower())
            if taken is not None and taken != target.id:
                raise ValueError(f"username already taken: @{new_username}")
            del self._ids_by_name[target.username.lower()]
            target.username = new_username
            self._ids_by_name[new_username.lower()] = target.id
            return target

    def remove_user(self, user: UserRef) -> None:
        """Deactivate an account: lookups stop finding it; its handle becomes free."""
        with self.lock:
            target = self.user(user)
            del self._users[target.id]
            del self._ids_by_name[target.username.lower()]
            if self.signed_in_user is target:
                self.signed_in_user = None

    def sign_in(self, user: UserRef | None) -> None:
        """Preset who is "signed in to X": the consent page then offers only that account."""
        with self.lock:
            self.signed_in_user = None if user is None else self.user(user)

    # -- tweets ------------------------------------------------------------------------

    def mention(
        self,
        author: UserRef,
        text: str,
        *,
        in_reply_to: str | None = None,
        created_at: datetime | None = None,
        retweet_of: str | None = None,
        edit_of: str | None = None,
    ) -> Tweet:
        """Publish a tweet by `author` (any tweet, mentioning anyone or nobody).

        `in_reply_to` is a tweet id; `retweet_of` makes a retweet (text "" gives the
        platform's "RT @author: text"); `edit_of` makes a new version of an earlier tweet
        of the same author: a new id, `edit_history` shared by every version, oldest first.
        """
        if created_at is not None:
            _require_aware(created_at)
        with self.lock:
            writer = self.user(author)
            parent = self._existing_tweet(in_reply_to, "in_reply_to")
            original = self._existing_tweet(retweet_of, "retweet_of")
            previous = self._existing_tweet(edit_of, "edit_of")
            if sum(x is not None for x in (parent, original, previous)) > 1:
                raise ValueError("a tweet is a reply, a retweet or an edit, not several")
            if original is not None and not text:
                text = f"RT @{original.author.username}: {original.text}"
            if previous is not None:
                if previous.author is not writer:
                    raise ValueError("only the author can edit a tweet")
                if previous.retweet_of is not None:
                    raise ValueError("a retweet cannot be edited")
                parent = self._tweets.get(previous.in_reply_to or "")
            when = (created_at or self.now()).astimezone(UTC)
            tweet_id = self._next_id(created_at)
            tweet = Tweet(
                id=tweet_id,
                author=writer,
                text=text,
                created_at=when,
                conversation_id=tweet_id,
                mentions=self._resolve_mentions(text),
                edit_history=[tweet_id],
            )
            if parent is not None:
                tweet.in_reply_to = parent.id
                tweet.in_reply_to_user_id = parent.author.id
                tweet.conversation_id = parent.conversation_id
                tweet.display_start = _prefilled_end(text, self._thread_handles(parent, writer))
            if original is not None:
                tweet.retweet_of = original.id
            if previous is not None:
                chain = [*previous.edit_history, tweet_id]
                for version_id in chain[:-1]:
                    self._tweets[version_id].edit_history = chain
                tweet.edit_history = chain
                tweet.conversation_id = previous.conversation_id
            self._tweets[tweet.id] = tweet
            return tweet

    tweet = mention

    def _thread_handles(self, parent: Tweet, writer: User) -> list[str]:
        """The handles X prefills in a reply to `parent` by `writer`, in order."""
        names = [parent.author.username, *(m.username for m in parent.mentions)]
        seen: dict[str, str] = {}
        for name in names:
            if name.lower() != writer.username.lower():
                seen.setdefault(name.lower(), name)
        return list(seen.values())

    def reply_prefix(self, parent_id: str, author: UserRef) -> str:
        """What X puts before the words of `author`'s reply to `parent_id`: "@a @b "."""
        with self.lock:
            parent = self._existing_tweet(parent_id, "parent_id")
            assert parent is not None
            handles = self._thread_handles(parent, self.user(author))
            return "".join(f"@{name} " for name in handles)

    def _existing_tweet(self, tweet_id: str | None, what: str) -> Tweet | None:
        if tweet_id is None:
            return None
        found = self._tweets.get(str(tweet_id))
        if found is None or found.deleted:
            raise ValueError(f"{what}: no such tweet {tweet_id}")
        return found

    def _resolve_mentions(self, text: str) -> tuple[MentionEntity, ...]:
        entities = []
        for username, start, end in find_mentions(text):
            user_id = self._ids_by_name.get(username.lower())
            entities.append(MentionEntity(start, end, username, user_id))
        return tuple(entities)

    def delete_tweet(self, tweet_id: str) -> None:
        with self.lock:
            self._existing_tweet(tweet_id, "delete_tweet")
            self._tweets[tweet_id].deleted = True

    def get_tweet(self, tweet_id: str) -> Tweet | None:
        """A live tweet by id (None once deleted)."""
        with self.lock:
            found = self._tweets.get(tweet_id)
            return None if found is None or found.deleted else found

    @property
    def tweets(self) -> list[Tweet]:
        """Every live tweet, oldest first."""
        with self.lock:
            return [t for t in self._tweets.values() if not t.deleted]

    def mentions_of(self, user_id: str) -> list[Tweet]:
        """The mentions timeline of a user: newest first, only the reachable newest 800."""
        with self.lock:
            timeline = [
                t
                for t in reversed(self._tweets.values())
                if not t.deleted and any(m.user_id == user_id for m in t.mentions)
            ]
            return timeline[:MENTIONS_REACH]

    def search_mentions(self, user_id: str) -> list[Tweet]:
        """Recent search for a user's mentions, retweets excluded: newest first, 7 days."""
        with self.lock:
            horizon = self.now() - SEARCH_REACH
            return [
                t
                for t in reversed(self._tweets.values())
                if not t.deleted
                and t.retweet_of is None
                and t.created_at >= horizon
                and any(m.user_id == user_id for m in t.mentions)
            ]

    @property
    def posted(self) -> list[Tweet]:
        """What was posted over HTTP (the bot's replies and notices), oldest first."""
        with self.lock:
            return [t for t in self._tweets.values() if t.via_api]

    def create_post(self, author: UserRef, text: str, *, in_reply_to: str | None = None) -> Tweet:
        """POST /2/tweets: the platform's checks, then a new tweet; raises PostRefused."""
        with self.lock:
            writer = self.user(author)
            if weighted_length(text) > MAX_POST_LENGTH:
                raise PostRefused(403, "Forbidden", TEXT_TOO_LONG)
            if in_reply_to is not None and self.get_tweet(in_reply_to) is None:
                raise PostRefused(403, "Forbidden", REPLY_TARGET_GONE)
            if any(t.author is writer and t.text == text for t in self._tweets.values()):
                raise PostRefused(403, "Forbidden", DUPLICATE_CONTENT)
            post = self.mention(writer, text, in_reply_to=in_reply_to)
            post.via_api = True
            return post

    # -- direct messages ---------------------------------------------------------------

    def send_dm(self, sender: UserRef, recipient: UserRef, text: str) -> DirectMessage:
        with self.lock:
            source = self.user(sender)
            target = self.user(recipient)
            low, high = sorted((source.id, target.id), key=int)
            message = DirectMessage(
                id=self._next_id(),
                conversation_id=f"{low}-{high}",
                sender=source,
                recipient=target,
                text=text,
                created_at=self.now(),
            )
            self._dms.append(message)
            return message

    @property
    def dms(self) -> list[DirectMessage]:
        with self.lock:
            return list(self._dms)

    # -- faults ------------------------------------------------------------------------

    def fail_next(
        self,
        path_prefix: str,
        status: int | None = 503,
        count: int = 1,
        headers: Mapping[str, str] | None = None,
        *,
        body: object = None,
        delay: float = 0.0,
        malformed: bool = False,
        method: str | None = None,
    ) -> Fault:
        """Make the next `count` requests whose path starts with `path_prefix` misbehave.

        Examples: `fail_next("/2/users/", 429)`, `fail_next("/2/tweets", 503, count=3)`,
        `fail_next("/2/users/by", None, delay=2.0)` (slow, then normal),
        `fail_next("/2/users/", 200, malformed=True)` (truncated JSON).
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        fault = Fault(
            path_prefix=path_prefix,
            status=status,
            remaining=count,
            headers=dict(headers or {}),
            body=body,
            delay=delay,
            malformed=malformed,
            method=method.upper() if method else None,
        )
        with self.lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first pending fault matching this request, consumed by one use."""
        with self.lock:
            for fault in self._faults:
                if path.startswith(fault.path_prefix) and fault.method in (None, method):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
            return None

    # -- rate limits -------------------------------------------------------------------

    def set_rate_limit(self, endpoint: str, limit: int) -> None:
        """Override an endpoint's per-window limit (for app and users alike), e.g. to 2."""
        if endpoint not in RATE_LIMITS:
            raise KeyError(f"unknown endpoint {endpoint!r}; one of {sorted(RATE_LIMITS)}")
        with self.lock:
            self._rate_overrides[endpoint] = limit
            for (name, _principal), window in self._windows.items():
                if name == endpoint:
                    window.limit = limit

    def consume_rate(self, endpoint: str, principal: str) -> RateStatus:
        """Count one request of `principal` ("app" or "user:ID") against its window."""
        app_limit, user_limit = RATE_LIMITS[endpoint]
        default = app_limit if principal == "app" else user_limit
        with self.lock:
            now = self.now()
            window = self._windows.get((endpoint, principal))
            if window is None or now >= window.resets_at:
                limit = self._rate_overrides.get(endpoint, default or 0)
                window = _RateWindow(limit=limit, used=0, resets_at=now + RATE_WINDOW)
                self._windows[(endpoint, principal)] = window
            allowed = window.used < window.limit
            if allowed:
                window.used += 1
            return RateStatus(
                limit=window.limit,
                remaining=max(0, window.limit - window.used),
                reset=int(window.resets_at.timestamp()),
                allowed=allowed,
            )

    # -- OAuth 2.0 ---------------------------------------------------------------------

    def issue_code(
        self,
        user: UserRef,
        *,
        client_id: str,
        redirect_uri: str,
        code_challenge: str,
        code_challenge_method: str = "S256",
        scope: str = "users.read tweet.read",
    ) -> str:
        """An authorization code, as the consent page grants it (single use, 30 s)."""
        with self.lock:
            code = secrets.token_urlsafe(48)
            self._codes[code] = _AuthCode(
                client_id=client_id,
                redirect_uri=redirect_uri,
                challenge=code_challenge,
                method=code_challenge_method,
                scope=scope,
                user_id=self.user(user).id,
                issued_at=self.now(),
            )
            return code

    def redeem_code(
        self, code: str, *, client_id: str, redirect_uri: str, code_verifier: str
    ) -> tuple[str, AccessGrant]:
        """Exchange a code for an access token; raises GrantRefused (invalid_grant)."""
        with self.lock:
            grant = self._codes.get(code)
            if grant is None or grant.used:
                raise GrantRefused("invalid_grant", BAD_CODE)
            # Any attempt burns the code: a guessed verifier gets exactly one try.
            grant.used = True
            if self.now() - grant.issued_at > CODE_LIFETIME:
                raise GrantRefused("invalid_grant", BAD_CODE)
            if grant.client_id != client_id:
                raise GrantRefused("invalid_grant", "The code was issued to another client.")
            if grant.redirect_uri != redirect_uri:
                raise GrantRefused("invalid_grant", REDIRECT_MISMATCH)
            expected = pkce_challenge(code_verifier) if grant.method == "S256" else code_verifier
            if not hmac.compare_digest(expected.encode(), grant.challenge.encode()):
                raise GrantRefused("invalid_grant", VERIFIER_MISMATCH)
            owner = self._users.get(grant.user_id)
            if owner is None:
                raise GrantRefused("invalid_grant", BAD_CODE)
            return self.issue_token(owner, scope=grant.scope)

    def issue_token(
        self, user: UserRef, *, scope: str = "users.read tweet.read"
    ) -> tuple[str, AccessGrant]:
        """A user access token straight away (tests that skip the consent page)."""
        with self.lock:
            target = self.user(user)
            token = secrets.token_urlsafe(48)
            access = AccessGrant(
                user_id=target.id,
                scope=" ".join(scope.split()),
                expires_at=self.now() + TOKEN_LIFETIME,
            )
            self._tokens[token] = access
            return token, access

    def token_grant(self, token: str) -> AccessGrant | None:
        """What a bearer user token stands for, or None if unknown or expired."""
        with self.lock:
            access = self._tokens.get(token)
            if access is None or self.now() >= access.expires_at:
                return None
            return access

    # -- request log -------------------------------------------------------------------

    def record_request(self, record: RequestRecord) -> None:
        with self.lock:
            self._requests.append(record)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered so far, oldest first."""
        with self.lock:
            return list(self._requests)

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RequestRecord]:
        with self.lock:
            return [
                r
                for r in self._requests
                if r.path.startswith(path_prefix) and method in (None, r.method)
            ]

    @contextmanager
    def locked(self) -> Iterator[World]:
        """Hold the world still while reading several things at once."""
        with self.lock:
            yield self
