"""Builders of realistic X API v2 JSON payloads, shaped like the recorded shared fixtures.

Tests fake X at the HTTP boundary with `responses`; these builders give them bodies with the
real shapes (checked against ../shared/x-api/openapi-v2.json in tests/unit/test_x_api.py):
ids are decimal strings, timestamps are `2024-03-01T12:00:00.000Z`, mentions carry
`entities.mentions[]` with code-point indices, users come in `includes.users`, unknown
names come back as HTTP 200 with `errors[]`.

    tl = Timeline()
    alice, bob = tl.user("alice"), tl.user("bob")
    tip = tl.mention(alice, "@flattr @bob €2")
    rsps.get(mentions_url(BOT_ID), json=tl.page([tip]), headers=rate_limit_headers())

`add_fixture(rsps, "test_client_get_me")` replays a recorded interaction from the shared
fixtures (None when they are absent: callers skip).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import responses

from bot.platforms.x.api import TweepyXApi

API = "https://api.twitter.com"
TWITTER_EPOCH_MS = 1288834974657
FIXTURES_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "x-api"
OPENAPI_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "x-api" / "openapi-v2.json"

Json = dict[str, Any]

# Close to twitter-text's rule: an @handle not glued to a preceding word character.
_MENTION = re.compile(r"(?<![A-Za-z0-9_!#$%&*@＠])[@＠]([A-Za-z0-9_]{1,15})(?![A-Za-z0-9_@＠])")


# --------------------------------------------------------------------------- small values


def snowflake(created_at: datetime, sequence: int = 0) -> str:
    """A snowflake id that encodes `created_at`, as X's tweet ids do."""
    millis = int(created_at.timestamp() * 1000) - TWITTER_EPOCH_MS
    return str((millis << 22) | (sequence & 0x3FFFFF))


def iso(moment: datetime) -> str:
    """X's timestamp format: UTC with milliseconds and a Z."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def rate_limit_headers(
    limit: int = 450, remaining: int = 449, reset: int | datetime = 1_700_000_000
) -> dict[str, str]:
    if isinstance(reset, datetime):
        reset = int(reset.timestamp())
    return {
        "x-rate-limit-limit": str(limit),
        "x-rate-limit-remaining": str(remaining),
        "x-rate-limit-reset": str(reset),
    }


def mention_entities(text: str, ids: Mapping[str, str] | None = None) -> list[Json]:
    """`entities.mentions[]` for `text`; `ids` maps casefolded handles X resolved to ids."""
    ids = ids or {}
    entities = []
    for match in _MENTION.finditer(text):
        entity: Json = {"start": match.start(), "end": match.end(), "username": match.group(1)}
        user_id = ids.get(match.group(1).casefold())
        if user_id is not None:
            entity["id"] = user_id
        entities.append(entity)
    return entities


def mentioned_usernames(text: str) -> list[str]:
    return [match.group(1) for match in _MENTION.finditer(text)]


# --------------------------------------------------------------------------- objects


def user(user_id: str, username: str, name: str | None = None, *, protected: bool = False) -> Json:
    return {
        "id": user_id,
        "name": name or username.title(),
        "username": username,
        "protected": protected,
    }


def tweet(
    *,
    id: str,
    text: str,
    author_id: str,
    created_at: datetime | None = None,
    in_reply_to_user_id: str | None = None,
    replied_to_tweet_id: str | None = None,
    conversation_id: str | None = None,
    edit_history: Sequence[str] | None = None,
    retweet_of: str | None = None,
    quote_of: str | None = None,
    mention_ids: Mapping[str, str] | None = None,
    display_text_range: tuple[int, int] | None = None,
    urls: Sequence[Json] = (),
    media_keys: Sequence[str] = (),
) -> Json:
    """A tweet object with every field the bot asks for (see x.api.MENTION_TWEET_FIELDS).

    `display_text_range` is left out unless given (X sends it when asked; tests of the
    fallback leave it out); `urls` are `entities.urls[]`, `media_keys` the attachments.
    """
    body: Json = {
        "id": id,
        "text": text,
        "author_id": author_id,
        "created_at": iso(created_at) if created_at else iso(_time_of(id)),
        "conversation_id": conversation_id or id,
        "edit_history_tweet_ids": list(edit_history or [id]),
    }
    entities = mention_entities(text, mention_ids)
    if entities or urls:
        body["entities"] = {}
    if entities:
        body["entities"]["mentions"] = entities
    if urls:
        body["entities"]["urls"] = list(urls)
    if media_keys:
        body["attachments"] = {"media_keys": list(media_keys)}
    if display_text_range is not None:
        body["display_text_range"] = list(display_text_range)
    if in_reply_to_user_id is not None:
        body["in_reply_to_user_id"] = in_reply_to_user_id
    references = []
    if retweet_of is not None:
        references.append({"type": "retweeted", "id": retweet_of})
    if quote_of is not None:
        references.append({"type": "quoted", "id": quote_of})
    if replied_to_tweet_id is not None:
        references.append({"type": "replied_to", "id": replied_to_tweet_id})
    if references:
        body["referenced_tweets"] = references
    return body


def _time_of(tweet_id: str) -> datetime:
    return datetime.fromtimestamp(((int(tweet_id) >> 22) + TWITTER_EPOCH_MS) / 1000, UTC)


# --------------------------------------------------------------------------- responses


def mentions_page(
    tweets: Sequence[Json],
    users: Iterable[Json] = (),
    *,
    next_token: str | None = None,
    included_tweets: Sequence[Json] = (),
) -> Json:
    """A `GET /2/users/:id/mentions` body; pass tweets newest first, as X sends them."""
    if not tweets:
        return empty_mentions_page()
    body: Json = {"data": list(tweets)}
    includes: Json = {}
    unique_users = list({u["id"]: u for u in users}.values())
    if unique_users:
        includes["users"] = unique_users
    if included_tweets:
        includes["tweets"] = list(included_tweets)
    if includes:
        body["includes"] = includes
    meta: Json = {
        "newest_id": tweets[0]["id"],
        "oldest_id": tweets[-1]["id"],
        "result_count": len(tweets),
    }
    if next_token is not None:
        meta["next_token"] = next_token
    body["meta"] = meta
    return body


def empty_mentions_page() -> Json:
    return {"meta": {"result_count": 0}}


def not_found_error(value: str, parameter: str = "usernames") -> Json:
    what = "usernames" if parameter == "usernames" else parameter
    return {
        "value": value,
        "detail": f"Could not find user with {what}: [{value}].",
        "title": "Not Found Error",
        "resource_type": "user",
        "parameter": parameter,
        "resource_id": value,
        "type": "https://api.twitter.com/2/problems/resource-not-found",
    }


def suspended_error(value: str, parameter: str = "usernames") -> Json:
    return {
        "value": value,
        "detail": f"User has been suspended: [{value}].",
        "title": "Forbidden",
        "resource_type": "user",
        "parameter": parameter,
        "resource_id": value,
        "type": "https://api.twitter.com/2/problems/resource-not-found",
    }


def users_by(
    found: Iterable[Json], not_found: Iterable[str] = (), suspended: Iterable[str] = ()
) -> Json:
    """A `GET /2/users/by` body: 200 even when some (or all) names are unknown."""
    body: Json = {}
    data = list(found)
    if data:
        body["data"] = data
    errors = [not_found_error(n) for n in not_found] + [suspended_error(n) for n in suspended]
    if errors:
        body["errors"] = errors
    return body


def user_lookup(found: Json | None, user_id: str = "") -> Json:
    """A `GET /2/users/:id` or `/2/users/me` body; None gives X's 200-with-errors answer."""
    if found is not None:
        return {"data": found}
    return {"errors": [not_found_error(user_id, parameter="id")]}


def created_tweet(tweet_id: str, text: str) -> Json:
    return {"data": {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}}


def created_dm(dm_event_id: str, participant_id: str, bot_user_id: str) -> Json:
    return {
        "data": {
            "dm_conversation_id": f"{participant_id}-{bot_user_id}",
            "dm_event_id": dm_event_id,
        }
    }


def problem(status: int, title: str, detail: str | None = None, type: str = "about:blank") -> Json:
    body: Json = {"title": title, "type": type, "status": status}
    if detail is not None:
        body["detail"] = detail
    return body


def duplicate_content() -> Json:
    return problem(
        403, "Forbidden", "You are not allowed to create a Tweet with duplicate content."
    )


def too_many_requests() -> Json:
    return problem(429, "Too Many Requests", "Too Many Requests")


def unauthorized() -> Json:
    return problem(401, "Unauthorized", "Unauthorized")


def service_unavailable() -> Json:
    return problem(503, "Service Unavailable", "Service Unavailable")


# --------------------------------------------------------------------------- URLs


def mentions_url(user_id: str, base_url: str = API) -> str:
    return f"{base_url.rstrip('/')}/2/users/{user_id}/mentions"


def users_by_url(base_url: str = API) -> str:
    return f"{base_url.rstrip('/')}/2/users/by"


def user_url(user_id: str, base_url: str = API) -> str:
    return f"{base_url.rstrip('/')}/2/users/{user_id}"


def me_url(base_url: str = API) -> str:
    return f"{base_url.rstrip('/')}/2/users/me"


def tweets_url(base_url: str = API) -> str:
    return f"{base_url.rstrip('/')}/2/tweets"


def dm_url(participant_id: str, base_url: str = API) -> str:
    return f"{base_url.rstrip('/')}/2/dm_conversations/with/{participant_id}/messages"


# --------------------------------------------------------------------------- a small world


class Timeline:
    """Users and mention tweets with consistent ids, times and includes.

    Tweet ids are snowflakes of their creation time, one minute apart by default, so that
    "newer" means "larger id" exactly as on X.
    """

    def __init__(self, start: datetime | None = None, step: timedelta = timedelta(minutes=1)):
        self.now = start or datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
        self.step = step
        self.users: dict[str, Json] = {}  # casefolded username -> user object
        self._user_ids = itertools.count(1001)
        self._sequence = itertools.count(1)

    def user(self, username: str, user_id: str | None = None, *, protected: bool = False) -> Json:
        found = user(user_id or str(next(self._user_ids)), username, protected=protected)
        self.users[username.casefold()] = found
        return found

    def _user(self, who: Json | str) -> Json:
        if isinstance(who, dict):
            return who
        return self.users.get(who.casefold()) or self.user(who)

    def mention(
        self,
        author: Json | str,
        text: str,
        *,
        in_reply_to: Json | str | None = None,
        replied_to_tweet_id: str | None = None,
        retweet: bool = False,
        edit_of: Json | None = None,
        created_at: datetime | None = None,
        prefilled: str | None = None,
        photo: bool = False,
        quote: Json | None = None,
    ) -> Json:
        """A tweet mentioning someone; handles of known users carry their ids.

        `prefilled`: the mentions X put before the author's words in a reply (the tweet
        then carries `display_text_range`, as X sends it). `photo` / `quote` append the
        t.co link X adds for an attached photo or a quoted tweet, with its entity.
        """
        if created_at is None:
            self.now += self.step
            created_at = self.now
        tweet_id = snowflake(created_at, next(self._sequence))
        replied_to = self._user(in_reply_to) if in_reply_to is not None else None
        history = [*edit_of["edit_history_tweet_ids"], tweet_id] if edit_of else None
        shown: tuple[int, int] | None = None
        if prefilled is not None:
            text = prefilled + text
            shown = (len(prefilled), len(text))
        urls: list[Json] = []
        author_name = self._user(author)["username"]
        for kind, target in (("photo", photo), ("quote", quote)):
            if not target:
                continue
            link = f"https://t.co/{kind}{tweet_id[-6:]}"
            if isinstance(target, dict):
                expanded = f"https://twitter.com/someone/status/{target['id']}"
            else:
                expanded = f"https://twitter.com/{author_name}/status/{tweet_id}/photo/1"
            text = f"{text} {link}"
            entity: Json = {"start": len(text) - len(link), "end": len(text), "url": link}
            entity.update({"expanded_url": expanded, "display_url": expanded[8:30] + "…"})
            if kind == "photo":
                entity["media_key"] = f"3_{tweet_id}"
            urls.append(entity)
        if shown is not None and urls:
            shown = (shown[0], urls[0]["start"] - 1)  # X ends the display before the links
        return tweet(
            id=tweet_id,
            text=text,
            display_text_range=shown,
            urls=urls,
            media_keys=[f"3_{tweet_id}"] if photo else (),
            quote_of=quote["id"] if quote else None,
            author_id=self._user(author)["id"],
            created_at=created_at,
            in_reply_to_user_id=replied_to["id"] if replied_to else None,
            replied_to_tweet_id=(replied_to_tweet_id or snowflake(created_at - self.step, 0))
            if replied_to
            else None,
            conversation_id=edit_of["conversation_id"] if edit_of else None,
            edit_history=history,
            retweet_of=snowflake(created_at - self.step, 0) if retweet else None,
            mention_ids={k: u["id"] for k, u in self.users.items()},
        )

    def page(self, tweets: Sequence[Json], *, next_token: str | None = None) -> Json:
        """A mentions body with `tweets` newest first and every user they involve included."""
        ordered = sorted(tweets, key=lambda t: int(t["id"]), reverse=True)
        by_id = {u["id"]: u for u in self.users.values()}
        involved: dict[str, Json] = {}
        for t in ordered:
            for user_id in (t["author_id"], t.get("in_reply_to_user_id")):
                if user_id is not None and user_id in by_id:
                    involved[user_id] = by_id[user_id]
            for entity in t.get("entities", {}).get("mentions", []):
                if entity.get("id") in by_id:
                    involved[entity["id"]] = by_id[entity["id"]]
        return mentions_page(ordered, involved.values(), next_token=next_token)


# --------------------------------------------------------------------------- recorded fixtures


def fixture(name: str) -> list[Json] | None:
    """The recorded interactions of ../shared/fixtures/x-api/<name>.json, or None if absent."""
    path = FIXTURES_DIR / (name if name.endswith(".json") else f"{name}.json")
    if not path.is_file():
        return None
    loaded: list[Json] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def fixture_headers(interaction: Json) -> dict[str, str]:
    """A recorded response's headers, flattened from cassette lists to single values."""
    return {
        name: values[0] if isinstance(values, list) else values
        for name, values in interaction["response"]["headers"].items()
        if name.lower() != "content-type"
    }


def add_fixture(rsps: responses.RequestsMock, name: str, base_url: str = API) -> list[Json] | None:
    """Register every recorded interaction of fixture `name` with `rsps` (query ignored)."""
    interactions = fixture(name)
    if interactions is None:
        return None
    for interaction in interactions:
        uri = interaction["request"]["uri"].split("?", 1)[0]
        rsps.add(
            interaction["request"]["method"],
            uri.replace(API, base_url.rstrip("/"), 1),
            json=interaction["response"]["body"],
            status=interaction["response"]["status"],
            headers=fixture_headers(interaction),
        )
    return interactions


def openapi() -> Json | None:
    if not OPENAPI_PATH.is_file():
        return None
    loaded: Json = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    return loaded


def tweepy_x(bot_user_id: str, clock: Any, *, max_retries: int) -> TweepyXApi:
    """The real `TweepyXApi` with test credentials, never sleeping, on `clock`: for tests
    that fake X at the HTTP boundary with `responses`."""
    return TweepyXApi(
        bot_user_id=bot_user_id,
        bearer_token="app-bearer-token",
        consumer_key="ck",
        consumer_secret="cs",
        access_token=f"{bot_user_id}-at",
        access_token_secret="ats",
        max_retries=max_retries,
        sleep=lambda _s: None,
        clock=clock,
    )
