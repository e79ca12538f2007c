"""The X adapter of the platform port (`bot.platforms.port`): tweepy and X's JSON stay here.

The rest of the bot sees only the `Platform` port, its plain frozen values (`PlatformUser`,
`Mention`, `MentionsPage`) and its error hierarchy; `XApi` adds X's per-endpoint
`RateLimit` windows. `parse_mentions_page` turns X's v2 JSON into port values.

`TweepyXApi` is built on tweepy's `Client`, whose responses it reads raw so that rate-limit
headers are seen on every call. tweepy hard-codes `https://api.twitter.com`; a transport
adapter on the client's session sends every request to `X_API_BASE_URL` instead (the local
sandbox, tests). No credential ever appears in an error message, a repr, or a log line.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import requests
import tweepy
from requests.adapters import HTTPAdapter

from bot.hosts import is_loopback
from bot.metrics import observe_api_call
from bot.platforms.port import (
    DuplicateContent,
    Mention,
    MentionsPage,
    NotFound,
    PermanentError,
    Platform,
    PlatformError,
    PlatformUser,
    RateLimited,
    TransientError,
    Unauthorized,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "ENDPOINT_CREATE_TWEET",
    "ENDPOINT_ME",
    "ENDPOINT_MENTIONS",
    "ENDPOINT_SEARCH_RECENT",
    "ENDPOINT_SEND_DM",
    "ENDPOINT_USER",
    "ENDPOINT_USERS_BY",
    "MAX_MENTIONS_PER_PAGE",
    "MAX_USERNAMES_PER_LOOKUP",
    "MENTIONS_WINDOW",
    "MIN_MENTIONS_PER_PAGE",
    "PLATFORM",
    "SEARCH_WINDOW",
    "BaseUrlAdapter",
    "RateLimit",
    "TweepyXApi",
    "XApi",
    "clamp_max_results",
    "is_valid_username",
    "parse_mentions_page",
    "snowflake_time",
]

DEFAULT_BASE_URL = "https://api.twitter.com"

# Keys of `XApi.rate_limits`: one per endpoint template, as X meters them.
ENDPOINT_MENTIONS = "GET /2/users/:id/mentions"
ENDPOINT_SEARCH_RECENT = "GET /2/tweets/search/recent"
ENDPOINT_USERS_BY = "GET /2/users/by"
ENDPOINT_USERS = "GET /2/users"
ENDPOINT_USER = "GET /2/users/:id"
ENDPOINT_ME = "GET /2/users/me"
ENDPOINT_CREATE_TWEET = "POST /2/tweets"
ENDPOINT_SEND_DM = "POST /2/dm_conversations/with/:participant_id/messages"

MIN_MENTIONS_PER_PAGE = 5
MAX_MENTIONS_PER_PAGE = 100
MAX_USERNAMES_PER_LOOKUP = 100
# X serves only the newest 800 mentions of an account; recent search reaches 7 days back.
MENTIONS_WINDOW = 800
SEARCH_WINDOW = timedelta(days=7)
MIN_SEARCH_RESULTS = 10

MENTION_EXPANSIONS = (
    "author_id",
    "entities.mentions.username",
    "in_reply_to_user_id",
    "referenced_tweets.id",
)
MENTION_TWEET_FIELDS = (
    "author_id",
    "created_at",
    "entities",
    "in_reply_to_user_id",
    "referenced_tweets",
    "edit_history_tweet_ids",
    "conversation_id",
    # Where the author's own words start (after a reply's prefilled mentions) and end
    # (before a media link), and what is attached: see bot.commands.parse.
    "display_text_range",
    "attachments",
)
USER_FIELDS = ("username", "name", "protected")

_TWITTER_EPOCH_MS = 1288834974657  # snowflake ids count milliseconds from this instant
_USERNAME = re.compile(r"[A-Za-z0-9_]{1,15}")
_NUMERIC_ID = re.compile(r"[0-9]{1,19}")
_DEFAULT_RATE_WINDOW = timedelta(minutes=15)  # X meters most endpoints in 15-minute windows
_MAX_BACKOFF_SECONDS = 60.0
_MAX_REASON_CHARS = 300
_REDACTED = "***"


# --------------------------------------------------------------------------- values

PLATFORM = "x"  # the platform's key in identities and state keys


@dataclass(frozen=True)
class RateLimit:
    limit: int
    remaining: int
    reset_at: datetime

    def exhausted(self, now: datetime) -> bool:
        """True while no request is left in the current window."""
        return self.remaining <= 0 and now < self.reset_at


# --------------------------------------------------------------------------- the port


@runtime_checkable
class XApi(Platform, Protocol):
    """The platform port plus what only X has: per-endpoint rate-limit windows."""

    @property
    def rate_limits(self) -> Mapping[str, RateLimit]: ...


# --------------------------------------------------------------------------- pure helpers


def snowflake_time(tweet_id: str) -> datetime:
    """The creation instant encoded in a snowflake id (tweets since late 2010)."""
    millis = (int(tweet_id) >> 22) + _TWITTER_EPOCH_MS
    return datetime.fromtimestamp(millis / 1000, UTC)


def clamp_max_results(max_results: int) -> int:
    """X accepts 5..100 mentions per page; anything else is a 400 for the whole call."""
    return max(MIN_MENTIONS_PER_PAGE, min(MAX_MENTIONS_PER_PAGE, max_results))


def is_valid_username(username: str) -> bool:
    return _USERNAME.fullmatch(username) is not None


def _require_id(value: str, what: str) -> str:
    # Ids are put into URL paths: anything but digits is a caller bug, never sent.
    if not isinstance(value, str) or _NUMERIC_ID.fullmatch(value) is None:
        raise ValueError(f"{what} must be a numeric id string")
    return value


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Malformed(Exception):
    """Raised while reading a body whose shape is not what the API documents."""


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise _Malformed(f"missing {key}")
    return value


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Malformed(f"{key} is not a string")
    return value or None


def _list_of_dicts(obj: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _Malformed(f"{key} is not a list of objects")
    return value


def _dict(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key, {})
    if not isinstance(value, dict):
        raise _Malformed(f"{key} is not an object")
    return value


def _parse_user(obj: Mapping[str, Any]) -> PlatformUser:
    return PlatformUser(
        platform=PLATFORM,
        user_id=_str(obj, "id"),
        handle=_str(obj, "username"),
        name=name if isinstance(name := obj.get("name"), str) else "",
        protected=obj.get("protected") is True,
    )


def _parse_created_at(tweet: Mapping[str, Any], tweet_id: str) -> datetime:
    raw = tweet.get("created_at")
    if raw is None:
        # Asked for, so normally present; the id itself still says when the tweet was made.
        return snowflake_time(tweet_id)
    if not isinstance(raw, str):
        raise _Malformed("created_at is not a string")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise _Malformed("created_at is not a timestamp") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _parse_mention(
    tweet: Mapping[str, Any], users: Mapping[str, PlatformUser], by_name: Mapping[str, str]
) -> Mention:
    tweet_id = _str(tweet, "id")
    if _NUMERIC_ID.fullmatch(tweet_id) is None:
        raise _Malformed("tweet id is not numeric")
    text = tweet.get("text")
    if not isinstance(text, str):
        raise _Malformed("missing text")
    author_id = _str(tweet, "author_id")

    history = tweet.get("edit_history_tweet_ids") or [tweet_id]
    if not isinstance(history, list) or not all(isinstance(i, str) and i for i in history):
        raise _Malformed("edit_history_tweet_ids is not a list of ids")

    is_retweet = any(
        ref.get("type") == "retweeted" for ref in _list_of_dicts(tweet, "referenced_tweets")
    )
    display_range = _display_range(tweet)

    mentioned: dict[str, str] = {}
    for entity in _list_of_dicts(_dict(tweet, "entities"), "mentions"):
        username = entity.get("username")
        if not isinstance(username, str) or not username:
            continue
        key = username.casefold()
        user_id = entity.get("id") or by_name.get(key)
        if isinstance(user_id, str) and user_id:
            mentioned.setdefault(key, user_id)

    references = _list_of_dicts(tweet, "referenced_tweets")
    author = users.get(author_id)
    in_reply_to_user_id = _opt_str(tweet, "in_reply_to_user_id")
    replied_to = users.get(in_reply_to_user_id) if in_reply_to_user_id else None
    return Mention(
        platform=PLATFORM,
        id=tweet_id,
        original_id=history[0],
        text=text,
        author_id=author_id,
        author_handle=author.handle if author else None,
        created_at=_parse_created_at(tweet, tweet_id),
        in_reply_to_user_id=in_reply_to_user_id,
        in_reply_to_handle=replied_to.handle if replied_to else None,
        is_repost=is_retweet,
        conversation_id=_opt_str(tweet, "conversation_id"),
        mentioned_ids=mentioned,
        display_range=display_range,
        attachment_urls=_attachment_urls(tweet, tweet_id, references),
    )


def _display_range(tweet: Mapping[str, Any]) -> tuple[int, int] | None:
    """`display_text_range` as (start, end) code points; None when X left it out."""
    value = tweet.get("display_text_range")
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(type(i) is int and i >= 0 for i in value)
        or value[0] > value[1]
    ):
        raise _Malformed("display_text_range is not [start, end]")
    return value[0], value[1]


_STATUS_URL = re.compile(r"https?://(?:www\.|mobile\.)?(?:twitter|x)\.com/[^/]+/status/([0-9]+)")


def _attachment_urls(
    tweet: Mapping[str, Any], tweet_id: str, references: Sequence[Mapping[str, Any]]
) -> frozenset[str]:
    """The t.co links of `entities.urls` that stand for the tweet's own media or quote.

    X appends one link for attached photos/videos (its entity carries a `media_key`, or
    points at this tweet's own `/photo/` or `/video/` page) and one for a quoted tweet
    (it points at the quoted tweet's status page).
    """
    quoted = {str(ref.get("id")) for ref in references if ref.get("type") == "quoted"}
    media = tweet.get("attachments")
    media_keys = set(media.get("media_keys") or []) if isinstance(media, dict) else set()
    found: set[str] = set()
    for entity in _list_of_dicts(_dict(tweet, "entities"), "urls"):
        url = entity.get("url")
        if not isinstance(url, str) or not url:
            continue
        expanded = entity.get("expanded_url")
        status = _STATUS_URL.match(expanded) if isinstance(expanded, str) else None
        own_media = status is not None and status.group(1) == tweet_id
        if (
            (
                entity.get("media_key") is not None
                and (not media_keys or entity.get("media_key") in media_keys)
            )
            or own_media
            or (status is not None and status.group(1) in quoted)
        ):
            found.add(url)
    return frozenset(found)


def parse_mentions_page(body: Mapping[str, Any]) -> MentionsPage:
    """Read a `GET /2/users/:id/mentions` (or recent search) body; raises `_Malformed`."""
    includes = _dict(body, "includes")
    users = {user.user_id: user for user in map(_parse_user, _list_of_dicts(includes, "users"))}
    # Built once per page: a page of 100 mentions would otherwise rebuild it 100 times.
    by_name = {user.handle.casefold(): user.user_id for user in users.values()}
    mentions = tuple(
        _parse_mention(tweet, users, by_name) for tweet in _list_of_dicts(body, "data")
    )
    meta = _dict(body, "meta")
    newest_id = _opt_str(meta, "newest_id") or (mentions[0].id if mentions else None)
    return MentionsPage(
        mentions=mentions,
        newest_id=newest_id,
        next_token=_opt_str(meta, "next_token"),
        users=users,
    )


# --------------------------------------------------------------------------- secrets


class _SecretRedactor(logging.Filter):
    """Scrubs bearer tokens and registered secrets from log records of the HTTP stack.

    tweepy logs its request headers (with the bearer token) at DEBUG, and the OAuth 1.0a
    signer logs the consumer key and access token; a DEBUG log level must not leak them.
    """

    _BEARER = re.compile(r"(Bearer\s+)[^\s'\",}]+")

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def register(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if len(s) >= 4)

    def redact(self, text: str, extra: Iterable[str] = ()) -> str:
        text = self._BEARER.sub(r"\1" + _REDACTED, text)
        with self._lock:
            secrets = self._secrets | {s for s in extra if len(s) >= 4}
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, _REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's business, not ours
            return True
        record.msg = self.redact(message)
        record.args = ()
        return True


_REDACTOR = _SecretRedactor()
_REDACTED_LOGGERS = ("tweepy.client", "requests_oauthlib.oauth1_auth", "oauthlib.oauth1.rfc5849")


def _install_log_redaction(secrets: Iterable[str]) -> None:
    _REDACTOR.register(secrets)
    for name in _REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


# --------------------------------------------------------------------------- transport


class BaseUrlAdapter(HTTPAdapter):
    """Sends requests addressed to api.twitter.com to another base URL instead.

    Mounted on the tweepy client's session when `X_API_BASE_URL` is not the default, because
    tweepy builds every URL from a hard-coded host. The path prefix of the base URL, if any,
    is put in front of the API path (`http://127.0.0.1:8081/x` + `/2/tweets`).
    """

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("base_url must be an absolute http(s) URL")
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")

    def rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit(
            (self._scheme, self._netloc, self._prefix + parts.path, parts.query, parts.fragment)
        )

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        request.url = self.rewrite(request.url or "")
        # Proxies were chosen for api.twitter.com; a loopback sandbox must not go through them.
        host = urlsplit(request.url).hostname or ""
        if is_loopback(host) or requests.utils.should_bypass_proxies(request.url, no_proxy=None):
            kwargs["proxies"] = {}
        return super().send(request, *args, **kwargs)


class _TimeoutSession(requests.Session):
    """A session that bounds every request: tweepy passes no timeout of its own."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().request(*args, **kwargs)


# --------------------------------------------------------------------------- tweepy adapter


_RETRYABLE_REQUEST_ERRORS: tuple[type[Exception], ...] = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class TweepyXApi:
    """`XApi` over tweepy 4's v2 `Client`.

    Reads use the app's bearer token; posts (replies, DMs) use the bot's OAuth 1.0a user
    context; `me` uses a user's OAuth 2.0 access token. 429 raises `RateLimited` at once;
    5xx, timeouts and connection errors are retried with exponential backoff and full
    jitter through the injected `sleep`, then raise `TransientError`.
    """

    def __init__(
        self,
        *,
        bot_user_id: str,
        bearer_token: str,
        bot_handle: str = "",
        consumer_key: str = "",
        consumer_secret: str = "",
        access_token: str = "",
        access_token_secret: str = "",
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = _utc_now,
        rng: random.Random | None = None,
    ) -> None:
        if max_retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError("max_retries and backoff must be >= 0, timeout > 0")
        self.bot_user_id = _require_id(bot_user_id, "bot_user_id")
        self.bot_handle = bot_handle
        self.base_url = base_url.rstrip("/") or DEFAULT_BASE_URL
        self._has_user_context = all(
            (consumer_key, consumer_secret, access_token, access_token_secret)
        )
        self._secrets = tuple(
            s
            for s in (
                bearer_token,
                consumer_key,
                consumer_secret,
                access_token,
                access_token_secret,
            )
            if s
        )
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._rate_limits: dict[str, RateLimit] = {}
        self._lock = threading.Lock()

        _install_log_redaction(self._secrets)
        self._session = self._new_session()
        self._client = tweepy.Client(
            bearer_token=bearer_token,
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            access_token=access_token,
            access_token_secret=access_token_secret,
            return_type=requests.Response,
            wait_on_rate_limit=False,
        )
        self._client.session = self._session

    def __repr__(self) -> str:
        return f"TweepyXApi(bot_user_id={self.bot_user_id!r}, base_url={self.base_url!r})"

    def _new_session(self) -> requests.Session:
        session = _TimeoutSession(self._timeout)
        if self.base_url != DEFAULT_BASE_URL:
            session.mount(DEFAULT_BASE_URL + "/", BaseUrlAdapter(self.base_url))
        return session

    # ----------------------------------------------------------------- the port

    @property
    def name(self) -> str:
        return PLATFORM

    @property
    def rate_limits(self) -> Mapping[str, RateLimit]:
        with self._lock:
            return dict(self._rate_limits)

    def mentions(
        self, *, since_id: str | None, pagination_token: str | None = None, max_results: int = 100
    ) -> MentionsPage:
        params: dict[str, Any] = {
            "max_results": clamp_max_results(max_results),
            "expansions": list(MENTION_EXPANSIONS),
            "tweet_fields": list(MENTION_TWEET_FIELDS),
            "user_fields": list(USER_FIELDS),
        }
        if since_id is not None:
            params["since_id"] = _require_id(since_id, "since_id")
        if pagination_token is not None:
            params["pagination_token"] = pagination_token
        body = self._call(
            ENDPOINT_MENTIONS,
            lambda: self._client.get_users_mentions(self.bot_user_id, user_auth=False, **params),
        )
        return self._read(ENDPOINT_MENTIONS, parse_mentions_page, body)

    @property
    def mentions_window(self) -> int:
        """How many of the newest mentions X serves; older ones only search can reach."""
        return MENTIONS_WINDOW

    @property
    def search_reach(self) -> timedelta:
        return SEARCH_WINDOW

    def posted_at(self, post_id: str) -> datetime | None:
        return snowflake_time(post_id) if _NUMERIC_ID.fullmatch(post_id) else None

    def search_mentions(
        self,
        *,
        since_id: str,
        until_id: str | None = None,
        pagination_token: str | None = None,
        max_results: int = 100,
    ) -> MentionsPage:
        """One page (newest first) of `GET /2/tweets/search/recent` for the bot's mentions.

        The backfill of mentions that fell out of the mentions window: the last 7 days.
        """
        if not self.bot_handle:
            raise PermanentError("the bot's handle is unknown", endpoint=ENDPOINT_SEARCH_RECENT)
        params: dict[str, Any] = {
            "max_results": max(MIN_SEARCH_RESULTS, clamp_max_results(max_results)),
            "expansions": list(MENTION_EXPANSIONS),
            "tweet_fields": list(MENTION_TWEET_FIELDS),
            "user_fields": list(USER_FIELDS),
            "since_id": _require_id(since_id, "since_id"),
        }
        if until_id is not None:
            params["until_id"] = _require_id(until_id, "until_id")
        if pagination_token is not None:
            params["next_token"] = pagination_token
        query = f"@{self.bot_handle.lstrip('@')} -is:retweet"
        body = self._call(
            ENDPOINT_SEARCH_RECENT,
            lambda: self._client.search_recent_tweets(query, user_auth=False, **params),
        )
        return self._read(ENDPOINT_SEARCH_RECENT, parse_mentions_page, body)

    def lookup_users(self, handles: Sequence[str]) -> dict[str, PlatformUser]:
        wanted: dict[str, str] = {}
        for raw in handles:
            name = raw[1:] if raw.startswith(("@", "＠")) else raw
            # An invalid handle makes X answer 400 for the whole batch: such a name cannot be
            # an account anyway, so it is simply absent from the answer.
            if is_valid_username(name):
                wanted.setdefault(name.casefold(), name)
        users = self._users_in_batches(ENDPOINT_USERS_BY, "usernames", list(wanted.values()))
        return {user.handle.casefold(): user for user in users}

    def lookup_users_by_id(self, user_ids: Sequence[str]) -> dict[str, PlatformUser]:
        """The accounts as X knows them now, by id (`GET /2/users?ids=`, 100 a call).

        An id X no longer knows (deactivated, suspended) is absent from the answer.
        """
        ids = list(dict.fromkeys(u for u in user_ids if u.isdigit() and len(u) <= 19))
        users = self._users_in_batches(ENDPOINT_USERS, "ids", ids)
        return {user.user_id: user for user in users}

    def _users_in_batches(self, endpoint: str, by: str, keys: list[str]) -> list[PlatformUser]:
        """`GET /2/users` by `ids` or `/2/users/by` by `usernames`, 100 keys a call."""
        found: list[PlatformUser] = []
        for start in range(0, len(keys), MAX_USERNAMES_PER_LOOKUP):
            batch = keys[start : start + MAX_USERNAMES_PER_LOOKUP]
            body = self._call(
                endpoint,
                functools.partial(
                    self._client.get_users,
                    **{by: batch},
                    user_fields=list(USER_FIELDS),
                    user_auth=False,
                ),
            )
            found.extend(self._read(endpoint, _users_of, body))
        return found

    def get_user(self, user_id: str) -> PlatformUser | None:
        _require_id(user_id, "user_id")
        try:
            body = self._call(
                ENDPOINT_USER,
                lambda: self._client.get_user(
                    id=user_id, user_fields=list(USER_FIELDS), user_auth=False
                ),
            )
        except NotFound:
            return None
        users = self._read(ENDPOINT_USER, _users_of, body)
        # Unknown and suspended users come back as 200 with errors[] and no data.
        return users[0] if users else None

    def me(self, access_token: str) -> PlatformUser:
        if not access_token:
            raise Unauthorized("no access token", endpoint=ENDPOINT_ME)
        client = tweepy.Client(
            bearer_token=access_token, return_type=requests.Response, wait_on_rate_limit=False
        )
        client.session = self._session
        body = self._call(
            ENDPOINT_ME,
            lambda: client.get_me(user_fields=list(USER_FIELDS), user_auth=False),
            extra_secrets=(access_token,),
            precheck=False,  # the limit is per user: another user's exhaustion says nothing
            record=False,
        )
        users = self._read(ENDPOINT_ME, _users_of, body)
        if not users:
            raise TransientError("users/me answered without a user", endpoint=ENDPOINT_ME)
        return users[0]

    def reply(self, text: str, in_reply_to_id: str) -> str:
        _require_id(in_reply_to_id, "in_reply_to_id")
        if not text:
            raise ValueError("a reply needs text")
        self._require_user_context(ENDPOINT_CREATE_TWEET)
        body = self._call(
            ENDPOINT_CREATE_TWEET,
            lambda: self._client.create_tweet(
                text=text, in_reply_to_tweet_id=in_reply_to_id, user_auth=True
            ),
        )
        return self._read(ENDPOINT_CREATE_TWEET, lambda b: _str(_dict(b, "data"), "id"), body)

    def send_dm(self, user_id: str, text: str) -> str:
        _require_id(user_id, "user_id")
        if not text:
            raise ValueError("a direct message needs text")
        self._require_user_context(ENDPOINT_SEND_DM)
        body = self._call(
            ENDPOINT_SEND_DM,
            lambda: self._client.create_direct_message(
                participant_id=user_id, text=text, user_auth=True
            ),
        )
        return self._read(ENDPOINT_SEND_DM, lambda b: _str(_dict(b, "data"), "dm_event_id"), body)

    # ----------------------------------------------------------------- machinery

    def _require_user_context(self, endpoint: str) -> None:
        if not self._has_user_context:
            raise Unauthorized(
                "OAuth 1.0a user-context credentials are not configured", endpoint=endpoint
            )

    def _call(
        self,
        endpoint: str,
        send: Callable[[], Any],
        *,
        extra_secrets: Sequence[str] = (),
        precheck: bool = True,
        record: bool = True,
    ) -> dict[str, Any]:
        """Send one request with retries; return its JSON object or raise an `PlatformError`."""
        if precheck:
            self._refuse_if_exhausted(endpoint)
        attempt = 0
        while True:
            failure: PlatformError
            try:
                response = send()
            except tweepy.errors.HTTPException as exc:
                status = exc.response.status_code
                _observe(endpoint, exc.response)
                if record:
                    self._record(endpoint, exc.response)
                if status == 429:
                    reset_at = self._reset_after_429(exc.response)
                    raise RateLimited(reset_at, endpoint=endpoint) from exc
                if 400 <= status < 500:
                    raise self._permanent(endpoint, exc.response, extra_secrets) from exc
                failure = TransientError(
                    f"{endpoint}: HTTP {status}: {self._reason(exc.response, extra_secrets)}",
                    endpoint=endpoint,
                    status=status,
                )
                cause: Exception = exc
            except _RETRYABLE_REQUEST_ERRORS as exc:
                observe_api_call(PLATFORM, endpoint, None)
                failure = TransientError(f"{endpoint}: {type(exc).__name__}", endpoint=endpoint)
                cause = exc
            except requests.RequestException as exc:
                observe_api_call(PLATFORM, endpoint, None)
                raise TransientError(
                    f"{endpoint}: {type(exc).__name__}", endpoint=endpoint
                ) from exc
            except (AttributeError, TypeError, ValueError) as exc:
                # tweepy chokes on error bodies that are JSON but not an object.
                raise TransientError(
                    f"{endpoint}: malformed error response", endpoint=endpoint
                ) from exc
            else:
                _observe(endpoint, response)
                if record:
                    self._record(endpoint, response)
                return self._json(endpoint, response)

            if attempt >= self._max_retries:
                raise failure from cause
            ceiling = min(_MAX_BACKOFF_SECONDS, self._backoff * (2**attempt))
            self._sleep(self._rng.uniform(0.0, ceiling))
            attempt += 1

    def _json(self, endpoint: str, response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise TransientError(
                f"{endpoint}: malformed response body",
                endpoint=endpoint,
                status=response.status_code,
            )
        return body

    def _read(
        self, endpoint: str, parse: Callable[[dict[str, Any]], Any], body: dict[str, Any]
    ) -> Any:
        try:
            return parse(body)
        except (_Malformed, ValueError) as exc:
            raise TransientError(
                f"{endpoint}: malformed response body ({exc})", endpoint=endpoint
            ) from None

    def _refuse_if_exhausted(self, endpoint: str) -> None:
        with self._lock:
            limit = self._rate_limits.get(endpoint)
        if limit is not None and limit.exhausted(self._clock()):
            raise RateLimited(limit.reset_at, endpoint=endpoint)

    def _record(self, endpoint: str, response: requests.Response) -> None:
        limit = _header_int(response, "x-rate-limit-limit")
        remaining = _header_int(response, "x-rate-limit-remaining")
        reset = _header_int(response, "x-rate-limit-reset")
        if limit is None or remaining is None or reset is None:
            return
        seen = RateLimit(
            limit=limit, remaining=remaining, reset_at=datetime.fromtimestamp(reset, UTC)
        )
        with self._lock:
            self._rate_limits[endpoint] = seen

    def _reset_after_429(self, response: requests.Response) -> datetime:
        # A post can hit the 24-hour cap while the 15-minute window still has room: wait for
        # the latest reset among the exhausted limits, not merely the 15-minute one.
        resets = [
            _header_int(response, f"{family}-reset")
            for family in ("x-rate-limit", "x-app-limit-24hour", "x-user-limit-24hour")
            if _header_int(response, f"{family}-remaining") == 0
        ]
        known = [r for r in resets if r is not None] or [
            r for r in (_header_int(response, "x-rate-limit-reset"),) if r is not None
        ]
        if known:
            return datetime.fromtimestamp(max(known), UTC)
        return self._clock() + _DEFAULT_RATE_WINDOW

    def _reason(self, response: requests.Response, extra_secrets: Sequence[str]) -> str:
        try:
            body = response.json()
        except ValueError:
            body = None
        reason = ""
        if isinstance(body, dict):
            for key in ("detail", "title"):
                if isinstance(body.get(key), str) and body[key]:
                    reason = body[key]
                    break
            else:
                errors = body.get("errors")
                if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                    first = errors[0]
                    reason = str(
                        first.get("detail") or first.get("message") or first.get("title") or ""
                    )
        reason = reason or response.reason or f"HTTP {response.status_code}"
        reason = " ".join(reason.split())[:_MAX_REASON_CHARS]
        return _REDACTOR.redact(reason, (*self._secrets, *extra_secrets))

    def _permanent(
        self, endpoint: str, response: requests.Response, extra_secrets: Sequence[str]
    ) -> PermanentError:
        status = response.status_code
        reason = self._reason(response, extra_secrets)
        if status == 403 and "duplicate content" in reason.casefold():
            return DuplicateContent(reason, endpoint=endpoint, status=status)
        if status == 401:
            return Unauthorized(reason, endpoint=endpoint, status=status)
        if status == 404:
            return NotFound(reason, endpoint=endpoint, status=status)
        return PermanentError(reason, endpoint=endpoint, status=status)


def _users_of(body: Mapping[str, Any]) -> list[PlatformUser]:
    """Users in `data` (an object or a list); entries in errors[] are simply absent."""
    data = body.get("data")
    if data is None:
        return []
    if isinstance(data, dict):
        return [_parse_user(data)]
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return [_parse_user(item) for item in data]
    raise _Malformed("data is neither a user nor a list of users")


def _observe(endpoint: str, response: requests.Response) -> None:
    """Count the call in the metrics, with the rate limit its answer left."""
    observe_api_call(
        PLATFORM,
        endpoint,
        response.status_code,
        _header_int(response, "x-rate-limit-remaining"),
    )


def _header_int(response: requests.Response, name: str) -> int | None:
    value = response.headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
