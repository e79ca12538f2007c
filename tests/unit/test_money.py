"""Money is integers of minor units in one currency; it never mixes, never floats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from escrow.money import Money, MoneyError


@pytest.mark.parametrize(
    ("text", "minor"),
    [("10", 1000), ("10.00", 1000), ("2.5", 250), ("0,50", 50), ("0.01", 1), ("1,5", 150)],
)
def test_amounts_parse_to_minor_units(text, minor):
    assert Money.parse(text, "EUR") == Money(minor, "EUR")


@pytest.mark.parametrize("text", ["", "abc", "1.234", "1,000", "-1", "1e3", "1.", ".5", "1 000"])
def test_malformed_or_ambiguous_amounts_are_refused(text):
    with pytest.raises(MoneyError):
        Money.parse(text, "EUR")


def test_currencies_without_cents_take_no_decimals():
    assert Money.parse("500", "JPY") == Money(500, "JPY")
    with pytest.raises(MoneyError):
        Money.parse("5.5", "JPY")
    assert str(Money(500, "JPY")) == "¥500"


def test_mixing_currencies_is_refused():
    with pytest.raises(MoneyError):
        Money(100, "EUR") + Money(100, "USD")
    with pytest.raises(MoneyError):
        _ = Money(100, "EUR") < Money(100, "USD")


def test_floats_are_not_money():
    with pytest.raises(TypeError):
        Money(1.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(100, "EUR") * 1.5  # type: ignore[operator]


def test_fees_round_down_in_the_creators_favour():
    assert Money(99, "EUR").percent_floor(10) == Money(9, "EUR")
    assert Money(5, "EUR").percent_floor(10) == Money(0, "EUR")


def test_formatting_reads_as_people_write_money():
    assert str(Money(360, "EUR")) == "€3.60"
    assert str(Money(-5, "EUR")) == "-€0.05"
    assert Money(1005, "USD").plain() == "10.05"


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["EUR", "USD", "JPY", "GBP"]))
def test_formatting_then_parsing_gives_the_amount_back(minor, code):
    m = Money(minor, code)
    assert Money.parse(m.plain(), code) == m


@given(st.integers(-(10**9), 10**9), st.integers(-(10**9), 10**9))
def test_addition_and_subtraction_are_exact(a, b):
    assert (Money(a) + Money(b)) - Money(b) == Money(a)
