"""Creator notices: when the bot tells a creator what waits for them, and how often.

Tips arrive the way they do in production, as mentions read by the listener (from the
in-memory X of tests/support/fake_x.py); notices are planned by `plan_notices` and posted
by `send_pending`. The outbox's own rules (opt-out, the relay) are in test_outbox.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from bot.config import NoticeSchedule, Settings
from bot.listener import poll_once
from escrow.expiry import expire_due
from escrow.flattrs import period_bounds, period_of
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.schema import tips
from escrow.service import Ledger
from escrow.settlement import settle
from tests.support.fake_x import FakeXApi
from tests.support.notice_world import (
    SETTINGS,
    assert_nothing_lost,
    fund,
    new_ledger,
    new_x,
    notices,
    plan,
    say,
    send,
    tip,
)


@pytest.fixture
def x(clock: Any) -> FakeXApi:
    return new_x(clock)


@pytest.fixture
def ledger(engine: Engine, clock: Any) -> Ledger:
    return new_ledger(engine, clock)


# --------------------------------------------------------------------------- the schedule


def test_a_creator_hears_at_the_first_hold_once_before_expiry_and_nothing_more(
    engine, x, ledger, clock
):
    fund(ledger, x, "alice")
    first_tip = tip(engine, x, clock, "alice", "@flattr @bob €1")
    assert plan(engine, clock).planned == 0  # not before the tip has stood a day
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day

    assert plan(engine, clock).planned == 1
    assert send(engine, x, clock).sent == 1
    (text, thread) = x.posted[0]
    assert thread == first_tip
    assert "€1.00" in text and "1 supporter" in text and "https://tipjar.example/claim" in text

    tip(engine, x, clock, "alice", "@flattr @bob €2")
    assert plan(engine, clock).planned == 0  # more money in the same cycle: no new notice
    clock.advance(days=74)  # the oldest hold expires on day 90: 15 days left
    assert plan(engine, clock).planned == 0
    clock.advance(days=1, seconds=1)  # now within 14 days of the oldest expiry
    assert plan(engine, clock).planned == 1
    send(engine, x, clock)
    reminder, thread = x.posted[1]
    assert "reminder" in reminder and "€3.00" in reminder and thread == first_tip
    clock.advance(days=10)
    assert plan(engine, clock).planned == 0  # nothing more
    assert len(x.posted) == 2
    assert_nothing_lost(ledger)


def test_a_new_hold_after_everything_expired_starts_a_new_cycle(engine, x, ledger, clock):
    fund(ledger, x, "alice")
    tip(engine, x, clock, "alice", "@flattr @bob €1")
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day
    plan(engine, clock)
    clock.advance(days=91)
    expire_due(engine, Policy(), clock.now)
    assert plan(engine, clock).cycles_closed == 1

    later = tip(engine, x, clock, "alice", "@flattr @bob €4")
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day

    result = plan(engine, clock)
    assert result.planned == 1 and result.cycles_opened == 1
    latest = notices(engine)[-1]
    assert latest.in_reply_to_tweet_id == later and "€4.00" in latest.text
    assert_nothing_lost(ledger)


def test_four_tips_from_three_supporters_make_one_aggregated_notice(engine, x, ledger, clock):
    for who in ("alice", "carol", "dave"):
        fund(ledger, x, who)
    for who, text in [
        ("alice", "@flattr @bob €1"),
        ("carol", "@flattr @bob €0.60"),
        ("dave", "@flattr @bob €1.50"),
        ("alice", "@flattr @bob €0.50"),
    ]:
        say(x, who, text)
    poll_once(engine, x, SETTINGS, clock=clock)
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day

    assert plan(engine, clock).planned == 1
    (notice,) = notices(engine)
    assert "€3.60" in notice.text and "3 supporters" in notice.text and "4 tips" in notice.text
    assert_nothing_lost(ledger)


def test_every_notice_is_a_reply_under_a_tip_tweet(engine, x, ledger, clock):
    fund(ledger, x, "alice")
    for creator in ("bob", "carol", "erin"):
        say(x, "alice", f"@flattr @{creator} €1")
    poll_once(engine, x, SETTINGS, clock=clock)
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day
    plan(engine, clock)
    send(engine, x, clock)

    with engine.connect() as conn:
        tip_tweets = set(conn.execute(select(tips.c.source_id)).scalars())
    assert len(x.posted) == 3
    assert {thread for _text, thread in x.posted} == tip_tweets
    assert all(r.in_reply_to_tweet_id in tip_tweets for r in notices(engine))


def test_a_hold_from_the_monthly_settlement_is_noticed_under_the_flattr_tweet(
    engine, x, ledger, clock
):
    fund(ledger, x, "alice")
    flattr_tweet = tip(engine, x, clock, "alice", "@flattr @bob")  # no amount: a flattr
    assert plan(engine, clock).planned == 0  # a flattr moves nothing before its month ends
    _, month_end = period_bounds(period_of(clock.now))
    clock.now = month_end + timedelta(minutes=15)
    settle(engine, Policy(), period_of(month_end - timedelta(days=1)), clock.now)
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day

    result = plan(engine, clock)
    send(engine, x, clock)

    (notice,) = notices(engine)
    assert result.planned == 1 and notice.in_reply_to_tweet_id == flattr_tweet
    assert x.posted == [(notice.text, flattr_tweet)]
    assert "@bob" in notice.text and "€2.00" in notice.text  # the minimum budget, held
    assert_nothing_lost(ledger)


def test_holds_without_a_tip_tweet_get_no_unsolicited_post(engine, x, ledger, clock):
    fund(ledger, x, "alice")
    bob = x.add_user("bob")
    ledger.tip(
        Identity.x(x.user_named("alice").user_id),
        Identity.x(bob.user_id, "bob"),
        Money(100),
        "share:1",
    )
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day

    result = plan(engine, clock)

    assert result.planned == 0 and result.without_thread == 1 and notices(engine) == []


# --------------------------------------------------------------------------- the cap


def test_the_daily_cap_defers_notices_to_the_next_day_and_drops_none(engine, x, ledger, clock):
    capped = Settings(**{**SETTINGS.__dict__, "notices_per_day": 2})
    fund(ledger, x, "alice")
    for creator in ("bob", "carol", "erin"):
        say(x, "alice", f"@flattr @{creator} €1")
    poll_once(engine, x, SETTINGS, clock=clock)
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day

    first_day = plan(engine, clock, capped)
    assert (first_day.planned, first_day.deferred) == (2, 1)
    send(engine, x, clock)
    assert plan(engine, clock, capped).deferred == 1  # sent ones still count today
    clock.now = clock.now.replace(hour=0, minute=0, second=1) + timedelta(days=1)
    next_day = plan(engine, clock, capped)
    assert (next_day.planned, next_day.deferred) == (1, 0)
    assert len({r.recipient_account_id for r in notices(engine)}) == 3


def test_the_schedule_none_plans_nothing(engine, x, ledger, clock):
    silent = Settings(**{**SETTINGS.__dict__, "notice_schedule": NoticeSchedule(False, ())})
    fund(ledger, x, "alice")
    tip(engine, x, clock, "alice", "@flattr @bob €1")
    clock.advance(days=89)
    assert plan(engine, clock, silent).planned == 0
