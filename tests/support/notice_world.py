"""A bot world for notice and outbox tests: the in-memory X, a ledger, and tips that arrive
as mentions read by the real listener (so holds have tip tweets to reply under)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from bot.config import Settings
from bot.listener import poll_once
from bot.notices import plan_notices
from bot.outbox import send_pending
from escrow.db import transaction
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.schema import accounts, deposits, outbox
from escrow.service import Ledger
from tests.support import x_payloads as xp
from tests.support.fake_x import FakeXApi

BOT_ID = "999"
SETTINGS = Settings(
    x_bot_username="flattr",
    x_bot_user_id=BOT_ID,
    public_base_url="https://tipjar.example",
    notices_per_day=50,
)


def new_x(clock: Any) -> FakeXApi:
    """The in-memory X of these tests, with @flattr as the bot (the `x` fixture)."""
    return FakeXApi(bot_username="flattr", bot_user_id=BOT_ID, clock=clock)


def new_ledger(engine: Engine, clock: Any) -> Ledger:
    """The ledger service on `engine` (the `ledger` fixture)."""
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
