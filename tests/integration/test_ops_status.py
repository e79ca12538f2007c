"""`tipjar status`: everything at a glance, and exit 1 when a maintainer is needed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Connection, Engine, insert

from bot.cli import main
from bot.config import Settings
from bot.costs import record_post
from bot.status import record_poll
from escrow import selfcheck
from escrow.db import transaction
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.schema import outbox
from escrow.service import Ledger

ALICE = Identity.x("101", "alice")
BOB = Identity.x("202", "bob")


def status(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["status", *args], env={"DATABASE_URL": db_url})


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def healthy(engine: Engine, now: datetime) -> Ledger:
    """A bot that polled a minute ago, a clean ledger check, a hold waiting for bob."""
    ledger = Ledger(engine, Policy(), lambda: now - timedelta(days=85))
    ledger.deposit(ALICE, Money(1000, "EUR"), "ref-1")
    ledger.tip(ALICE, BOB, Money(250, "EUR"), "tweet-1")
    record_poll(engine, "x", 1, {"held": 1}, ok=True, now=now - timedelta(minutes=1))
    selfcheck.run_check(engine, selfcheck.DAILY, lambda: now)
    return ledger


def test_a_healthy_bot_exits_0_with_every_section(db_url, healthy):
    result = status(db_url, "--json")

    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["ok"] is True and report["attention"] == []
    [x] = report["platforms"]
    assert x["platform"] == "x" and not x["stale"] and 50 <= x["last_poll_age_seconds"] <= 120
    assert report["escrow"]["total_held_minor"] == 250 and report["escrow"]["holds"] == 1
    assert report["escrow"]["expiring_7d_minor"] == 250  # given 85 days ago, 90 days to claim
    assert report["escrow"]["next_expiries"][0]["handle"] == "bob"
    assert report["audit"]["last"]["ok"] is True and not report["audit"]["settlement_stopped"]
    assert report["outbox"]["by_state"] == {}


def test_the_text_screen_says_all_well(db_url, healthy):
    result = status(db_url)

    assert result.exit_code == 0
    assert "€2.50 held in 1 holds" in result.stdout and "all well" in result.stdout


def _fail_a_post(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(outbox).values(
                dedupe_key="reply:tweet-9",
                kind="supporter_reply",
                recipient_user_id="101",
                in_reply_to_tweet_id="9",
                text="Sorry",
                state="failed",
                attempts=5,
                error="POST /2/tweets: HTTP 403: forbidden",
                next_attempt_at=now,
                created_at=now,
            )
        )


def test_a_stale_poll_a_failed_post_and_a_failed_audit_each_need_a_maintainer(
    engine, db_url, healthy, now
):
    record_poll(engine, "x", 0, {}, ok=True, now=now - timedelta(minutes=25))
    _fail_a_post(engine, now)
    transaction(
        engine,
        lambda conn: selfcheck.record(conn, selfcheck.DAILY, ["posted debits 1 != 0"], now, now),
    )

    result = status(db_url, "--json")

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    reasons = " | ".join(report["attention"])
    assert "x: no successful poll for 25 minutes" in reasons
    assert "outbox: 1 post(s) failed" in reasons
    assert "settlement is stopped" in reasons
    assert report["platforms"][0]["stale"] is True
    assert report["outbox"]["by_state"] == {"failed": 1}
    assert report["audit"]["last"]["details"] == [
        {"kind": "ledger", "message": "posted debits 1 != 0"}
    ]
    text = status(db_url)
    assert text.exit_code == 1 and "needs a maintainer:" in text.stdout


def test_a_bot_that_never_polled_needs_a_maintainer(db_url):
    result = status(db_url, "--json")

    assert result.exit_code == 1
    assert json.loads(result.stdout)["attention"] == ["x: no successful poll yet"]


def test_mentions_missed_by_a_long_outage_need_a_maintainer_for_a_week(
    engine, db_url, healthy, now
):
    record_poll(engine, "x", 900, {}, ok=True, now=now - timedelta(minutes=1), missed_window=1)

    result = status(db_url, "--json")

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["platforms"][0]["missed_window_at"] is not None
    assert any("x: mentions were missed at" in r for r in report["attention"])
    assert "mentions missed at" in status(db_url).stdout

    record_poll(engine, "x", 3, {}, ok=True, now=now)  # a later clean poll does not hide it
    assert json.loads(status(db_url, "--json").stdout)["ok"] is False


def test_todays_posts_and_spend_against_the_cap(engine, db_url, healthy, now):
    def post(conn: Connection) -> None:
        for _ in range(2):
            record_post(conn, Settings(), "@bob thanks", now)
        for _ in range(26):
            record_post(conn, Settings(), "@bob €2 waits: https://tipjar.example/claim", now)

    transaction(engine, post)

    result = status(db_url, "--json")

    report = json.loads(result.stdout)
    [x] = report["caps"]
    assert (x["posts"], x["posts_with_link"], x["spend_usd_micros"]) == (2, 26, 5_230_000)
    assert x["spend_cap_usd_micros"] == 5_000_000 and x["cap_reached"] is True
    assert result.exit_code == 1
    assert any("daily spend cap is reached" in r for r in report["attention"])
