"""The loopback sandbox behaves like the parts of the X API tipjar talks to.

Each test starts its own sandbox on 127.0.0.1 (any free port) with a manual clock and
talks to it over real HTTP, as the bot does.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import tweepy
from requests.adapters import HTTPAdapter

from bot.platforms.x.sandbox import ManualClock, Sandbox, find_mentions

START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
CALLBACK = "http://127.0.0.1:5000/oauth/callback"
MENTION_FIELDS = (
    "author_id,created_at,entities,in_reply_to_user_id,referenced_tweets,"
    "edit_history_tweet_ids,conversation_id"
)
MENTION_EXPANSIONS = "author_id,entities.mentions.username,in_reply_to_user_id,referenced_tweets.id"


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sandbox(manual_clock: ManualClock) -> Iterator[Sandbox]:
    with Sandbox(clock=manual_clock) as running:
        running.world.add_user("alice", name="Alice")
        running.world.add_user("bob", name="Bob")
        yield running


def mentions(sandbox: Sandbox, api: requests.Session, **params: Any) -> dict[str, Any]:
    response = api.get(f"{sandbox.base_url}/2/users/{sandbox.bot_user.id}/mentions", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def post(sandbox: Sandbox, session: requests.Session, text: str, **reply: str) -> requests.Response:
    payload: dict[str, Any] = {"text": text}
    if reply:
        payload["reply"] = reply
    return session.post(f"{sandbox.base_url}/2/tweets", json=payload)


# -- the mentions timeline ------------------------------------------------------------------


def test_mentions_come_newest_first_with_ids_in_meta(
    sandbox: Sandbox, api: requests.Session
) -> None:
    first = sandbox.world.mention("alice", "@flattr @bob")
    second = sandbox.world.mention("bob", "@flattr help")
    sandbox.world.mention("alice", "a tweet that mentions nobody")
    body = mentions(sandbox, api)
    assert [t["id"] for t in body["data"]] == [second.id, first.id]
    assert body["meta"] == {"result_count": 2, "newest_id": second.id, "oldest_id": first.id}
    assert int(second.id) > int(first.id)


def test_pages_follow_next_token_down_to_the_oldest_mention(
    sandbox: Sandbox, api: requests.Session
) -> None:
    made = [sandbox.world.mention("alice", f"@flattr @bob tip {n}").id for n in range(12)]
    seen, pages, token = [], [], None
    while True:
        params: dict[str, Any] = {"max_results": 5}
        if token:
            params["pagination_token"] = token
        body = mentions(sandbox, api, **params)
        pages.append(body["meta"]["result_count"])
        seen += [t["id"] for t in body["data"]]
        token = body["meta"].get("next_token")
        if token is None:
            break
    assert pages == [5, 5, 2]
    assert seen == list(reversed(made))


def test_since_id_returns_only_newer_mentions(sandbox: Sandbox, api: requests.Session) -> None:
    old = sandbox.world.mention("alice", "@flattr @bob")
    new = sandbox.world.mention("alice", "@flattr @bob again")
    assert [t["id"] for t in mentions(sandbox, api, since_id=old.id)["data"]] == [new.id]
    assert mentions(sandbox, api, since_id=new.id) == {"meta": {"result_count": 0}}


def test_since_id_and_pagination_combine(sandbox: Sandbox, api: requests.Session) -> None:
    old = sandbox.world.mention("alice", "@flattr old")
    newer = [sandbox.world.mention("alice", f"@flattr new {n}").id for n in range(7)]
    first = mentions(sandbox, api, since_id=old.id, max_results=5)
    rest = mentions(
        sandbox, api, since_id=old.id, max_results=5, pagination_token=first["meta"]["next_token"]
    )
    assert [t["id"] for t in first["data"] + rest["data"]] == list(reversed(newer))
    assert "next_token" not in rest["meta"]


def test_only_the_800_newest_mentions_are_reachable(
    sandbox: Sandbox, api: requests.Session
) -> None:
    made = [sandbox.world.mention("alice", f"@flattr number {n}").id for n in range(805)]
    seen: list[str] = []
    token = None
    while True:
        params: dict[str, Any] = {"max_results": 100}
        if token:
            params["pagination_token"] = token
        body = mentions(sandbox, api, **params)
        seen += [t["id"] for t in body["data"]]
        token = body["meta"].get("next_token")
        if token is None:
            break
    assert len(seen) == 800
    assert seen == list(reversed(made))[:800]


def test_max_results_is_ten_by_default_and_must_be_between_5_and_100(
    sandbox: Sandbox, api: requests.Session
) -> None:
    for n in range(11):
        sandbox.world.mention("alice", f"@flattr {n}")
    assert mentions(sandbox, api)["meta"]["result_count"] == 10
    url = f"{sandbox.base_url}/2/users/{sandbox.bot_user.id}/mentions"
    for bad in ("4", "101", "ten"):
        response = api.get(url, params={"max_results": bad})
        assert response.status_code == 400
        assert response.json()["title"] == "Invalid Request"
        assert response.json()["errors"][0]["parameters"] == {"max_results": [bad]}


def test_a_misspelt_field_or_parameter_is_a_400_as_on_the_platform(
    sandbox: Sandbox, api: requests.Session
) -> None:
    url = f"{sandbox.base_url}/2/users/{sandbox.bot_user.id}/mentions"
    assert api.get(url, params={"expansions": "author"}).status_code == 400
    assert api.get(url, params={"tweet.fields": "entity"}).status_code == 400
    assert api.get(url, params={"expansion": "author_id"}).status_code == 400
    assert api.get(url, params={"pagination_token": "not a token!"}).status_code == 400


def test_includes_carry_authors_mentioned_users_and_reply_targets(
    sandbox: Sandbox, api: requests.Session
) -> None:
    world = sandbox.world
    carol = world.add_user("carol", name="Carol")
    art = world.mention(carol, "my drawing")
    reply = world.mention("alice", "@carol @flattr €1", in_reply_to=art.id)
    body = mentions(sandbox, api, expansions=MENTION_EXPANSIONS, **{"tweet.fields": MENTION_FIELDS})
    (tweet,) = body["data"]
    assert tweet["author_id"] == world.user("alice").id
    assert tweet["in_reply_to_user_id"] == carol.id
    assert tweet["conversation_id"] == art.id
    assert tweet["referenced_tweets"] == [{"type": "replied_to", "id": art.id}]
    assert tweet["edit_history_tweet_ids"] == [reply.id]
    assert tweet["entities"]["mentions"] == [
        {"start": 0, "end": 6, "username": "carol", "id": carol.id},
        {"start": 7, "end": 14, "username": "flattr", "id": sandbox.bot_user.id},
    ]
    assert {u["username"] for u in body["includes"]["users"]} == {"alice", "carol", "flattr"}
    assert body["includes"]["tweets"][0]["id"] == art.id


def test_a_reply_displays_only_the_words_after_the_mentions_x_prefilled(
    sandbox: Sandbox, api: requests.Session
) -> None:
    world = sandbox.world
    tip = world.mention("alice", "@flattr @bob €2")
    prefix = world.reply_prefix(tip.id, "bob")
    assert prefix == "@alice @flattr "  # the thread's people, never the replier himself
    thanks = world.mention("bob", prefix + "🙏", in_reply_to=tip.id)
    typed = world.mention("bob", "@alice @flattr @bob €1", in_reply_to=tip.id)
    own = world.mention("bob", "@flattr @alice €1", in_reply_to=tip.id)
    body = mentions(sandbox, api, **{"tweet.fields": "display_text_range"})
    ranges = {t["id"]: t["display_text_range"] for t in body["data"]}
    assert ranges[tip.id] == [0, len(tip.text)]
    assert ranges[thanks.id] == [15, 16]  # code points: the emoji is one
    assert ranges[typed.id] == [15, len(typed.text)]  # "@bob €1" is bob's own typing
    assert ranges[own.id] == [8, len(own.text)]  # "@alice" out of X's order is typed


def test_recent_search_reaches_past_the_800_newest_mentions_for_seven_days(
    sandbox: Sandbox, api: requests.Session, manual_clock: ManualClock
) -> None:
    world = sandbox.world
    old = world.mention("alice", "@flattr a week and more ago")
    manual_clock.advance(timedelta(days=8))
    made = [world.mention("alice", f"@flattr number {n}").id for n in range(805)]
    world.mention("bob", "", retweet_of=made[0])
    url = f"{sandbox.base_url}/2/tweets/search/recent"
    seen: list[str] = []
    params: dict[str, Any] = {"query": "@flattr -is:retweet", "max_results": 100}
    while True:
        response = api.get(url, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [t["id"] for t in body.get("data", [])]
        if "next_token" not in body["meta"]:
            break
        params["next_token"] = body["meta"]["next_token"]
    assert seen == list(reversed(made))  # all 805, no retweet, nothing older than 7 days
    assert old.id not in seen
    assert api.get(url, params={"query": "@flattr", "max_results": 5}).status_code == 400


def test_a_handle_that_names_nobody_has_a_mention_entity_without_id(
    sandbox: Sandbox, api: requests.Session
) -> None:
    sandbox.world.mention("alice", "@flattr @nobody_here 2€")
    body = mentions(
        sandbox, api, expansions="entities.mentions.username", **{"tweet.fields": "entities"}
    )
    assert body["data"][0]["entities"]["mentions"][1] == {
        "start": 8,
        "end": 20,
        "username": "nobody_here",
    }
    assert [u["username"] for u in body["includes"]["users"]] == ["flattr"]


def test_a_retweet_references_the_retweeted_tweet(sandbox: Sandbox, api: requests.Session) -> None:
    tip = sandbox.world.mention("alice", "@flattr @bob")
    retweet = sandbox.world.mention("bob", "", retweet_of=tip.id)
    body = mentions(sandbox, api, **{"tweet.fields": "referenced_tweets"})
    newest = body["data"][0]
    assert newest["id"] == retweet.id
    assert newest["text"] == "RT @alice: @flattr @bob"
    assert newest["referenced_tweets"] == [{"type": "retweeted", "id": tip.id}]


def test_an_edit_has_a_new_id_and_the_whole_history_oldest_first(
    sandbox: Sandbox, api: requests.Session
) -> None:
    first = sandbox.world.mention("alice", "@flattr @bbo")
    edit = sandbox.world.mention("alice", "@flattr @bob", edit_of=first.id)
    body = mentions(sandbox, api)
    by_id = {t["id"]: t for t in body["data"]}
    assert by_id[edit.id]["edit_history_tweet_ids"] == [first.id, edit.id]
    assert by_id[first.id]["edit_history_tweet_ids"] == [first.id, edit.id]
    with pytest.raises(ValueError):
        sandbox.world.mention("bob", "not yours", edit_of=edit.id)


def test_a_renamed_handle_keeps_its_id_and_a_recycled_one_gets_a_new_id(
    sandbox: Sandbox, api: requests.Session
) -> None:
    world = sandbox.world
    bob = world.user("bob")
    before = world.mention("alice", "@flattr @bob")
    world.rename(bob, "bobby")
    newcomer = world.add_user("bob", name="Another Bob")
    after = world.mention("alice", "@flattr @bob")
    body = mentions(sandbox, api, expansions="entities.mentions.username")
    entity_ids = {t["id"]: t["entities"]["mentions"][1]["id"] for t in body["data"]}
    assert entity_ids == {before.id: bob.id, after.id: newcomer.id}
    assert {u["username"] for u in body["includes"]["users"]} >= {"bobby", "bob"}


# -- user lookups ---------------------------------------------------------------------------


def test_a_batched_lookup_returns_the_found_and_lists_the_unknown_with_http_200(
    sandbox: Sandbox, api: requests.Session
) -> None:
    response = api.get(f"{sandbox.base_url}/2/users/by", params={"usernames": "ALICE,ghost,bob"})
    assert response.status_code == 200
    body = response.json()
    assert [u["username"] for u in body["data"]] == ["alice", "bob"]
    assert body["errors"] == [
        {
            "value": "ghost",
            "detail": "Could not find user with usernames: [ghost].",
            "title": "Not Found Error",
            "resource_type": "user",
            "parameter": "usernames",
            "resource_id": "ghost",
            "type": "https://api.twitter.com/2/problems/resource-not-found",
        }
    ]


def test_a_lookup_with_a_malformed_or_too_many_handles_is_a_400(
    sandbox: Sandbox, api: requests.Session
) -> None:
    url = f"{sandbox.base_url}/2/users/by"
    assert api.get(url, params={"usernames": "bob-smith"}).status_code == 400
    assert api.get(url, params={"usernames": ",".join(["bob"] * 101)}).status_code == 400
    assert api.get(url).status_code == 400


def test_single_lookups_by_handle_and_by_id(sandbox: Sandbox, api: requests.Session) -> None:
    bob = sandbox.world.user("bob")
    by_name = api.get(f"{sandbox.base_url}/2/users/by/username/Bob").json()
    by_id = api.get(f"{sandbox.base_url}/2/users/{bob.id}").json()
    assert by_name == by_id == {"data": {"id": bob.id, "name": "Bob", "username": "bob"}}
    missing = api.get(f"{sandbox.base_url}/2/users/by/username/ghost")
    assert missing.status_code == 200
    assert missing.json()["errors"][0]["detail"] == "Could not find user with username: [ghost]."


def test_a_removed_account_no_longer_resolves(sandbox: Sandbox, api: requests.Session) -> None:
    sandbox.world.remove_user("bob")
    body = api.get(f"{sandbox.base_url}/2/users/by", params={"usernames": "bob"}).json()
    assert "data" not in body and body["errors"][0]["value"] == "bob"


def test_requests_without_valid_credentials_get_401(sandbox: Sandbox) -> None:
    url = f"{sandbox.base_url}/2/users/by?usernames=bob"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        response = requests.get(url, headers=headers)
        assert response.status_code == 401
        assert response.json() == {
            "title": "Unauthorized",
            "detail": "Unauthorized",
            "type": "about:blank",
            "status": 401,
        }


# -- posts and DMs --------------------------------------------------------------------------


def test_a_post_is_created_and_recorded_with_its_reply_target(
    sandbox: Sandbox, as_bot: requests.Session
) -> None:
    tip = sandbox.world.mention("alice", "@flattr @bob")
    response = post(sandbox, as_bot, "@bob €2 is waiting for you", in_reply_to_tweet_id=tip.id)
    assert response.status_code == 201
    data = response.json()["data"]
    assert data == {
        "id": data["id"],
        "text": "@bob €2 is waiting for you",
        "edit_history_tweet_ids": [data["id"]],
    }
    (posted,) = sandbox.world.posted
    assert (posted.id, posted.text, posted.in_reply_to) == (data["id"], data["text"], tip.id)
    assert posted.author is sandbox.bot_user
    assert posted.in_reply_to_user_id == sandbox.world.user("alice").id
    assert not posted.has_link


def test_the_same_text_twice_is_refused_as_duplicate_content(
    sandbox: Sandbox, as_bot: requests.Session
) -> None:
    tip = sandbox.world.mention("alice", "@flattr @bob")
    other = sandbox.world.mention("alice", "@flattr @bob again")
    assert post(sandbox, as_bot, "@bob money waits", in_reply_to_tweet_id=tip.id).ok
    again = post(sandbox, as_bot, "@bob money waits", in_reply_to_tweet_id=other.id)
    assert again.status_code == 403
    assert again.json() == {
        "detail": "You are not allowed to create a Tweet with duplicate content.",
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
    }
    assert len(sandbox.world.posted) == 1


def test_a_reply_to_a_deleted_tweet_is_refused(sandbox: Sandbox, as_bot: requests.Session) -> None:
    tip = sandbox.world.mention("alice", "@flattr @bob")
    sandbox.world.delete_tweet(tip.id)
    response = post(sandbox, as_bot, "@alice hello", in_reply_to_tweet_id=tip.id)
    assert response.status_code == 403
    assert "deleted or not visible" in response.json()["detail"]


def test_a_post_over_280_weighted_characters_is_refused(
    sandbox: Sandbox, as_bot: requests.Session
) -> None:
    assert post(sandbox, as_bot, "x" * 281).status_code == 403
    link = "https://example.org/claim/" + "a" * 100
    assert post(sandbox, as_bot, "y" * 250 + " " + link).status_code == 201
    assert sandbox.world.posted[0].has_link


def test_app_only_credentials_cannot_post(sandbox: Sandbox, api: requests.Session) -> None:
    response = post(sandbox, api, "hello")
    assert response.status_code == 403
    assert response.json()["title"] == "Unsupported Authentication"


def test_a_post_with_an_unknown_field_is_a_400(sandbox: Sandbox, as_bot: requests.Session) -> None:
    response = as_bot.post(f"{sandbox.base_url}/2/tweets", json={"text": "hi", "in_reply_to": "1"})
    assert response.status_code == 400


def test_a_direct_message_is_created_and_recorded(
    sandbox: Sandbox, as_bot: requests.Session
) -> None:
    bob = sandbox.world.user("bob")
    response = as_bot.post(
        f"{sandbox.base_url}/2/dm_conversations/with/{bob.id}/messages", json={"text": "hi bob"}
    )
    assert response.status_code == 201
    data = response.json()["data"]
    (dm,) = sandbox.world.dms
    assert data == {"dm_conversation_id": dm.conversation_id, "dm_event_id": dm.id}
    assert sorted(data["dm_conversation_id"].split("-")) == sorted([bob.id, sandbox.bot_user.id])
    assert (dm.sender, dm.recipient, dm.text) == (sandbox.bot_user, bob, "hi bob")


# -- OAuth 2.0 with PKCE --------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_query(sandbox: Sandbox, challenge: str, state: str = "st4te") -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": sandbox.client_id,
        "redirect_uri": CALLBACK,
        "scope": "users.read tweet.read",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }


def consent(sandbox: Sandbox, challenge: str, username: str, decision: str = "authorize") -> str:
    """Open the consent page and press a button as a browser would; returns the redirect."""
    page = requests.get(sandbox.authorize_url, params=authorize_query(sandbox, challenge))
    assert page.status_code == 200
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    form = {k: v.replace("&amp;", "&") for k, v in form.items()}
    form["user_id"] = sandbox.world.user(username).id
    form["decision"] = decision
    answer = requests.post(sandbox.authorize_url, data=form, allow_redirects=False)
    assert answer.status_code == 302
    return answer.headers["Location"]


def exchange(
    sandbox: Sandbox, code: str, verifier: str, secret: str | None = None, **extra: str
) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
        "client_id": sandbox.client_id,
        **extra,
    }
    auth = (sandbox.client_id, sandbox.client_secret if secret is None else secret)
    return requests.post(sandbox.token_url, data=form, auth=auth)


def code_of(location: str) -> str:
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["st4te"]
    return query["code"][0]


def test_the_consent_page_asks_and_lists_the_sandbox_accounts(sandbox: Sandbox) -> None:
    _verifier, challenge = pkce_pair()
    page = requests.get(sandbox.authorize_url, params=authorize_query(sandbox, challenge))
    assert page.status_code == 200
    assert "Authorize tipjar to use your account?" in page.text
    assert "@alice" in page.text and "@bob" in page.text
    assert "<script" not in page.text
    assert 'value="authorize">Authorize app</button>' in page.text


def test_the_consent_page_offers_only_the_signed_in_or_named_account(sandbox: Sandbox) -> None:
    _verifier, challenge = pkce_pair()
    query = authorize_query(sandbox, challenge)
    named = requests.get(sandbox.authorize_url, params={**query, "login": "bob"}).text
    assert "@bob" in named and "@alice" not in named
    sandbox.world.sign_in("alice")
    signed_in = requests.get(sandbox.authorize_url, params=query).text
    assert "@alice" in signed_in and "@bob" not in signed_in


def test_authorize_then_token_then_users_me_names_the_user_who_consented(
    sandbox: Sandbox,
) -> None:
    verifier, challenge = pkce_pair()
    location = consent(sandbox, challenge, "bob")
    assert location.startswith(CALLBACK + "?")
    token = exchange(sandbox, code_of(location), verifier)
    assert token.status_code == 200
    body = token.json()
    assert body == {
        "token_type": "bearer",
        "expires_in": 7200,
        "access_token": body["access_token"],
        "scope": "users.read tweet.read",
    }
    me = requests.get(
        f"{sandbox.base_url}/2/users/me",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert me.json()["data"]["id"] == sandbox.world.user("bob").id


def test_cancel_sends_the_browser_back_with_access_denied(sandbox: Sandbox) -> None:
    _verifier, challenge = pkce_pair()
    location = consent(sandbox, challenge, "bob", decision="cancel")
    assert parse_qs(urlsplit(location).query) == {"error": ["access_denied"], "state": ["st4te"]}


def test_a_wrong_verifier_is_refused(sandbox: Sandbox) -> None:
    _verifier, challenge = pkce_pair()
    other_verifier, _ = pkce_pair()
    response = exchange(sandbox, code_of(consent(sandbox, challenge, "bob")), other_verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_code_works_only_once(sandbox: Sandbox) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(consent(sandbox, challenge, "bob"))
    assert exchange(sandbox, code, verifier).status_code == 200
    again = exchange(sandbox, code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_a_code_older_than_30_seconds_is_refused(
    sandbox: Sandbox, manual_clock: ManualClock
) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(consent(sandbox, challenge, "bob"))
    manual_clock.advance(seconds=31)
    response = exchange(sandbox, code, verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_wrong_client_secret_is_refused(sandbox: Sandbox) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(consent(sandbox, challenge, "bob"))
    response = exchange(sandbox, code, verifier, secret="not-the-secret")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized_client"
    assert "not-the-secret" not in response.text


def test_a_different_redirect_uri_at_exchange_is_refused(sandbox: Sandbox) -> None:
    verifier, challenge = pkce_pair()
    code = code_of(consent(sandbox, challenge, "bob"))
    response = exchange(sandbox, code, verifier, redirect_uri="http://127.0.0.1:5000/elsewhere")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_missing_parameter_or_grant_type_is_an_invalid_request(sandbox: Sandbox) -> None:
    response = exchange(sandbox, "", "verifier")
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    response = exchange(sandbox, "code", "verifier", grant_type="password")
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def test_an_authorize_request_without_pkce_gets_an_error_page_not_a_redirect(
    sandbox: Sandbox,
) -> None:
    query = authorize_query(sandbox, "challenge")
    del query["code_challenge"]
    response = requests.get(sandbox.authorize_url, params=query, allow_redirects=False)
    assert response.status_code == 400
    assert "PKCE" in response.text


def test_an_expired_user_token_is_unauthorized(sandbox: Sandbox, manual_clock: ManualClock) -> None:
    token = sandbox.user_token("alice")
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{sandbox.base_url}/2/users/me", headers=headers).status_code == 200
    manual_clock.advance(hours=2)
    assert requests.get(f"{sandbox.base_url}/2/users/me", headers=headers).status_code == 401


def test_approve_does_in_code_what_the_consent_page_does(sandbox: Sandbox) -> None:
    verifier, challenge = pkce_pair()
    request_url = f"{sandbox.authorize_url}?{urlencode(authorize_query(sandbox, challenge))}"
    token = exchange(sandbox, code_of(sandbox.approve(request_url, "alice")), verifier)
    assert token.status_code == 200
    assert "error=access_denied" in sandbox.deny(request_url)


# -- rate limits ----------------------------------------------------------------------------


def test_every_api_response_carries_the_rate_limit_headers(
    sandbox: Sandbox, api: requests.Session, as_bot: requests.Session
) -> None:
    url = f"{sandbox.base_url}/2/users/{sandbox.bot_user.id}/mentions"
    first, second = api.get(url), api.get(url)
    reset = int((START + timedelta(minutes=15)).timestamp())
    assert first.headers["x-rate-limit-limit"] == "450"
    assert (first.headers["x-rate-limit-remaining"], second.headers["x-rate-limit-remaining"]) == (
        "449",
        "448",
    )
    assert first.headers["x-rate-limit-reset"] == str(reset)
    created = post(sandbox, as_bot, "hello")
    assert (created.headers["x-rate-limit-limit"], created.headers["x-rate-limit-remaining"]) == (
        "100",
        "99",
    )


def test_an_exhausted_window_answers_429_until_it_resets(
    sandbox: Sandbox, api: requests.Session, manual_clock: ManualClock
) -> None:
    sandbox.world.set_rate_limit("GET /2/users/by", 2)
    url = f"{sandbox.base_url}/2/users/by?usernames=bob"
    assert [api.get(url).status_code for _ in range(2)] == [200, 200]
    refused = api.get(url)
    assert refused.status_code == 429
    assert refused.json() == {
        "title": "Too Many Requests",
        "detail": "Too Many Requests",
        "type": "about:blank",
        "status": 429,
    }
    assert refused.headers["x-rate-limit-remaining"] == "0"
    manual_clock.set(datetime.fromtimestamp(int(refused.headers["x-rate-limit-reset"]), UTC))
    assert api.get(url).status_code == 200


def test_each_user_has_a_window_of_their_own(sandbox: Sandbox, as_bot: requests.Session) -> None:
    sandbox.world.set_rate_limit("GET /2/users/me", 1)
    alice = {"Authorization": f"Bearer {sandbox.user_token('alice', 'users.read tweet.read')}"}
    url = f"{sandbox.base_url}/2/users/me"
    assert requests.get(url, headers=alice).status_code == 200
    assert requests.get(url, headers=alice).status_code == 429
    assert as_bot.get(url).json()["data"]["username"] == "flattr"


def test_the_tweepy_client_raises_too_many_requests_with_the_reset_time(sandbox: Sandbox) -> None:
    sandbox.world.set_rate_limit("GET /2/users/:id/mentions", 0)
    client = tweepy_client(sandbox)
    with pytest.raises(tweepy.TooManyRequests) as raised:
        client.get_users_mentions(sandbox.bot_user.id)
    assert raised.value.reset_time == int((START + timedelta(minutes=15)).timestamp())


# -- fault injection ------------------------------------------------------------------------


def test_an_injected_503_happens_once_then_the_platform_recovers(
    sandbox: Sandbox, api: requests.Session
) -> None:
    sandbox.world.fail_next("/2/users/", 503)
    url = f"{sandbox.base_url}/2/users/by?usernames=bob"
    first = api.get(url)
    assert first.status_code == 503
    assert first.json()["title"] == "Service Unavailable"
    assert api.get(url).status_code == 200


def test_an_injected_429_counts_down_and_carries_the_given_headers(
    sandbox: Sandbox, api: requests.Session
) -> None:
    sandbox.world.fail_next(
        "/2/users/by", 429, count=2, headers={"x-rate-limit-reset": "1700000000"}
    )
    url = f"{sandbox.base_url}/2/users/by?usernames=bob"
    answers = [api.get(url) for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["x-rate-limit-reset"] == "1700000000"
    assert answers[0].headers["x-rate-limit-remaining"] == "0"


def test_a_fault_only_hits_its_method_and_path(sandbox: Sandbox, api: requests.Session) -> None:
    sandbox.world.fail_next("/2/tweets", 500, method="POST")
    assert api.get(f"{sandbox.base_url}/2/users/by?usernames=bob").status_code == 200
    assert post(sandbox, api, "hi").status_code == 500


def test_a_malformed_body_is_not_json(sandbox: Sandbox, api: requests.Session) -> None:
    sandbox.world.fail_next("/2/users/by", 200, malformed=True)
    response = api.get(f"{sandbox.base_url}/2/users/by?usernames=bob")
    assert response.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_a_slow_answer_times_out_the_client(sandbox: Sandbox, api: requests.Session) -> None:
    sandbox.world.fail_next("/2/users/by", None, delay=0.5)
    with pytest.raises(requests.Timeout):
        api.get(f"{sandbox.base_url}/2/users/by?usernames=bob", timeout=0.1)
    assert api.get(f"{sandbox.base_url}/2/users/by?usernames=bob", timeout=2).ok


def test_every_request_is_recorded_without_bodies(sandbox: Sandbox, api: requests.Session) -> None:
    api.get(f"{sandbox.base_url}/2/users/by?usernames=bob,alice")
    (record,) = sandbox.world.requests_to("/2/users/by")
    assert (record.method, record.status, record.principal) == ("GET", 200, "app")
    assert record.query == "usernames=bob,alice"


# -- tweepy, the real client ----------------------------------------------------------------


class RedirectToSandbox(HTTPAdapter):
    """Sends what tweepy addresses to https://api.twitter.com to the sandbox instead."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        assert request.url is not None
        request.url = request.url.replace("https://api.twitter.com", self.base_url, 1)
        return super().send(request, *args, **kwargs)


def tweepy_client(sandbox: Sandbox, bearer_token: str | None = None) -> tweepy.Client:
    client = tweepy.Client(
        bearer_token=bearer_token or sandbox.bearer_token,
        consumer_key="sandbox-api-key",
        consumer_secret="sandbox-api-secret",
        access_token="sandbox-access-token",
        access_token_secret="sandbox-access-token-secret",
    )
    client.session.mount("https://api.twitter.com", RedirectToSandbox(sandbox.base_url))
    return client


def test_the_tweepy_client_works_end_to_end_against_the_sandbox(sandbox: Sandbox) -> None:
    world = sandbox.world
    tip = world.mention("alice", "@flattr @bob €2")
    client = tweepy_client(sandbox)

    page = client.get_users_mentions(
        sandbox.bot_user.id,
        expansions=MENTION_EXPANSIONS.split(","),
        tweet_fields=MENTION_FIELDS.split(","),
        max_results=5,
    )
    (tweet,) = page.data
    assert (tweet.id, tweet.author_id, tweet.edit_history_tweet_ids) == (
        int(tip.id),
        int(world.user("alice").id),
        [int(tip.id)],
    )
    assert {u.username for u in page.includes["users"]} == {"alice", "bob", "flattr"}
    assert page.meta["newest_id"] == tip.id

    lookup = client.get_users(usernames=["bob", "ghost"])
    assert [u.username for u in lookup.data] == ["bob"]
    assert lookup.errors[0]["title"] == "Not Found Error"

    me = tweepy_client(sandbox, bearer_token=sandbox.user_token("bob")).get_me(user_auth=False)
    assert me.data.id == int(world.user("bob").id)

    created = client.create_tweet(text="@alice thanks!", in_reply_to_tweet_id=tip.id)
    assert world.posted[0].id == created.data["id"]
    assert world.posted[0].in_reply_to == tip.id
    with pytest.raises(tweepy.Forbidden, match="duplicate content"):
        client.create_tweet(text="@alice thanks!", in_reply_to_tweet_id=tip.id)


# -- the sandbox itself ---------------------------------------------------------------------


def test_the_sandbox_refuses_to_listen_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Sandbox(host="0.0.0.0")  # noqa: S104


def test_secrets_stay_out_of_the_repr(sandbox: Sandbox) -> None:
    shown = repr(sandbox) + repr(sandbox.settings)
    assert sandbox.client_secret not in shown and sandbox.bearer_token not in shown
    assert sandbox.base_url in repr(sandbox)


def test_env_points_tipjar_at_the_sandbox(sandbox: Sandbox) -> None:
    env = sandbox.env()
    assert env["X_API_BASE_URL"] == sandbox.base_url
    assert env["X_OAUTH_TOKEN_URL"] == sandbox.base_url + "/2/oauth2/token"
    assert env["X_BOT_USER_ID"] == sandbox.bot_user.id


def test_the_control_page_lets_a_person_tweet_as_any_account(sandbox: Sandbox) -> None:
    answer = requests.post(
        f"{sandbox.base_url}/sandbox/tweet", data={"author": "bob", "text": "@flattr help"}
    )
    assert answer.ok and "@flattr help" in answer.text
    (tweet,) = sandbox.world.mentions_of(sandbox.bot_user.id)
    assert tweet.author.username == "bob"


def test_users_are_unique_case_insensitively_and_ids_are_stable() -> None:
    first, second = Sandbox(), Sandbox()
    assert first.bot_user.id == second.bot_user.id
    with pytest.raises(ValueError, match="taken"):
        first.world.add_user("FLATTR")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@flattr @bob €2", [("flattr", 0, 7), ("bob", 8, 12)]),
        ("mail me at bob@example.org", []),
        ("@bob's drawing", [("bob", 0, 4)]),
        ("＠bob", [("bob", 0, 4)]),
        ("@bob/list", []),
        ("@a_name_that_is_far_too_long", []),
        ("ünicode @bob", [("bob", 8, 12)]),
    ],
)
def test_the_sandbox_finds_mentions_like_the_platform(
    text: str, expected: list[tuple[str, int, int]]
) -> None:
    assert find_mentions(text) == expected
