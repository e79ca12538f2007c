"""Properties of the tip language: parsing is total, and amounts survive a round trip."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot.commands import (
    AmountRules,
    ControlCommand,
    NotACommand,
    Outcome,
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


@settings(max_examples=200, deadline=1000)
@given(money=amounts, style=st.sampled_from(sorted(STYLES)))
def test_an_amount_reads_the_same_when_the_display_range_covers_the_tweet(
    money: Money, style: str
) -> None:
    rules = AmountRules(money.currency, Money(1, money.currency), Money(10**12, money.currency))
    text = f"@flattr @bob {STYLES[style](money)}"
    shown = (0, len(text))
    assert parse(text, bot_username="flattr", rules=rules, display_range=shown) == TipCommand(
        ("bob",), money, is_reply=False
    )


DIGITS = [*"0123456789", "\uff12", "\u0663", "\u06f5"]
GAPS = [" ", "  ", "\n", "\u00a0", " \u200b", "\u200b"]
# Words after the digit: anything but a mention (another "@flattr @carol" is another tip).
no_mentions = st.text(max_size=40).filter(lambda t: "@" not in t and "\uff20" not in t)


def _sent_as(shape: str, words: str) -> tuple[str, dict[str, object]]:
    if shape == "reply, display range":
        prefix = "@alice "
        return prefix + words, {
            "in_reply_to_username": "alice",
            "display_range": (len(prefix), len(prefix) + len(words)),
        }
    if shape == "reply":
        return "@alice " + words, {"in_reply_to_username": "alice"}
    return words, {}


@settings(max_examples=300, deadline=1000)
@given(
    recipients=st.lists(handles, min_size=1, max_size=4),
    gap=st.sampled_from(GAPS),
    word=st.sampled_from(["", "tip ", "flattr "]),
    digit=st.sampled_from(DIGITS),
    rest=no_mentions,
    shape=st.sampled_from(["tweet", "reply", "reply, display range"]),
)
def test_no_tweet_containing_a_digit_right_after_the_recipients_is_ever_a_flattr(
    recipients: list[str], gap: str, word: str, digit: str, rest: str, shape: str
) -> None:
    words = "@flattr " + " ".join("@" + h for h in recipients) + gap + word + digit + rest
    text, context = _sent_as(shape, words)
    result = parse(text, bot_username="flattr", **context)  # type: ignore[arg-type]
    assert not (isinstance(result, TipCommand) and result.is_flattr), (text, result)


@settings(max_examples=300, deadline=1000)
@given(
    prefix=st.lists(
        st.sampled_from(["@flattr", "@FLATTR", "@alice", "@bob", "@carol"]), max_size=5
    ),
    typed=st.lists(st.one_of(fragments, st.text(max_size=6)), max_size=20).map("".join),
    replied_to=handles,
)
def test_the_thread_mentions_before_the_display_range_never_move_money(
    prefix: list[str], typed: str, replied_to: str
) -> None:
    """What X prefills in a reply is context; only the author typing the bot is a tip."""
    assume("flattr" not in typed.lower())
    head = " ".join([*prefix, "@flattr"]) + " "
    text = head + typed
    result = parse(
        text,
        bot_username="flattr",
        in_reply_to_username=replied_to,
        display_range=(len(head), len(text)),
    )
    assert isinstance(result, NotACommand | ControlCommand), (text, result)


# Words that hold no amount and no tip/flattr keyword: the Mastodon rule calls them chatter.
chatter_words = st.text(
    alphabet=st.sampled_from([*"abcdeghjkmnoqsuvwxyz !.,'", "\U0001f64f", "\U0001f389", "\u2764"]),
    max_size=60,
).filter(lambda t: not any(k in t.lower() for k in ("tip", "flattr", "help", "stop")))


@settings(max_examples=300, deadline=1000)
@given(
    prefix=st.lists(st.sampled_from(["@flattr", "@alice", "@bob", "@carol"]), max_size=4),
    words=chatter_words,
    replied_to=st.sampled_from(["alice", "bob", "carol"]),
)
def test_a_reply_without_display_range_that_asks_for_no_money_is_chatter(
    prefix: list[str], words: str, replied_to: str
) -> None:
    text = " ".join([*prefix, "@flattr", *prefix]) + " " + words
    result = parse(text, bot_username="flattr", in_reply_to_username=replied_to)
    assert result == NotACommand(), (text, result)


@settings(max_examples=200, deadline=1000)
@given(
    whole=st.integers(min_value=1, max_value=999),
    more=st.from_regex(r"[0-9]{1,3}([.,][0-9]{2})?", fullmatch=True),
    space=st.sampled_from([" ", "\u00a0", "\u202f", "\u2009"]),
    style=st.sampled_from(["€{}", "€ {}", "EUR {}", "{} €", "{}€", "{} EUR"]),
)
def test_a_space_inside_a_number_is_a_bad_amount(
    whole: int, more: str, space: str, style: str
) -> None:
    written = style.format(f"{whole}{space}{more}")
    result = parse(f"@flattr @bob {written}", bot_username="flattr")
    assert isinstance(result, Rejection) and result.outcome == Outcome.bad_amount, (
        written,
        result,
    )
