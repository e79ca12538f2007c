"""The loopback X API fake: a Flask app over a `World`, served from a daemon thread.

It answers the few X API v2 endpoints tipjar uses (mentions timeline, user lookups,
users/me, create post, send DM) and the OAuth 2.0 authorization-code-with-PKCE pair
(consent page and token endpoint) with the real response shapes, status codes, error
bodies and rate-limit headers, so that the real tweepy client can be pointed at it by
mounting a transport adapter on its session. `Sandbox` owns the server and its `World`.
It binds to loopback only: it has no real authentication and a control page.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Flask, Response, g, redirect, render_template_string, request, url_for
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Response as BaseResponse

from bot.hosts import is_loopback
from bot.platforms.x.sandbox import pages
from bot.platforms.x.sandbox.world import (
    RATE_LIMITS,
    RATE_WINDOW,
    TOKEN_LIFETIME,
    USERNAME_RE,
    Clock,
    Fault,
    GrantRefused,
    PostRefused,
    RequestRecord,
    Tweet,
    User,
    UserRef,
    World,
)

_log = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"
PROBLEM_TYPE = "application/problem+json"
NOT_FOUND_TYPE = "https://api.twitter.com/2/problems/resource-not-found"
INVALID_REQUEST_TYPE = "https://api.twitter.com/2/problems/invalid-request"
UNSUPPORTED_AUTH_TYPE = "https://api.twitter.com/2/problems/unsupported-authentication"

DEFAULT_CLIENT_ID = "sandbox-client-id"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 (a fake for loopback only)
DEFAULT_BEARER_TOKEN = "sandbox-app-bearer-token"  # noqa: S105

# The values the real API accepts (from the OpenAPI document); unknown ones are a 400.
TWEET_FIELDS = frozenset(
    "article attachments author_id card_uri community_id context_annotations conversation_id "
    "created_at display_text_range edit_controls edit_history_tweet_ids entities geo id "
    "in_reply_to_user_id lang media_metadata non_public_metrics note_tweet organic_metrics "
    "possibly_sensitive promoted_metrics public_metrics referenced_tweets reply_settings scopes "
    "source suggested_source_links suggested_source_links_with_counts text withheld".split()
)
TWEET_EXPANSIONS = frozenset(
    "article.cover_media article.media_entities attachments.media_keys "
    "attachments.media_source_tweet attachments.poll_ids author_id edit_history_tweet_ids "
    "entities.mentions.username geo.place_id in_reply_to_user_id "
    "entities.note.mentions.username referenced_tweets.id "
    "referenced_tweets.id.attachments.media_keys referenced_tweets.id.author_id".split()
)
USER_FIELDS = frozenset(
    "affiliation confirmed_email connection_status created_at description entities id "
    "is_identity_verified location most_recent_tweet_id name parody pinned_tweet_id "
    "profile_banner_url profile_image_url protected public_metrics receives_your_dm "
    "subscription subscription_type url username verified verified_followers_count "
    "verified_type withheld".split()
)
USER_EXPANSIONS = frozenset(["affiliation.user_id", "most_recent_tweet_id", "pinned_tweet_id"])
_OTHER_FIELDS = ("media.fields", "poll.fields", "place.fields")
MENTIONS_PARAMS = frozenset(
    [
        "since_id",
        "until_id",
        "max_results",
        "pagination_token",
        "start_time",
        "end_time",
        "tweet.fields",
        "expansions",
        "user.fields",
        *_OTHER_FIELDS,
    ]
)
SEARCH_PARAMS = (MENTIONS_PARAMS - {"pagination_token"}) | {
    "query",
    "next_token",
    "pagination_token",
    "sort_order",
}
# The one query the sandbox's recent search understands: a handle's mentions.
_SEARCH_QUERY_RE = re.compile(r"^@([A-Za-z0-9_]{1,15})(?: -is:retweet)?$")
USER_PARAMS = frozenset(["user.fields", "expansions", "tweet.fields"])
POST_KEYS = frozenset(
    "card_uri community_id direct_message_deep_link edit_options for_super_followers_only geo "
    "media nullcast poll quote_tweet_id reply reply_settings share_with_followers text".split()
)
REPLY_KEYS = frozenset(
    ["in_reply_to_tweet_id", "exclude_reply_user_ids", "auto_populate_reply_metadata"]
)

#: Scopes an app may ask for, with the words the consent page shows.
SCOPES: dict[str, str] = {
    "tweet.read": "See posts you can see, including from protected accounts.",
    "users.read": "See any account you can see, including protected accounts.",
    "tweet.write": "Post and repost for you.",
    "dm.read": "See all your direct messages.",
    "dm.write": "Send and manage direct messages for you.",
    "offline.access": "Stay connected to your account until you revoke access.",
    "follows.read": "See accounts you follow and accounts following you.",
    "like.read": "See posts you have liked.",
}
READ_SCOPES = frozenset(["tweet.read", "users.read"])
POST_SCOPES = READ_SCOPES | {"tweet.write"}
DM_SCOPES = READ_SCOPES | {"dm.write"}

UNAUTHORIZED_CLIENT = ("unauthorized_client", "Missing valid authorization header", 401)
BAD_CLIENT_ID = "Value passed for the client id was invalid."

_ID_RE = re.compile(r"^[0-9]{1,19}$")
_TOKEN_RE = re.compile(r"^[0-9a-z]{1,16}$")


@dataclass(frozen=True)
class SandboxSettings:
    """The sandbox app's identity on the fake platform (secrets kept out of the repr)."""

    bot_user: User
    app_name: str = "tipjar"
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = field(default=DEFAULT_CLIENT_SECRET, repr=False)
    bearer_token: str = field(default=DEFAULT_BEARER_TOKEN, repr=False)
    redirect_uris: tuple[str, ...] = ()
    confidential_client: bool = True


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the app (Bearer app token) or a user (OAuth 1.0a, user token)."""

    key: str
    user: User | None
    scopes: frozenset[str] | None  # None: OAuth 1.0a user context, which may do everything


@dataclass(frozen=True)
class AuthorizeRequest:
    """A validated `/i/oauth2/authorize` query."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str
    code_challenge: str
    code_challenge_method: str

    def as_params(self) -> list[tuple[str, str]]:
        return [
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("redirect_uri", self.redirect_uri),
            ("scope", self.scope),
            ("state", self.state),
            ("code_challenge", self.code_challenge),
            ("code_challenge_method", self.code_challenge_method),
        ]


class AuthorizeError(ValueError):
    """An authorize request the consent page refuses to act on (shown, never redirected)."""


# -- response helpers ----------------------------------------------------------------------


def _json(body: object, status: int = 200, content_type: str = JSON_TYPE) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type=content_type)


def _problem(status: int, title: str, detail: str, kind: str = "about:blank") -> Response:
    body = {"title": title, "detail": detail, "type": kind, "status": status}
    return _json(body, status, PROBLEM_TYPE)


def _generic_problem(status: int) -> dict[str, object]:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return {"title": phrase, "detail": phrase, "type": "about:blank", "status": status}


def _invalid_request(problems: Sequence[tuple[str, str, str]]) -> Response:
    errors = [
        {"parameters": {name: [value]}, "message": message} if name else {"message": message}
        for name, value, message in problems
    ]
    body = {
        "errors": errors,
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": INVALID_REQUEST_TYPE,
    }
    return _json(body, 400, PROBLEM_TYPE)


def _not_found(parameter: str, value: str, resource_type: str, detail: str) -> dict[str, str]:
    return {
        "value": value,
        "detail": detail,
        "title": "Not Found Error",
        "resource_type": resource_type,
        "parameter": parameter,
        "resource_id": value,
        "type": NOT_FOUND_TYPE,
    }


def _timestamp(when: datetime) -> str:
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _encode_token(tweet_id: str) -> str:
    number, digits = int(tweet_id), "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def _with_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


# -- JSON renderings -----------------------------------------------------------------------


def user_json(user: User, fields: Iterable[str] = ()) -> dict[str, object]:
    wanted = set(fields)
    body: dict[str, object] = {"id": user.id, "name": user.name, "username": user.username}
    if "created_at" in wanted:
        body["created_at"] = _timestamp(user.created_at)
    if "description" in wanted:
        body["description"] = user.description
    if "protected" in wanted:
        body["protected"] = user.protected
    if "verified" in wanted:
        body["verified"] = user.verified
    return body


def tweet_json(tweet: Tweet, fields: Iterable[str] = ()) -> dict[str, object]:
    wanted = set(fields)
    body: dict[str, object] = {
        "id": tweet.id,
        "text": tweet.text,
        "edit_history_tweet_ids": list(tweet.edit_history),
    }
    if "author_id" in wanted:
        body["author_id"] = tweet.author.id
    if "created_at" in wanted:
        body["created_at"] = _timestamp(tweet.created_at)
    if "conversation_id" in wanted:
        body["conversation_id"] = tweet.conversation_id
    if "display_text_range" in wanted:
        # Code points, as X counts them; a reply's prefilled mentions lie before the start.
        body["display_text_range"] = [tweet.display_start, len(tweet.text)]
    if "in_reply_to_user_id" in wanted and tweet.in_reply_to_user_id is not None:
        body["in_reply_to_user_id"] = tweet.in_reply_to_user_id
    if "referenced_tweets" in wanted and tweet.referenced_tweets:
        body["referenced_tweets"] = tweet.referenced_tweets
    if "entities" in wanted and tweet.mentions:
        mentions: list[dict[str, object]] = []
        for entity in tweet.mentions:
            item: dict[str, object] = {
                "start": entity.start,
                "end": entity.end,
                "username": entity.username,
            }
            if entity.user_id is not None:
                item["id"] = entity.user_id
            mentions.append(item)
        body["entities"] = {"mentions": mentions}
    if "lang" in wanted:
        body["lang"] = "en"
    if "possibly_sensitive" in wanted:
        body["possibly_sensitive"] = False
    if "reply_settings" in wanted:
        body["reply_settings"] = "everyone"
    return body


# Asking for an expansion brings the field it expands along (as the platform does).
_IMPLIED_FIELDS = {
    "author_id": "author_id",
    "in_reply_to_user_id": "in_reply_to_user_id",
    "entities.mentions.username": "entities",
    "referenced_tweets.id": "referenced_tweets",
    "referenced_tweets.id.author_id": "referenced_tweets",
}


# -- query parameter parsing -------------------------------------------------------------


class _Params:
    """Reads query parameters the way the X API validates them, collecting every problem."""

    def __init__(self, args: Mapping[str, str], allowed: frozenset[str]) -> None:
        self.args = args
        self.problems: list[tuple[str, str, str]] = []
        for name in args:
            if name not in allowed:
                listed = ",".join(sorted(allowed))
                self.problems.append(
                    (name, args[name], f"The query parameter [{name}] is not one of [{listed}]")
                )

    def _is_id(self, name: str, value: str) -> bool:
        if _ID_RE.match(value):
            return True
        self.problems.append(
            (
                name,
                value,
                f"The `{name}` query parameter value [{value}] does not match ^[0-9]{{1,19}}$",
            )
        )
        return False

    def tweet_id(self, name: str) -> int | None:
        value = self.args.get(name)
        if value is None or not self._is_id(name, value):
            return None
        return int(value)

    def path_id(self, value: str) -> None:
        """The `:id` of the path, which X reports like a query parameter named `id`."""
        self._is_id("id", value)

    def integer(self, name: str, low: int, high: int, default: int) -> int:
        value = self.args.get(name)
        if value is None:
            return default
        if not value.isdigit() or not low <= int(value) <= high:
            self.problems.append(
                (
                    name,
                    value,
                    f"The `{name}` query parameter value [{value}] is not between {low} and {high}",
                )
            )
            return default
        return int(value)

    def choices(self, name: str, allowed: frozenset[str]) -> set[str]:
        value = self.args.get(name)
        if value is None:
            return set()
        chosen = set()
        for item in value.split(","):
            if item not in allowed:
                listed = ",".join(sorted(allowed))
                self.problems.append(
                    (
                        name,
                        item,
                        f"The `{name}` query parameter value [{item}] is not one of [{listed}]",
                    )
                )
            else:
                chosen.add(item)
        return chosen

    def time(self, name: str) -> datetime | None:
        value = self.args.get(name)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            self.problems.append(
                (
                    name,
                    value,
                    f"The `{name}` query parameter value [{value}] is not a valid RFC 3339 time",
                )
            )
            return None
        return parsed

    def pagination_token(self, name: str = "pagination_token") -> int | None:
        value = self.args.get(name)
        if value is None:
            return None
        if not _TOKEN_RE.match(value):
            self.problems.append(
                (name, value, f"The `{name}` query parameter value [{value}] is not valid")
            )
            return None
        return int(value, 36)


# -- the application -----------------------------------------------------------------------


class _RouteGroup:
    """A named group of the sandbox's routes over one world; `register` adds them to an app."""

    def __init__(self, world: World, settings: SandboxSettings) -> None:
        self.world = world
        self.settings = settings

    def register(self, app: Flask) -> None:
        raise NotImplementedError


class _Gate(_RouteGroup):
    """Who is asking, whether they may, the rate window, injected faults, the request log."""

    def register(self, app: Flask) -> None:
        app.before_request(self.inject_fault)
        app.after_request(self.finish)
        app.register_error_handler(404, self.not_found)
        app.register_error_handler(405, self.not_allowed)

    def authenticate(self) -> Principal | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("OAuth "):
            bot = self.world.user_by_id(self.settings.bot_user.id)
            return None if bot is None else Principal(f"user:{bot.id}", bot, None)
        if not header.startswith("Bearer "):
            return None
        token = header.removeprefix("Bearer ").strip()
        if token and hmac.compare_digest(token.encode(), self.settings.bearer_token.encode()):
            return Principal("app", None, None)
        grant = self.world.token_grant(token)
        user = None if grant is None else self.world.user_by_id(grant.user_id)
        if grant is None or user is None:
            return None
        return Principal(f"user:{user.id}", user, grant.scopes)

    def admit(self, endpoint: str, scopes: frozenset[str]) -> Principal | Response:
        """Authentication, authorization and the rate window of one API request."""
        principal = self.authenticate()
        if principal is None:
            return _problem(401, "Unauthorized", "Unauthorized")
        app_limit, _user_limit = RATE_LIMITS[endpoint]
        if principal.user is None and app_limit is None:
            return _problem(
                403,
                "Unsupported Authentication",
                "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  "
                "Supported authentication types are [OAuth 1.0a User Context, "
                "OAuth 2.0 User Context].",
                UNSUPPORTED_AUTH_TYPE,
            )
        if principal.user is not None and principal.scopes is not None:
            missing = sorted(scopes - principal.scopes)
            if missing:
                return _problem(
                    403, "Forbidden", f"The access token lacks the scopes {', '.join(missing)}."
                )
        g.principal_key = principal.key
        rate = self.world.consume_rate(endpoint, principal.key)
        g.rate = rate
        if not rate.allowed:
            return _problem(429, "Too Many Requests", "Too Many Requests")
        return principal

    def inject_fault(self) -> Response | None:
        fault = self.world.take_fault(request.method, request.path)
        if fault is None:
            return None
        if fault.delay > 0:
            time.sleep(fault.delay)
        if fault.status is None:
            return None
        return self._fault_response(fault)

    def _fault_response(self, fault: Fault) -> Response:
        assert fault.status is not None
        if fault.malformed:
            return Response(b'{"data": [{"id": "1', status=fault.status, content_type=JSON_TYPE)
        if fault.body is None:
            response = _json(_generic_problem(fault.status), fault.status, PROBLEM_TYPE)
        elif isinstance(fault.body, bytes | str):
            response = Response(fault.body, status=fault.status, content_type=JSON_TYPE)
        else:
            response = _json(fault.body, fault.status)
        if fault.status == 429:
            endpoint = endpoint_of(request.method, request.path)
            limits = RATE_LIMITS.get(endpoint or "", (None, 0))
            response.headers["x-rate-limit-limit"] = str(limits[0] or limits[1])
            response.headers["x-rate-limit-remaining"] = "0"
            reset = self.world.now() + RATE_WINDOW
            response.headers["x-rate-limit-reset"] = str(int(reset.timestamp()))
        response.headers.update(fault.headers)
        g.faulted = True
        return response

    def finish(self, response: Response) -> Response:
        rate = g.get("rate")
        if rate is not None and not g.get("faulted"):
            response.headers["x-rate-limit-limit"] = str(rate.limit)
            response.headers["x-rate-limit-remaining"] = str(rate.remaining)
            response.headers["x-rate-limit-reset"] = str(rate.reset)
        self.world.record_request(
            RequestRecord(
                method=request.method,
                path=request.path,
                query=request.query_string.decode("latin-1"),
                status=response.status_code,
                at=self.world.now(),
                principal=g.get("principal_key"),
            )
        )
        return response

    def not_found(self, _error: Exception) -> Response:
        return _problem(404, "Not Found", "Sorry, that page does not exist.")

    def not_allowed(self, _error: Exception) -> Response:
        return _problem(405, "Method Not Allowed", "Method Not Allowed")


class _ApiRoutes(_Gate):
    """The X API v2 endpoints tipjar uses: mentions, user lookups, users/me, posts and DMs."""

    def register(self, app: Flask) -> None:
        super().register(app)  # the gate's hooks and error pages are app-wide, as on X
        app.add_url_rule("/2/users/<user_id>/mentions", "mentions", self.mentions, methods=["GET"])
        app.add_url_rule(
            "/2/tweets/search/recent", "search_recent", self.search_recent, methods=["GET"]
        )
        app.add_url_rule("/2/users/by", "users_by", self.users_by, methods=["GET"])
        app.add_url_rule("/2/users", "users_by_ids", self.users_by_ids, methods=["GET"])
        app.add_url_rule(
            "/2/users/by/username/<username>",
            "user_by_username",
            self.user_by_username,
            methods=["GET"],
        )
        app.add_url_rule("/2/users/me", "users_me", self.users_me, methods=["GET"])
        app.add_url_rule("/2/users/<user_id>", "user_by_id", self.user_by_id, methods=["GET"])
        app.add_url_rule("/2/tweets", "create_tweet", self.create_tweet, methods=["POST"])
        app.add_url_rule(
            "/2/dm_conversations/with/<participant_id>/messages",
            "send_dm",
            self.send_dm,
            methods=["POST"],
        )

    def mentions(self, user_id: str) -> Response:
        admitted = self.admit("GET /2/users/:id/mentions", READ_SCOPES)
        if isinstance(admitted, Response):
            return admitted
        params = _Params(request.args, MENTIONS_PARAMS)
        params.path_id(user_id)
        max_results = params.integer("max_results", 5, 100, default=10)
        since_id = params.tweet_id("since_id")
        until_id = params.tweet_id("until_id")
        start_time, end_time = params.time("start_time"), params.time("end_time")
        before = params.pagination_token()
        tweet_fields = params.choices("tweet.fields", TWEET_FIELDS)
        expansions = params.choices("expansions", TWEET_EXPANSIONS)
        user_fields = params.choices("user.fields", USER_FIELDS)
        if params.problems:
            return _invalid_request(params.problems)
        with self.world.lock:
            if self.world.user_by_id(user_id) is None:
                detail = f"Could not find user with id: [{user_id}]."
                return _json({"errors": [_not_found("id", user_id, "user", detail)]})
            selected = [
                t
                for t in self.world.mentions_of(user_id)
                if (since_id is None or int(t.id) > since_id)
                and (until_id is None or int(t.id) < until_id)
                and (before is None or int(t.id) < before)
                and (start_time is None or t.created_at >= start_time)
                and (end_time is None or t.created_at <= end_time)
            ]
            body = self.render_page(selected, max_results, tweet_fields, expansions, user_fields)
        return _json(body)

    def search_recent(self) -> Response:
        """`GET /2/tweets/search/recent` for the query `@handle -is:retweet` (7 days)."""
        admitted = self.admit("GET /2/tweets/search/recent", READ_SCOPES)
        if isinstance(admitted, Response):
            return admitted
        params = _Params(request.args, SEARCH_PARAMS)
        query = request.args.get("query", "")
        wanted = _SEARCH_QUERY_RE.match(query)
        if wanted is None:
            params.problems.append(
                ("query", query, "The sandbox searches only for `@handle -is:retweet`")
            )
        max_results = params.integer("max_results", 10, 100, default=10)
        since_id = params.tweet_id("since_id")
        until_id = params.tweet_id("until_id")
        before = params.pagination_token("next_token") or params.pagination_token()
        tweet_fields = params.choices("tweet.fields", TWEET_FIELDS)
        expansions = params.choices("expansions", TWEET_EXPANSIONS)
        user_fields = params.choices("user.fields", USER_FIELDS)
        if params.problems or wanted is None:
            return _invalid_request(params.problems)
        with self.world.lock:
            user = self.world.find_user(wanted.group(1))
            found = self.world.search_mentions(user.id) if user is not None else []
            selected = [
                t
                for t in found
                if (since_id is None or int(t.id) > since_id)
                and (until_id is None or int(t.id) < until_id)
                and (before is None or int(t.id) < before)
            ]
            body = self.render_page(selected, max_results, tweet_fields, expansions, user_fields)
        return _json(body)

    def render_page(
        self,
        selected: Sequence[Tweet],
        max_results: int,
        fields: set[str],
        expansions: set[str],
        user_fields: set[str],
    ) -> dict[str, object]:
        """The first `max_results` of `selected` (newest first), with X's `meta`: the ids
        at either end, and a `next_token` when more are left."""
        page = selected[:max_results]
        body = self.render_tweets(page, fields, expansions, user_fields)
        meta: dict[str, object] = {"result_count": len(page)}
        if page:
            meta["newest_id"] = page[0].id
            meta["oldest_id"] = page[-1].id
        if len(selected) > max_results:
            meta["next_token"] = _encode_token(page[-1].id)
        body["meta"] = meta
        return body

    def render_tweets(
        self,
        tweets: Sequence[Tweet],
        fields: set[str],
        expansions: set[str],
        user_fields: set[str],
    ) -> dict[str, object]:
        fields = fields | {_IMPLIED_FIELDS[e] for e in expansions if e in _IMPLIED_FIELDS}
        users, included, errors = self._expand(tweets, expansions)
        body: dict[str, object] = {}
        if tweets:
            body["data"] = [tweet_json(t, fields) for t in tweets]
        includes: dict[str, object] = {}
        if users:
            includes["users"] = [user_json(u, user_fields) for u in users.values()]
        if included:
            includes["tweets"] = [tweet_json(t, fields) for t in included.values()]
        if includes:
            body["includes"] = includes
        if errors:
            body["errors"] = errors
        return body

    def _expand(
        self, tweets: Sequence[Tweet], expansions: set[str]
    ) -> tuple[dict[str, User], dict[str, Tweet], list[dict[str, str]]]:
        """The users and tweets the `expansions` pull into `includes`, and what is missing."""
        users: dict[str, User] = {}
        included: dict[str, Tweet] = {}
        errors: list[dict[str, str]] = []

        def include_user(user_id: str | None) -> None:
            user = None if user_id is None else self.world.user_by_id(user_id)
            if user is not None:
                users.setdefault(user.id, user)

        for tweet in tweets:
            if "author_id" in expansions:
                include_user(tweet.author.id)
            if "entities.mentions.username" in expansions:
                for entity in tweet.mentions:
                    include_user(entity.user_id)
            if "in_reply_to_user_id" in expansions:
                include_user(tweet.in_reply_to_user_id)
            if not expansions & {"referenced_tweets.id", "referenced_tweets.id.author_id"}:
                continue
            for ref in tweet.referenced_tweets:
                target = self.world.get_tweet(ref["id"])
                if target is None:
                    detail = f"Could not find tweet with referenced_tweets.id: [{ref['id']}]."
                    error = _not_found("referenced_tweets.id", ref["id"], "tweet", detail)
                    errors.append({**error, "section": "includes"})
                    continue
                if "referenced_tweets.id" in expansions:
                    included.setdefault(target.id, target)
                if "referenced_tweets.id.author_id" in expansions:
                    include_user(target.author.id)
        return users, included, errors

    def users_by(self) -> Response:
        admitted = self.admit("GET /2/users/by", READ_SCOPES)
        if isinstance(admitted, Response):
            return admitted
        params = _Params(request.args, USER_PARAMS | {"usernames"})
        raw = request.args.get("usernames", "")
        names = raw.split(",") if raw else []
        if not names:
            params.problems.append(
                ("usernames", raw, "The `usernames` query parameter can not be empty")
            )
        elif len(names) > 100:
            params.problems.append(
                (
                    "usernames",
                    raw,
                    f"The number of values in the `usernames` query parameter "
                    f"list [{len(names)}] is not between 1 and 100",
                )
            )
        for name in names:
            if not USERNAME_RE.match(name):
                params.problems.append(
                    (
                        "usernames",
                        name,
                        f"The `usernames` query parameter value [{name}] does "
                        "not match ^[A-Za-z0-9_]{1,15}$",
                    )
                )
        user_fields = params.choices("user.fields", USER_FIELDS)
        params.choices("expansions", USER_EXPANSIONS)
        params.choices("tweet.fields", TWEET_FIELDS)
        if params.problems:
            return _invalid_request(params.problems)
        found: dict[str, User] = {}
        errors = []
        with self.world.lock:
            for name in names:
                user = self.world.find_user(name)
                if user is None:
                    detail = f"Could not find user with usernames: [{name}]."
                    errors.append(_not_found("usernames", name, "user", detail))
                else:
                    found.setdefault(user.id, user)
            body: dict[str, object] = {}
            if found:
                body["data"] = [user_json(u, user_fields) for u in found.values()]
        if errors:
            body["errors"] = errors
        return _json(body)

    def users_by_ids(self) -> Response:
        admitted = self.admit("GET /2/users", READ_SCOPES)
        if isinstance(admitted, Response):
            return admitted
        params = _Params(request.args, USER_PARAMS | {"ids"})
        raw = request.args.get("ids", "")
        ids = raw.split(",") if raw else []
        if not ids or len(ids) > 100:
            params.problems.append(
                (
                    "ids",
                    raw,
                    f"The number of values in the `ids` query parameter list [{len(ids)}]"
                    " is not between 1 and 100",
                )
            )
        for user_id in ids:
            params._is_id("ids", user_id)
        user_fields = params.choices("user.fields", USER_FIELDS)
        params.choices("expansions", USER_EXPANSIONS)
        params.choices("tweet.fields", TWEET_FIELDS)
        if params.problems:
            return _invalid_request(params.problems)
        errors = []
        body: dict[str, object] = {}
        with self.world.lock:
            found = []
            for user_id in dict.fromkeys(ids):
                user = self.world.user_by_id(user_id)
                if user is None:
                    detail = f"Could not find user with ids: [{user_id}]."
                    errors.append(_not_found("ids", user_id, "user", detail))
                else:
                    found.append(user)
            if found:
                body["data"] = [user_json(u, user_fields) for u in found]
        if errors:
            body["errors"] = errors
        return _json(body)

    def user_by_username(self, username: str) -> Response:
        admitted = self.admit("GET /2/users/by/username/:username", READ_SCOPES)
        if isinstance(admitted, Response):
            return admitted
        params = _Params(request.args, USER_PARAMS)
        if not USERNAME_RE.match(username):
            params.problems.append(
                (
                    "username",
                    username,
                    f"The `username` query parameter value [{username}] "
                    "does not match ^[A-Za-z0-9_]{1,15}$",
                )
            )
        user_fields = params.choices("user.fields", USER_FIELDS)
        params.choices("expansions", USER_EXPANSIONS)
        if params.problems:
            return _invalid_request(params.problems)
        with self.world.lock:
            user = self.world.find_user(username)
            if user is None:
                detail = f"Could not find user with username: [{username}]."
                return _json({"errors": [_not_found("username", username, "user", detail)]})
            return _json({"data": user_json(user, user_fields)})

    def users_me(self) -> Response:
        admitted = self.admit("GET /2/users/me", READ_SCOPES)
        if isinstance(admitted, Response):
            return admitted
        params = _Params(request.args, USER_PARAMS)
        user_fields = params.choices("user.fields", USER_FIELDS)
        params.choices("expansions", USER_EXPANSIONS)
        if params.problems:
            return _invalid_request(params.problems)
        assert admitted.user is not None
        with self.world.lock:
            return _json({"data": user_json(admitted.user, user_fields)})

    def user_by_id(self, user_id: str) -> Response:
        admitted = self.admit("GET /2/users/:id", READ_SCOPES)
        if isinstance(admitted, Response):
            return admitted
        params = _Params(request.args, USER_PARAMS)
        params.path_id(user_id)
        user_fields = params.choices("user.fields", USER_FIELDS)
        params.choices("expansions", USER_EXPANSIONS)
        if params.problems:
            return _invalid_request(params.problems)
        with self.world.lock:
            user = self.world.user_by_id(user_id)
            if user is None:
                detail = f"Could not find user with id: [{user_id}]."
                return _json({"errors": [_not_found("id", user_id, "user", detail)]})
            return _json({"data": user_json(user, user_fields)})

    def json_body(self) -> tuple[dict[str, Any] | None, Response | None]:
        if not request.is_json:
            message = "Requests with bodies must have content-type of application/json."
            return None, _invalid_request([("", "", message)])
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return None, _invalid_request([("", "", "The request body is not a JSON object.")])
        return body, None

    def create_tweet(self) -> Response:
        admitted = self.admit("POST /2/tweets", POST_SCOPES)
        if isinstance(admitted, Response):
            return admitted
        body, refusal = self.json_body()
        if refusal is not None or body is None:
            return refusal or _problem(400, "Invalid Request", "No body")
        problems = [
            (
                "",
                "",
                f"$.{key}: is not defined in the schema and the schema does not allow "
                "additional properties",
            )
            for key in body
            if key not in POST_KEYS
        ]
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            problems.append(("", "", "$.text: a non-empty string is required in the sandbox"))
        reply = body.get("reply")
        in_reply_to: str | None = None
        if reply is not None:
            if not isinstance(reply, dict):
                problems.append(("", "", "$.reply: object expected"))
            else:
                problems += [
                    (
                        "",
                        "",
                        f"$.reply.{key}: is not defined in the schema and the schema "
                        "does not allow additional properties",
                    )
                    for key in reply
                    if key not in REPLY_KEYS
                ]
                target = reply.get("in_reply_to_tweet_id")
                if not isinstance(target, str) or not _ID_RE.match(target):
                    problems.append(
                        ("", "", "$.reply.in_reply_to_tweet_id: string [0-9]{1,19} expected")
                    )
                else:
                    in_reply_to = target
        if problems:
            return _invalid_request(problems)
        assert admitted.user is not None and isinstance(text, str)
        try:
            post = self.world.create_post(admitted.user, text, in_reply_to=in_reply_to)
        except PostRefused as refused:
            return _json(refused.problem(), refused.status, PROBLEM_TYPE)
        data = {"id": post.id, "text": post.text, "edit_history_tweet_ids": [post.id]}
        return _json({"data": data}, 201)

    def send_dm(self, participant_id: str) -> Response:
        admitted = self.admit("POST /2/dm_conversations/with/:participant_id/messages", DM_SCOPES)
        if isinstance(admitted, Response):
            return admitted
        body, refusal = self.json_body()
        if refusal is not None or body is None:
            return refusal or _problem(400, "Invalid Request", "No body")
        text = body.get("text")
        problems: list[tuple[str, str, str]] = []
        if not isinstance(text, str) or not text:
            problems.append(("", "", "$.text: a non-empty string is required in the sandbox"))
        recipient = self.world.user_by_id(participant_id) if _ID_RE.match(participant_id) else None
        if recipient is None:
            problems.append(
                (
                    "participant_id",
                    participant_id,
                    f"The `participant_id` path parameter value [{participant_id}] is not a user",
                )
            )
        if problems:
            return _invalid_request(problems)
        assert admitted.user is not None and recipient is not None and isinstance(text, str)
        message = self.world.send_dm(admitted.user, recipient, text)
        data = {"dm_conversation_id": message.conversation_id, "dm_event_id": message.id}
        return _json({"data": data}, 201)


class _OAuthRoutes(_RouteGroup):
    """OAuth 2.0 with PKCE: the consent page, the decision, and the token endpoint."""

    def register(self, app: Flask) -> None:
        app.add_url_rule(
            "/i/oauth2/authorize", "authorize_page", self.authorize_page, methods=["GET"]
        )
        app.add_url_rule(
            "/i/oauth2/authorize", "authorize_decision", self.authorize_decision, methods=["POST"]
        )
        app.add_url_rule("/2/oauth2/token", "token", self.token, methods=["POST"])

    def authorize_page(self) -> BaseResponse | tuple[str, int]:
        try:
            asked = parse_authorize(request.args, self.settings)
        except AuthorizeError as refused:
            return render_template_string(pages.ERROR_PAGE, message=str(refused)), 400
        login = request.args.get("login")
        error = None
        with self.world.lock:
            if login:
                chosen = self.world.find_user(login)
                choices = [chosen] if chosen else self.people()
                if chosen is None:
                    error = f"There is no sandbox account @{login.lstrip('@')}."
            elif self.world.signed_in_user is not None:
                choices = [self.world.signed_in_user]
            else:
                choices = self.people()
            html = self.consent_html(asked, choices, error)
        return Response(html, content_type="text/html; charset=utf-8")

    def people(self) -> list[User]:
        """Accounts a person might sign in with: everyone but the bot (login= still can)."""
        return [u for u in self.world.users if u.id != self.settings.bot_user.id]

    def consent_html(self, asked: AuthorizeRequest, choices: list[User], error: str | None) -> str:
        return render_template_string(
            pages.CONSENT_PAGE,
            app_name=self.settings.app_name,
            action=url_for("authorize_decision"),
            params=asked.as_params(),
            users=choices,
            scopes=[SCOPES[s] for s in asked.scope.split()],
            error=error,
        )

    def authorize_decision(self) -> BaseResponse | tuple[str, int]:
        try:
            asked = parse_authorize(request.form, self.settings)
        except AuthorizeError as refused:
            return render_template_string(pages.ERROR_PAGE, message=str(refused)), 400
        if request.form.get("decision") == "cancel":
            return redirect(deny_url(asked), 302)
        user = self.world.user_by_id(request.form.get("user_id", ""))
        if user is None:
            html = self.consent_html(asked, self.people(), "Choose the account to sign in with.")
            return html, 400
        return redirect(approve_url(self.world, asked, user), 302)

    def token(self) -> Response:
        form = request.form
        credentials = request.authorization
        if credentials is not None and credentials.type == "basic":
            good_id = hmac.compare_digest(
                (credentials.username or "").encode(), self.settings.client_id.encode()
            )
            good_secret = hmac.compare_digest(
                (credentials.password or "").encode(), self.settings.client_secret.encode()
            )
            if not (good_id and good_secret):
                return _oauth_error(*UNAUTHORIZED_CLIENT)
            client_id = self.settings.client_id
            if form.get("client_id", client_id) != client_id:
                return _oauth_error("invalid_request", BAD_CLIENT_ID)
        elif self.settings.confidential_client:
            return _oauth_error(*UNAUTHORIZED_CLIENT)
        else:
            client_id = form.get("client_id", "")
            if client_id != self.settings.client_id:
                return _oauth_error(*UNAUTHORIZED_CLIENT)
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("invalid_request", "Value passed for the grant type was invalid.")
        for name in ("code", "redirect_uri", "code_verifier"):
            if not form.get(name):
                return _oauth_error("invalid_request", f"Missing required parameter [{name}].")
        try:
            access_token, grant = self.world.redeem_code(
                form["code"],
                client_id=client_id,
                redirect_uri=form["redirect_uri"],
                code_verifier=form["code_verifier"],
            )
        except GrantRefused as refused:
            return _oauth_error(refused.error, refused.description, refused.status)
        response = _json(
            {
                "token_type": "bearer",
                "expires_in": int(TOKEN_LIFETIME.total_seconds()),
                "access_token": access_token,
                "scope": grant.scope,
            }
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response


class _ControlRoutes(_RouteGroup):
    """The control page: tweet as anyone, add accounts, read the whole world as JSON."""

    def register(self, app: Flask) -> None:
        app.add_url_rule("/", "control_page", self.control_page, methods=["GET"])
        app.add_url_rule("/sandbox/tweet", "control_tweet", self.control_tweet, methods=["POST"])
        app.add_url_rule(
            "/sandbox/users", "control_add_user", self.control_add_user, methods=["POST"]
        )
        app.add_url_rule("/sandbox/state", "control_state", self.control_state, methods=["GET"])

    def control_page(self) -> str:
        with self.world.lock:
            return render_template_string(
                pages.CONTROL_PAGE,
                bot=self.settings.bot_user,
                users=self.world.users,
                tweets=list(reversed(self.world.tweets))[:50],
                dms=list(reversed(self.world.dms))[:50],
                error=request.args.get("error"),
            )

    def control_tweet(self) -> BaseResponse:
        in_reply_to = request.form.get("in_reply_to", "").strip() or None
        try:
            self.world.mention(
                request.form.get("author", ""),
                request.form.get("text", ""),
                in_reply_to=in_reply_to,
            )
        except (KeyError, ValueError) as error:
            return redirect(url_for("control_page", error=str(error)), 303)
        return redirect(url_for("control_page"), 303)

    def control_add_user(self) -> BaseResponse:
        try:
            self.world.add_user(request.form.get("username", ""))
        except ValueError as error:
            return redirect(url_for("control_page", error=str(error)), 303)
        return redirect(url_for("control_page"), 303)

    def control_state(self) -> Response:
        with self.world.lock:
            state = {
                "bot_user": user_json(self.settings.bot_user),
                "users": [user_json(u, ["created_at"]) for u in self.world.users],
                "tweets": [
                    {**tweet_json(t, TWEET_FIELDS), "via_api": t.via_api} for t in self.world.tweets
                ],
                "dms": [
                    {
                        "dm_event_id": m.id,
                        "dm_conversation_id": m.conversation_id,
                        "sender_id": m.sender.id,
                        "participant_id": m.recipient.id,
                        "text": m.text,
                    }
                    for m in self.world.dms
                ],
            }
        return _json(state)


def create_app(world: World, settings: SandboxSettings) -> Flask:
    """The WSGI app of the sandbox; usable without a socket through `app.test_client()`."""
    app = Flask("bot.platforms.x.sandbox")
    _ApiRoutes(world, settings).register(app)
    _OAuthRoutes(world, settings).register(app)
    _ControlRoutes(world, settings).register(app)
    return app


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    response = _json({"error": error, "error_description": description}, status)
    response.headers["Cache-Control"] = "no-store"
    return response


_ENDPOINT_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("GET /2/users/:id/mentions", re.compile(r"^/2/users/[^/]+/mentions$")),
    ("GET /2/tweets/search/recent", re.compile(r"^/2/tweets/search/recent$")),
    ("GET /2/users/by", re.compile(r"^/2/users/by$")),
    ("GET /2/users", re.compile(r"^/2/users$")),
    ("GET /2/users/by/username/:username", re.compile(r"^/2/users/by/username/[^/]+$")),
    ("GET /2/users/me", re.compile(r"^/2/users/me$")),
    ("GET /2/users/:id", re.compile(r"^/2/users/[^/]+$")),
    ("POST /2/tweets", re.compile(r"^/2/tweets$")),
    (
        "POST /2/dm_conversations/with/:participant_id/messages",
        re.compile(r"^/2/dm_conversations/with/[^/]+/messages$"),
    ),
]


def endpoint_of(method: str, path: str) -> str | None:
    """The rate-limit endpoint key ("GET /2/users/by" ...) a request path falls under."""
    for key, pattern in _ENDPOINT_PATTERNS:
        if key.startswith(method + " ") and pattern.match(path):
            return key
    return None


def parse_authorize(params: Mapping[str, str], settings: SandboxSettings) -> AuthorizeRequest:
    """Validate an authorize request; raises AuthorizeError with what is wrong."""
    if params.get("response_type") != "code":
        raise AuthorizeError("response_type must be 'code'.")
    if params.get("client_id") != settings.client_id:
        raise AuthorizeError("This client_id is not an application known to the sandbox.")
    redirect_uri = params.get("redirect_uri", "")
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise AuthorizeError("redirect_uri must be an absolute http(s) URL without a fragment.")
    if settings.redirect_uris and redirect_uri not in settings.redirect_uris:
        raise AuthorizeError("redirect_uri is not one of the app's callback URLs.")
    scope = params.get("scope", "")
    unknown = [s for s in scope.split() if s not in SCOPES]
    if not scope.split() or unknown:
        raise AuthorizeError(f"scope must list known scopes; unknown: {unknown or '(empty)'}.")
    state = params.get("state", "")
    if not state or len(state) > 500:
        raise AuthorizeError("state is required (at most 500 characters).")
    challenge = params.get("code_challenge", "")
    method = params.get("code_challenge_method", "")
    if not challenge or method not in ("S256", "plain"):
        raise AuthorizeError("PKCE is required: code_challenge with method S256 (or plain).")
    return AuthorizeRequest(settings.client_id, redirect_uri, scope, state, challenge, method)


def approve_url(world: World, asked: AuthorizeRequest, user: UserRef) -> str:
    """The callback URL the consent page sends the browser to when `user` authorizes."""
    code = world.issue_code(
        user,
        client_id=asked.client_id,
        redirect_uri=asked.redirect_uri,
        code_challenge=asked.code_challenge,
        code_challenge_method=asked.code_challenge_method,
        scope=asked.scope,
    )
    return _with_query(asked.redirect_uri, {"state": asked.state, "code": code})


def deny_url(asked: AuthorizeRequest) -> str:
    """The callback URL the consent page sends the browser to on Cancel."""
    return _with_query(asked.redirect_uri, {"error": "access_denied", "state": asked.state})


# -- the server ------------------------------------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    """Request lines go to the debug log, not stderr (they would drown the demo's output)."""

    def log(self, type: str, message: str, *args: Any) -> None:
        _log.debug("%s %s", type, message % args)


class Sandbox:
    """The loopback X API: `with Sandbox() as sandbox: ...sandbox.base_url, sandbox.world`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_username: str = "flattr",
        clock: Clock | None = None,
        *,
        bot_user_id: str | None = None,
        app_name: str = "tipjar",
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        bearer_token: str = DEFAULT_BEARER_TOKEN,
        redirect_uris: Sequence[str] = (),
        confidential_client: bool = True,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"the sandbox only binds to loopback, not {host!r}")
        self.host = host
        self.port = port
        self.world = World(clock)
        self.bot_user = self.world.add_user(bot_username, name="Tip jar", user_id=bot_user_id)
        self.settings = SandboxSettings(
            bot_user=self.bot_user,
            app_name=app_name,
            client_id=client_id,
            client_secret=client_secret,
            bearer_token=bearer_token,
            redirect_uris=tuple(redirect_uris),
            confidential_client=confidential_client,
        )
        self.app = create_app(self.world, self.settings)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    def __repr__(self) -> str:
        where = self._base_url or "not started"
        return f"Sandbox({where}, bot=@{self.bot_user.username})"

    @property
    def client_id(self) -> str:
        return self.settings.client_id

    @property
    def client_secret(self) -> str:
        return self.settings.client_secret

    @property
    def bearer_token(self) -> str:
        return self.settings.bearer_token

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the sandbox is not started")
        return self._base_url

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/i/oauth2/authorize"

    @property
    def token_url(self) -> str:
        return self.base_url + "/2/oauth2/token"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        """Serve on host:port (0 = any free port) from a daemon thread; returns base_url."""
        if self._server is not None:
            return self.base_url
        server = make_server(
            self.host, self.port, self.app, threaded=True, request_handler=QuietHandler
        )
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits up to one interval
            name="tipjar-sandbox",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        self._base_url = f"http://{netloc}:{server.server_port}"
        return self._base_url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self._base_url = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """Environment variables that point tipjar at this sandbox (as in config.example.env)."""
        return {
            "X_API_BASE_URL": self.base_url,
            "X_OAUTH_AUTHORIZE_URL": self.authorize_url,
            "X_OAUTH_TOKEN_URL": self.token_url,
            "X_BEARER_TOKEN": self.bearer_token,
            "X_CLIENT_ID": self.client_id,
            "X_CLIENT_SECRET": self.client_secret,
            "X_BOT_USERNAME": self.bot_user.username,
            "X_BOT_USER_ID": self.bot_user.id,
            # OAuth 1.0a is accepted with any signature: these only need to be present.
            "X_API_KEY": "sandbox-api-key",
            "X_API_SECRET": "sandbox-api-secret",
            "X_ACCESS_TOKEN": f"{self.bot_user.id}-sandbox-access-token",
            "X_ACCESS_TOKEN_SECRET": "sandbox-access-token-secret",
        }

    def approve(self, authorize_request_url: str, user: UserRef) -> str:
        """Do what the consent page does when `user` clicks Authorize; returns the callback URL.

        `authorize_request_url` is where the app sent the browser (its query is read; its
        host is not). Raises AuthorizeError if the request would be refused.
        """
        asked = parse_authorize(
            dict(parse_qsl(urlsplit(authorize_request_url).query)), self.settings
        )
        return approve_url(self.world, asked, self.world.user(user))

    def deny(self, authorize_request_url: str) -> str:
        """Do what the consent page does on Cancel; returns the callback URL."""
        asked = parse_authorize(
            dict(parse_qsl(urlsplit(authorize_request_url).query)), self.settings
        )
        return deny_url(asked)

    def user_token(self, user: UserRef, scope: str = "users.read tweet.read") -> str:
        """A user access token without the consent dance (for tests of later steps)."""
        token, _grant = self.world.issue_token(user, scope=scope)
        return token
