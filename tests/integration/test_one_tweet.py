"""One tweet, one decision: a tip or a flattr to several creators applies whole or not at all.

Alice with €5 tweeting `@flattr @c0 @c1 @c2 €2` used to hold €4 for c0 and c1 and reply
"Nothing was sent". Now the tweet needs €6, nothing moves, and each request says so.
"""

from __future__ import annotations

from sqlalchemy import func, select

from escrow.audit import check_ledger
from escrow.decide import TipRequest
from escrow.flattrs import FlattrStatus, record_flattrs
from escrow.ledger import Identity, Policy, TipStatus, deposit, find_account
from escrow.money import Money
from escrow.schema import shares, tips
from escrow.tips import tip_many

POLICY = Policy()
ALICE = Identity.x("1", "alice")
CREATORS = [Identity.x(str(10 + i), f"c{i}") for i in range(3)]


def _tweet(amount: int, source: str = "tweet-1") -> list[TipRequest]:
    return [TipRequest(ALICE, c, Money(amount), source) for c in CREATORS]


def _available(conn) -> int:
    row = find_account(conn, ALICE)
    return int(row.credits_posted - row.debits_posted - row.debits_pending)


def test_a_tip_to_three_creators_the_supporter_cannot_cover_whole_moves_nothing(engine, clock):
    with engine.begin() as conn:
        deposit(conn, POLICY, ALICE, Money(500), "dep-1", clock())
        results = tip_many(conn, POLICY, _tweet(200), clock())

    assert [r.status for r in results] == [TipStatus.INSUFFICIENT_FUNDS] * 3
    assert {(r.needed, r.available) for r in results} == {(Money(600), Money(500))}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tips)).scalar_one() == 0
        assert _available(conn) == 500
        assert check_ledger(conn) == []


def test_a_tip_to_three_creators_the_supporter_can_cover_applies_to_all_once(engine, clock):
    with engine.begin() as conn:
        deposit(conn, POLICY, ALICE, Money(600), "dep-1", clock())
        first = tip_many(conn, POLICY, _tweet(200), clock())
        again = tip_many(conn, POLICY, _tweet(200), clock())

    assert [r.status for r in first] == [TipStatus.HELD] * 3
    assert [r.replayed for r in again] == [True] * 3
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tips)).scalar_one() == 3
        assert _available(conn) == 0
        assert check_ledger(conn) == []


def test_a_flattr_of_three_creators_records_all_three_shares_in_one_call(engine, clock):
    now = clock()
    with engine.begin() as conn:
        deposit(conn, POLICY, ALICE, Money(500), "dep-1", now)
        results = record_flattrs(conn, POLICY, ALICE, CREATORS, now, "tweet-1", now)
        replays = record_flattrs(conn, POLICY, ALICE, CREATORS, now, "tweet-1", now)

    assert [r.status for r in results] == [FlattrStatus.RECORDED] * 3
    assert len({r.share_id for r in results}) == 3
    assert [(r.share_id, r.replayed) for r in replays] == [(r.share_id, True) for r in results]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(shares)).scalar_one() == 3


def test_a_flattr_of_three_creators_by_an_unknown_supporter_records_none(engine, clock):
    now = clock()
    with engine.begin() as conn:
        results = record_flattrs(conn, POLICY, ALICE, CREATORS, now, "tweet-1", now)

    assert [r.status for r in results] == [FlattrStatus.UNKNOWN_SUPPORTER] * 3
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(shares)).scalar_one() == 0
