"""Flattrs and the monthly settlement, on SQLite and PostgreSQL.

A flattr records a share and moves nothing; settling its month turns each supporter's pool
(min of budget and available money) into tips, split exactly over their shares. Each money
scenario ends with the audit clean and the books balanced.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select

from escrow import settlement
from escrow.expiry import expire_due
from escrow.flattrs import (
    FlattrStatus,
    SettlementError,
    get_budget,
    record_flattr,
    set_budget,
)
from escrow.ledger import Identity, LedgerError, Policy, find_account
from escrow.money import Money, MoneyError
from escrow.schema import accounts, settlement_runs, settlements, shares, tips, transfers
from escrow.service import Ledger
from escrow.settlement import settle, settle_due, split_pool
from escrow.tips import tip
from tests.integration.test_ledger_operations import assert_books_balance

POLICY = Policy(currency="EUR", fee_percent=10, hold_period=timedelta(days=90))
ALICE = Identity.x("1", "alice")
BOB = Identity.x("2", "bob")
CAROL = Identity.x("3", "carol")
DAVE = Identity.x("4", "dave")
ERIN = Identity.x("5", "erin")
MINIMUM = Money(200, "EUR")
IN_FEBRUARY = datetime(2026, 2, 14, 9, 30, tzinfo=UTC)
MARCH_10 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def eur(text: str) -> Money:
    return Money.parse(text, "EUR")


def flattr(engine: Engine, supporter, recipient, when=IN_FEBRUARY, source=None, now=None):  # type: ignore[no-untyped-def]
    source = source or f"tweet-{supporter.user_id}-{recipient.user_id}-{when:%Y%m%d%H%M}"
    with engine.begin() as conn:
        return record_flattr(conn, POLICY, supporter, recipient, when, source, now or MARCH_10)


def budget(engine: Engine, who: Identity, amount: str) -> Money:
    with engine.begin() as conn:
        return set_budget(conn, POLICY, who, eur(amount), MINIMUM, MARCH_10)


def account(engine: Engine, who: Identity):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return find_account(conn, who)


def available(engine: Engine, who: Identity) -> int:
    row = account(engine, who)
    return int(row.credits_posted - row.debits_posted - row.debits_pending)


def share_rows(engine: Engine, supporter: Identity, period: str = "2026-02") -> list:  # type: ignore[type-arg]
    with engine.connect() as conn:
        sid = find_account(conn, supporter).id
        return list(
            conn.execute(
                select(shares)
                .where(shares.c.supporter_account_id == sid, shares.c.period == period)
                .order_by(shares.c.id)
            )
        )


def tip_for(engine: Engine, share_id: int):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(
            select(tips).where(tips.c.source_id == f"share:{share_id}")
        ).one_or_none()


def count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def snapshot(engine: Engine) -> tuple:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return (
            [tuple(r) for r in conn.execute(select(accounts).order_by(accounts.c.id))],
            conn.execute(select(func.count()).select_from(transfers)).scalar_one(),
            conn.execute(select(func.count()).select_from(tips)).scalar_one(),
            [tuple(r) for r in conn.execute(select(shares).order_by(shares.c.id))],
            [tuple(r) for r in conn.execute(select(settlements))],
        )


@pytest.fixture
def ledger(engine: Engine, clock) -> Ledger:  # type: ignore[no-untyped-def]
    return Ledger(engine, POLICY, clock)


# --- recording flattrs ---------------------------------------------------------------------


def test_a_flattr_records_one_share_per_supporter_creator_and_month(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    first = flattr(engine, ALICE, BOB)
    second = flattr(engine, ALICE, BOB, when=IN_FEBRUARY + timedelta(days=3))
    other_creator = flattr(engine, ALICE, CAROL)
    next_month = flattr(engine, ALICE, BOB, when=datetime(2026, 3, 2, tzinfo=UTC))

    assert first.status == FlattrStatus.RECORDED and first.period == "2026-02"
    assert second.status == FlattrStatus.ALREADY_FLATTRED and second.share_id == first.share_id
    assert other_creator.status == FlattrStatus.RECORDED
    assert next_month.status == FlattrStatus.RECORDED and next_month.period == "2026-03"
    assert count(engine, shares) == 3


def test_the_month_of_a_flattr_is_the_tweets_month_in_utc(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    last_minute = flattr(engine, ALICE, BOB, when=datetime(2026, 3, 31, 23, 59, tzinfo=UTC))
    first_minute = flattr(engine, ALICE, BOB, when=datetime(2026, 4, 1, 0, 0, tzinfo=UTC))
    paris = timezone(timedelta(hours=2))
    april_in_paris = flattr(engine, ALICE, CAROL, when=datetime(2026, 4, 1, 1, 30, tzinfo=paris))

    assert last_minute.period == "2026-03"
    assert first_minute.period == "2026-04"
    assert first_minute.status == FlattrStatus.RECORDED
    assert april_in_paris.period == "2026-03"


def test_a_flattr_moves_no_money_until_its_month_is_settled(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    flattr(engine, ALICE, BOB)
    assert available(engine, ALICE) == 1000
    assert count(engine, tips) == 0
    assert_books_balance(engine)


def test_a_supporter_without_an_account_is_unknown_and_nothing_is_recorded(engine):
    result = flattr(engine, ALICE, BOB)
    assert result.status == FlattrStatus.UNKNOWN_SUPPORTER and result.share_id is None
    assert count(engine, shares) == 0
    assert account(engine, ALICE) is None


def test_a_supporter_with_an_empty_account_still_gets_the_share(engine, ledger):
    budget(engine, ALICE, "3.00")  # creates the account, no money in it
    assert flattr(engine, ALICE, BOB).status == FlattrStatus.RECORDED


def test_a_flattr_of_a_refusing_creator_is_refused_at_once(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    ledger.refuse(BOB)
    assert flattr(engine, ALICE, BOB).status == FlattrStatus.REFUSING_RECIPIENT
    assert count(engine, shares) == 0


def test_flattring_yourself_records_nothing(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    assert flattr(engine, ALICE, ALICE).status == FlattrStatus.SELF_TIP
    assert count(engine, shares) == 0


def test_the_same_tweet_twice_is_a_replay_of_its_share(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    first = flattr(engine, ALICE, BOB, source="111")
    again = flattr(engine, ALICE, BOB, source="111")
    assert again.status == FlattrStatus.RECORDED and again.replayed
    assert again.share_id == first.share_id


def test_a_flattr_arriving_after_its_supporter_was_settled_counts_in_the_current_month(
    engine, ledger
):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    flattr(engine, ALICE, BOB)
    settle(engine, POLICY, "2026-02", MARCH_10)
    late = flattr(engine, ALICE, CAROL, when=datetime(2026, 2, 28, 23, 58, tzinfo=UTC))
    assert late.status == FlattrStatus.RECORDED and late.period == "2026-03"


def test_replaying_a_flattr_after_its_month_was_settled_records_nothing_new(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    first = flattr(engine, ALICE, BOB, source="111")
    settle(engine, POLICY, "2026-02", MARCH_10)
    late = flattr(engine, ALICE, CAROL, when=IN_FEBRUARY, source="222")
    replays = [flattr(engine, ALICE, BOB, source="111"), flattr(engine, ALICE, CAROL, source="222")]
    assert [(r.status, r.replayed) for r in replays] == [(FlattrStatus.RECORDED, True)] * 2
    assert [r.share_id for r in replays] == [first.share_id, late.share_id]
    assert count(engine, shares) == 2


# --- budgets ------------------------------------------------------------------------------


def test_a_budget_is_kept_per_supporter_and_can_be_changed(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    alice_id = account(engine, ALICE).id
    with engine.connect() as conn:
        assert get_budget(conn, alice_id) is None
    assert budget(engine, ALICE, "5.00") == eur("5.00")
    budget(engine, ALICE, "7.50")
    with engine.connect() as conn:
        assert get_budget(conn, alice_id) == 750


def test_a_budget_below_the_minimum_is_refused(engine, ledger):
    with pytest.raises(LedgerError, match="at least"):
        budget(engine, ALICE, "1.99")
    with pytest.raises(MoneyError), engine.begin() as conn:
        set_budget(conn, POLICY, ALICE, Money(500, "USD"), MINIMUM, MARCH_10)


# --- settling -----------------------------------------------------------------------------


def test_settlement_posts_to_claimed_creators_holds_for_unclaimed_and_skips_refusing(
    engine, ledger
):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    budget(engine, ALICE, "3.00")
    ledger.claim(BOB)
    for creator in (BOB, CAROL, DAVE):
        flattr(engine, ALICE, creator)
    ledger.refuse(DAVE)  # refuses after the flattr, before the settlement

    summary = settle(engine, POLICY, "2026-02", MARCH_10)

    bob_share, carol_share, dave_share = share_rows(engine, ALICE)
    assert [s.part_minor for s in (bob_share, carol_share, dave_share)] == [100, 100, 100]
    assert [s.state for s in (bob_share, carol_share, dave_share)] == [
        "settled",
        "settled",
        "refused",
    ]
    to_bob, to_carol = tip_for(engine, bob_share.id), tip_for(engine, carol_share.id)
    assert (to_bob.state, to_bob.kind, to_bob.amount_minor, to_bob.fee_minor) == (
        "posted",
        "flattr",
        100,
        10,
    )
    assert (to_carol.state, to_carol.amount_minor, to_carol.fee_minor) == ("held", 100, 0)
    assert to_carol.expires_at == MARCH_10 + POLICY.hold_period
    assert tip_for(engine, dave_share.id) is None
    assert available(engine, ALICE) == 800  # Dave's part stays with Alice
    assert available(engine, BOB) == 90
    assert account(engine, CAROL).credits_pending == 100
    assert summary.as_json() == {
        "period": "2026-02",
        "supporters_settled": 1,
        "shares": 3,
        "total_posted_minor": 100,
        "total_held_minor": 100,
        "total_fees_minor": 10,
        "unfunded_shares": 0,
        "already_settled": False,
    }
    assert summary.refused_shares == 1
    assert_books_balance(engine)


def test_a_held_part_goes_back_to_the_supporter_when_its_hold_expires(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    flattr(engine, ALICE, CAROL)
    settle(engine, POLICY, "2026-02", MARCH_10)
    assert available(engine, ALICE) == 800  # the minimum budget, held for Carol

    expire_due(engine, POLICY, MARCH_10 + POLICY.hold_period - timedelta(seconds=1))
    assert available(engine, ALICE) == 800
    expire_due(engine, POLICY, MARCH_10 + POLICY.hold_period + timedelta(seconds=1))
    assert available(engine, ALICE) == 1000
    assert_books_balance(engine)


def test_a_held_part_is_posted_with_the_fee_when_the_creator_claims(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    budget(engine, ALICE, "5.00")
    flattr(engine, ALICE, CAROL)
    settle(engine, POLICY, "2026-02", MARCH_10)
    result = ledger.claim(CAROL)
    assert (result.gross, result.fee) == (eur("5.00"), eur("0.50"))
    assert available(engine, CAROL) == 450
    assert_books_balance(engine)


def test_the_pool_is_what_is_available_when_the_budget_is_more(engine, ledger):
    ledger.deposit(ALICE, eur("1.00"), "dep-1")
    budget(engine, ALICE, "5.00")
    for creator in (BOB, CAROL, DAVE):
        flattr(engine, ALICE, creator)
    settle(engine, POLICY, "2026-02", MARCH_10)
    assert [s.part_minor for s in share_rows(engine, ALICE)] == [34, 33, 33]
    assert available(engine, ALICE) == 0
    with engine.connect() as conn:
        marker = conn.execute(select(settlements)).one()
    assert (marker.budget_minor, marker.available_minor, marker.pool_minor) == (500, 100, 100)
    assert_books_balance(engine)


def test_a_supporter_without_a_budget_is_settled_with_the_minimum(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    flattr(engine, ALICE, BOB)
    flattr(engine, ALICE, CAROL)
    settle(engine, POLICY, "2026-02", MARCH_10, default_budget_minor=300)
    assert sum(s.part_minor for s in share_rows(engine, ALICE)) == 300
    assert available(engine, ALICE) == 700
    assert_books_balance(engine)


def test_a_pool_smaller_than_the_shares_gives_zero_parts_that_move_nothing(engine, ledger):
    ledger.deposit(ALICE, eur("0.02"), "dep-1")
    for creator in (BOB, CAROL, DAVE):
        flattr(engine, ALICE, creator)
    settle(engine, POLICY, "2026-02", MARCH_10)
    rows = share_rows(engine, ALICE)
    assert [(s.state, s.part_minor) for s in rows] == [
        ("settled", 1),
        ("settled", 1),
        ("settled", 0),
    ]
    assert tip_for(engine, rows[2].id) is None
    assert count(engine, tips) == 2
    assert available(engine, ALICE) == 0
    assert_books_balance(engine)


def test_a_supporter_with_nothing_available_has_their_shares_unfunded(engine, ledger):
    ledger.deposit(BOB, eur("5.00"), "dep-bob")
    budget(engine, ALICE, "3.00")  # an account, but no money
    flattr(engine, ALICE, CAROL)
    flattr(engine, ALICE, DAVE)
    flattr(engine, BOB, CAROL)

    summary = settle(engine, POLICY, "2026-02", MARCH_10)

    assert [(s.state, s.part_minor) for s in share_rows(engine, ALICE)] == [
        ("unfunded", 0),
        ("unfunded", 0),
    ]
    assert (summary.supporters_settled, summary.shares, summary.unfunded_shares) == (2, 3, 2)
    assert summary.total_held_minor == 200
    assert_books_balance(engine)


def test_the_parts_in_the_ledger_are_the_split_of_the_pool(engine, ledger):
    supporters = [Identity.x(str(100 + i), f"s{i}") for i in range(5)]
    creators = [Identity.x(str(200 + i), f"c{i}") for i in range(7)]
    for i, who in enumerate(supporters):
        ledger.deposit(who, Money(137 * (i + 1)), f"dep-{i}")
        budget(engine, who, f"{2 + i}.{i}7")
        for creator in creators[i:]:
            flattr(engine, who, creator)
    settle(engine, POLICY, "2026-02", MARCH_10, batch=2)
    with engine.connect() as conn:
        pools = {r.supporter_account_id: r.pool_minor for r in conn.execute(select(settlements))}
    for who in supporters:
        rows = share_rows(engine, who)
        expected = split_pool(pools[rows[0].supporter_account_id], [s.id for s in rows])
        assert {s.id: s.part_minor for s in rows} == expected
    assert_books_balance(engine)


def test_supporters_who_flattr_each_other_are_both_settled(engine, ledger):
    ledger.deposit(ALICE, eur("3.00"), "dep-a")
    ledger.deposit(BOB, eur("3.00"), "dep-b")
    ledger.claim(ALICE)
    ledger.claim(BOB)
    flattr(engine, ALICE, BOB)
    flattr(engine, BOB, ALICE)
    summary = settle(engine, POLICY, "2026-02", MARCH_10)
    assert summary.total_posted_minor == 400 and summary.total_fees_minor == 40
    assert available(engine, ALICE) == available(engine, BOB) == 300 - 200 + 180
    assert_books_balance(engine)


def test_a_month_with_no_shares_takes_nothing(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    flattr(engine, ALICE, BOB, when=datetime(2026, 1, 5, tzinfo=UTC))
    summary = settle(engine, POLICY, "2026-02", MARCH_10)
    assert (summary.supporters_settled, summary.shares, summary.total_posted_minor) == (0, 0, 0)
    assert available(engine, ALICE) == 1000
    assert count(engine, tips) == 0
    assert_books_balance(engine)


def test_settling_a_month_again_changes_nothing(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    ledger.claim(BOB)
    flattr(engine, ALICE, BOB)
    flattr(engine, ALICE, CAROL)
    first = settle(engine, POLICY, "2026-02", MARCH_10)
    before = snapshot(engine)

    again = settle(engine, POLICY, "2026-02", MARCH_10 + timedelta(days=1))

    assert snapshot(engine) == before
    assert again.already_settled and not first.already_settled
    assert again.as_json() | {"already_settled": False} == first.as_json()
    assert_books_balance(engine)


def test_a_month_that_has_not_ended_is_refused(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    flattr(engine, ALICE, BOB, when=datetime(2026, 3, 1, tzinfo=UTC))
    with pytest.raises(SettlementError, match="not ended"):
        settle(engine, POLICY, "2026-03", datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC))
    with pytest.raises(SettlementError, match="not a month"):
        settle(engine, POLICY, "2026-13", MARCH_10)
    assert count(engine, settlement_runs) == 0
    assert settle(engine, POLICY, "2026-03", datetime(2026, 4, 1, tzinfo=UTC)).shares == 1


def test_settle_due_settles_every_ended_month_not_yet_settled(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    flattr(engine, ALICE, BOB, when=datetime(2026, 1, 20, tzinfo=UTC))
    flattr(engine, ALICE, BOB, when=datetime(2026, 2, 20, tzinfo=UTC))
    flattr(engine, ALICE, BOB, when=datetime(2026, 3, 2, tzinfo=UTC))  # this month

    done = settle_due(engine, POLICY, MARCH_10)

    assert [s.period for s in done] == ["2026-01", "2026-02"]
    assert available(engine, ALICE) == 600
    assert settle_due(engine, POLICY, MARCH_10) == []
    assert_books_balance(engine)


def test_settlement_reports_progress_per_batch(engine, ledger):
    for i in range(5):
        who = Identity.x(str(10 + i))
        ledger.deposit(who, eur("5.00"), f"dep-{i}")
        flattr(engine, who, BOB)
        flattr(engine, who, CAROL)
    seen: list[int] = []
    summary = settle(engine, POLICY, "2026-02", MARCH_10, batch=2, progress=seen.append)
    assert seen == [4, 4, 2]
    assert (summary.supporters_settled, summary.shares) == (5, 10)
    assert_books_balance(engine)


def test_the_batch_size_does_not_change_the_result(engine, ledger):
    ledger.claim(DAVE)
    january, february = datetime(2026, 1, 10, tzinfo=UTC), IN_FEBRUARY
    for group, when in ((10, january), (20, february)):
        for i in range(4):
            who = Identity.x(str(group + i))
            ledger.deposit(who, Money(150 + 7 * i), f"dep-{group + i}")
            for creator in (BOB, CAROL, DAVE):
                flattr(engine, who, creator, when=when)
    one = settle(engine, POLICY, "2026-01", MARCH_10, batch=1)
    many = settle(engine, POLICY, "2026-02", MARCH_10, batch=1000)

    def parts(period: str) -> list[tuple[int, str, int]]:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    accounts.c.platform_user_id, shares.c.recipient_account_id, shares.c.part_minor
                )
                .join(accounts, accounts.c.id == shares.c.supporter_account_id)
                .where(shares.c.period == period)
                .order_by(shares.c.id)
            )
            return [(int(u) % 10, r, p) for u, r, p in rows]

    assert parts("2026-01") == parts("2026-02")
    assert one.as_json() | {"period": "2026-02"} == many.as_json()
    assert_books_balance(engine)


def test_a_flattr_slipping_into_a_completed_month_is_settled_by_the_next_run(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    ledger.deposit(BOB, eur("10.00"), "dep-2")
    flattr(engine, ALICE, CAROL)
    settle(engine, POLICY, "2026-02", MARCH_10)
    # A share that raced the completion (simulated: written behind the settlement's back).
    with engine.begin() as conn:
        conn.execute(
            shares.insert().values(
                period="2026-02",
                supporter_account_id=find_account(conn, BOB).id,
                recipient_account_id=find_account(conn, CAROL).id,
                source_id="late",
                flattred_at=IN_FEBRUARY,
                created_at=MARCH_10,
            )
        )
    assert [s.period for s in settle_due(engine, POLICY, MARCH_10)] == ["2026-02"]
    again = settle(engine, POLICY, "2026-02", MARCH_10)
    assert again.already_settled and again.supporters_settled == 2
    assert available(engine, BOB) == 800
    assert_books_balance(engine)


def test_the_money_is_conserved_across_a_busy_month(engine, ledger):
    ledger.claim(BOB)
    ledger.claim(DAVE)
    supporters = [Identity.x(str(300 + i)) for i in range(9)]
    for i, who in enumerate(supporters):
        if i % 3:
            ledger.deposit(who, Money(97 * i + 3), f"dep-{i}")
        else:
            budget(engine, who, "2.00")
        with engine.begin() as conn:
            set_budget(conn, POLICY, who, Money(200 + 111 * i), MINIMUM, MARCH_10)
        for creator in (BOB, CAROL, DAVE, ERIN)[: 1 + i % 4]:
            flattr(engine, who, creator)
    ledger.refuse(ERIN)
    summary = settle(engine, POLICY, "2026-02", MARCH_10, batch=4)
    with engine.connect() as conn:
        taken = conn.execute(select(func.sum(tips.c.amount_minor))).scalar_one()
        pools = conn.execute(select(func.sum(settlements.c.pool_minor))).scalar_one()
        refused = conn.execute(
            select(func.coalesce(func.sum(shares.c.part_minor), 0)).where(
                shares.c.state == "refused"
            )
        ).scalar_one()
    assert summary.total_posted_minor + summary.total_held_minor == taken
    assert taken + refused == pools
    assert summary.supporters_settled == 9
    assert_books_balance(engine)


def test_the_share_source_prefix_names_the_tip(engine, ledger):
    ledger.deposit(ALICE, eur("10.00"), "dep-1")
    share_id = flattr(engine, ALICE, BOB).share_id
    settle(engine, POLICY, "2026-02", MARCH_10)
    assert tip_for(engine, share_id).source_id == settlement.SHARE_SOURCE_PREFIX + str(share_id)


def test_settlement_leaves_the_same_rows_as_tipping_each_part_one_by_one(engine, ledger):
    """The set-based settlement writes what `escrow.tips.tip` would for each part."""

    def world(offset: int) -> tuple[list[Identity], list[Identity]]:
        supporters = [Identity.x(str(offset + i)) for i in range(4)]
        creators = [Identity.x(str(offset + 50 + i)) for i in range(4)]
        ledger.claim(creators[0])
        ledger.claim(creators[1])
        for i, who in enumerate(supporters):
            ledger.deposit(who, Money(113 + 97 * i), f"dep-{offset + i}")
        return supporters, creators

    settled_s, settled_c = world(100)
    tipped_s, tipped_c = world(200)
    for i, who in enumerate(settled_s):
        for creator in settled_c[: 2 + i % 3]:
            flattr(engine, who, creator)
    ledger.refuse(settled_c[3])
    ledger.refuse(tipped_c[3])
    settle(engine, POLICY, "2026-02", MARCH_10)
    with engine.connect() as conn:
        recipient_user_ids = {a.id: a.platform_user_id for a in conn.execute(select(accounts))}
    parts = [
        (i, int(recipient_user_ids[s.recipient_account_id]) % 50, s.part_minor, s.id)
        for i, who in enumerate(settled_s)
        for s in share_rows(engine, who)
        if s.state == "settled" and s.part_minor > 0
    ]
    with engine.begin() as conn:
        for i, c, part, share_id in parts:
            result = tip(
                conn,
                POLICY,
                tipped_s[i],
                tipped_c[c],
                Money(part),
                f"share:{share_id}:b",
                MARCH_10,
                kind="flattr",
            )
            assert result.applied

    with engine.connect() as conn:
        role = {
            a.id: ("system", 0)
            if a.platform == "system"
            else ("c" if int(a.platform_user_id) % 100 >= 50 else "s", int(a.platform_user_id) % 50)
            for a in conn.execute(select(accounts))
        }

    def picture(offset: int) -> tuple:  # type: ignore[type-arg]
        ours = [str(offset + i) for i in (*range(4), *range(50, 54))]
        with engine.connect() as conn:
            ids = {
                a.id
                for a in conn.execute(select(accounts).where(accounts.c.platform_user_id.in_(ours)))
            }
            rows = [t for t in conn.execute(select(tips)) if t.supporter_account_id in ids]
            tip_ids = {t.id for t in rows}
            moved = sorted(
                (
                    role[tr.debit_account_id],
                    role[tr.credit_account_id],
                    tr.amount_minor,
                    tr.kind,
                    tr.expires_at,
                    tr.created_at,
                )
                for tr in conn.execute(select(transfers))
                if tr.tip_id in tip_ids
            )
            counters = sorted(
                (role[a.id], a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)
                for a in conn.execute(select(accounts))
                if a.id in ids
            )
        tip_rows = sorted(
            (
                role[t.supporter_account_id],
                role[t.recipient_account_id],
                t.kind,
                t.amount_minor,
                t.fee_minor,
                t.state,
                t.resolution,
                t.expires_at,
                t.created_at,
                t.hold_transfer_id is not None,
            )
            for t in rows
        )
        return tip_rows, moved, counters

    settled, tipped = picture(100), picture(200)
    assert settled == tipped
    assert {t[5] for t in settled[0]} == {"posted", "held"}
    assert_books_balance(engine)
