"""The outbox: opting out, and the relay that posts each row exactly once.

Tips arrive as mentions read by the listener (tests/support/notice_world.py); rows are
posted by `send_pending`. The duplicate-content case goes through the real tweepy adapter.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update

from bot.outbox import TWEETS_RESUME_AT, is_opted_out, opt_out, send_pending
from bot.platforms import PermanentError, RateLimited, TransientError
from bot.platforms.x.api import TweepyXApi
from bot.state import get_state
from escrow.db import transaction
from escrow.ledger import Identity
from escrow.schema import outbox
from escrow.service import Ledger
from tests.support import x_payloads as xp
from tests.support.fake_x import FakeXApi
from tests.support.notice_world import (
    BOT_ID,
    account_id,
    assert_nothing_lost,
    fund,
    new_ledger,
    new_x,
    notices,
    plan,
    rows,
    send,
    tip,
)


@pytest.fixture
def x(clock: Any) -> FakeXApi:
    return new_x(clock)


@pytest.fixture
def ledger(engine: Engine, clock: Any) -> Ledger:
    return new_ledger(engine, clock)


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
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day
    plan(engine, clock)
    bob = account_id(ledger, x, "bob")
    transaction(engine, lambda conn: opt_out(conn, bob, clock.now))

    result = send(engine, x, clock)

    assert result.sent == 0 and x.posted == []
    assert [r.state for r in notices(engine)] == ["skipped"]


def test_a_notice_for_a_creator_who_claimed_meanwhile_is_skipped(engine, x, ledger, clock):
    fund(ledger, x, "alice")
    tip(engine, x, clock, "alice", "@flattr @bob €1")
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day
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
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day
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
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day
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
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day
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

    name = "x"  # the relay keys its rate-limit state by the platform's name

    def __init__(self) -> None:
        self.posted: list[str] = []
        self._lock = threading.Lock()

    def reply(self, text: str, in_reply_to_id: str) -> str:
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
