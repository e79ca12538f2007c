"""The Mastodon adapter of the platform port (`bot.platforms.port`), on Mastodon.py.

`MastodonPlatform` reads the bot account's mention notifications on its own instance
(`GET /api/v1/notifications?types[]=mention&since_id=…`, older pages by the `max_id` of
the `Link` header's next page, kept within `since_id`), posts replies
(`POST /api/v1/statuses` with `in_reply_to_id` and a visibility no wider than `unlisted`
or the tip's own) and turns Mastodon.py's failures into the port's errors:

- 429 (`MastodonRatelimitError`, Mastodon.py built with `ratelimit_method="throw"` so it
  never sleeps) and an exhausted `X-RateLimit-Remaining` -> `RateLimited` until the
  `X-RateLimit-Reset` (ISO time) the instance sent;
- 5xx, timeouts, connection failures and malformed bodies -> `TransientError`;
- 401 -> `Unauthorized`, 404 -> `NotFound`, other refusals -> `PermanentError`.

Ids. A Mastodon account is its full address (`bob@other.social`): that is both the port's
user id and its handle. A mention's `id` is its notification's id (the order the cursor
follows; the listener keeps the newest as `since_id`) and its `original_id` is
`mastodon:<status id>` (a status keeps its id through edits, and the prefix keeps it apart
from X's tweet ids in the tables both share). `reply` takes either and replies to the
status. Which statuses are mentions is Mastodon's to say; who they mention is read from
`mentions[]` (`bot.platforms.mastodon.text`). Boosts come through as reposts, and a
`direct` status that does not mention the bot is not delivered at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests
from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonNotFoundError,
    MastodonRatelimitError,
    MastodonServerError,
    MastodonUnauthorizedError,
)

from bot.metrics import observe_api_call
from bot.platforms.mastodon.text import (
    full_address,
    is_full_address,
    mentions_of,
    status_text,
)
from bot.platforms.port import (
    Mention,
    MentionsPage,
    NotFound,
    PermanentError,
    PlatformUser,
    RateLimited,
    TransientError,
    Unauthorized,
)

__all__ = ["MAX_PAGE", "PLATFORM", "SOURCE_PREFIX", "MastodonPlatform", "status_id_of"]

PLATFORM = "mastodon"
SOURCE_PREFIX = "mastodon:"
MAX_PAGE = 40  # Mastodon serves at most 40 notifications a page (80 on newer versions)
DEFAULT_TIMEOUT = 10.0
_RATE_WINDOW = timedelta(minutes=5)  # Mastodon's default window, when no reset was sent
# From widest to narrowest: a reply is `unlisted`, or narrower when the tip was.
_VISIBILITIES = ("public", "unlisted", "private", "direct")

T = TypeVar("T")


def status_id_of(post_id: str) -> str | None:
    """The status id in one of the adapter's post ids (None: a notification id)."""
    return post_id[len(SOURCE_PREFIX) :] if post_id.startswith(SOURCE_PREFIX) else None


def reply_visibility(tip_visibility: str | None) -> str:
    """`unlisted`, or the tip's own visibility when that is narrower."""
    theirs = tip_visibility if tip_visibility in _VISIBILITIES else "public"
    return max("unlisted", theirs, key=_VISIBILITIES.index)


class _HeaderTap(requests.Session):
    """The session Mastodon.py calls through: it keeps the last answer's rate-limit headers,
    which tipjar reads itself (Mastodon.py rebases them on the local clock, and hides them
    when it raises on a 429)."""

    def __init__(self) -> None:
        super().__init__()
        self.limits: tuple[str | None, str | None] = (None, None)
        self.status: int | None = None  # of the last answer; None: no answer came

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self.limits, self.status = (None, None), None
        response = super().request(method, url, *args, **kwargs)
        headers = response.headers
        self.limits = (headers.get("X-RateLimit-Remaining"), headers.get("X-RateLimit-Reset"))
        self.status = response.status_code
        return response


def _reset_time(text: str | None) -> datetime | None:
    """`X-RateLimit-Reset`: an ISO time on Mastodon (epoch seconds on some others)."""
    if not text:
        return None
    try:
        if text.strip().isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        return _aware(text.strip())
    except (_Malformed, ValueError, OverflowError):
        return None


class _Malformed(Exception):
    """A notification or status that does not have Mastodon's shape."""


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            pass
    raise _Malformed("created_at")


def _text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise _Malformed(key)
    return value


def _addresses_in(mention: Mention) -> list[str]:
    """Everyone a mention names: its author, the accounts it mentions, the one it answers."""
    named = [mention.author_id, *mention.mentioned_ids.values()]
    return named + ([mention.in_reply_to_user_id] if mention.in_reply_to_user_id else [])


class MastodonPlatform:
    """The bot's account on its Mastodon instance, as the platform port."""

    name = PLATFORM

    def __init__(
        self,
        *,
        base_url: str,
        access_token: str,
        bot_acct: str,
        timeout: float = DEFAULT_TIMEOUT,
        session: _HeaderTap | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._domain = bot_acct.partition("@")[2].lower()
        if not self._domain:
            raise ValueError("the bot's Mastodon address needs its domain: name@instance")
        self._bot = full_address(bot_acct, self._domain)
        self._clock = clock
        self._reset_at: datetime | None = None
        self._remaining: int | None = None
        self._session = session or _HeaderTap()
        self._api = Mastodon(
            access_token=access_token,
            api_base_url=base_url,
            ratelimit_method="throw",  # never sleep inside a job: a 429 is ours to schedule
            request_timeout=timeout,
            session=self._session,
            version_check_mode="none",
        )

    def __repr__(self) -> str:  # never the token
        return f"MastodonPlatform({self._api.api_base_url}, bot=@{self._bot})"

    # -- identity --------------------------------------------------------------------

    @property
    def bot_user_id(self) -> str:
        return self._bot

    @property
    def bot_handle(self) -> str:
        return self._bot.partition("@")[0]

    @property
    def domain(self) -> str:
        return self._domain

    def user(self, address: str) -> PlatformUser:
        return PlatformUser(PLATFORM, address, address)

    # -- calls -------------------------------------------------------------------------

    def _call(self, endpoint: str, fn: Callable[[], T]) -> T:
        now = self._clock()
        if self._remaining is not None and self._remaining <= 0 and self._reset_at:
            if now < self._reset_at:
                raise RateLimited(self._reset_at, endpoint=endpoint)
        try:
            try:
                result = fn()
            finally:  # every call counted, answered or not, as X's are
                self._observe(endpoint)
        except MastodonRatelimitError:
            self._read_limits()
            raise RateLimited(self._reset_at or now + _RATE_WINDOW, endpoint=endpoint) from None
        except MastodonUnauthorizedError:
            raise Unauthorized(endpoint=endpoint, status=401) from None
        except MastodonNotFoundError:
            raise NotFound(endpoint=endpoint, status=404) from None
        except (MastodonServerError, MastodonNetworkError) as e:
            raise TransientError(f"{endpoint}: {type(e).__name__}", endpoint=endpoint) from None
        except MastodonAPIError as e:
            status = e.args[1] if len(e.args) > 1 and isinstance(e.args[1], int) else None
            if status is None or status < 400:  # an answer that was not JSON: retry later
                raise TransientError(f"{endpoint}: malformed answer", endpoint=endpoint) from None
            raise PermanentError(endpoint=endpoint, status=status) from None
        except (MastodonError, ValueError, KeyError, TypeError) as e:
            raise TransientError(f"{endpoint}: {type(e).__name__}", endpoint=endpoint) from None
        self._read_limits()
        return result

    def _observe(self, endpoint: str) -> None:
        remaining = self._session.limits[0]
        observe_api_call(
            PLATFORM,
            endpoint,
            self._session.status,
            int(remaining) if remaining and remaining.strip().isdigit() else None,
        )

    def _read_limits(self) -> None:
        remaining, reset = self._session.limits
        self._remaining = int(remaining) if remaining and remaining.strip().isdigit() else None
        self._reset_at = _reset_time(reset) or self._reset_at

    # -- mentions ----------------------------------------------------------------------

    def mentions(
        self, *, since_id: str | None, pagination_token: str | None = None, max_results: int = 100
    ) -> MentionsPage:
        endpoint = "GET /api/v1/notifications"
        limit = max(1, min(max_results, MAX_PAGE))
        page = self._call(
            endpoint,
            lambda: self._api.notifications(
                types=["mention"], since_id=since_id, max_id=pagination_token, limit=limit
            ),
        )
        if not isinstance(page, list):
            raise TransientError(f"{endpoint}: malformed answer", endpoint=endpoint)
        found: list[Mention] = []
        try:
            for note in page:
                mention = self._mention(note)
                if mention is not None:
                    found.append(mention)
            ids = [int(_text(n, "id")) for n in page]
        except (_Malformed, ValueError, AttributeError) as e:
            raise TransientError(f"{endpoint}: malformed notification ({e})") from None
        following = getattr(page, "_pagination_next", None) or {}
        older = following.get("max_id") if len(page) >= limit else None
        return MentionsPage(
            mentions=tuple(found),
            newest_id=str(max(ids)) if ids else None,
            next_token=str(older) if older is not None else None,
            users={a: self.user(a) for m in found for a in _addresses_in(m)},
        )

    def _mention(self, note: Mapping[str, Any]) -> Mention | None:
        if note.get("type") != "mention":
            return None
        status = note.get("status")
        if not isinstance(status, Mapping):
            raise _Malformed("status")
        account = status.get("account")
        if not isinstance(account, Mapping):
            raise _Malformed("account")
        author = full_address(_text(account, "acct"), self._domain)
        mentioned = mentions_of(status, self._domain)
        visibility = status.get("visibility")
        if visibility == "direct" and all(m.address != self._bot for m in mentioned):
            return None  # a private conversation the bot is not part of
        content = status.get("content")
        read = status_text(
            content if isinstance(content, str) else "", mentioned, bot_address=self._bot
        )
        replied = self._replied_to(status, author, mentioned)
        return Mention(
            platform=PLATFORM,
            id=_text(note, "id"),
            original_id=SOURCE_PREFIX + _text(status, "id"),
            text=read.text,
            author_id=author,
            author_handle=author,
            created_at=_aware(status.get("created_at")),
            in_reply_to_user_id=replied,
            in_reply_to_handle=(read.handle_of(replied) or replied) if replied else None,
            is_repost=status.get("reblog") is not None,
            conversation_id=None,
            mentioned_ids=dict(read.handles),
            display_range=None,  # Mastodon marks no prefilled mentions: the reply rule applies
            visibility=visibility if isinstance(visibility, str) else None,
        )

    def _replied_to(
        self, status: Mapping[str, Any], author: str, mentioned: Sequence[Any]
    ) -> str | None:
        """The address of the author of the status this one replies to, when known."""
        account_id = status.get("in_reply_to_account_id")
        if not account_id:
            return None
        account = status.get("account")
        if isinstance(account, Mapping) and str(account.get("id")) == str(account_id):
            return author
        return next((m.address for m in mentioned if m.account_id == str(account_id)), None)

    # -- people ------------------------------------------------------------------------

    def lookup_users(self, handles: Sequence[str]) -> dict[str, PlatformUser]:
        """Full addresses name themselves; a bare handle names nobody (never guessed)."""
        found = {}
        for handle in handles:
            address = handle.strip().removeprefix("@").lower()
            if is_full_address(address):
                found[handle.strip().removeprefix("@").casefold()] = self.user(address)
        return found

    def get_user(self, user_id: str) -> PlatformUser | None:
        return self.user(user_id) if is_full_address(user_id) else None

    def me(self, access_token: str) -> PlatformUser:
        """The account of a token issued by the bot's own instance."""
        other = Mastodon(
            access_token=access_token,
            api_base_url=self._api.api_base_url,
            ratelimit_method="throw",
            request_timeout=DEFAULT_TIMEOUT,
            version_check_mode="none",
        )
        endpoint = "GET /api/v1/accounts/verify_credentials"
        try:
            account = other.account_verify_credentials()
            return self.user(full_address(_text(account, "acct"), self._domain))
        except MastodonUnauthorizedError:
            raise Unauthorized(endpoint=endpoint, status=401) from None
        except (MastodonError, _Malformed, ValueError) as e:
            raise TransientError(f"{endpoint}: {type(e).__name__}", endpoint=endpoint) from None

    # -- posting -----------------------------------------------------------------------

    def _status_for(self, post_id: str) -> Mapping[str, Any]:
        """The status `post_id` names (a `mastodon:` status id or a notification id)."""
        status_id = status_id_of(post_id)
        if status_id is None:
            note = self._call(
                "GET /api/v1/notifications/:id", lambda: self._api.notifications(id=post_id)
            )
            status = note.get("status") if isinstance(note, Mapping) else None
        else:
            status = self._call("GET /api/v1/statuses/:id", lambda: self._api.status(status_id))
        if not isinstance(status, Mapping) or not status.get("id"):
            raise NotFound(f"no status behind {post_id}", endpoint="GET /api/v1/statuses/:id")
        return status

    def reply(self, text: str, in_reply_to_id: str) -> str:
        """Reply under the status `in_reply_to_id` names; the new status's post id."""
        status = self._status_for(in_reply_to_id)
        visibility = reply_visibility(status.get("visibility"))
        target = str(status["id"])
        # Mastodon remembers an Idempotency-Key for an hour: a relay retry after a crash
        # between the post and its commit posts nothing twice.
        key = hashlib.sha256(f"{target}\n{text}".encode()).hexdigest()
        posted = self._call(
            "POST /api/v1/statuses",
            lambda: self._api.status_post(
                text, in_reply_to_id=target, visibility=visibility, idempotency_key=key
            ),
        )
        return SOURCE_PREFIX + _text(posted, "id")

    def send_dm(self, user_id: str, text: str) -> str:
        """A `direct` status to `user_id` (a full address)."""
        if not is_full_address(user_id):
            raise PermanentError(f"{user_id!r} is not a Mastodon address")
        key = hashlib.sha256(f"dm\n{user_id}\n{text}".encode()).hexdigest()
        posted = self._call(
            "POST /api/v1/statuses",
            lambda: self._api.status_post(
                f"@{user_id} {text}", visibility="direct", idempotency_key=key
            ),
        )
        return SOURCE_PREFIX + _text(posted, "id")
