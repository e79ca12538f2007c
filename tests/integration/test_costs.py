"""A bill with a ceiling (issue 15, point 3): replies capped per day, posts held to the
day's spend cap, and `tipjar costs` reporting reads, posts, spend, deferred and dropped.

Reproduced on main: 80 unfunded accounts x 9 mentions queued 480 replies in one poll, 80
of them with a link, and nothing bounded what a day of posting cost.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from bot.cli import main
from bot.config import Settings
from bot.costs import usage
from bot.listener import poll_once
from bot.outbox import enqueue, send_pending
from escrow.db import transaction
from escrow.schema import outbox
from tests.support.fake_x import FakeXApi

BOT_ID = "999"
SETTINGS = Settings(
    x_bot_username="flattr", x_bot_user_id=BOT_ID, public_base_url="https://tipjar.example"
)
NOTICE = (
    "@bob you have €2.00 waiting on tipjar. Sign in with X to claim: https://tipjar.example/claim"
)


@pytest.fixture
def x(clock: Any) -> FakeXApi:
    return FakeXApi(bot_username="flattr", bot_user_id=BOT_ID, clock=clock)


def queue(engine: Engine, clock: Any, n: int, *, kind: str, text: str = NOTICE) -> None:
    def work(conn: Any) -> None:
        for i in range(n):
            enqueue(
                conn,
                clock.now,
                dedupe_key=f"{kind}:{clock.now.isoformat()}:{i}",
                kind=kind,
                recipient_user_id=str(2000 + i),
                in_reply_to_tweet_id=str(1_800_000_000_000_000_000 + i),
                text=f"{text} #{i}",
            )

    transaction(engine, work)


def states(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(select(outbox.c.kind, outbox.c.state).order_by(outbox.c.id))
        ]


def test_eighty_unfunded_accounts_times_nine_mentions_get_at_most_the_daily_reply_cap(
    engine, x, clock
):
    x.add_user("bob")
    for i in range(80):
        author = f"fan{i}"
        x.add_mention(author, "@flattr @bob €1")  # no funds: the sign-up pointer, with a link
        for j in range(8):
            x.add_mention(author, f"@flattr @bob €1.{j}05")  # malformed: an error reply

    result = poll_once(engine, x, SETTINGS, clock=clock, page_size=100)

    assert result.processed == 720
    # main queued 480 (one sign-up pointer and five errors per author); now the day's cap
    assert result.replies_queued == SETTINGS.replies_per_day == 200
    assert len(states(engine)) == 200


def test_the_spend_cap_defers_posts_to_the_next_day_oldest_first(engine, x, clock):
    capped = Settings(**{**SETTINGS.__dict__, "x_daily_budget_usd_micros": 500_000})  # $0.50
    queue(engine, clock, 5, kind="creator_notice")  # 5 posts with a link, $0.20 each

    first = send_pending(engine, x, clock.now, settings=capped)

    assert (first.sent, first.held_back) == (2, 3)
    assert [s for _k, s in states(engine)] == ["sent", "sent", "pending", "pending", "pending"]
    clock.now = clock.now.replace(hour=0, minute=0) + timedelta(days=1)
    queue(engine, clock, 1, kind="creator_notice")  # a newer post, due at once
    second = send_pending(engine, x, clock.now, settings=capped)
    assert (second.sent, second.held_back) == (2, 2)
    posted = [text.rsplit("#", 1)[1] for text, _thread in x.posted]
    assert posted == ["0", "1", "2", "3"]  # yesterday's waiting posts went first


def test_an_error_reply_is_dropped_rather_than_delayed_more_than_a_day(engine, x, clock):
    capped = Settings(**{**SETTINGS.__dict__, "x_daily_budget_usd_micros": 10_000})  # $0.01
    queue(engine, clock, 1, kind="supporter_reply", text="@fan you have no funds yet")

    assert send_pending(engine, x, clock.now, settings=capped).held_back == 1
    assert states(engine) == [("supporter_reply", "pending")]
    clock.now = clock.now.replace(hour=0, minute=0) + timedelta(days=1, seconds=1)
    assert send_pending(engine, x, clock.now, settings=capped).held_back == 1

    assert states(engine) == [("supporter_reply", "skipped")]
    assert x.posted == []


def test_tipjar_costs_reports_reads_posts_spend_and_what_waited(
    engine, db_url, x, clock, monkeypatch, tmp_path
):
    capped = Settings(**{**SETTINGS.__dict__, "x_daily_budget_usd_micros": 450_000})
    x.add_user("bob")
    x.add_mention("fan", "@flattr @bob €1.234")  # malformed: one error reply, no link
    poll_once(engine, x, capped, clock=clock)
    queue(engine, clock, 3, kind="creator_notice")
    send_pending(engine, x, clock.now, settings=capped)
    with engine.connect() as conn:
        (today,) = usage(conn, 1, clock.now)
    assert today.reads >= 1
    assert (today.posts, today.posts_with_link, today.deferred) == (1, 2, 1)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("bot.cli.cost_cmds.utcnow", lambda: clock.now)
    env = {"DATABASE_URL": db_url}
    shown = CliRunner().invoke(main, ["costs", "--days", "2", "--json"], env=env)

    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["daily_budget_usd_micros"] == 5_000_000  # the CLI reads its own config
    day = report["days"][0]
    assert day == {
        "day": clock.now.date().isoformat(),
        "reads": today.reads,
        "posts": 1,
        "posts_with_link": 2,
        "spend_usd_micros": today.reads * 1_000 + 15_000 + 2 * 200_000,
        "deferred": 1,
        "dropped": 0,
    }
    assert report["days"][1]["posts"] == 0
    text = CliRunner().invoke(main, ["costs"], env=env).stdout
    assert "deferred" in text and "$0.4" in text
