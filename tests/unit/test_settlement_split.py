"""The split of a supporter's monthly pool over their shares, and the months themselves.

Pure functions, no database: `split_pool` must be exact to the minor unit, fair to within
one unit, and deterministic whatever order the shares come in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from escrow.flattrs import SettlementError, period_bounds, period_of
from escrow.settlement import pool_of, split_pool

minor = st.integers(min_value=0, max_value=10**9)
share_ids = st.lists(st.integers(min_value=1, max_value=10**12), unique=True, max_size=60)


@settings(max_examples=200)
@given(budget=minor, balance=minor, ids=share_ids)
def test_the_parts_add_up_to_the_pool_and_differ_by_at_most_one_unit(budget, balance, ids):
    pool = pool_of(budget, balance)
    parts = split_pool(pool, ids)
    assert set(parts) == set(ids)
    if ids:
        assert sum(parts.values()) == pool
        assert max(parts.values()) - min(parts.values()) <= 1
        assert min(parts.values()) >= 0
    assert pool <= budget and pool <= balance


@settings(max_examples=200)
@given(pool=minor, ids=share_ids, data=st.data())
def test_the_same_shares_in_any_order_get_the_same_parts(pool, ids, data):
    shuffled = data.draw(st.permutations(ids))
    assert split_pool(pool, shuffled) == split_pool(pool, ids)
    assert split_pool(pool, iter(shuffled)) == split_pool(pool, ids)


@settings(max_examples=200)
@given(pool=minor, ids=share_ids.filter(bool))
def test_the_odd_units_go_to_the_earliest_shares(pool, ids):
    parts = split_pool(pool, ids)
    ordered = [parts[i] for i in sorted(ids)]
    assert ordered == sorted(ordered, reverse=True)


@given(pool=minor)
def test_no_shares_take_no_money(pool):
    assert split_pool(pool, []) == {}


def test_a_pool_of_one_euro_over_three_shares_is_34_33_33_by_share_id():
    assert split_pool(100, [30, 10, 20]) == {10: 34, 20: 33, 30: 33}


def test_a_pool_smaller_than_the_number_of_shares_gives_some_shares_nothing():
    assert split_pool(2, [5, 6, 7]) == {5: 1, 6: 1, 7: 0}


def test_the_pool_is_the_budget_unless_less_is_available():
    assert pool_of(500, 1000) == 500
    assert pool_of(500, 120) == 120
    assert pool_of(500, 0) == 0


def test_a_negative_pool_is_refused():
    with pytest.raises(ValueError):
        split_pool(-1, [1])


def test_a_flattrs_month_is_its_utc_month():
    assert period_of(datetime(2026, 3, 31, 23, 59, tzinfo=UTC)) == "2026-03"
    assert period_of(datetime(2026, 4, 1, 0, 0, tzinfo=UTC)) == "2026-04"
    plus_two = timezone(timedelta(hours=2))
    assert period_of(datetime(2026, 4, 1, 1, 59, tzinfo=plus_two)) == "2026-03"
    with pytest.raises(ValueError):
        period_of(datetime(2026, 4, 1))


def test_a_month_runs_from_its_first_instant_to_the_next_months():
    assert period_bounds("2026-03") == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
    )
    assert period_bounds("2026-12")[1] == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-3", "2026-13", "2026-00", "march", "2026-03-01", ""])
def test_a_malformed_month_is_refused(text):
    with pytest.raises(SettlementError):
        period_bounds(text)
