"""A failure half-way through an operation leaves nothing half-done.

Each test breaks an operation between two of its statements (after the tip row is in,
after the first post of a claim, after a deposit's transfer but before its record, after
an expiry marked its holds voided) and then checks that the database is exactly as it was
before: same rows, same counters, audit clean. A transient failure (a deadlock) is retried
and the operation happens once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError

import escrow.claims
import escrow.ledger
import escrow.tips
from escrow.ledger import Identity, Policy, TipStatus, Transfer
from escrow.money import Money
from escrow.schema import accounts, deposits, state, tips, transfers
from escrow.service import Ledger
from tests.integration.test_ledger_operations import assert_books_balance

POLICY = Policy(currency="EUR", fee_percent=10, hold_period=timedelta(days=90))
ALICE = Identity.x("1", "alice")
BOB = Identity.x("2", "bob")
CAROL = Identity.x("3", "carol")

real_apply_transfers = escrow.ledger.apply_transfers


class Crash(Exception):
    """The process dies here (a bug, a lost connection, a killed worker)."""


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every ledger table, in a stable order."""
    with engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
            for t in (state, accounts, transfers, tips, deposits)
        }


def crash_after(
    keep: Callable[[Sequence[Transfer]], Sequence[Transfer]] = lambda batch: batch,
) -> Callable[..., list[int]]:
    """An `apply_transfers` that writes (part of) its batch for real, then crashes."""

    def apply_then_crash(conn: Any, batch: Sequence[Transfer], now: Any, **kw: Any) -> list[int]:
        real_apply_transfers(conn, keep(batch), now, **kw)
        raise Crash

    return apply_then_crash


@pytest.fixture
def ledger(engine: Engine, clock: Any) -> Ledger:
    return Ledger(engine, POLICY, clock)


@pytest.mark.parametrize("claimed", [False, True], ids=["hold", "posted-tip"])
def test_a_tip_that_fails_after_its_row_is_written_leaves_no_trace(
    ledger, engine, monkeypatch, claimed
):
    ledger.deposit(ALICE, Money(1000), "r1")
    if claimed:
        ledger.claim(BOB)
    before = snapshot(engine)
    monkeypatch.setattr(escrow.tips, "apply_transfers", crash_after())

    with pytest.raises(Crash):
        ledger.tip(ALICE, BOB, Money(250), "tweet-1")

    assert snapshot(engine) == before
    assert ledger.account(ALICE).available_minor == 1000
    monkeypatch.undo()
    assert ledger.tip(ALICE, BOB, Money(250), "tweet-1").replayed is False, "the retry applies"
    assert_books_balance(engine)


def test_a_claim_that_fails_after_its_first_post_posts_nothing(ledger, engine, monkeypatch):
    ledger.deposit(ALICE, Money(1000), "r1")
    ledger.deposit(CAROL, Money(1000), "r2")
    ledger.tip(ALICE, BOB, Money(300), "tweet-1")
    ledger.tip(CAROL, BOB, Money(200), "tweet-2")
    before = snapshot(engine)
    monkeypatch.setattr(escrow.claims, "apply_transfers", crash_after(lambda batch: batch[:1]))

    with pytest.raises(Crash):
        ledger.claim(BOB)

    assert snapshot(engine) == before
    bob = ledger.account(BOB)
    assert (bob.status, bob.available_minor, bob.held_for_minor) == ("unclaimed", 0, 500)
    monkeypatch.undo()
    assert ledger.claim(BOB).gross == Money(500)
    assert_books_balance(engine)


def test_a_deposit_that_fails_before_it_is_recorded_credits_nothing(ledger, engine, monkeypatch):
    ledger.deposit(ALICE, Money(1000), "r1")
    before = snapshot(engine)
    monkeypatch.setattr(escrow.ledger, "apply_transfers", crash_after())

    with pytest.raises(Crash):
        ledger.deposit(ALICE, Money(500), "r2")
    with pytest.raises(Crash):
        ledger.deposit(CAROL, Money(500), "r3")

    assert snapshot(engine) == before
    monkeypatch.undo()
    assert ledger.deposit(ALICE, Money(500), "r2").replayed is False
    assert ledger.account(ALICE).available_minor == 1500
    assert_books_balance(engine)


def test_an_expiry_that_fails_after_marking_its_holds_is_simply_run_again(
    ledger, engine, clock, monkeypatch
):
    ledger.deposit(ALICE, Money(1000), "r1")
    ledger.tip(ALICE, BOB, Money(300), "tweet-1")
    ledger.tip(ALICE, CAROL, Money(200), "tweet-2")
    clock.advance(days=90)
    before = snapshot(engine)
    # void_holds marks the tips voided first, then writes the void transfers: crash between.
    monkeypatch.setattr(escrow.tips, "apply_transfers", crash_after(lambda batch: []))

    with pytest.raises(Crash):
        ledger.expire_due(batch=1)

    assert snapshot(engine) == before
    monkeypatch.undo()
    assert ledger.expire_due().voided == 2
    assert ledger.account(ALICE).available_minor == 1000
    assert_books_balance(engine)


def test_a_refusal_that_fails_half_way_keeps_the_creator_and_the_holds_as_they_were(
    ledger, engine, monkeypatch
):
    ledger.deposit(ALICE, Money(1000), "r1")
    ledger.tip(ALICE, BOB, Money(300), "tweet-1")
    before = snapshot(engine)
    monkeypatch.setattr(escrow.tips, "apply_transfers", crash_after())

    with pytest.raises(Crash):
        ledger.refuse(BOB)

    assert snapshot(engine) == before
    assert ledger.account(BOB).status == "unclaimed"
    assert_books_balance(engine)


class Deadlock(Exception):
    sqlstate = "40P01"


def test_a_tip_that_meets_a_transient_failure_is_retried_and_applied_once(
    ledger, engine, monkeypatch
):
    ledger.deposit(ALICE, Money(1000), "r1")
    failures: list[int] = []

    def deadlock_once(conn: Any, batch: Sequence[Transfer], now: Any, **kw: Any) -> list[int]:
        ids = real_apply_transfers(conn, batch, now, **kw)
        if not failures:
            failures.append(1)
            raise OperationalError("UPDATE accounts ...", {}, Deadlock("deadlock detected"))
        return ids

    monkeypatch.setattr(escrow.tips, "apply_transfers", deadlock_once)

    result = ledger.tip(ALICE, BOB, Money(250), "tweet-1")

    assert failures == [1]
    assert (result.status, result.replayed) == (TipStatus.HELD, False)
    with engine.connect() as conn:
        assert len(conn.execute(select(tips)).all()) == 1
    assert ledger.account(ALICE).available_minor == 750
    assert_books_balance(engine)
