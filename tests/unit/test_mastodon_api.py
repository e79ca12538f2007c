"""The Mastodon adapter, driving the real Mastodon.py against `responses`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from bot.platforms import NotFound, RateLimited, TransientError, Unauthorized
from bot.platforms.mastodon.api import MastodonPlatform, reply_visibility
from tests.support.mastodon_payloads import (
    BASE,
    account,
    h_card,
    mention,
    notification,
    rate_headers,
    status,
)

NOTES = f"{BASE}/api/v1/notifications"
NOW = datetime(2026, 8, 1, 13, 52, tzinfo=UTC)
BOT = mention("flattr", account_id="100")
ALICE = account("alice", account_id="200")
BOB_REMOTE = mention("bob", "other.social", account_id="300")


@pytest.fixture
def api():
    return MastodonPlatform(
        base_url=BASE,
        access_token="bot-token-secret",
        bot_acct="flattr@home.social",
        clock=lambda: NOW,
    )


def tip_status(status_id: str = "1000", text: str = "€2", **kw) -> dict:
    content = f"<p>{h_card(BOT)} {h_card(BOB_REMOTE)} {text}</p>"
    return status(status_id, ALICE, content, [BOT, BOB_REMOTE], **kw)


def serve(rsps, body, status=200, headers=None, url=NOTES):
    rsps.add(responses.GET, url, json=body, status=status, headers=headers or rate_headers())


def test_a_mention_from_a_remote_instance_reads_as_a_tip_to_its_full_address(rsps, api):
    serve(rsps, [notification("7", tip_status())])

    page = api.mentions(since_id=None)

    (m,) = page.mentions
    assert m.platform == "mastodon"
    assert (m.id, m.original_id) == ("7", "mastodon:1000")
    assert m.text == "@flattr @bob €2"
    assert m.author_id == "alice@home.social"
    assert m.mentioned_ids == {"flattr": "flattr@home.social", "bob": "bob@other.social"}
    assert m.display_range is None and m.visibility == "public"
    assert page.newest_id == "7"
    query = parse_qs(urlsplit(rsps.calls[0].request.url).query)
    assert query["types[]"] == ["mention"]
    assert "bot-token-secret" not in repr(api)


def test_since_id_and_link_pagination_stay_within_the_cursor(rsps, api):
    first = [notification(str(n), tip_status(str(1000 + n))) for n in (9, 8)]
    older = [notification("6", tip_status("1006"))]
    link = f'<{NOTES}?max_id=8&types%5B%5D=mention>; rel="next", <{NOTES}?min_id=9>; rel="prev"'
    rsps.add(responses.GET, NOTES, json=first, headers={**rate_headers(), "Link": link})
    rsps.add(responses.GET, NOTES, json=older, headers=rate_headers())

    page = api.mentions(since_id="5", max_results=2)
    rest = api.mentions(since_id="5", pagination_token=page.next_token, max_results=2)

    assert [m.id for m in page.mentions] == ["9", "8"] and page.next_token == "8"
    assert [m.id for m in rest.mentions] == ["6"] and rest.next_token is None
    second = parse_qs(urlsplit(rsps.calls[1].request.url).query)
    assert second["since_id"] == ["5"] and second["max_id"] == ["8"]


def test_a_429_is_rate_limited_until_the_instances_reset_and_nothing_sleeps(rsps, api):
    reset = "2026-08-01T14:00:00.000Z"
    serve(rsps, {"error": "Too many requests"}, 429, rate_headers(0, reset))

    with pytest.raises(RateLimited) as caught:
        api.mentions(since_id=None)

    assert caught.value.reset_at.isoformat().startswith("2026-08-01T14:00")
    calls = len(rsps.calls)
    with pytest.raises(RateLimited):  # an exhausted window is not even asked again
        api.mentions(since_id=None)
    assert len(rsps.calls) == calls


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_5xx_is_transient(rsps, api, code):
    serve(rsps, {"error": "down"}, code)
    with pytest.raises(TransientError):
        api.mentions(since_id=None)


def test_a_timeout_is_transient(rsps, api):
    import requests

    rsps.add(responses.GET, NOTES, body=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(TransientError):
        api.mentions(since_id=None)


@pytest.mark.parametrize(
    "body",
    [
        "<html>maintenance</html>",
        json.dumps({"not": "a list"}),
        json.dumps([{"id": "7", "type": "mention", "status": None}]),
        json.dumps([notification("7", {**tip_status(), "account": None})]),
        json.dumps([notification("7", {**tip_status(), "created_at": "yesterday"})]),
    ],
)
def test_malformed_bodies_are_transient(rsps, api, body):
    rsps.add(
        responses.GET, NOTES, body=body, content_type="application/json", headers=rate_headers()
    )
    with pytest.raises(TransientError):
        api.mentions(since_id=None)


def test_401_is_unauthorized(rsps, api):
    serve(rsps, {"error": "The access token is invalid"}, 401)
    with pytest.raises(Unauthorized):
        api.mentions(since_id=None)


def test_a_boost_is_a_repost(rsps, api):
    boost = status("2000", ALICE, "", [], reblog=tip_status())
    serve(rsps, [notification("8", boost)])
    (m,) = api.mentions(since_id=None).mentions
    assert m.is_repost


def test_an_edited_status_keeps_its_idempotency_key(rsps, api):
    edited = tip_status(text="€3", edited_at="2026-08-01T13:55:00.000Z")
    serve(rsps, [notification("9", edited), notification("7", tip_status())])
    newer, older = api.mentions(since_id=None).mentions
    assert newer.original_id == older.original_id == "mastodon:1000"


def test_a_direct_status_not_addressed_to_the_bot_is_not_delivered(rsps, api):
    private = status(
        "3000", ALICE, f"<p>{h_card(BOB_REMOTE)} hi</p>", [BOB_REMOTE], visibility="direct"
    )
    to_bot = tip_status("3001", visibility="direct")
    serve(rsps, [notification("11", private), notification("10", to_bot)])
    assert [m.id for m in api.mentions(since_id=None).mentions] == ["10"]


def test_a_thread_reply_names_the_author_replied_to(rsps, api):
    carol = mention("carol", "third.social", account_id="400")
    content = f"<p>{h_card(carol)} {h_card(BOT)} {h_card(BOB_REMOTE)} 🎉</p>"
    reply = status(
        "4000",
        ALICE,
        content,
        [carol, BOT, BOB_REMOTE],
        in_reply_to_id="3999",
        in_reply_to_account_id="400",
    )
    serve(rsps, [notification("12", reply)])
    (m,) = api.mentions(since_id=None).mentions
    assert m.text == "@carol @flattr @bob 🎉"
    assert (m.in_reply_to_user_id, m.in_reply_to_handle) == ("carol@third.social", "carol")


def test_a_reply_is_unlisted_in_the_tips_thread_with_an_idempotency_key(rsps, api):
    rsps.add(
        responses.GET, f"{BASE}/api/v1/statuses/1000", json=tip_status(), headers=rate_headers()
    )
    posted = status("5000", account("flattr", account_id="100"), "<p>ok</p>", [])
    rsps.add(responses.POST, f"{BASE}/api/v1/statuses", json=posted, headers=rate_headers())

    assert api.reply("@alice@home.social thanks", "mastodon:1000") == "mastodon:5000"

    sent = parse_qs(rsps.calls[-1].request.body)
    assert sent["in_reply_to_id"] == ["1000"] and sent["visibility"] == ["unlisted"]
    assert rsps.calls[-1].request.headers["Idempotency-Key"]


def test_a_reply_to_a_notification_finds_its_status(rsps, api):
    rsps.add(
        responses.GET,
        f"{NOTES}/7",
        json=notification("7", tip_status(visibility="private")),
        headers=rate_headers(),
    )
    posted = status("5001", account("flattr", account_id="100"), "<p>ok</p>", [])
    rsps.add(responses.POST, f"{BASE}/api/v1/statuses", json=posted, headers=rate_headers())
    api.reply("help text", "7")
    sent = parse_qs(rsps.calls[-1].request.body)
    assert sent["in_reply_to_id"] == ["1000"] and sent["visibility"] == ["private"]


def test_a_reply_to_a_deleted_status_is_not_found(rsps, api):
    rsps.add(
        responses.GET, f"{BASE}/api/v1/statuses/1", json={"error": "Record not found"}, status=404
    )
    with pytest.raises(NotFound):
        api.reply("x", "mastodon:1")


@pytest.mark.parametrize(
    ("tip", "reply"),
    [
        ("public", "unlisted"),
        ("unlisted", "unlisted"),
        ("private", "private"),
        ("direct", "direct"),
        (None, "unlisted"),
    ],
)
def test_replies_are_never_wider_than_unlisted_or_the_tip(tip, reply):
    assert reply_visibility(tip) == reply


def test_addresses_name_themselves_and_bare_handles_name_nobody(api):
    found = api.lookup_users(["@bob@Other.Social", "bob"])
    assert list(found) == ["bob@other.social"]
    assert found["bob@other.social"].user_id == "bob@other.social"
    assert api.get_user("nobody") is None


def test_the_adapter_is_a_platform_and_its_sign_in_a_sign_in(api):
    from bot.platforms import Platform, SignIn
    from bot.platforms.mastodon.guard import GuardedSession, Instance
    from bot.platforms.mastodon.signin import AppCredentials, MastodonSignIn, ServerInfo

    assert isinstance(api, Platform)
    assert (api.name, api.bot_user_id, api.bot_handle) == (
        "mastodon",
        "flattr@home.social",
        "flattr",
    )
    sign_in = MastodonSignIn(
        Instance("other.social", "https://other.social"),
        AppCredentials("client-id-123", "client-secret-456"),
        ServerInfo(
            "https://other.social/oauth/authorize", "https://other.social/oauth/token", True
        ),
        "https://tipjar.example/oauth/mastodon/callback",
        GuardedSession(),
        allow_loopback=False,
    )
    assert isinstance(sign_in, SignIn)
    url = sign_in.authorize_url("state-1", "challenge-1")
    query = parse_qs(urlsplit(url).query)
    assert query["state"] == ["state-1"] and query["code_challenge_method"] == ["S256"]
    assert "code_challenge" not in parse_qs(urlsplit(sign_in.authorize_url("s", "")).query)
