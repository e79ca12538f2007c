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
from escrow.flattrs import record_flattr, set_budget
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.schema import accounts, settlement_runs, settlements, shares, tips
from escrow.service import Ledger
from escrow.settlement import settle, settle_due
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


# --- batches run side by side: what changes under a batch makes it run again -------------
#
# A batch reads and writes without locking accounts, then locks its supporters, creators
# and `fees` and checks that what it read still holds. Each test below changes one thing
# at the worst moment, from another connection that commits while the batch is in flight,
# and checks that the month still comes out as if the change had come first.


def meanwhile(action):  # type: ignore[no-untyped-def]
    """Run `action` on another thread and connection, to its commit, and wait for it."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the concurrent change waited for the batch: a lock conflict"
    assert errors == []


def once_before(monkeypatch, name: str, action) -> list[int]:  # type: ignore[no-untyped-def]
    """Patch settlement.`name` so that `action` runs concurrently before its first call."""
    real = getattr(settlement, name)
    calls: list[int] = []

    def wrapper(*args, **kw):  # type: ignore[no-untyped-def]
        if not calls:
            meanwhile(action)
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(settlement, name, wrapper)
    return calls


def flattr_tips_to(engine: Engine, creator: Identity) -> list[tuple[str, int, int]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(tips.c.state, tips.c.amount_minor, tips.c.fee_minor)
                .join(accounts, accounts.c.id == tips.c.recipient_account_id)
                .where(accounts.c.platform_user_id == creator.user_id, tips.c.kind == "flattr")
                .order_by(tips.c.id)
            )
        ]


@pytest.mark.postgres
def test_a_creator_who_claims_during_a_batch_gets_posted_parts_not_holds(
    pg_engine, clock, monkeypatch
):
    made = world(pg_engine, clock, supporters=6)  # creators 1 and 2 unclaimed at the start
    ledger = Ledger(pg_engine, POLICY, clock)
    once_before(monkeypatch, "_lock_parts", lambda: ledger.claim(CREATORS[1]))

    settle(pg_engine, POLICY, "2026-02", MARCH_10, workers=1)

    parts = flattr_tips_to(pg_engine, CREATORS[1])
    assert parts, "creator 1 was flattred"
    assert all(state == "posted" and fee == amount // 10 for state, amount, fee in parts)
    assert_each_settled_exactly_once(pg_engine, made)


@pytest.mark.postgres
def test_a_supporter_who_spends_during_a_batch_gives_only_what_is_left(
    pg_engine, clock, monkeypatch
):
    made = world(pg_engine, clock, supporters=3)
    poorest, pool = made[0]  # 1.50 deposited, budget 2.00: the pool is all of it
    assert pool == 150
    ledger = Ledger(pg_engine, POLICY, clock)
    once_before(
        monkeypatch, "_lock_parts", lambda: ledger.tip(poorest, CREATORS[0], Money(50), "spent")
    )

    settle(pg_engine, POLICY, "2026-02", MARCH_10, workers=1)

    with pg_engine.connect() as conn:
        row = conn.execute(
            select(accounts).where(accounts.c.platform_user_id == poorest.user_id)
        ).one()
        marker = conn.execute(
            select(settlements).where(settlements.c.supporter_account_id == row.id)
        ).one()
        flattred = conn.execute(
            select(func.sum(tips.c.amount_minor)).where(
                tips.c.supporter_account_id == row.id, tips.c.kind == "flattr"
            )
        ).scalar_one()
    assert (marker.available_minor, marker.pool_minor, flattred) == (100, 100, 100)
    assert row.credits_posted - row.debits_posted - row.debits_pending == 0
    assert_books_balance(pg_engine)


@pytest.mark.postgres
def test_a_share_recorded_between_a_batchs_marker_and_its_split_is_split_too(
    pg_engine, clock, monkeypatch
):
    made = world(pg_engine, clock, supporters=2)
    who, pool = made[1]  # one share so far (creator 0)
    late = Identity.x("777", "latecomer")

    def record_late() -> None:
        with pg_engine.begin() as conn:
            result = record_flattr(conn, POLICY, who, late, FEBRUARY, "late", MARCH_10)
        assert result.period == "2026-02"  # the batch's marker was not committed yet

    # `_drop_parts` first runs as the split begins, right after the markers.
    once_before(monkeypatch, "_drop_parts", record_late)

    settle(pg_engine, POLICY, "2026-02", MARCH_10, workers=1)

    with pg_engine.connect() as conn:
        row = conn.execute(select(accounts).where(accounts.c.platform_user_id == who.user_id)).one()
        parts = sorted(
            conn.execute(
                select(shares.c.state, shares.c.part_minor).where(
                    shares.c.supporter_account_id == row.id
                )
            ).all()
        )
        marker = conn.execute(
            select(settlements).where(settlements.c.supporter_account_id == row.id)
        ).one()
    assert marker.shares == 3  # creators 0 and 1, and the late one
    assert [state for state, _ in parts] == ["settled"] * 3
    assert sum(part for _, part in parts) == pool
    assert_each_settled_exactly_once(pg_engine, made)


@pytest.mark.postgres
def test_a_batch_that_keeps_racing_takes_its_locks_first(pg_engine, clock, monkeypatch):
    made = world(pg_engine, clock, supporters=5)
    real_stale, real_lock = settlement._went_stale, settlement._lock_batch
    verdicts: list[bool] = []
    locked_first: list[int] = []

    def stale_three_times(*args, **kw):  # type: ignore[no-untyped-def]
        verdicts.append(len(verdicts) < 3 or real_stale(*args, **kw))
        return verdicts[-1]

    def spy_lock(*args, **kw):  # type: ignore[no-untyped-def]
        locked_first.append(1)
        return real_lock(*args, **kw)

    monkeypatch.setattr(settlement, "_went_stale", stale_three_times)
    monkeypatch.setattr(settlement, "_lock_batch", spy_lock)

    settle(pg_engine, POLICY, "2026-02", MARCH_10, workers=1)

    assert verdicts == [True, True, True, False]  # three rollbacks, then through
    assert locked_first == [1]
    assert_each_settled_exactly_once(pg_engine, made)


@pytest.mark.postgres
def test_batches_side_by_side_settle_as_one_worker_does(pg_engine, clock):
    made = world(pg_engine, clock, supporters=12)
    with pg_engine.begin() as conn:  # the same flattrs again, a month earlier
        for i, (who, _) in enumerate(made):
            for creator in CREATORS[: 1 + i % 3]:
                record_flattr(
                    conn,
                    POLICY,
                    who,
                    creator,
                    FEBRUARY - timedelta(days=31),
                    f"jan-{i}-{creator.user_id}",
                    MARCH_10,
                )
    for who, _ in made:  # enough for a full budget in both months
        Ledger(pg_engine, POLICY, clock).deposit(who, Money(1000), f"again-{who.user_id}")

    one = settle(pg_engine, POLICY, "2026-01", MARCH_10, batch=1, workers=1)
    three = settle(pg_engine, POLICY, "2026-02", MARCH_10, batch=1, workers=3)

    def parts(period: str) -> list[tuple[str, int, int | None]]:
        with pg_engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    select(accounts.c.platform_user_id, shares.c.recipient_account_id)
                    .add_columns(shares.c.part_minor)
                    .join(accounts, accounts.c.id == shares.c.supporter_account_id)
                    .where(shares.c.period == period)
                    .order_by(accounts.c.platform_user_id, shares.c.recipient_account_id)
                )
            ]

    assert parts("2026-01") == parts("2026-02")
    assert one.as_json() | {"period": "2026-02"} == three.as_json()
    assert_books_balance(pg_engine)


@pytest.mark.postgres
def test_claims_and_refusals_racing_parallel_batches_leave_no_hold_behind(pg_engine, clock):
    """Three workers settle while creators claim and refuse: no creator who has signed
    in, and none who refuses, is left with a held part, and every supporter is settled
    exactly once."""
    creators = [Identity.x(str(950 + i), f"racer{i}") for i in range(6)]
    ledger = Ledger(pg_engine, POLICY, clock)
    made: list[Identity] = []
    for i in range(30):  # no budget set: the minimum (2.00), which everyone can afford
        who = Identity.x(str(400 + i), f"busy{i}")
        ledger.deposit(who, Money(300 + i), f"busy-{i}")
        with pg_engine.begin() as conn:
            for creator in creators[i % 3 : i % 3 + 3]:
                record_flattr(
                    conn, POLICY, who, creator, FEBRUARY, f"b-{i}-{creator.user_id}", MARCH_10
                )
        made.append(who)
    errors: list[BaseException] = []

    def sign_in_and_refuse() -> None:
        try:
            for creator in creators[:4]:
                ledger.claim(creator)
            ledger.refuse(creators[4])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    racer = threading.Thread(target=sign_in_and_refuse)
    racer.start()
    try:
        settle(pg_engine, POLICY, "2026-02", MARCH_10, batch=2, workers=3)
    finally:
        racer.join()

    assert errors == []
    with pg_engine.connect() as conn:
        stranded = conn.execute(
            select(accounts.c.handle, func.count())
            .join(tips, tips.c.recipient_account_id == accounts.c.id)
            .where(tips.c.state == "held", accounts.c.status.in_(("claimed", "refusing")))
            .group_by(accounts.c.handle)
        ).all()
        per_supporter = conn.execute(
            select(
                settlements.c.supporter_account_id,
                func.count(func.distinct(settlements.c.period)),
                func.max(settlements.c.pool_minor),
            ).group_by(settlements.c.supporter_account_id)
        ).all()
        parts = dict(
            conn.execute(
                select(shares.c.supporter_account_id, func.sum(shares.c.part_minor)).group_by(
                    shares.c.supporter_account_id
                )
            ).all()
        )
        still_open = conn.execute(
            select(func.count()).select_from(shares).where(shares.c.state == "open")
        ).scalar_one()
    assert stranded == []
    assert len(per_supporter) == len(made) and still_open == 0
    for supporter_id, markers, pool in per_supporter:
        assert markers == 1 and pool == 200 and parts[supporter_id] == pool
    assert_books_balance(pg_engine)
