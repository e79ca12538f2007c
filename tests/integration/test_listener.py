"""The listener against X faked at the HTTP boundary, through the real tweepy adapter.

Every scenario ends with the ledger audited and the balances compared to what the tweets
asked for: nothing lost, nothing doubled.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from sqlalchemy import Engine, func, select

from bot import listener
from bot.config import Settings
from bot.listener import CURSOR_KEY, RESUME_KEY, poll_once
from bot.platforms.x.api import TweepyXApi
from bot.state import get_state
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.schema import accounts, deposits, mentions, metadata, outbox, state, tips
from escrow.service import Ledger
from tests.support import x_payloads as xp

BOT_ID = "999"
SETTINGS = Settings(
    x_bot_username="flattr",
    x_bot_user_id=BOT_ID,
    public_base_url="https://tipjar.example",
)
MENTIONS = xp.mentions_url(BOT_ID)


@pytest.fixture
def x(clock: Any) -> TweepyXApi:
    return make_x(clock)


def make_x(clock: Any) -> TweepyXApi:
    return xp.tweepy_x(BOT_ID, clock, max_retries=1)


@pytest.fixture
def ledger(engine: Engine, clock: Any) -> Ledger:
    return Ledger(engine, Policy(), clock)


@pytest.fixture
def tl() -> xp.Timeline:
    timeline = xp.Timeline()
    timeline.user("flattr", BOT_ID)
    return timeline


def fund(ledger: Ledger, user: dict[str, Any], amount: str) -> None:
    ledger.deposit(
        Identity.x(user["id"], user["username"]), Money.parse(amount, "EUR"), f"ref-{user['id']}"
    )


def poll(engine: Engine, x: TweepyXApi, clock: Any, **kw: Any) -> listener.PollResult:
    return poll_once(engine, x, SETTINGS, clock=clock, **kw)


def available(ledger: Ledger, user: dict[str, Any]) -> int:
    view = ledger.account(Identity.x(user["id"]))
    return view.available_minor if view else 0


def held_for(ledger: Ledger, user: dict[str, Any]) -> int:
    view = ledger.account(Identity.x(user["id"]))
    return view.held_for_minor if view else 0


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def cursor(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return get_state(conn, CURSOR_KEY)


def query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def assert_nothing_lost(ledger: Ledger) -> None:
    """The audit is clean and every cent deposited is still somewhere outside `funding`."""
    assert ledger.check_ledger() == []
    with ledger.engine.connect() as conn:
        deposited = conn.execute(select(func.sum(deposits.c.amount_minor))).scalar_one() or 0
        held = conn.execute(
            select(func.sum(accounts.c.credits_posted - accounts.c.debits_posted)).where(
                ~((accounts.c.platform == "system") & (accounts.c.platform_user_id == "funding"))
            )
        ).scalar_one()
    assert held == deposited


# --------------------------------------------------------------------------- pagination


def test_a_backlog_over_several_pages_is_applied_oldest_first_once(
    engine, x, rsps, tl, ledger, clock
):
    alice, bob = tl.user("alice"), tl.user("bob")
    fund(ledger, alice, "3.00")
    tweets = [tl.mention(alice, "@flattr @bob €1") for _ in range(12)]  # oldest first
    newest_first = tweets[::-1]
    rsps.get(MENTIONS, json=tl.page(newest_first[:5], next_token="p2"))
    rsps.get(MENTIONS, json=tl.page(newest_first[5:10], next_token="p3"))
    rsps.get(MENTIONS, json=tl.page(newest_first[10:]))

    result = poll(engine, x, clock, page_size=5)

    assert [query(c).get("pagination_token") for c in rsps.calls] == [None, ["p2"], ["p3"]]
    assert result.mentions_seen == 12 and result.processed == 12
    assert result.tips_applied == 3
    assert result.outcomes == {"held": 3, "insufficient_funds": 9}
    with engine.connect() as conn:
        sources = set(conn.execute(select(tips.c.source_id)).scalars())
    assert sources == {t["id"] for t in tweets[:3]}  # the three oldest tweets won the money
    assert cursor(engine) == tweets[-1]["id"]
    assert held_for(ledger, bob) == 300 and available(ledger, alice) == 0
    assert_nothing_lost(ledger)


def test_the_cursor_carries_over_to_the_next_run(engine, x, rsps, tl, ledger, clock):
    alice, bob = tl.user("alice"), tl.user("bob")
    fund(ledger, alice, "5.00")
    first = tl.mention(alice, "@flattr @bob €1")
    rsps.get(MENTIONS, json=tl.page([first]))
    poll(engine, x, clock)
    second = tl.mention(alice, "@flattr @bob €2")
    rsps.replace(responses.GET, MENTIONS, json=tl.page([second]))

    result = poll(engine, x, clock)

    assert query(rsps.calls[0]).get("since_id") is None
    assert query(rsps.calls[1])["since_id"] == [first["id"]]
    assert result.tips_applied == 1 and cursor(engine) == second["id"]
    assert held_for(ledger, bob) == 300 and available(ledger, alice) == 200
    assert_nothing_lost(ledger)


def test_an_empty_timeline_changes_nothing(engine, x, rsps, clock):
    rsps.get(MENTIONS, json=xp.empty_mentions_page())
    result = poll(engine, x, clock)
    assert result.mentions_seen == 0 and result.ok and cursor(engine) is None


# --------------------------------------------------------------------------- what is skipped


def test_retweets_the_bots_own_tweets_and_edits_are_never_tipped_twice(
    engine, x, rsps, tl, ledger, clock
):
    alice, bob, bot = tl.user("alice"), tl.user("bob"), tl.users["flattr"]
    fund(ledger, alice, "10.00")
    original = tl.mention(alice, "@flattr @bob €2")
    edit = tl.mention(alice, "@flattr @bob €2 thanks!", edit_of=original)
    retweet = tl.mention(bob, "RT @alice: @flattr @bob €2", retweet=True)
    own = tl.mention(bot, "@flattr @bob €2")
    rsps.get(MENTIONS, json=tl.page([original, edit, retweet, own]))

    result = poll(engine, x, clock)

    assert result.tips_applied == 1
    assert result.already_processed == 1  # the edit, in the same page as its original
    assert result.outcomes == {"held": 1, "retweet": 1, "own_tweet": 1}
    later_edit = tl.mention(alice, "@flattr @bob €5 (edited again)", edit_of=edit)
    rsps.replace(responses.GET, MENTIONS, json=tl.page([later_edit]))
    again = poll(engine, x, clock)
    assert again.tips_applied == 0 and again.already_processed == 1
    assert held_for(ledger, bob) == 200 and available(ledger, alice) == 800
    assert count(engine, mentions) == 3  # original (with its edits), retweet, own tweet
    assert_nothing_lost(ledger)


def test_an_edit_seen_without_its_original_tips_once_under_the_original_id(
    engine, x, rsps, tl, ledger, clock
):
    alice, _bob = tl.user("alice"), tl.user("bob")
    fund(ledger, alice, "10.00")
    original = tl.mention(alice, "@flattr @bob €2")
    edit = tl.mention(alice, "@flattr @bob €3", edit_of=original)
    rsps.get(MENTIONS, json=tl.page([edit]))

    poll(engine, x, clock)

    with engine.connect() as conn:
        assert list(conn.execute(select(tips.c.source_id, tips.c.amount_minor))) == [
            (original["id"], 300)
        ]
    assert_nothing_lost(ledger)


def test_a_replayed_page_moves_no_money(engine, x, rsps, tl, ledger, clock):
    alice, bob, carol = tl.user("alice"), tl.user("bob"), tl.user("carol")
    fund(ledger, alice, "10.00")
    page = tl.page(
        [tl.mention(alice, "@flattr @bob @carol €1.50"), tl.mention(alice, "@flattr @bob €1")]
    )
    rsps.get(MENTIONS, json=page)
    poll(engine, x, clock)
    with engine.begin() as conn:  # as if the cursor had been lost: X sends the same page
        conn.execute(state.delete().where(state.c.key == CURSOR_KEY))

    replay = poll(engine, x, clock)

    assert replay.already_processed == 2 and replay.tips_applied == 0
    assert held_for(ledger, bob) == 250 and held_for(ledger, carol) == 150
    assert available(ledger, alice) == 600
    assert count(engine, tips) == 3
    assert_nothing_lost(ledger)


# --------------------------------------------------------------------------- recipients


def test_handles_missing_from_the_response_are_looked_up_in_one_call(
    engine, x, rsps, tl, ledger, clock
):
    alice = tl.user("alice")
    fund(ledger, alice, "10.00")
    # Written before X knew carol and dave: the tweets carry no ids for them.
    to_carol = tl.mention(alice, "@flattr @carol €1")
    to_both = tl.mention(alice, "@flattr @dave @Ghost €2")
    rsps.get(MENTIONS, json=tl.page([to_carol, to_both]))
    carol, dave = xp.user("5001", "carol"), xp.user("5002", "dave")
    rsps.get(xp.users_by_url(), json=xp.users_by([carol, dave], not_found=["Ghost"]))

    result = poll(engine, x, clock)

    lookups = [c for c in rsps.calls if "/2/users/by" in c.request.url]
    assert len(lookups) == 1
    assert sorted(query(lookups[0])["usernames"][0].split(",")) == ["Ghost", "carol", "dave"]
    assert result.outcomes == {"held": 1, "unknown_recipient": 1}
    assert held_for(ledger, carol) == 100 and held_for(ledger, dave) == 200
    assert available(ledger, alice) == 700
    with engine.connect() as conn:
        (reply,) = conn.execute(select(outbox)).all()
    assert reply.kind == "supporter_reply" and reply.topic == "unknown_recipient"
    assert reply.in_reply_to_tweet_id == to_both["id"] and "Ghost" in reply.text
    assert_nothing_lost(ledger)


def test_a_reply_tip_goes_to_the_author_of_the_tweet_replied_to(engine, x, rsps, tl, ledger, clock):
    alice, bob = tl.user("alice"), tl.user("bob")
    fund(ledger, alice, "5.00")
    reply = tl.mention(alice, "@bob @flattr €2", in_reply_to=bob)
    chatter = tl.mention(alice, "@bob @flattr what happened???", in_reply_to=bob)
    rsps.get(MENTIONS, json=tl.page([reply, chatter]))

    result = poll(engine, x, clock)

    assert result.outcomes == {"held": 1, "not_a_command": 1}
    assert held_for(ledger, bob) == 200 and available(ledger, alice) == 300
    assert not any("/2/users/by" in c.request.url for c in rsps.calls)
    assert_nothing_lost(ledger)


def test_tips_to_oneself_or_to_the_bot_are_recognised_by_user_id(
    engine, x, rsps, tl, ledger, clock
):
    alice = tl.user("alice")
    fund(ledger, alice, "10.00")
    # alice's second handle and an alias of the bot resolve to the ids behind them.
    self_tip = xp.tweet(
        id=xp.snowflake(tl.now + timedelta(minutes=1), 1),
        text="@flattr @alice_alt €1",
        author_id=alice["id"],
        mention_ids={"flattr": BOT_ID, "alice_alt": alice["id"]},
    )
    bot_tip = xp.tweet(
        id=xp.snowflake(tl.now + timedelta(minutes=2), 2),
        text="@flattr @tipjar_bot €1",
        author_id=alice["id"],
        mention_ids={"flattr": BOT_ID, "tipjar_bot": BOT_ID},
    )
    rsps.get(MENTIONS, json=xp.mentions_page([bot_tip, self_tip], [alice]))

    result = poll(engine, x, clock)

    assert result.outcomes == {"self_tip": 1, "bot_tip": 1}
    assert available(ledger, alice) == 1000
    assert count(engine, tips) == 0
    assert_nothing_lost(ledger)


def test_a_supporter_nobody_funded_is_pointed_to_sign_up_once_a_month(
    engine, x, rsps, tl, ledger, clock
):
    dave, bob, alice = tl.user("dave"), tl.user("bob"), tl.user("alice")
    fund(ledger, alice, "0.50")
    asks = [tl.mention(dave, f"@flattr @bob €{n}") for n in (1, 2, 3)]
    poor = tl.mention(alice, "@flattr @bob €1")
    rsps.get(MENTIONS, json=tl.page([*asks, poor]))

    result = poll(engine, x, clock)

    assert result.outcomes == {"unknown_supporter": 3, "insufficient_funds": 1}
    assert result.replies_queued == 2 and result.replies_suppressed == 2
    with engine.connect() as conn:
        replies = {r.topic: r for r in conn.execute(select(outbox))}
    assert "https://tipjar.example/me" in replies["unknown_supporter"].text
    assert "€0.50" in replies["insufficient_funds"].text
    assert held_for(ledger, bob) == 0 and available(ledger, alice) == 50
    assert ledger.account(Identity.x(dave["id"])) is None  # no account for a stranger
    assert_nothing_lost(ledger)


def test_a_supporter_in_debt_after_a_card_refund_is_told_why_the_tip_was_refused(
    engine, x, rsps, tl, ledger, clock
):
    from escrow import funding
    from escrow.db import transaction

    alice, bob = tl.user("alice"), tl.user("bob")
    supporter = Identity.x(alice["id"], "alice")
    ledger.deposit(supporter, Money.parse("5", "EUR"), "stripe:pi_1")
    ledger.claim(Identity.x(bob["id"], "bob"))
    ledger.tip(supporter, Identity.x(bob["id"]), Money.parse("5", "EUR"), "spent")
    refund = funding.Reversal("refund", "re_1", "pi_1", None, 300, "eur")  # after it was spent
    transaction(engine, lambda c: funding.take_back(c, ledger.policy, refund, clock()))
    rsps.get(MENTIONS, json=tl.page([tl.mention(alice, "@flattr @bob €1")]))

    result = poll(engine, x, clock)

    assert result.outcomes == {"insufficient_funds": 1}
    with engine.connect() as conn:
        (reply,) = conn.execute(select(outbox)).all()
    assert "you owe €3.00" in reply.text
    assert ledger.check_ledger() == []


def test_error_replies_to_one_supporter_are_capped_per_day(engine, x, rsps, tl, ledger, clock):
    alice = tl.user("alice")
    fund(ledger, alice, "1.00")
    bad = [tl.mention(alice, f"@flattr @bob{n} €0.01") for n in range(8)]
    rsps.get(MENTIONS, json=tl.page(bad))

    result = poll(engine, x, clock)

    assert result.outcomes == {"too_small": 8}
    assert result.replies_queued == 5 and result.replies_suppressed == 3
    clock.advance(days=1, seconds=1)
    later = tl.mention(alice, "@flattr @bob €0.01")
    rsps.replace(responses.GET, MENTIONS, json=tl.page([later]))
    assert poll(engine, x, clock).replies_queued == 1
    assert_nothing_lost(ledger)


def test_stop_opts_the_author_out_and_help_gets_a_reply(engine, x, rsps, tl, ledger, clock):
    carol, dave = tl.user("carol"), tl.user("dave")
    rsps.get(
        MENTIONS,
        json=tl.page([tl.mention(carol, "@flattr stop"), tl.mention(dave, "@flattr help")]),
    )

    result = poll(engine, x, clock)

    assert result.outcomes == {"stop": 1, "help": 1}
    from bot.outbox import is_opted_out

    with engine.connect() as conn:
        account = ledger.account(Identity.x(carol["id"]))
        assert account is not None and is_opted_out(conn, account.account_id)
        topics = sorted(conn.execute(select(outbox.c.topic)).scalars())
    assert topics == ["help", "stop"]
    assert_nothing_lost(ledger)


def test_a_flattr_records_one_share_per_creator_and_month_and_moves_no_money_yet(
    engine, x, rsps, tl, ledger, clock
):
    alice, _bob, dave = tl.user("alice"), tl.user("bob"), tl.user("dave")
    fund(ledger, alice, "5.00")
    first = tl.mention(alice, "@flattr @bob")
    rsps.get(
        MENTIONS,
        json=tl.page([first, tl.mention(alice, "@flattr @bob"), tl.mention(dave, "@flattr @bob")]),
    )

    result = poll(engine, x, clock)

    assert result.outcomes == {"flattred": 1, "already_flattred": 1, "unknown_supporter": 1}
    assert result.flattrs_recorded == 1
    with engine.connect() as conn:
        (share,) = conn.execute(select(metadata.tables["shares"])).all()
    assert share.source_id == first["id"] and share.period == "2024-03"  # the tweet's month
    assert available(ledger, alice) == 500  # a flattr moves money only at settlement
    assert_nothing_lost(ledger)


# --------------------------------------------------------------------------- platform faults


def rate_limited(rsps: responses.RequestsMock, url: str, reset: int) -> None:
    rsps.get(
        url,
        status=429,
        json=xp.too_many_requests(),
        headers=xp.rate_limit_headers(remaining=0, reset=reset),
    )


def test_a_429_stops_polling_until_the_reset_without_calling_x(engine, rsps, tl, ledger, clock):
    alice, bob = tl.user("alice"), tl.user("bob")
    fund(ledger, alice, "5.00")
    reset = clock.now + timedelta(minutes=15)
    rate_limited(rsps, MENTIONS, int(reset.timestamp()))

    first = poll(engine, make_x(clock), clock)

    assert first.rate_limited_until == reset
    with engine.connect() as conn:
        assert get_state(conn, RESUME_KEY) == reset.isoformat()
    clock.advance(minutes=10)
    calls = len(rsps.calls)
    waiting = poll(engine, make_x(clock), clock)  # a new process: only the database knows
    assert waiting.rate_limited_until == reset and len(rsps.calls) == calls
    clock.advance(minutes=6)
    rsps.replace(responses.GET, MENTIONS, json=tl.page([tl.mention(alice, "@flattr @bob €1")]))
    resumed = poll(engine, make_x(clock), clock)
    assert resumed.tips_applied == 1 and resumed.rate_limited_until is None
    assert held_for(ledger, bob) == 100
    assert_nothing_lost(ledger)


def test_a_429_on_a_later_page_applies_nothing_and_keeps_the_cursor(
    engine, x, rsps, tl, ledger, clock
):
    alice, bob = tl.user("alice"), tl.user("bob")
    fund(ledger, alice, "20.00")
    tweets = [tl.mention(alice, "@flattr @bob €1") for _ in range(10)][::-1]
    rsps.get(MENTIONS, json=tl.page(tweets[:5], next_token="p2"))
    rate_limited(rsps, MENTIONS, int((clock.now + timedelta(minutes=15)).timestamp()))

    result = poll(engine, x, clock, page_size=5)

    assert result.rate_limited_until is not None and result.processed == 0
    assert cursor(engine) is None and count(engine, tips) == 0
    clock.advance(minutes=16)
    rsps.replace(responses.GET, MENTIONS, json=tl.page(tweets[:5], next_token="p2"))
    rsps.get(MENTIONS, json=tl.page(tweets[5:]))
    assert poll(engine, make_x(clock), clock, page_size=5).tips_applied == 10
    assert held_for(ledger, bob) == 1000
    assert_nothing_lost(ledger)


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503, "json": xp.service_unavailable()},
        {"body": requests.exceptions.ReadTimeout("read timed out")},
        {"status": 200, "body": '{"data": [{"id": "1', "content_type": "application/json"},
        {"status": 200, "json": {"data": [{"id": "12", "text": "no author"}]}},
    ],
    ids=["503", "timeout", "truncated-json", "wrong-shape"],
)
def test_a_failing_or_garbled_answer_loses_nothing(engine, x, rsps, tl, ledger, clock, fault):
    alice, bob = tl.user("alice"), tl.user("bob")
    fund(ledger, alice, "5.00")
    for _ in range(2):  # the first try and the adapter's one retry
        rsps.get(MENTIONS, **fault)

    failed = poll(engine, x, clock)

    assert failed.error is not None and failed.processed == 0 and cursor(engine) is None
    tip = tl.mention(alice, "@flattr @bob €2")
    rsps.replace(responses.GET, MENTIONS, json=tl.page([tip]))
    # `replace` swaps the first registration; drop the second so X now answers well.
    rsps.remove(responses.GET, MENTIONS)
    rsps.get(MENTIONS, json=tl.page([tip]))
    retried = poll(engine, x, clock)
    assert retried.ok and retried.tips_applied == 1 and cursor(engine) == tip["id"]
    assert held_for(ledger, bob) == 200 and available(ledger, alice) == 300
    assert_nothing_lost(ledger)


def test_a_failing_user_lookup_applies_nothing(engine, x, rsps, tl, ledger, clock):
    alice = tl.user("alice")
    fund(ledger, alice, "5.00")
    tip = tl.mention(alice, "@flattr @newcomer €1")
    rsps.get(MENTIONS, json=tl.page([tip]))
    rsps.get(xp.users_by_url(), status=503, json=xp.service_unavailable())

    failed = poll(engine, x, clock)

    assert failed.error is not None and cursor(engine) is None and count(engine, mentions) == 0
    rsps.replace(responses.GET, xp.users_by_url(), json=xp.users_by([xp.user("7001", "newcomer")]))
    assert poll(engine, x, clock).tips_applied == 1
    assert_nothing_lost(ledger)
