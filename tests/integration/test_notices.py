"""Creator notices and the outbox relay: when the bot speaks, to whom, and only once.

Tips arrive the way they do in production, as mentions read by the listener (from the
in-memory X of tests/support/fake_x.py); notices are planned by `plan_notices` and posted
by `send_pending`. The duplicate-content case goes through the real tweepy adapter.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from bot.config import NoticeSchedule, Settings
from bot.listener import poll_once
from bot.notices import plan_notices
from bot.outbox import TWEETS_RESUME_AT, is_opted_out, opt_out, send_pending
from bot.platforms import PermanentError, RateLimited, TransientError
from bot.platforms.x.api import TweepyXApi
from bot.state import get_state
from escrow.db import transaction
from escrow.expiry import expire_due
from escrow.flattrs import period_bounds, period_of
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.schema import accounts, deposits, outbox, tips
from escrow.service import Ledger
from escrow.settlement import settle
from tests.support import x_payloads as xp
from tests.support.fake_x import FakeXApi

BOT_ID = "999"
SETTINGS = Settings(
    x_bot_username="flattr",
    x_bot_user_id=BOT_ID,
    public_base_url="https://tipjar.example",
    notices_per_day=50,
)


@pytest.fixture
def x(clock: Any) -> FakeXApi:
    return FakeXApi(bot_username="flattr", bot_user_id=BOT_ID, clock=clock)


@pytest.fixture
def ledger(engine: Engine, clock: Any) -> Ledger:
    return Ledger(engine, Policy(), clock)


def fund(ledger: Ledger, x: FakeXApi, handle: str, amount: str = "20.00") -> None:
    user = x.user_named(handle) or x.add_user(handle)
    ledger.deposit(Identity.x(user.user_id, handle), Money.parse(amount, "EUR"), f"ref-{handle}")


def say(x: FakeXApi, author: str, text: str) -> Any:
    """`author` tweets `text`; everyone it mentions exists on X."""
    for handle in xp.mentioned_usernames(text):
        if x.user_named(handle) is None:
            x.add_user(handle)
    return x.add_mention(author, text)


def tip(engine: Engine, x: FakeXApi, clock: Any, author: str, text: str) -> str:
    """`author` tweets `text`; the listener reads it. Returns the tweet id."""
    mention = say(x, author, text)
    poll_once(engine, x, SETTINGS, clock=clock)
    return mention.id


def plan(engine: Engine, clock: Any, settings: Settings = SETTINGS) -> Any:
    return transaction(engine, lambda conn: plan_notices(conn, settings, clock.now))


def send(engine: Engine, x: Any, clock: Any, limit: int = 50) -> Any:
    return send_pending(engine, x, clock.now, limit)


def rows(engine: Engine, *where: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox).where(*where).order_by(outbox.c.id)))


def notices(engine: Engine) -> list[Any]:
    return rows(engine, outbox.c.kind == "creator_notice")


def account_id(ledger: Ledger, x: FakeXApi, handle: str) -> int:
    user = x.user_named(handle)
    assert user is not None
    view = ledger.account(Identity.x(user.user_id))
    assert view is not None
    return view.account_id


def assert_nothing_lost(ledger: Ledger) -> None:
    assert ledger.check_ledger() == []
    with ledger.engine.connect() as conn:
        deposited = conn.execute(select(func.sum(deposits.c.amount_minor))).scalar_one() or 0
        kept = conn.execute(
            select(func.sum(accounts.c.credits_posted - accounts.c.debits_posted)).where(
                accounts.c.platform_user_id != "funding"
            )
        ).scalar_one()
    assert kept == deposited


# --------------------------------------------------------------------------- the schedule


def test_a_creator_hears_at_the_first_hold_once_before_expiry_and_nothing_more(
    engine, x, ledger, clock
):
    fund(ledger, x, "alice")
    first_tip = tip(engine, x, clock, "alice", "@flattr @bob €1")

    assert plan(engine, clock).planned == 1
    assert send(engine, x, clock).sent == 1
    (text, thread) = x.posted[0]
    assert thread == first_tip
    assert "€1.00" in text and "1 supporter" in text and "https://tipjar.example/claim" in text

    tip(engine, x, clock, "alice", "@flattr @bob €2")
    assert plan(engine, clock).planned == 0  # more money in the same cycle: no new notice
    clock.advance(days=75)  # the oldest hold expires on day 90: 15 days left
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
    plan(engine, clock)
    clock.advance(days=91)
    expire_due(engine, Policy(), clock.now)
    assert plan(engine, clock).cycles_closed == 1

    later = tip(engine, x, clock, "alice", "@flattr @bob €4")

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

    assert plan(engine, clock).planned == 1
    (notice,) = notices(engine)
    assert "€3.60" in notice.text and "3 supporters" in notice.text and "4 tips" in notice.text
    assert_nothing_lost(ledger)


def test_every_notice_is_a_reply_under_a_tip_tweet(engine, x, ledger, clock):
    fund(ledger, x, "alice")
    for creator in ("bob", "carol", "erin"):
        say(x, "alice", f"@flattr @{creator} €1")
    poll_once(engine, x, SETTINGS, clock=clock)
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

    result = plan(engine, clock)

    assert result.planned == 0 and result.without_thread == 1 and notices(engine) == []


# --------------------------------------------------------------------------- the cap


def test_the_daily_cap_defers_notices_to_the_next_day_and_drops_none(engine, x, ledger, clock):
    capped = Settings(**{**SETTINGS.__dict__, "notices_per_day": 2})
    fund(ledger, x, "alice")
    for creator in ("bob", "carol", "erin"):
        say(x, "alice", f"@flattr @{creator} €1")
    poll_once(engine, x, SETTINGS, clock=clock)

    first_day = plan(engine, clock, capped)
    assert (first_day.planned, first_day.deferred) == (2, 1)
    send(engine, x, clock)
    assert plan(engine, clock, capped).deferred == 1  # sent ones still count today
    clock.now = clock.now.replace(hour=0, minute=0, second=1) + timedelta(days=1)
    next_day = plan(engine, clock, capped)
    assert (next_day.planned, next_day.deferred) == (1, 0)
    assert len({r.recipient_account_id for r in notices(engine)}) == 3


# --------------------------------------------------------------------------- opting out


def test_stop_from_the_creator_ends_notices_for_good(engine, x, ledger, clock):
    fund(ledger, x, "alice")
    tip(engine, x, clock, "bob", "@flattr stop")
    tip(engine, x, clock, "alice", "@flattr @bob €1")

    assert plan(engine, clock).planned == 0
    clock.advance(days=80)
    assert plan(engine, clock).planned == 0
    assert notices(engine) == []
    with engine.connect() as conn:
        assert is_opted_out(conn, account_id(ledger, x, "bob"))
    assert_nothing_lost(ledger)


def test_a_notice_planned_before_the_opt_out_is_never_sent(engine, x, ledger, clock):
    fund(ledger, x, "alice")
    tip(engine, x, clock, "alice", "@flattr @bob €1")
    plan(engine, clock)
    bob = account_id(ledger, x, "bob")
    transaction(engine, lambda conn: opt_out(conn, bob, clock.now))

    result = send(engine, x, clock)

    assert result.sent == 0 and x.posted == []
    assert [r.state for r in notices(engine)] == ["skipped"]


def test_a_notice_for_a_creator_who_claimed_meanwhile_is_skipped(engine, x, ledger, clock):
    fund(ledger, x, "alice")
    tip(engine, x, clock, "alice", "@flattr @bob €1")
    plan(engine, clock)
    ledger.claim(Identity.x(x.user_named("bob").user_id, "bob"))

    assert send(engine, x, clock).skipped == 1 and x.posted == []
    assert_nothing_lost(ledger)


# --------------------------------------------------------------------------- the relay


def test_supporter_replies_are_posted_in_reply_to_the_tweet_that_asked(engine, x, ledger, clock):
    asked = tip(engine, x, clock, "dave", "@flattr @bob €1")

    send(engine, x, clock)

    ((text, thread),) = x.posted
    assert thread == asked and "no funds" in text
    (row,) = rows(engine)
    assert row.state == "sent" and row.sent_tweet_id == x.posted_ids[0]


def test_a_transient_failure_backs_off_and_is_retried(engine, x, ledger, clock):
    tip(engine, x, clock, "dave", "@flattr @bob €1")
    x.fail_next("reply", TransientError("HTTP 503"))

    failed = send(engine, x, clock)

    assert failed.retry_later == 1 and failed.error is not None
    (row,) = rows(engine)
    assert row.state == "pending" and row.attempts == 1
    assert row.next_attempt_at == clock.now + timedelta(seconds=30)
    assert send(engine, x, clock).sent == 0  # not yet due
    clock.advance(seconds=30)
    assert send(engine, x, clock).sent == 1 and len(x.posted) == 1


def test_a_429_holds_every_post_until_the_reset(engine, x, ledger, clock):
    for who in ("dave", "erin"):
        tip(engine, x, clock, who, "@flattr @bob €1")
    reset = clock.now + timedelta(minutes=15)
    x.fail_next("reply", RateLimited(reset))

    result = send(engine, x, clock)

    assert result.rate_limited_until == reset and result.sent == 0
    with engine.connect() as conn:
        assert get_state(conn, TWEETS_RESUME_AT) == reset.isoformat()
    calls = len(x.calls_to("reply"))
    clock.advance(minutes=14)
    assert send(engine, x, clock).sent == 0 and len(x.calls_to("reply")) == calls
    clock.advance(minutes=2)
    assert send(engine, x, clock).sent == 2
    assert [r.attempts for r in rows(engine)] == [1, 1]  # the 429 did not count


def test_a_refused_post_is_marked_failed_with_the_reason(engine, x, ledger, clock):
    tip(engine, x, clock, "dave", "@flattr @bob €1")
    x.fail_next("reply", PermanentError("the tweet was deleted", status=403))

    assert send(engine, x, clock).failed == 1
    (row,) = rows(engine)
    assert row.state == "failed" and row.error == "the tweet was deleted"
    assert send(engine, x, clock).sent == 0


def real_x(clock: Any) -> TweepyXApi:
    return xp.tweepy_x(BOT_ID, clock, max_retries=0)


def test_a_duplicate_403_after_a_crash_mid_send_means_the_notice_was_posted(
    engine, x, ledger, clock, rsps
):
    fund(ledger, x, "alice")
    tip(engine, x, clock, "alice", "@flattr @bob €1")
    plan(engine, clock)
    # A relay claimed the notice, posted it, and died before recording the tweet id.
    with engine.begin() as conn:
        conn.execute(update(outbox).values(state="sending", attempts=1, lease_until=clock.now))
    rsps.post(xp.tweets_url(), status=403, json=xp.duplicate_content())

    result = send(engine, real_x(clock), clock)

    assert result.sent == 1 and len(rsps.calls) == 1
    (row,) = notices(engine)
    assert row.state == "sent" and row.sent_tweet_id is None
    assert "duplicate content" in row.error
    assert send(engine, real_x(clock), clock).sent == 0 and len(rsps.calls) == 1
    assert_nothing_lost(ledger)


def test_a_duplicate_403_on_a_first_attempt_is_a_failure(engine, x, ledger, clock, rsps):
    fund(ledger, x, "alice")
    tip(engine, x, clock, "alice", "@flattr @bob €1")
    plan(engine, clock)
    rsps.post(xp.tweets_url(), status=403, json=xp.duplicate_content())

    result = send(engine, real_x(clock), clock)

    assert result.failed == 1
    (row,) = notices(engine)
    assert row.state == "failed" and "duplicate content" in row.error
    assert_nothing_lost(ledger)


def test_a_notice_sent_through_the_real_client_records_its_tweet_id(engine, x, ledger, clock, rsps):
    fund(ledger, x, "alice")
    thread = tip(engine, x, clock, "alice", "@flattr @bob €1")
    plan(engine, clock)
    rsps.post(xp.tweets_url(), status=201, json=xp.created_tweet("1770000000000000001", "hi"))

    assert send(engine, real_x(clock), clock).sent == 1

    body = rsps.calls[0].request.body
    assert thread.encode() in body and b"in_reply_to_tweet_id" in body
    (row,) = notices(engine)
    assert row.sent_tweet_id == "1770000000000000001"
    assert_nothing_lost(ledger)


# --------------------------------------------------------------------------- concurrency


class SlowX:
    """A thread-safe X whose posts take a moment, so that relays overlap."""

    def __init__(self) -> None:
        self.posted: list[str] = []
        self._lock = threading.Lock()

    def reply(self, text: str, in_reply_to_tweet_id: str) -> str:
        time.sleep(0.002)
        with self._lock:
            self.posted.append(text)
            return str(1_800_000_000_000_000_000 + len(self.posted))


def test_two_relays_at_once_send_each_row_exactly_once(pg_engine, clock):
    with pg_engine.begin() as conn:
        conn.execute(
            outbox.insert(),
            [
                {
                    "dedupe_key": f"reply:{n}",
                    "kind": "supporter_reply",
                    "recipient_user_id": str(100 + n),
                    "in_reply_to_tweet_id": str(1_700_000_000_000_000_000 + n),
                    "text": f"reply number {n}",
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": clock.now,
                    "created_at": clock.now,
                }
                for n in range(50)
            ],
        )
    x = SlowX()
    results: list[Any] = []
    start = threading.Barrier(2)

    def relay() -> None:
        start.wait()
        results.append(send_pending(pg_engine, x, clock.now, limit=50))  # type: ignore[arg-type]

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(x.posted) == sorted(f"reply number {n}" for n in range(50))
    assert sum(r.sent for r in results) == 50 and all(r.sent > 0 for r in results)
    assert {r.state for r in rows(pg_engine)} == {"sent"}


def test_the_schedule_none_plans_nothing(engine, x, ledger, clock):
    silent = Settings(**{**SETTINGS.__dict__, "notice_schedule": NoticeSchedule(False, ())})
    fund(ledger, x, "alice")
    tip(engine, x, clock, "alice", "@flattr @bob €1")
    clock.advance(days=89)
    assert plan(engine, clock, silent).planned == 0
