"""A settlement interrupted at any point finishes on the next run, each supporter once.

Crashes are injected with monkeypatch: between batches (some supporters committed), inside
a batch (after the money moved, before the batch commits) and after the last batch (the
month not yet marked complete). On PostgreSQL, two runs of one month at once and tips
racing a settlement are exercised too.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from escrow import settlement
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.schema import accounts, settlement_runs, settlements, shares, tips
from escrow.service import Ledger
from escrow.settlement import record_flattr, set_budget, settle, settle_due
from tests.integration.test_ledger_operations import assert_books_balance

POLICY = Policy(currency="EUR", fee_percent=10, hold_period=timedelta(days=90))
FEBRUARY = datetime(2026, 2, 14, 9, 30, tzinfo=UTC)
MARCH_10 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
CREATORS = [Identity.x(str(900 + i), f"creator{i}") for i in range(3)]


class PowerCut(RuntimeError):
    pass


def world(engine: Engine, clock, supporters: int = 7) -> list[tuple[Identity, int]]:  # type: ignore[no-untyped-def]
    """Supporters with different money and budgets, each flattring 1-3 creators."""
    ledger = Ledger(engine, POLICY, clock)
    ledger.claim(CREATORS[0])
    made = []
    for i in range(supporters):
        who = Identity.x(str(100 + i), f"supporter{i}")
        deposit = 150 + 45 * i
        ledger.deposit(who, Money(deposit), f"dep-{i}")
        with engine.begin() as conn:
            set_budget(conn, POLICY, who, Money(200 + 20 * i), Money(200), MARCH_10)
            for creator in CREATORS[: 1 + i % 3]:
                record_flattr(
                    conn, POLICY, who, creator, FEBRUARY, f"t-{i}-{creator.user_id}", MARCH_10
                )
        made.append((who, min(deposit, 200 + 20 * i)))
    return made


def assert_each_settled_exactly_once(engine: Engine, made: list[tuple[Identity, int]]) -> None:
    with engine.connect() as conn:
        for who, pool in made:
            row = conn.execute(
                select(accounts).where(accounts.c.platform_user_id == who.user_id)
            ).one()
            markers = conn.execute(
                select(func.count())
                .select_from(settlements)
                .where(settlements.c.supporter_account_id == row.id)
            ).scalar_one()
            given = conn.execute(
                select(func.coalesce(func.sum(tips.c.amount_minor), 0)).where(
                    tips.c.supporter_account_id == row.id
                )
            ).scalar_one()
            assert markers == 1
            assert given == pool  # taken once: not twice, not lost
            assert row.debits_posted + row.debits_pending == pool
        still_open = conn.execute(
            select(func.count()).select_from(shares).where(shares.c.state == "open")
        ).scalar_one()
        run = conn.execute(select(settlement_runs)).one()
    assert still_open == 0
    assert run.completed_at is not None
    assert run.supporters_settled == len(made)
    assert run.posted_minor + run.held_minor == sum(pool for _, pool in made)
    assert_books_balance(engine)


def test_a_crash_between_batches_resumes_and_settles_everyone_exactly_once(
    engine, clock, monkeypatch
):
    made = world(engine, clock)
    real = settlement._settle_batch
    calls = []

    def cut_after_two(conn, **kw):  # type: ignore[no-untyped-def]
        if len(calls) == 2:
            raise PowerCut("after two batches")
        calls.append(1)
        return real(conn, **kw)

    monkeypatch.setattr(settlement, "_settle_batch", cut_after_two)
    with pytest.raises(PowerCut):
        settle(engine, POLICY, "2026-02", MARCH_10, batch=2)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(settlements)).scalar_one() == 4
    assert_books_balance(engine)

    monkeypatch.setattr(settlement, "_settle_batch", real)
    summary = settle(engine, POLICY, "2026-02", MARCH_10 + timedelta(hours=1), batch=2)

    assert not summary.already_settled
    assert summary.supporters_settled == 7  # the totals span both attempts
    assert_each_settled_exactly_once(engine, made)


def test_a_crash_inside_a_batch_leaves_neither_money_nor_marker_behind(engine, clock, monkeypatch):
    made = world(engine, clock, supporters=3)
    with engine.connect() as conn:
        before = [tuple(r) for r in conn.execute(select(accounts).order_by(accounts.c.id))]

    def cut(*args, **kw):  # type: ignore[no-untyped-def]
        raise PowerCut("after the money moved, before the commit")

    monkeypatch.setattr(settlement, "_record_totals", cut)
    with pytest.raises(PowerCut):
        settle(engine, POLICY, "2026-02", MARCH_10)
    with engine.connect() as conn:
        after = [tuple(r) for r in conn.execute(select(accounts).order_by(accounts.c.id))]
        assert conn.execute(select(func.count()).select_from(settlements)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(tips)).scalar_one() == 0
    assert after == before

    monkeypatch.undo()
    settle(engine, POLICY, "2026-02", MARCH_10)
    assert_each_settled_exactly_once(engine, made)


def test_a_crash_before_the_month_is_marked_complete_is_finished_by_settle_due(
    engine, clock, monkeypatch
):
    made = world(engine, clock, supporters=4)

    def cut(*args, **kw):  # type: ignore[no-untyped-def]
        raise PowerCut("before completion")

    monkeypatch.setattr(settlement, "_complete", cut)
    with pytest.raises(PowerCut):
        settle(engine, POLICY, "2026-02", MARCH_10)
    monkeypatch.undo()

    (summary,) = settle_due(engine, POLICY, MARCH_10)
    assert summary.period == "2026-02" and not summary.already_settled
    assert summary.supporters_settled == 4
    assert_each_settled_exactly_once(engine, made)
    assert settle(engine, POLICY, "2026-02", MARCH_10).already_settled


@pytest.mark.postgres
def test_two_settlements_of_one_month_at_once_settle_each_supporter_once(pg_engine, clock):
    made = world(pg_engine, clock, supporters=12)
    results, errors = [], []

    def run() -> None:
        try:
            results.append(settle(pg_engine, POLICY, "2026-02", MARCH_10, batch=2))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {r.supporters_settled for r in results} == {12}
    assert_each_settled_exactly_once(pg_engine, made)


@pytest.mark.postgres
def test_tips_racing_a_settlement_never_overdraw_a_supporter(pg_engine, clock):
    made = world(pg_engine, clock, supporters=10)
    ledger = Ledger(pg_engine, POLICY, clock)
    stop = threading.Event()
    errors = []

    def tipper() -> None:
        n = 0
        while not stop.is_set() and n < 200:
            who = made[n % len(made)][0]
            try:
                ledger.tip(who, CREATORS[n % 3], Money(7), f"race-{n}")
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
            n += 1

    thread = threading.Thread(target=tipper)
    thread.start()
    try:
        summary = settle(pg_engine, POLICY, "2026-02", MARCH_10, batch=3)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert summary.supporters_settled == 10
    assert_books_balance(pg_engine)


@pytest.mark.postgres
def test_late_flattrs_racing_a_settlement_are_settled_once_and_never_stranded(pg_engine, clock):
    made = world(pg_engine, clock, supporters=12)
    errors: list[Exception] = []
    late: list[str] = []

    def flattr_late() -> None:
        for n in range(60):
            who = made[n % len(made)][0]
            creator = Identity.x(str(700 + n), f"late{n}")
            try:
                with pg_engine.begin() as conn:
                    result = record_flattr(
                        conn, POLICY, who, creator, FEBRUARY, f"late-{n}", MARCH_10
                    )
                late.append(result.period)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

    thread = threading.Thread(target=flattr_late)
    thread.start()
    try:
        settle(pg_engine, POLICY, "2026-02", MARCH_10, batch=2)
    finally:
        thread.join()
    settle_due(pg_engine, POLICY, MARCH_10)
    assert errors == []
    assert set(late) <= {"2026-02", "2026-03"}
    with pg_engine.connect() as conn:
        still_open = conn.execute(
            select(func.count())
            .select_from(shares)
            .where(shares.c.period == "2026-02", shares.c.state == "open")
        ).scalar_one()
        markers = conn.execute(
            select(settlements.c.supporter_account_id, func.count())
            .where(settlements.c.period == "2026-02")
            .group_by(settlements.c.supporter_account_id)
        ).all()
    assert still_open == 0
    assert len(markers) == 12 and all(n == 1 for _, n in markers)
    assert_books_balance(pg_engine)
