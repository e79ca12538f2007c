"""The X port: the tweepy adapter against X faked at the HTTP boundary, and the in-memory fake.

`responses` stands in for X at https://api.twitter.com and at a redirected base URL, with
bodies from tests/support/x_payloads.py and the recorded payloads in ../shared/fixtures/x-api.
"""

from __future__ import annotations

import copy
import json
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from bot.platforms import (
    DuplicateContent,
    NotFound,
    PermanentError,
    PlatformError,
    RateLimited,
    TransientError,
    Unauthorized,
)
from bot.platforms.x.api import (
    ENDPOINT_CREATE_TWEET,
    ENDPOINT_MENTIONS,
    ENDPOINT_USERS_BY,
    RateLimit,
    TweepyXApi,
    XApi,
    snowflake_time,
)
from tests.support import x_payloads as xp
from tests.support.fake_x import FakeXApi

BOT_ID = "999"
BEARER = "AAAA-app-bearer-s3cr3t-token"
CONSUMER_KEY = "ck-consumer-key-s3cr3t"
CONSUMER_SECRET = "cs-consumer-secret-s3cr3t"
ACCESS_TOKEN = "999-at-access-token-s3cr3t"
ACCESS_SECRET = "ats-access-secret-s3cr3t"
SECRETS = (BEARER, CONSUMER_KEY, CONSUMER_SECRET, ACCESS_TOKEN, ACCESS_SECRET)
NOW = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
REDIRECT = "http://127.0.0.1:9"


class MaxJitter(random.Random):
    """Always picks the top of the jitter range, so backoff ceilings become visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_api(sleeps: Sleeps, base_url: str = xp.API, **overrides: Any) -> TweepyXApi:
    values: dict[str, Any] = dict(
        bot_user_id=BOT_ID,
        bearer_token=BEARER,
        consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET,
        access_token=ACCESS_TOKEN,
        access_token_secret=ACCESS_SECRET,
        base_url=base_url,
        sleep=sleeps,
        clock=lambda: NOW,
    )
    values.update(overrides)
    return TweepyXApi(**values)


@pytest.fixture
def api(sleeps: Sleeps) -> TweepyXApi:
    return make_api(sleeps)


def query_of(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def one_mention_page() -> dict[str, Any]:
    tl = xp.Timeline()
    tl.user("flattr", BOT_ID)
    tl.user("bob")
    return tl.page([tl.mention("alice", "@flattr @bob €2")])


def _media_and_quote_page() -> dict[str, Any]:
    """Replies with a display range, a photo and a quote: every field the bot reads."""
    tl = xp.Timeline()
    tl.user("flattr", BOT_ID)
    quoted = tl.mention("carol", "my song")
    return tl.page(
        [
            tl.mention("bob", "🙏", in_reply_to="alice", prefilled="@alice @flattr "),
            tl.mention("alice", "@flattr @bob €2", photo=True, in_reply_to="dave", prefilled=""),
            tl.mention("alice", "@flattr @carol €2", quote=quoted),
        ]
    )


# --------------------------------------------------------------------------- mentions


def test_mentions_are_fetched_with_every_field_the_bot_needs_in_one_call(rsps, api):
    rsps.get(xp.mentions_url(BOT_ID), json=one_mention_page(), headers=xp.rate_limit_headers())

    api.mentions(since_id=None)

    assert len(rsps.calls) == 1
    query = query_of(rsps.calls[0])
    assert query["expansions"] == [
        "author_id,entities.mentions.username,in_reply_to_user_id,referenced_tweets.id"
    ]
    assert query["tweet.fields"] == [
        "author_id,created_at,entities,in_reply_to_user_id,referenced_tweets,"
        "edit_history_tweet_ids,conversation_id,display_text_range,attachments"
    ]
    assert query["user.fields"] == ["username,name,protected"]
    assert query["max_results"] == ["100"]
    assert "since_id" not in query and "pagination_token" not in query
    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {BEARER}"


def test_a_reply_carries_where_the_authors_own_words_start(rsps, api):
    tl = xp.Timeline()
    tl.user("flattr", BOT_ID)
    chatter = tl.mention("bob", "🙏", in_reply_to="alice", prefilled="@alice @flattr ")
    plain = tl.mention("alice", "@flattr @bob €2")
    rsps.get(xp.mentions_url(BOT_ID), json=tl.page([chatter, plain]))

    by_text = {m.text: m for m in api.mentions(since_id=None).mentions}

    assert by_text["@alice @flattr 🙏"].display_range == (15, 16)
    assert by_text["@flattr @bob €2"].display_range is None  # X left it out: the fallback


def test_the_links_of_a_tweets_own_photo_and_quote_are_its_attachments(rsps, api):
    tl = xp.Timeline()
    tl.user("flattr", BOT_ID)
    quoted = tl.mention("carol", "my song")
    photo = tl.mention("alice", "@flattr @bob €2", photo=True)
    quote = tl.mention("alice", "@flattr @carol €2", quote=quoted)
    other = tl.mention("alice", "@flattr @bob €2 https://t.co/elsewhere")
    other["entities"]["urls"] = [
        {"start": 16, "end": 38, "url": "https://t.co/elsewhere", "expanded_url": "https://a.b/"}
    ]
    rsps.get(xp.mentions_url(BOT_ID), json=tl.page([photo, quote, other]))

    got = {m.id: m.attachment_urls for m in api.mentions(since_id=None).mentions}

    assert got[photo["id"]] == {photo["entities"]["urls"][0]["url"]}
    assert got[quote["id"]] == {quote["entities"]["urls"][0]["url"]}
    assert got[other["id"]] == frozenset()


@pytest.mark.parametrize("bad", [[3], [5, 2], ["0", 4], "0,4", [-1, 3]])
def test_a_display_range_that_is_not_start_and_end_is_a_malformed_answer(rsps, api, bad):
    body = one_mention_page()
    body["data"][0]["display_text_range"] = bad
    rsps.get(xp.mentions_url(BOT_ID), json=body)

    with pytest.raises(TransientError, match="display_text_range"):
        api.mentions(since_id=None)


def test_recent_search_asks_for_the_bots_mentions_since_the_cursor(rsps, sleeps):
    api = make_api(sleeps, bot_handle="flattr")
    search = f"{xp.API}/2/tweets/search/recent"
    rsps.get(search, json=one_mention_page(), headers=xp.rate_limit_headers())

    page = api.search_mentions(since_id="100", until_id="900", pagination_token="t2")

    query = query_of(rsps.calls[0])
    assert query["query"] == ["@flattr -is:retweet"]
    assert (query["since_id"], query["until_id"], query["next_token"]) == (["100"], ["900"], ["t2"])
    assert "display_text_range" in query["tweet.fields"][0]
    assert [m.text for m in page.mentions] == ["@flattr @bob €2"]
    assert api.mentions_window == 800 and api.search_reach == timedelta(days=7)
    assert "GET /2/tweets/search/recent" in api.rate_limits


def test_since_id_is_passed_to_x(rsps, api):
    rsps.get(xp.mentions_url(BOT_ID), json=xp.empty_mentions_page())

    api.mentions(since_id="1578516107798884353")

    assert query_of(rsps.calls[0])["since_id"] == ["1578516107798884353"]


def test_the_pagination_token_is_passed_through_and_the_next_one_returned(rsps, api):
    body = one_mention_page()
    body["meta"]["next_token"] = "7140dibdnow9c7btw423i3sy3u5zupmkcpofxcsmxj48j"
    rsps.get(xp.mentions_url(BOT_ID), json=body)

    page = api.mentions(since_id="1", pagination_token="b26v89c19zqg8o3fpzbn1e0ffhxjiofzw6po1")

    assert query_of(rsps.calls[0])["pagination_token"] == ["b26v89c19zqg8o3fpzbn1e0ffhxjiofzw6po1"]
    assert page.next_token == "7140dibdnow9c7btw423i3sy3u5zupmkcpofxcsmxj48j"


@pytest.mark.parametrize(("asked", "sent"), [(500, "100"), (1, "5"), (20, "20")])
def test_page_size_is_kept_within_what_x_accepts(rsps, api, asked, sent):
    rsps.get(xp.mentions_url(BOT_ID), json=xp.empty_mentions_page())

    api.mentions(since_id=None, max_results=asked)

    assert query_of(rsps.calls[0])["max_results"] == [sent]


def test_a_mention_is_read_with_its_author_reply_target_recipients_and_utc_time(rsps, api):
    tl = xp.Timeline()
    tl.user("flattr", BOT_ID)
    carol = tl.user("Carol")
    bob = tl.user("bob")
    tip = tl.mention(
        "alice",
        "@Carol @FLATTR @bob €0.50",
        in_reply_to=carol,
        created_at=datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
    )
    rsps.get(xp.mentions_url(BOT_ID), json=tl.page([tip]))

    page = api.mentions(since_id=None)

    (mention,) = page.mentions
    assert mention.id == tip["id"] == mention.original_id == page.newest_id
    assert mention.text == "@Carol @FLATTR @bob €0.50"
    assert mention.author_handle == "alice"
    assert mention.author_id == tl.users["alice"]["id"]
    assert mention.in_reply_to_user_id == carol["id"]
    assert mention.in_reply_to_handle == "Carol"
    assert mention.mentioned_ids == {"carol": carol["id"], "flattr": BOT_ID, "bob": bob["id"]}
    assert mention.created_at == datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)
    assert mention.created_at.utcoffset() == timedelta(0)
    assert mention.is_repost is False and mention.is_edit is False
    assert mention.conversation_id == tip["conversation_id"]
    assert page.users[carol["id"]].handle == "Carol"


def test_mentions_come_back_newest_first_as_x_sends_them(rsps, api):
    tl = xp.Timeline()
    older, newer = tl.mention("alice", "@flattr @bob"), tl.mention("dan", "@flattr @bob €1")
    rsps.get(xp.mentions_url(BOT_ID), json=tl.page([older, newer]))

    page = api.mentions(since_id=None)

    assert [m.id for m in page.mentions] == [newer["id"], older["id"]]
    assert page.newest_id == newer["id"]


def test_a_retweet_is_flagged_as_one(rsps, api):
    tl = xp.Timeline()
    rt = tl.mention("alice", "RT @dan: @flattr @bob €2", retweet=True)
    rsps.get(xp.mentions_url(BOT_ID), json=tl.page([rt]))

    assert api.mentions(since_id=None).mentions[0].is_repost is True


def test_an_edited_tweet_keeps_the_id_of_its_first_version(rsps, api):
    tl = xp.Timeline()
    first = tl.mention("alice", "@flattr @bob €2")
    edited = tl.mention("alice", "@flattr @bob €3", edit_of=first)
    rsps.get(xp.mentions_url(BOT_ID), json=tl.page([edited]))

    (mention,) = api.mentions(since_id=None).mentions

    assert mention.id == edited["id"] != first["id"]
    assert mention.original_id == first["id"]
    assert mention.is_edit


def test_a_mention_without_an_entity_id_takes_the_id_from_the_included_users(rsps, api):
    tl = xp.Timeline()
    bob = tl.user("bob")
    body = tl.page([tl.mention("alice", "@flattr @Bob @ghost")])
    for entity in body["data"][0]["entities"]["mentions"]:
        entity.pop("id", None)

    rsps.get(xp.mentions_url(BOT_ID), json=body)

    (mention,) = api.mentions(since_id=None).mentions

    assert mention.mentioned_ids == {"bob": bob["id"]}


def test_a_mention_without_created_at_is_dated_by_its_snowflake_id(rsps, api):
    tl = xp.Timeline()
    body = tl.page([tl.mention("alice", "@flattr @bob")])
    del body["data"][0]["created_at"]
    rsps.get(xp.mentions_url(BOT_ID), json=body)

    (mention,) = api.mentions(since_id=None).mentions

    assert mention.created_at == datetime(2024, 3, 1, 12, 1, tzinfo=UTC)


def test_an_empty_page_has_no_mentions_and_no_cursor(rsps, api):
    rsps.get(xp.mentions_url(BOT_ID), json=xp.empty_mentions_page())

    page = api.mentions(since_id="5")

    assert page.mentions == () and page.newest_id is None and page.next_token is None


def test_the_recorded_mentions_page_is_read(rsps, api):
    recorded = xp.fixture("test_client_get_users_mentions")
    if recorded is None:
        pytest.skip("shared fixtures are absent")
    body = copy.deepcopy(recorded[0]["response"]["body"])
    for n, tweet in enumerate(body["data"]):
        tweet["author_id"] = str(2000 + n)  # recorded without tweet.fields; X adds it when asked
    rsps.get(xp.mentions_url(BOT_ID), json=body, headers=xp.fixture_headers(recorded[0]))

    page = api.mentions(since_id=None)

    assert len(page.mentions) == 10
    assert page.newest_id == "1578516295611748353"
    assert page.next_token == "7140dibdnow9c7btw423i3sy3u5zupmkcpofxcsmxj48j"
    assert page.mentions[3].text == "@MercyKnifed @Twitter what the fuck???"
    assert page.mentions[0].created_at.date() == datetime(2022, 10, 7).date()
    assert api.rate_limits[ENDPOINT_MENTIONS] == RateLimit(
        450, 448, datetime.fromtimestamp(1665183228, UTC)
    )


def test_a_snowflake_id_tells_when_the_tweet_was_made():
    recorded = xp.fixture("test_client_search_recent_tweets")
    if recorded is None:
        pytest.skip("shared fixtures are absent")
    for tweet in recorded[0]["response"]["body"]["data"]:
        said = datetime.fromisoformat(tweet["text"].removesuffix(" tweepy")).replace(tzinfo=UTC)
        assert abs(snowflake_time(tweet["id"]) - said) < timedelta(seconds=1)


# --------------------------------------------------------------------------- user lookups


def test_looking_up_150_names_takes_two_calls_and_unknown_names_are_absent(rsps, api):
    names = [f"user{n}" for n in range(150)]
    unknown = {"user7", "user120"}
    batches = [names[:100], names[100:]]
    for batch in batches:
        found = [xp.user(str(5000 + int(n[4:])), n) for n in batch if n not in unknown]
        rsps.get(
            xp.users_by_url(),
            json=xp.users_by(found, not_found=[n for n in batch if n in unknown]),
            match=[
                responses.matchers.query_param_matcher(
                    {"usernames": ",".join(batch)}, strict_match=False
                )
            ],
        )

    users = api.lookup_users(names)

    assert len(rsps.calls) == 2
    assert len(users) == 148
    assert "user7" not in users and "user120" not in users
    assert users["user149"].user_id == "5149"


def test_lookup_keys_are_casefolded_and_invalid_or_repeated_names_are_not_sent(rsps, api):
    rsps.get(xp.users_by_url(), json=xp.users_by([xp.user("42", "Bob")], not_found=["nobody"]))

    users = api.lookup_users(["@Bob", "bob", "BOB", "nobody", "no-such!", "x" * 16])

    assert query_of(rsps.calls[0])["usernames"] == ["Bob,nobody"]
    assert query_of(rsps.calls[0])["user.fields"] == ["username,name,protected"]
    assert users == {"bob": users["bob"]} and users["bob"].user_id == "42"


def test_looking_up_no_names_asks_nothing(rsps, api):
    assert api.lookup_users([]) == {}
    assert api.lookup_users(["not a handle"]) == {}
    assert len(rsps.calls) == 0


def test_a_lookup_where_every_name_is_unknown_is_empty(rsps, api):
    rsps.get(xp.users_by_url(), json=xp.users_by([], not_found=["ghost"], suspended=["spam"]))

    assert api.lookup_users(["ghost", "spam"]) == {}


def test_the_recorded_user_lookup_is_read(rsps, api):
    if xp.add_fixture(rsps, "test_client_get_users") is None:
        pytest.skip("shared fixtures are absent")

    users = api.lookup_users(["Twitter", "TwitterDev"])

    assert users["twitterdev"].user_id == "2244994945"
    assert users["twitter"].name == "Twitter"
    assert api.rate_limits[ENDPOINT_USERS_BY].remaining == 299


def test_get_user_answers_none_for_an_unknown_or_missing_account(rsps, api):
    rsps.get(xp.user_url("1"), json=xp.user_lookup(None, "1"))
    rsps.get(xp.user_url("2"), status=404, json=xp.problem(404, "Not Found Error"))
    rsps.get(xp.user_url("3"), json=xp.user_lookup(xp.user("3", "carol", protected=True)))

    assert api.get_user("1") is None
    assert api.get_user("2") is None
    carol = api.get_user("3")
    assert carol is not None and carol.handle == "carol" and carol.protected


def test_ids_that_are_not_numbers_never_reach_a_url(api, rsps):
    with pytest.raises(ValueError):
        api.get_user("../tweets")
    with pytest.raises(ValueError):
        api.reply("hi", "1/../2")
    assert len(rsps.calls) == 0


# --------------------------------------------------------------------------- rate limits


def test_a_429_raises_rate_limited_at_once_with_the_reset_time(rsps, api, sleeps):
    rsps.get(
        xp.mentions_url(BOT_ID),
        status=429,
        json=xp.too_many_requests(),
        headers=xp.rate_limit_headers(450, 0, 1_709_296_200),
    )

    with pytest.raises(RateLimited) as raised:
        api.mentions(since_id=None)

    assert raised.value.reset_at == datetime.fromtimestamp(1_709_296_200, UTC)
    assert len(rsps.calls) == 1
    assert sleeps == []


def test_a_429_on_a_post_waits_for_the_exhausted_24_hour_cap(rsps, api):
    headers = xp.rate_limit_headers(100, 57, 1_709_296_200)
    headers.update(
        {"x-user-limit-24hour-remaining": "0", "x-user-limit-24hour-reset": "1709380000"}
    )
    rsps.post(xp.tweets_url(), status=429, json=xp.too_many_requests(), headers=headers)

    with pytest.raises(RateLimited) as raised:
        api.reply("You have €2 waiting", "1578516295611748353")

    assert raised.value.reset_at == datetime.fromtimestamp(1_709_380_000, UTC)


def test_a_429_without_headers_waits_a_full_window(rsps, api):
    rsps.get(xp.mentions_url(BOT_ID), status=429, json=xp.too_many_requests())

    with pytest.raises(RateLimited) as raised:
        api.mentions(since_id=None)

    assert raised.value.reset_at == NOW + timedelta(minutes=15)


def test_rate_limit_headers_are_kept_per_endpoint(rsps, api):
    reset = NOW + timedelta(minutes=10)
    rsps.get(
        xp.mentions_url(BOT_ID),
        json=one_mention_page(),
        headers=xp.rate_limit_headers(450, 448, reset),
    )
    rsps.post(
        xp.tweets_url(),
        status=201,
        json=xp.created_tweet("7", "hi"),
        headers=xp.rate_limit_headers(100, 99, reset),
    )

    api.mentions(since_id=None)
    api.reply("hi", "5")

    assert api.rate_limits[ENDPOINT_MENTIONS] == RateLimit(450, 448, reset)
    assert api.rate_limits[ENDPOINT_CREATE_TWEET] == RateLimit(100, 99, reset)


def test_an_exhausted_window_is_honoured_without_asking_x_again(rsps, api):
    reset = NOW + timedelta(minutes=3)
    rsps.get(
        xp.mentions_url(BOT_ID),
        json=one_mention_page(),
        headers=xp.rate_limit_headers(450, 0, reset),
    )
    api.mentions(since_id=None)

    with pytest.raises(RateLimited) as raised:
        api.mentions(since_id=None)

    assert raised.value.reset_at == reset
    assert len(rsps.calls) == 1


# --------------------------------------------------------------------------- faults


def test_a_503_is_retried_after_a_jittered_pause_and_then_succeeds(rsps, api, sleeps):
    rsps.get(xp.mentions_url(BOT_ID), status=503, json=xp.service_unavailable())
    rsps.get(xp.mentions_url(BOT_ID), json=one_mention_page())

    page = api.mentions(since_id=None)

    assert len(page.mentions) == 1
    assert len(rsps.calls) == 2
    assert len(sleeps) == 1 and 0.0 <= sleeps[0] <= 0.5


def test_backoff_doubles_up_to_the_retry_limit_then_gives_a_transient_error(rsps, sleeps):
    api = make_api(sleeps, max_retries=3, backoff=0.5, rng=MaxJitter())
    rsps.get(xp.mentions_url(BOT_ID), status=500, json=xp.problem(500, "Internal Server Error"))

    with pytest.raises(TransientError):
        api.mentions(since_id=None)

    assert len(rsps.calls) == 4
    assert sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(
    "failure",
    [
        requests.exceptions.ConnectTimeout("connect timed out"),
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ConnectionError("connection refused"),
    ],
)
def test_timeouts_and_connection_errors_are_retried_then_become_transient(
    rsps, api, sleeps, failure
):
    rsps.get(xp.mentions_url(BOT_ID), body=failure)

    with pytest.raises(TransientError):
        api.mentions(since_id=None)

    assert len(rsps.calls) == 4
    assert len(sleeps) == 3


def test_every_request_carries_the_configured_timeout(rsps, sleeps):
    api = make_api(sleeps, timeout=2.5)
    rsps.get(xp.mentions_url(BOT_ID), json=xp.empty_mentions_page())

    api.mentions(since_id=None)

    assert rsps.calls[0].request.req_kwargs["timeout"] == 2.5


@pytest.mark.parametrize(
    "body",
    [
        "<html>502 Bad Gateway</html>",
        json.dumps(["not", "an", "object"]),
        json.dumps({"data": "nonsense"}),
        json.dumps({"data": [{"id": "1", "text": "no author"}]}),
        json.dumps({"data": [{"id": "1", "text": "x", "author_id": "2", "created_at": "soon"}]}),
    ],
)
def test_a_malformed_body_is_a_transient_error_and_is_not_retried(rsps, api, body):
    rsps.get(xp.mentions_url(BOT_ID), body=body, content_type="application/json")

    with pytest.raises(TransientError):
        api.mentions(since_id=None)

    assert len(rsps.calls) == 1


def test_a_malformed_error_body_is_a_transient_error(rsps, api):
    rsps.get(xp.mentions_url(BOT_ID), status=400, body='"oops"', content_type="application/json")

    with pytest.raises(TransientError):
        api.mentions(since_id=None)


def test_duplicate_content_is_permanent_and_not_retried(rsps, api, sleeps):
    rsps.post(xp.tweets_url(), status=403, json=xp.duplicate_content())

    with pytest.raises(DuplicateContent) as raised:
        api.reply("You have €2 waiting", "1578516295611748353")

    assert "duplicate content" in raised.value.reason
    assert len(rsps.calls) == 1 and sleeps == []


def test_an_expired_token_is_unauthorized(rsps, api):
    rsps.get(xp.mentions_url(BOT_ID), status=401, json=xp.unauthorized())

    with pytest.raises(Unauthorized):
        api.mentions(since_id=None)


def test_other_refusals_are_permanent_with_the_reason_x_gave(rsps, api, sleeps):
    detail = "You cannot send messages to users who are not following you."
    rsps.post(xp.dm_url("42"), status=403, json=xp.problem(403, "Forbidden", detail))
    rsps.post(xp.tweets_url(), status=404, json=xp.problem(404, "Not Found Error"))

    with pytest.raises(PermanentError) as raised:
        api.send_dm("42", "hello")
    assert raised.value.reason == detail
    assert not isinstance(raised.value, DuplicateContent)
    with pytest.raises(NotFound):
        api.reply("hello", "5")
    assert sleeps == []


# --------------------------------------------------------------------------- me, reply, DMs


def test_me_asks_with_the_users_own_token_as_bearer(rsps, api):
    rsps.get(xp.me_url(), json=xp.user_lookup(xp.user("1072250532645998596", "TweepyDev")))

    me = api.me("user-oauth2-token")

    assert me.user_id == "1072250532645998596" and me.handle == "TweepyDev"
    assert rsps.calls[0].request.headers["Authorization"] == "Bearer user-oauth2-token"
    assert query_of(rsps.calls[0])["user.fields"] == ["username,name,protected"]


def test_the_recorded_users_me_is_read(rsps, api):
    if xp.add_fixture(rsps, "test_client_get_me") is None:
        pytest.skip("shared fixtures are absent")

    assert api.me("user-oauth2-token").name == "Tweepy Testing"


def test_me_with_a_revoked_token_is_unauthorized(rsps, api):
    rsps.get(xp.me_url(), status=401, json=xp.unauthorized())

    with pytest.raises(Unauthorized):
        api.me("revoked-token")


def test_a_reply_posts_text_in_the_thread_as_the_bot(rsps, api):
    rsps.post(xp.tweets_url(), status=201, json=xp.created_tweet("1456012973835788293", "hi"))

    tweet_id = api.reply("@bob you have €2 waiting", "1578516295611748353")

    assert tweet_id == "1456012973835788293"
    request = rsps.calls[0].request
    assert json.loads(request.body) == {
        "text": "@bob you have €2 waiting",
        "reply": {"in_reply_to_tweet_id": "1578516295611748353"},
    }
    assert request.headers["Authorization"].startswith("OAuth ")


def test_the_recorded_tweet_creation_is_read(rsps, api):
    if xp.add_fixture(rsps, "test_client_create_and_delete_tweet") is None:
        pytest.skip("shared fixtures are absent")

    assert api.reply("Test Tweet", "1") == "1456012973835788293"
    assert api.rate_limits[ENDPOINT_CREATE_TWEET].limit == 200


def test_a_reply_without_the_bots_credentials_is_refused_without_a_request(rsps, sleeps):
    api = make_api(sleeps, consumer_key="", access_token_secret="")

    with pytest.raises(Unauthorized):
        api.reply("hello", "5")
    assert len(rsps.calls) == 0


def test_a_direct_message_goes_to_the_participant(rsps, api):
    if xp.add_fixture(rsps, "test_manage_and_lookup_direct_messages") is None:
        rsps.post(
            xp.dm_url("750362064426721281"),
            status=201,
            json=xp.created_dm("1585800613253812228", "750362064426721281", BOT_ID),
        )

    event_id = api.send_dm("750362064426721281", "Testing 1")

    assert event_id == "1585800613253812228"
    assert json.loads(rsps.calls[0].request.body) == {"text": "Testing 1"}


# --------------------------------------------------------------------------- base URL


def test_a_redirected_base_url_receives_every_call_and_x_none(rsps, sleeps):
    api = make_api(sleeps, base_url=REDIRECT + "/")
    rsps.get(xp.mentions_url(BOT_ID, REDIRECT), json=one_mention_page())
    rsps.get(xp.users_by_url(REDIRECT), json=xp.users_by([xp.user("42", "bob")]))
    rsps.get(xp.me_url(REDIRECT), json=xp.user_lookup(xp.user("42", "bob")))
    rsps.post(xp.tweets_url(REDIRECT), status=201, json=xp.created_tweet("7", "hi"))

    api.mentions(since_id="3")
    api.lookup_users(["bob"])
    api.me("user-token")
    api.reply("hi", "5")

    urls = [call.request.url for call in rsps.calls]
    assert len(urls) == 4
    assert all(url.startswith(REDIRECT + "/2/") for url in urls), urls
    assert "since_id=3" in urls[0]


def test_a_base_url_with_a_path_keeps_its_prefix(rsps, sleeps):
    api = make_api(sleeps, base_url=REDIRECT + "/x-sandbox")
    rsps.get(REDIRECT + "/x-sandbox/2/users/by", json=xp.users_by([xp.user("42", "bob")]))

    assert api.lookup_users(["bob"])["bob"].user_id == "42"
    assert rsps.calls[0].request.url.startswith(REDIRECT + "/x-sandbox/2/users/by?")


def test_the_default_base_url_mounts_no_adapter(api):
    from bot.platforms.x.api import BaseUrlAdapter

    session = api._session
    assert not any(isinstance(a, BaseUrlAdapter) for a in session.adapters.values())


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("status", "method"),
    [(401, "mentions"), (403, "reply"), (429, "mentions"), (500, "mentions"), (None, "mentions")],
)
def test_secrets_never_appear_in_errors(rsps, api, status, method):
    echo = f"Bearer {BEARER} with {CONSUMER_KEY}/{ACCESS_TOKEN} rejected"
    url = xp.tweets_url() if method == "reply" else xp.mentions_url(BOT_ID)
    if status is None:
        rsps.add("GET", url, body=requests.exceptions.ConnectionError(f"refused {BEARER}"))
    else:
        rsps.add(
            "POST" if method == "reply" else "GET",
            url,
            status=status,
            json=xp.problem(status, "Nope", echo),
        )

    with pytest.raises(PlatformError) as raised:
        if method == "reply":
            api.reply("hi", "5")
        else:
            api.mentions(since_id=None)

    for text in (str(raised.value), repr(raised.value), getattr(raised.value, "reason", "")):
        assert not any(secret in text for secret in SECRETS), text


def test_secrets_never_appear_in_debug_logs(rsps, api, caplog):
    rsps.get(xp.mentions_url(BOT_ID), json=xp.empty_mentions_page())
    rsps.post(xp.tweets_url(), status=201, json=xp.created_tweet("7", "hi"))
    rsps.get(xp.me_url(), json=xp.user_lookup(xp.user("42", "bob")))

    with caplog.at_level(logging.DEBUG):
        api.mentions(since_id=None)
        api.reply("hi", "5")
        api.me("user-oauth2-token-s3cr3t")

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Bearer ***" in logged
    assert not any(secret in logged for secret in (*SECRETS, "user-oauth2-token-s3cr3t"))


def test_the_client_repr_shows_no_secret(api):
    assert not any(secret in repr(api) for secret in SECRETS)


# --------------------------------------------------------------------------- payload shapes


@pytest.mark.parametrize(
    ("schema", "body"),
    [
        ("Get2UsersIdMentionsResponse", one_mention_page()),
        ("Get2TweetsSearchRecentResponse", one_mention_page()),
        ("Get2UsersIdMentionsResponse", _media_and_quote_page()),
        ("Get2UsersByResponse", xp.users_by([xp.user("42", "bob")], not_found=["ghost"])),
        ("TweetCreateResponse", xp.created_tweet("7", "hi")),
        ("CreateDmEventResponse", xp.created_dm("8", "42", BOT_ID)),
    ],
)
def test_payload_builders_have_the_shapes_of_x_s_own_schema(schema, body):
    jsonschema = pytest.importorskip("jsonschema")
    document = _openapi()
    if document is None:
        pytest.skip("shared OpenAPI document is absent")
    wrapper = {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
    jsonschema.validate(body, wrapper)


_OPENAPI_CACHE: list[dict[str, Any] | None] = []


def _openapi() -> dict[str, Any] | None:
    if not _OPENAPI_CACHE:
        _OPENAPI_CACHE.append(xp.openapi())
    return _OPENAPI_CACHE[0]


# --------------------------------------------------------------------------- the fake


def test_the_fake_and_the_adapter_both_implement_the_port(api):
    assert isinstance(FakeXApi(), XApi)
    assert isinstance(api, XApi)


def test_the_fake_pages_mentions_newest_first_after_since_id():
    x = FakeXApi()
    mentions = [
        x.add_mention("alice", f"@flattr @bob #{n}", created_at=NOW + timedelta(minutes=n))
        for n in range(12)
    ]

    first = x.mentions(since_id=mentions[0].id, max_results=5)
    second = x.mentions(since_id=mentions[0].id, pagination_token=first.next_token, max_results=5)
    third = x.mentions(since_id=mentions[0].id, pagination_token=second.next_token, max_results=5)

    seen = [m.id for page in (first, second, third) for m in page.mentions]
    assert seen == [m.id for m in reversed(mentions[1:])]
    assert first.newest_id == mentions[-1].id
    assert third.next_token is None
    assert x.mentions(since_id=mentions[-1].id).mentions == ()


def test_the_fake_fills_mentioned_ids_from_known_users_only():
    x = FakeXApi()
    bob = x.add_user("Bob")
    carol = x.add_user("carol")

    mention = x.add_mention("alice", "@flattr @BOB @ghost", in_reply_to_user=carol)

    assert mention.mentioned_ids == {"flattr": x.bot.user_id, "bob": bob.user_id}
    assert mention.in_reply_to_handle == "carol" and mention.author_handle == "alice"
    assert x.mentions(since_id=None).users[bob.user_id] == bob


def test_the_fake_keeps_the_original_id_of_an_edit_and_flags_retweets():
    x = FakeXApi()
    first = x.add_mention("alice", "@flattr @bob €2")
    edit = x.add_mention("alice", "@flattr @bob €3", edit_of=first)
    rt = x.add_mention("dan", "RT @alice: @flattr @bob €3", retweet=True)

    assert edit.original_id == first.id != edit.id
    assert rt.is_repost and not edit.is_repost


def test_the_fake_lookup_ignores_case_and_leaves_unknown_names_out():
    x = FakeXApi()
    bob = x.add_user("Bob")

    assert x.lookup_users(["bob", "@BOB", "ghost"]) == {"bob": bob}
    assert x.calls_to("lookup_users") == [(("bob", "@BOB", "ghost"),)]


def test_the_fake_keeps_a_renamed_account_and_gives_a_recycled_handle_a_new_id():
    x = FakeXApi()
    old = x.add_user("bob")
    x.rename_user("bob", "robert")
    newcomer = x.add_user("bob")

    assert x.lookup_users(["robert"])["robert"].user_id == old.user_id
    assert x.lookup_users(["bob"])["bob"].user_id == newcomer.user_id != old.user_id


def test_the_fake_records_replies_and_refuses_a_repeated_text():
    x = FakeXApi()
    tweet_id = x.reply("@bob you have €2 waiting", "1")

    with pytest.raises(DuplicateContent):
        x.reply("@bob you have €2 waiting", "2")

    assert x.posted == [("@bob you have €2 waiting", "1")]
    assert x.posted_ids == [tweet_id]


def test_the_fake_fails_a_call_once_when_told():
    x = FakeXApi()
    x.fail_next("mentions", RateLimited(NOW))

    with pytest.raises(RateLimited):
        x.mentions(since_id=None)
    assert x.mentions(since_id=None).mentions == ()
    with pytest.raises(ValueError):
        x.fail_next("delete_everything", RuntimeError())


def test_the_fake_answers_me_only_for_a_known_token():
    x = FakeXApi()
    x.add_token("good-token", "bob")

    assert x.me("good-token").handle == "bob"
    with pytest.raises(Unauthorized):
        x.me("bad-token")


def test_the_fake_reaches_only_the_800_newest_mentions():
    x = FakeXApi()
    for n in range(805):
        x.add_mention("alice", "@flattr @bob", created_at=NOW + timedelta(seconds=n))

    total, token = 0, None
    while True:
        page = x.mentions(since_id=None, pagination_token=token)
        total += len(page.mentions)
        token = page.next_token
        if token is None:
            break
    assert total == 800


def test_the_fake_reads_like_the_adapter_for_the_same_mention(rsps, api):
    x = FakeXApi(bot_user_id=BOT_ID)
    tl = xp.Timeline()
    tl.user("flattr", BOT_ID)
    for name in ("carol", "bob", "alice"):
        fake_user = x.add_user(name)
        tl.user(name, fake_user.user_id)
    when = datetime(2024, 3, 5, 8, 0, tzinfo=UTC)
    text = "@carol @flattr @bob €1"
    faked = x.add_mention("alice", text, in_reply_to_user="carol", created_at=when)
    rsps.get(
        xp.mentions_url(BOT_ID),
        json=tl.page([tl.mention("alice", text, in_reply_to="carol", created_at=when)]),
    )

    real = api.mentions(since_id=None).mentions[0]

    def comparable(m: Any) -> dict[str, Any]:
        return {
            k: v for k, v in vars(m).items() if k not in ("id", "original_id", "conversation_id")
        }

    assert comparable(real) == comparable(faked)


def test_the_fake_reports_the_rate_limits_it_was_given():
    x = FakeXApi()
    x.set_rate_limit(ENDPOINT_MENTIONS, 450, 0, NOW)

    assert x.rate_limits[ENDPOINT_MENTIONS].remaining == 0
    assert x.rate_limits[ENDPOINT_MENTIONS].exhausted(NOW - timedelta(seconds=1))
