"""Properties of the tip language: parsing is total, and amounts survive a round trip."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.commands import (
    AmountRules,
    ControlCommand,
    NotACommand,
    Rejection,
    TipCommand,
    parse,
    parse_amount,
)
from escrow.money import CURRENCIES, Money, currency

COMMANDS = (TipCommand, ControlCommand, Rejection, NotACommand)

handles = st.from_regex(r"[A-Za-z0-9_]{1,20}", fullmatch=True)
# Pieces of real tweets, so that random texts also reach the deeper rules.
fragments = st.sampled_from(
    [
        "@flattr",
        "@FLATTR",
        "\uff20flattr",
        "@bob",
        "@carol",
        "@alice",
        " ",
        "\n",
        "\u200b",
        "\u200f",
        "\u0301",
        ",",
        "'s",
        "€",
        "$",
        "EUR",
        "eur",
        "2",
        "0,50",
        "1,000",
        ".",
        "-",
        "tip",
        "help",
        "stop",
        "thanks!",
        "?",
        "https://t.co/x",
        "RT ",
        "\u05e9\u05dc\u05d5\u05dd",
        "\U0001f64f",
        "\uff12",
    ]
)
tweets = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(fragments, st.text(max_size=4)), max_size=40).map("".join),
)


@settings(max_examples=200, deadline=1000)
@given(
    text=tweets,
    bot=handles,
    replied_to=st.none() | handles | st.text(max_size=25),
    author=st.none() | handles,
)
def test_parse_never_raises_and_always_answers_with_a_command(
    text: str, bot: str, replied_to: str | None, author: str | None
) -> None:
    for candidate in (text, text.replace("@flattr", "@" + bot)):
        result = parse(
            candidate,
            bot_username=bot,
            in_reply_to_username=replied_to,
            author_username=author,
        )
        assert isinstance(result, COMMANDS)


@settings(max_examples=50, deadline=1000)
@given(pieces=st.lists(st.one_of(fragments, st.text(max_size=8)), min_size=1, max_size=30))
def test_parse_reads_ten_thousand_character_tweets(pieces: list[str]) -> None:
    chunk = "".join(pieces) or "@flattr"
    text = (chunk * (10_000 // len(chunk) + 1))[:10_000]
    result = parse(text, bot_username="flattr", in_reply_to_username="bob")
    assert isinstance(result, COMMANDS)


@settings(max_examples=200, deadline=1000)
@given(text=tweets, replied_to=st.none() | st.sampled_from(["alice", "bob", "flattr"]))
def test_recipients_never_include_the_bot_or_the_author(text: str, replied_to: str | None) -> None:
    result = parse(
        text, bot_username="flattr", author_username="alice", in_reply_to_username=replied_to
    )
    if isinstance(result, TipCommand):
        lowered = [r.lower() for r in result.recipients]
        assert "flattr" not in lowered and "alice" not in lowered
        assert len(set(lowered)) == len(lowered) > 0


def _symbol(code: str) -> str:
    return currency(code).symbol.strip()


STYLES: dict[str, Callable[[Money], str]] = {
    "as Money prints it": str,
    "symbol first": lambda m: f"{_symbol(m.currency)}{m.plain()}",
    "symbol first, spaced": lambda m: f"{_symbol(m.currency)} {m.plain()}",
    "symbol after": lambda m: f"{m.plain()}{_symbol(m.currency)}",
    "symbol after, spaced": lambda m: f"{m.plain()} {_symbol(m.currency)}",
    "code after": lambda m: f"{m.plain()} {m.currency}",
    "code first": lambda m: f"{m.currency} {m.plain()}",
    "lower-case code glued": lambda m: f"{m.plain()}{m.currency.lower()}",
    "decimal comma": lambda m: f"{m.plain().replace('.', ',')} {_symbol(m.currency)}",
    "bare number": lambda m: m.plain(),
}

amounts = st.builds(
    Money,
    st.integers(min_value=1, max_value=10**11),
    st.sampled_from(sorted(CURRENCIES)),
)


@settings(max_examples=200, deadline=1000)
@given(money=amounts, style=st.sampled_from(sorted(STYLES)))
def test_a_formatted_amount_parses_back_to_the_same_money(money: Money, style: str) -> None:
    rules = AmountRules(money.currency, Money(1, money.currency), Money(10**12, money.currency))
    written = STYLES[style](money)
    assert parse_amount(written, rules) == money
    tweet = parse(f"@flattr @bob {written}", bot_username="flattr", rules=rules)
    assert tweet == TipCommand(("bob",), money, is_reply=False)
