"""Money: an integer number of minor units in one ISO 4217 currency.

This is the only representation of an amount anywhere in tipjar. Floats never touch
money: amounts are parsed from text straight into integers and formatted back from them.
Arithmetic refuses to mix currencies, so a bug cannot silently add euros to dollars.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering
from typing import Any, TypeVar, cast

_N = TypeVar("_N")


@dataclass(frozen=True)
class Currency:
    code: str
    exponent: int  # number of decimal places of the minor unit
    symbol: str

    @property
    def factor(self) -> int:
        return int(10**self.exponent)


CURRENCIES: dict[str, Currency] = {
    c.code: c
    for c in (
        Currency("EUR", 2, "€"),
        Currency("USD", 2, "$"),
        Currency("GBP", 2, "£"),
        Currency("CHF", 2, "CHF "),
        Currency("SEK", 2, "kr "),
        Currency("JPY", 0, "¥"),
    )
}


def percent_floor_of(minor: _N, percent: int) -> _N:
    """`percent` % of `minor`, rounded down: the one definition of the fee's arithmetic.

    Written with operators only, so the same function builds the SQL expression when
    `minor` is a column (integer division floors non-negative amounts on both databases).
    """
    value: Any = minor
    return cast(_N, value * percent // 100)


# The largest amount tipjar handles, and the largest any account counter may reach:
# 10^15 minor units (ten trillion euros), far below 2^63, so no sum of counters overflows a
# 64-bit integer on PostgreSQL and SQLite never falls back to floating point. The database
# enforces it too (migration 0009).
MAX_MINOR = 10**15


class MoneyError(ValueError):
    """An amount that cannot be money: malformed, wrong currency, too precise."""


def currency(code: str) -> Currency:
    try:
        return CURRENCIES[code.upper()]
    except KeyError:
        known = ", ".join(sorted(CURRENCIES))
        raise MoneyError(f"unknown currency {code!r} (known: {known})") from None


# A plain decimal: digits, optionally one separator ('.' or ',') and a fraction.
# Thousands separators are not accepted: '1,000' could be one thousand or one.
_DECIMAL = re.compile(r"(?P<units>[0-9]+)(?:[.,](?P<frac>[0-9]+))?\Z", re.ASCII)


def parse_minor(text: str, cur: Currency) -> int:
    """Parse a plain non-negative decimal such as ``10``, ``2.50`` or ``0,50`` to minor units.

    Raises MoneyError for anything else, including more decimals than the currency has
    and a comma followed by exactly three digits (``1,000``), which is ambiguous.
    """
    text = text.strip()
    m = _DECIMAL.match(text)
    if not m:
        raise MoneyError(f"{text!r} is not an amount")
    units, frac = m.group("units"), m.group("frac")
    if frac is None:
        if len(units) > 15:
            raise MoneyError(f"{text!r} is too large")
        return int(units) * cur.factor
    if "," in text and len(frac) == 3 and cur.exponent != 3:
        raise MoneyError(f"{text!r} is ambiguous: write 1000 or 1.00")
    if len(frac) > cur.exponent:
        raise MoneyError(f"{text!r} has more than {cur.exponent} decimals for {cur.code}")
    if len(units) > 15:
        raise MoneyError(f"{text!r} is too large")
    return int(units) * cur.factor + int(frac.ljust(cur.exponent, "0") or "0")


@total_ordering
@dataclass(frozen=True, slots=True)
class Money:
    minor: int
    currency: str = "EUR"

    def __post_init__(self) -> None:
        if not isinstance(self.minor, int) or isinstance(self.minor, bool):
            raise TypeError(f"Money needs an integer of minor units, not {self.minor!r}")
        currency(self.currency)  # validates the code

    @classmethod
    def parse(cls, text: str, code: str) -> Money:
        """``Money.parse("2.50", "EUR") == Money(250, "EUR")``; negative amounts are refused."""
        return cls(parse_minor(text, currency(code)), currency(code).code)

    @classmethod
    def zero(cls, code: str) -> Money:
        return cls(0, currency(code).code)

    def _same(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")
        return other

    def __add__(self, other: Money) -> Money:
        return Money(self.minor + self._same(other).minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.minor - self._same(other).minor, self.currency)

    def __mul__(self, factor: int) -> Money:
        if not isinstance(factor, int) or isinstance(factor, bool):
            raise TypeError("Money can only be multiplied by an integer")
        return Money(self.minor * factor, self.currency)

    __rmul__ = __mul__

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        return self.minor < self._same(other).minor

    def __bool__(self) -> bool:
        return self.minor != 0

    def percent_floor(self, percent: int) -> Money:
        """``percent`` % of this amount, rounded down (the fee rounds in the creator's favour)."""
        return Money(percent_floor_of(self.minor, percent), self.currency)

    def plain(self) -> str:
        """``2.50``: the amount without a symbol, as the CLI and config accept it."""
        cur = currency(self.currency)
        sign = "-" if self.minor < 0 else ""
        units, frac = divmod(abs(self.minor), cur.factor)
        if cur.exponent == 0:
            return f"{sign}{units}"
        return f"{sign}{units}.{frac:0{cur.exponent}d}"

    def __str__(self) -> str:
        """``€2.50``: the amount as a person reads it."""
        cur = currency(self.currency)
        plain = self.plain()
        if plain.startswith("-"):
            return f"-{cur.symbol}{plain[1:]}"
        return f"{cur.symbol}{plain}"
