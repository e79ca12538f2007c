"""Tip language v2 through the listener, the real tweepy adapter and X faked with `responses`.

Issue 14's cases end with no money moved (thread chatter, unreadable amounts) or with the
tip applied whole and exactly once (photos, quotes, edits, a backlog longer than X's
mentions window); the ledger is audited after each.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from click.testing import CliRunner
from sqlalchemy import Engine, select

from bot import listener
from bot.cli import main
from bot.platforms.x.api import TweepyXApi
from bot.platforms.x.sandbox import Sandbox
from escrow.db import make_engine
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.schema import mentions, outbox, shares, tips
from escrow.service import Ledger
from tests.integration.test_listener import (
    BOT_ID,
    MENTIONS,
    assert_nothing_lost,
    available,
    count,
    fund,
    held_for,
    poll,
)
from tests.support import x_payloads as xp

SEARCH = f"{xp.API}/2/tweets/search/recent"


@pytest.fixture
def x(clock: Any) -> TweepyXApi:
    api = xp.tweepy_x(BOT_ID, clock, max_retries=1)
    api.bot_handle = "flattr"
    return api


@pytest.fixture
def ledger(engine: Engine, clock: Any) -> Ledger:
    return Ledger(engine, Policy(), clock)


@pytest.fixture
def tl(clock: Any) -> xp.Timeline:
    # Tweets of the last day, so that X's 7-day search reaches them.
    timeline = xp.Timeline(start=clock() - timedelta(days=1), step=timedelta(seconds=30))
    timeline.user("flattr", BOT_ID)
    return timeline


def outcomes_of(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(mentions.c.tweet_id, mentions.c.outcome)).all())


# --------------------------------------------------------------------------- thread chatter


@pytest.mark.parametrize("display_range", [True, False], ids=["display range", "no range"])
def test_thread_chatter_moves_no_money_and_gets_no_reply(
    engine, x, rsps, tl, ledger, clock, display_range
):
    alice, bob, carol = tl.user("alice"), tl.user("bob"), tl.user("carol")
    for who in (alice, bob, carol):
        fund(ledger, who, "50.00")  # funded supporters: a misread flattr would be recorded
    tip = tl.mention(alice, "@flattr @bob €2")

    def reply(author: dict[str, Any], prefix: str, words: str) -> dict[str, Any]:
        if display_range:
            return tl.mention(author, words, in_reply_to=alice, prefilled=prefix)
        return tl.mention(author, prefix + words, in_reply_to=alice)

    thanks = reply(bob, "@alice @flattr ", "🙏")  # Bob answers under Alice's tip
    party = reply(carol, "@alice @flattr @bob ", "🎉")  # Carol in the same thread
    rsps.get(MENTIONS, json=tl.page([tip, thanks, party]))

    result = poll(engine, x, clock)

    assert result.processed == 3 and result.tips_applied == 1 and result.flattrs_recorded == 0
    assert outcomes_of(engine) == {
        tip["id"]: "held",
        thanks["id"]: "not_a_command",
        party["id"]: "not_a_command",
    }
    assert count(engine, shares) == 0 and count(engine, tips) == 1
    assert count(engine, outbox) == 0
    assert available(ledger, bob) == 5000 and available(ledger, carol) == 5000
    assert held_for(ledger, bob) == 200 and held_for(ledger, alice) == 0
    assert_nothing_lost(ledger)


def test_a_reply_tip_typed_by_the_author_still_tips_the_author_replied_to(
    engine, x, rsps, tl, ledger, clock
):
    alice, carol = tl.user("alice"), tl.user("carol")
    fund(ledger, carol, "5.00")
    typed = tl.mention(carol, "@flattr €1", in_reply_to=alice, prefilled="@alice ")
    rsps.get(MENTIONS, json=tl.page([typed]))

    result = poll(engine, x, clock)

    assert result.tips_applied == 1 and held_for(ledger, alice) == 100
    assert_nothing_lost(ledger)


@pytest.mark.parametrize("words", ["€abc", "~€2", "US$2", "€1 000", "€2 50", "❤️ €2"])
def test_an_amount_that_does_not_read_moves_nothing_and_says_why(
    engine, x, rsps, tl, ledger, clock, words
):
    alice, bob = tl.user("alice"), tl.user("bob")
    fund(ledger, alice, "50.00")
    assert bob["username"] == "bob"
    tweet = tl.mention(alice, f"@flattr @bob {words}")
    rsps.get(MENTIONS, json=tl.page([tweet]))

    result = poll(engine, x, clock)

    assert result.tips_applied == 0 and result.flattrs_recorded == 0
    assert set(result.outcomes) <= {"bad_amount", "wrong_currency"}
    assert count(engine, shares) == 0 and count(engine, tips) == 0
    assert count(engine, outbox) == 1  # the reply that explains
    assert available(ledger, alice) == 5000
    assert_nothing_lost(ledger)


# --------------------------------------------------------------------------- one tweet


def test_a_tip_to_three_creators_the_supporter_cannot_cover_moves_nothing(
    engine, x, rsps, tl, ledger, clock
):
    alice = tl.user("alice")
    creators = [tl.user(f"c{i}") for i in range(3)]
    fund(ledger, alice, "5.00")
    tweet = tl.mention(alice, "@flattr @c0 @c1 @c2 €2")
    rsps.get(MENTIONS, json=tl.page([tweet]))

    result = poll(engine, x, clock)

    assert result.tips_applied == 0 and result.outcomes == {"insufficient_funds": 1}
    assert count(engine, tips) == 0
    assert all(held_for(ledger, c) == 0 for c in creators)
    assert available(ledger, alice) == 500
    with engine.connect() as conn:
        text = conn.execute(select(outbox.c.text)).scalar_one()
    assert "€5.00 available" in text and "€6.00" in text and "Nothing was sent" in text
    assert_nothing_lost(ledger)


# --------------------------------------------------------------------------- media, quotes


def test_a_tip_with_a_photo_or_a_quoted_tweet_is_applied(engine, x, rsps, tl, ledger, clock):
    alice, bob, carol = tl.user("alice"), tl.user("bob"), tl.user("carol")
    fund(ledger, alice, "10.00")
    quoted = tl.mention(carol, "my new song")
    photo = tl.mention(alice, "@flattr @bob €2", photo=True)
    quote = tl.mention(alice, "@flattr @carol €3 listen to this", quote=quoted)
    other = tl.mention(alice, "@flattr @bob €4 https://t.co/elsewhere")
    assert photo["text"].startswith("@flattr @bob €2 https://t.co/")
    rsps.get(MENTIONS, json=tl.page([photo, quote, other]))

    result = poll(engine, x, clock)

    assert result.tips_applied == 2
    assert outcomes_of(engine)[other["id"]] == "not_a_command"  # any other link: talk
    assert held_for(ledger, bob) == 200 and held_for(ledger, carol) == 300
    assert available(ledger, alice) == 500
    assert_nothing_lost(ledger)


# --------------------------------------------------------------------------- edits


def test_a_tweet_and_its_edit_in_one_page_apply_the_latest_version_once(
    engine, x, rsps, tl, ledger, clock
):
    alice, bob = tl.user("alice"), tl.user("bob")
    fund(ledger, alice, "10.00")
    first = tl.mention(alice, "@flattr @bob €5")
    edit = tl.mention(alice, "@flattr @bob €2", edit_of=first)
    rsps.get(MENTIONS, json=tl.page([first, edit]))

    result = poll(engine, x, clock)

    assert result.mentions_seen == 2 and result.processed == 1 and result.tips_applied == 1
    with engine.connect() as conn:
        assert conn.execute(select(tips.c.source_id)).scalars().all() == [first["id"]]
    assert held_for(ledger, bob) == 200 and available(ledger, alice) == 800

    # Once applied, a later edit changes nothing.
    later = tl.mention(alice, "@flattr @bob €9", edit_of=edit)
    rsps.replace(responses.GET, MENTIONS, json=tl.page([later]))
    again = poll(engine, x, clock)
    assert again.already_processed == 1 and again.tips_applied == 0
    assert held_for(ledger, bob) == 200
    assert_nothing_lost(ledger)


# --------------------------------------------------------------------------- the window


class FakeX:
    """X's mentions timeline (only its newest 800) and recent search (7 days), as callbacks."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.tweets: list[dict[str, Any]] = []  # oldest first
        self.users: list[dict[str, Any]] = []
        self.searches = 0

    def install(self, rsps: responses.RequestsMock) -> None:
        rsps.add_callback(responses.GET, MENTIONS, callback=self.mentions)
        rsps.add_callback(responses.GET, SEARCH, callback=self.search)

    def _page(
        self, pool: list[dict[str, Any]], args: dict[str, list[str]], token: str
    ) -> tuple[int, dict[str, str], str]:
        since = int(args.get("since_id", ["0"])[0])
        until = int(args.get("until_id", [str(2**63)])[0])
        before = int(args[token][0]) if token in args else 2**63
        size = int(args.get("max_results", ["100"])[0])
        wanted = [t for t in pool if since < int(t["id"]) < min(until, before)]
        page = wanted[:size]
        body = xp.mentions_page(page, self.users) if page else xp.empty_mentions_page()
        if len(wanted) > size:
            body["meta"]["next_token"] = page[-1]["id"]
        return 200, xp.rate_limit_headers(), json.dumps(body)

    def mentions(self, request: Any) -> tuple[int, dict[str, str], str]:
        newest_first = self.tweets[::-1][:800]  # X serves only the newest 800 mentions
        return self._page(newest_first, parse_qs(urlsplit(request.url).query), "pagination_token")

    def search(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.searches += 1
        args = parse_qs(urlsplit(request.url).query)
        assert args["query"] == ["@flattr -is:retweet"]
        horizon = xp.iso(self.clock() - timedelta(days=7))
        recent = [t for t in self.tweets[::-1] if t["created_at"] >= horizon]
        return self._page(recent, args, "next_token")


def test_a_backlog_of_900_mentions_after_an_outage_is_applied_exactly_once(
    engine, x, rsps, tl, ledger, clock
):
    alice, bob = tl.user("alice"), tl.user("bob")
    fund(ledger, alice, "100.00")
    fake = FakeX(clock)
    fake.users = list(tl.users.values())
    fake.install(rsps)
    fake.tweets.append(tl.mention(alice, "@flattr @bob €0.10"))
    assert poll(engine, x, clock).tips_applied == 1  # the cursor before the outage

    fake.tweets += [tl.mention(alice, "@flattr @bob €0.10") for _ in range(900)]
    result = poll(engine, x, clock)

    assert result.mentions_seen == 900 and result.backfilled == 100
    assert result.tips_applied == 900 and result.missed_window == 0
    assert fake.searches == 1
    assert count(engine, tips) == 901 and held_for(ledger, bob) == 9010
    assert available(ledger, alice) == 10000 - 9010

    replay = poll(engine, x, clock)  # nothing new: nothing moves, no search
    assert replay.tips_applied == 0 and fake.searches == 1
    assert count(engine, tips) == 901
    assert_nothing_lost(ledger)


def test_mentions_older_than_search_reaches_are_reported_not_silently_lost(
    engine, x, rsps, ledger, clock, caplog
):
    tl = xp.Timeline(start=clock() - timedelta(days=9), step=timedelta(minutes=10))
    tl.user("flattr", BOT_ID)
    alice, bob = tl.user("alice"), tl.user("bob")
    fund(ledger, alice, "500.00")
    fake = FakeX(clock)
    fake.users = list(tl.users.values())
    fake.install(rsps)
    fake.tweets.append(tl.mention(alice, "@flattr @bob €0.10"))
    poll(engine, x, clock)
    assert held_for(ledger, bob) == 10
    # Nine days of an outage, a tip every ten minutes: ~1,300 mentions, 800 in the window.
    while tl.now < clock() - timedelta(minutes=20):
        fake.tweets.append(tl.mention(alice, "@flattr @bob €0.10"))

    with caplog.at_level(logging.ERROR, logger="bot.listener"):
        result = poll(engine, x, clock)

    assert result.missed_window == 1 and result.to_json()["missed_window"] == 1
    assert any(
        r.levelno == logging.ERROR and "never read" in r.getMessage() for r in caplog.records
    )
    within_week = [
        t for t in fake.tweets[1:] if t["created_at"] >= xp.iso(clock() - timedelta(days=7))
    ]
    assert result.tips_applied == len(within_week)  # what search could reach, once
    assert_nothing_lost(ledger)


def test_replies_without_a_display_range_are_logged_once(
    engine, x, rsps, tl, ledger, clock, caplog, monkeypatch
):
    monkeypatch.setattr(listener, "_WITHOUT_DISPLAY_RANGE", set())
    alice, bob = tl.user("alice"), tl.user("bob")
    first = [tl.mention(bob, "@alice @flattr 🙏", in_reply_to=alice) for _ in range(2)]
    rsps.get(MENTIONS, json=tl.page(first))
    later = tl.mention(bob, "@alice @flattr 🎉", in_reply_to=alice)

    with caplog.at_level(logging.INFO, logger="bot.listener"):
        poll(engine, x, clock)
        rsps.replace(responses.GET, MENTIONS, json=tl.page([later]))
        poll(engine, x, clock)

    said = [r.getMessage() for r in caplog.records if "without a display range" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("replies on x come without")
    assert count(engine, tips) == 0 and count(engine, shares) == 0


def test_poll_once_reads_past_the_window_through_the_sandboxs_search(db_url, tmp_path, monkeypatch):
    """The whole path: the CLI, the real adapter and the loopback sandbox's X."""
    monkeypatch.chdir(tmp_path)  # no developer's .env
    with Sandbox(bot_username="flattr") as sandbox:
        world = sandbox.world
        alice = world.add_user("alice")
        world.add_user("bob")
        env = sandbox.env() | {"DATABASE_URL": db_url, "LOG_LEVEL": "ERROR"}
        engine = make_engine(db_url)
        Ledger(engine, Policy()).deposit(Identity.x(alice.id, "alice"), Money(10000), "r1")

        def tipjar(*args: str) -> dict[str, Any]:
            ran = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
            assert ran.exit_code == 0, ran.output
            return dict(json.loads(ran.output))

        world.mention(alice, "@flattr @bob €0.10")
        assert tipjar("poll", "--once", "--json")["tips_applied"] == 1
        for _ in range(850):
            world.mention(alice, "@flattr @bob €0.10")

        after = tipjar("poll", "--once", "--json")
        again = tipjar("poll", "--once", "--json")

        assert after["mentions_seen"] == 850 and after["backfilled"] == 50
        assert (after["tips_applied"], after["missed_window"]) == (850, 0)
        assert again["tips_applied"] == 0 and again["backfilled"] == 0
        assert count(engine, tips) == 851
        assert_nothing_lost(Ledger(engine, Policy()))
        engine.dispose()
