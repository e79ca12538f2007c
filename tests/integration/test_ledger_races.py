"""Races on PostgreSQL: many threads, one ledger, nothing lost, nothing doubled.

Each thread uses the `Ledger` facade, so each runs in its own transaction on its own
pooled connection, and a barrier starts them together. Money is protected by two
layers: the row locks every operation takes before it reads a balance or a status
(`lock_accounts`, FOR UPDATE in id order) and, beneath them, the CHECK constraints and
state-gated UPDATEs of the schema. The last test switches the first layer off to show the
second still holds, and why the first is needed: without the locks, losing a race is a
database error instead of a polite `insufficient_funds`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

import escrow.ledger
import escrow.tips
from escrow.ledger import FEES, Clock, Identity, Policy, TipStatus, system_account
from escrow.money import Money
from escrow.schema import accounts, tips, transfers
from escrow.service import Ledger
from tests.integration.test_ledger_operations import assert_books_balance, fees_minor

pytestmark = pytest.mark.postgres

POLICY = Policy(currency="EUR", fee_percent=10, hold_period=timedelta(days=90))
ALICE = Identity.x("1", "alice")
BOB = Identity.x("2", "bob")
T = TypeVar("T")


def together(n: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run `work(0..n-1)` on n threads released at once; results or exceptions, in order."""
    start = threading.Barrier(n)

    def one(i: int) -> T | BaseException:
        start.wait(timeout=30)
        try:
            return work(i)
        except Exception as e:
            return e

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n), timeout=120))


def all_succeeded(results: list[T | BaseException]) -> list[T]:
    """The results, once it is clear that no thread failed."""
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    return [r for r in results if not isinstance(r, BaseException)]


def creator(n: int) -> Identity:
    return Identity.x(str(1000 + n), f"creator{n}")


@pytest.fixture
def ledger(pg_engine: Engine, clock: Clock) -> Ledger:
    return Ledger(pg_engine, POLICY, clock)


def test_tips_racing_for_one_balance_never_overdraw_it(ledger, pg_engine):
    ledger.deposit(ALICE, Money(1000), "r1")

    results = all_succeeded(
        together(16, lambda i: ledger.tip(ALICE, creator(i), Money(100), f"tweet-{i}"))
    )

    statuses = Counter(r.status for r in results)
    assert statuses == {TipStatus.HELD: 10, TipStatus.INSUFFICIENT_FUNDS: 6}
    assert ledger.account(ALICE).available_minor == 0
    assert ledger.account(ALICE).reserved_minor == 1000
    assert_books_balance(pg_engine)


@pytest.mark.parametrize("claimed", [False, True], ids=["held", "posted"])
def test_one_tweet_delivered_eight_times_at_once_tips_once(ledger, pg_engine, claimed):
    ledger.deposit(ALICE, Money(1000), "r1")
    if claimed:
        ledger.claim(BOB)

    results = all_succeeded(together(8, lambda i: ledger.tip(ALICE, BOB, Money(100), "tweet-1")))

    assert sorted(r.replayed for r in results) == [False] + [True] * 7
    assert len({r.tip_id for r in results}) == 1
    assert ledger.account(ALICE).available_minor == 900
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tips)).scalar_one() == 1
    assert_books_balance(pg_engine)


@pytest.mark.parametrize(
    "claim_offset",
    [timedelta(0), -timedelta(microseconds=1)],
    ids=["claim-at-expiry", "claim-just-before-expiry"],
)
def test_a_claim_racing_the_expiry_of_its_holds_resolves_each_hold_exactly_once(
    ledger, pg_engine, clock, claim_offset
):
    supporters = [Identity.x(str(10 + s), f"supporter{s}") for s in range(4)]
    for s, who in enumerate(supporters):
        ledger.deposit(who, Money(100_000), f"r{s}")
    for round_ in range(6):
        creators = [creator(10 * round_ + c) for c in range(4)]
        ledger.run(lambda conn, now: hold_for_each(conn, now, supporters, creators, round_))  # noqa: B023
        expiry = clock.now + POLICY.hold_period
        claimer = Ledger(pg_engine, POLICY, lambda: expiry + claim_offset)  # noqa: B023

        def work(i: int) -> Any:
            if i < 4:
                return claimer.claim(creators[i])  # noqa: B023
            return ledger.expire_due(now=expiry, batch=3)  # noqa: B023

        results = all_succeeded(together(8, work))

        claimed, expired = results[:4], results[4:]
        with pg_engine.connect() as conn:
            resolutions = _resolutions(conn, round_)
        assert len(resolutions) == 16
        assert all(n == 1 for n, _, _ in resolutions.values()), "a hold resolved twice or never"
        posted = [t for t, (_, kind, _) in resolutions.items() if kind == "post"]
        voided = [t for t, (_, kind, _) in resolutions.items() if kind == "void"]
        assert {(kind, state) for _, kind, state in resolutions.values()} <= {
            ("post", "posted"),
            ("void", "voided"),
        }
        assert sum(r.tips for r in claimed) == len(posted)
        assert sum(r.expired for r in claimed) + sum(r.voided for r in expired) == len(voided)
        if claim_offset == timedelta(0):
            assert posted == [], "a hold was posted at the instant it expired"
        clock.now = expiry + timedelta(days=1)
    assert ledger.escrow_balances().holds == 0
    assert_books_balance(pg_engine)


def hold_for_each(
    conn: Connection, now: Any, supporters: list[Identity], creators: list[Identity], round_: int
) -> None:
    """Every supporter tips every creator, in one transaction: the holds all expire together."""
    for s, who in enumerate(supporters):
        for c, to in enumerate(creators):
            result = escrow.tips.tip(
                conn, POLICY, who, to, Money(100 + c), f"round-{round_}-{s}", now
            )
            assert result.status == TipStatus.HELD


def _resolutions(conn: Connection, round_: int) -> dict[int, tuple[int, str, str]]:
    """Per tip of the round: (number of post/void transfers of its hold, kind, tip state)."""
    rows = conn.execute(
        select(
            tips.c.id,
            func.count(transfers.c.id),
            func.min(transfers.c.kind),
            tips.c.state,
        )
        .outerjoin(transfers, transfers.c.pending_id == tips.c.hold_transfer_id)
        .where(tips.c.source_id.startswith(f"round-{round_}-"))
        .group_by(tips.c.id, tips.c.state)
    )
    return {int(i): (int(n), str(kind), str(state)) for i, n, kind, state in rows}


def test_tips_racing_a_claim_all_reach_the_creator_without_a_deadlock(ledger, pg_engine, caplog):
    """Everyone locks accounts in id order, so no two transactions wait on each other in a cycle.

    A claim that locked the creator first and its (lower-id) supporters afterwards deadlocked
    with tips that hold a supporter and want the creator; PostgreSQL broke the cycle after
    `deadlock_timeout` (1 s) and the retry hid it. The retry log must stay empty.
    """
    caplog.set_level(logging.INFO, logger="escrow.db")
    supporters = [Identity.x(str(10 + s), f"supporter{s}") for s in range(7)]
    for s, who in enumerate(supporters):
        ledger.deposit(who, Money(10_000), f"r{s}")
    for round_ in range(5):
        bob = creator(round_)
        # Bob's account exists before the race, so nothing serializes the threads but locks.
        ledger.tip(supporters[round_], bob, Money(100), f"first-{round_}")

        def work(i: int, bob: Identity = bob, round_: int = round_) -> Any:
            if i == 7:
                return ledger.claim(bob)
            return ledger.tip(supporters[i], bob, Money(100), f"tweet-{round_}-{i}")

        all_succeeded(together(8, work))

        assert ledger.account(bob).available_minor == 8 * 90
        assert ledger.escrow_balances().holds == 0, "a tip was left waiting for a claimed creator"
    assert fees_minor(pg_engine) == 5 * 8 * 10
    assert [r.getMessage() for r in caplog.records if "deadlock" in r.getMessage()] == []
    assert_books_balance(pg_engine)


def test_without_row_locks_the_overdraft_race_is_caught_by_the_check_constraint(
    ledger, pg_engine, monkeypatch
):
    """The locks are the first layer, the CHECK the second: switch the first one off.

    With `lock_accounts` and `lock_accounts_of` reading rows without FOR UPDATE, all
    sixteen tips decide on the same balance of 10.00. A barrier makes sure every thread
    has read it before any writes, so the outcome is deterministic. The counter UPDATEs
    (`x = x + delta`) still serialize on the row, and the no-overdraft CHECK refuses the
    eleventh: the six losers get an IntegrityError instead of a clean
    `insufficient_funds`, and nothing overdraws.
    With the real `lock_accounts`, the same race ends in ten held tips and six polite
    refusals (test_tips_racing_for_one_balance_never_overdraw_it). Without the barrier the
    result was the same in practice: ten rounds of that race with the locks off gave 100
    held tips, 60 IntegrityErrors, no `insufficient_funds` and no overdraft, which is why
    test_tips_racing_for_one_balance_never_overdraw_it fails when the locks are removed.
    """
    ledger.deposit(ALICE, Money(1000), "r1")
    ledger.run(lambda conn, now: system_account(conn, FEES))
    all_have_read = threading.Barrier(16)

    def read_without_locking(conn: Connection, ids: Any) -> dict[int, Any]:
        rows = conn.execute(
            select(accounts).where(accounts.c.id.in_(sorted(set(ids)))).order_by(accounts.c.id)
        ).all()
        return {int(r.id): r for r in rows}

    def find_without_locking(conn: Connection, people: Any) -> dict[tuple[str, str], Any]:
        # A tip finds (and normally locks) the supporter's account here: Alice's balance.
        wanted = {(w.platform, w.user_id) for w in people}
        rows = conn.execute(select(accounts).order_by(accounts.c.id)).all()
        all_have_read.wait(timeout=30)
        return {
            (r.platform, r.platform_user_id): r
            for r in rows
            if (r.platform, r.platform_user_id) in wanted
        }

    # tips.py imported the names, so they are replaced where they are used.
    monkeypatch.setattr(escrow.ledger, "lock_accounts", read_without_locking)
    monkeypatch.setattr(escrow.tips, "lock_accounts", read_without_locking)
    monkeypatch.setattr(escrow.ledger, "lock_accounts_of", find_without_locking)
    monkeypatch.setattr(escrow.tips, "lock_accounts_of", find_without_locking)

    results = together(16, lambda i: ledger.tip(ALICE, creator(i), Money(100), f"tweet-{i}"))

    errors = [r for r in results if isinstance(r, BaseException)]
    applied = [r for r in results if not isinstance(r, BaseException) and r.applied]
    assert len(applied) == 10
    assert len(errors) == 6
    assert all(isinstance(e, IntegrityError) and "no_overdraft" in str(e) for e in errors)
    assert ledger.account(ALICE).available_minor == 0
    assert_books_balance(pg_engine)
