"""The tip language, as a table of tweets and what the bot must make of each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.commands import (
    AmountRules,
    Command,
    ControlCommand,
    NotACommand,
    Outcome,
    Rejection,
    TipCommand,
    parse,
)
from escrow.money import Money, MoneyError

SHARED = Path(__file__).resolve().parents[3] / "shared"
MENTIONS_FIXTURE = SHARED / "fixtures" / "x-api" / "test_client_get_users_mentions.json"

NOTHING = NotACommand()
HELP = ControlCommand("help")
STOP = ControlCommand("stop")


def tip(*recipients: str, amount: str | None = None, currency: str = "EUR") -> TipCommand:
    money = Money.parse(amount, currency) if amount is not None else None
    return TipCommand(tuple(recipients), money, is_reply=False)


def reply_tip(recipient: str, amount: str | None = None) -> TipCommand:
    money = Money.parse(amount, "EUR") if amount is not None else None
    return TipCommand((recipient,), money, is_reply=True)


def no(outcome: Outcome, detail: str) -> Rejection:
    return Rejection(outcome, detail)


REPLY_TO_CAROL = {"in_reply_to_username": "carol"}
BY_ALICE = {"author_username": "alice"}
REPLY_TO_BOT = {"in_reply_to_username": "flattr"}
ALICE_TO_HERSELF = {"in_reply_to_username": "alice", "author_username": "alice"}

# (tweet, context, what the bot must read), bot handle "flattr", EUR, €0.10 .. €100.00.
TABLE: list[tuple[str, dict[str, Any], Command]] = [
    # explicit tips and flattrs
    ("@flattr @bob", {}, tip("bob")),
    ("@flattr @bob @carol thanks!", {}, tip("bob", "carol")),
    ("@flattr @bob, @carol", {}, tip("bob", "carol")),
    ("@FLATTR @bob", {}, tip("bob")),
    ("@FlAtTr @bob €2", {}, tip("bob", amount="2")),
    ("Loved this thread. @flattr @bob", {}, tip("bob")),
    ("@flattr @bob tip", {}, tip("bob")),
    ("@flattr @bob flattr", {}, tip("bob")),
    ("@flattr @bob tip €1", {}, tip("bob", amount="1")),
    ("@flattr\n@bob\n€2", {}, tip("bob", amount="2")),
    ("@flattr @bob 🙏", {}, tip("bob")),
    ("@flattr @bob @carol €1 each, thanks for the podcast", {}, tip("bob", "carol", amount="1")),
    # amounts in every supported style
    ("@flattr @bob €2", {}, tip("bob", amount="2")),
    ("@flattr @bob 2€", {}, tip("bob", amount="2")),
    ("@flattr @bob 2 €", {}, tip("bob", amount="2")),
    ("@flattr @bob € 2", {}, tip("bob", amount="2")),
    ("@flattr @bob 2 EUR", {}, tip("bob", amount="2")),
    ("@flattr @bob EUR 2", {}, tip("bob", amount="2")),
    ("@flattr @bob 2.50eur", {}, tip("bob", amount="2.50")),
    ("@flattr @bob 2.5 Eur", {}, tip("bob", amount="2.50")),
    ("@flattr @bob 0,50 €", {}, tip("bob", amount="0.50")),
    ("@flattr @bob 0,50\u00a0€", {}, tip("bob", amount="0.50")),
    ("@flattr @bob €.50", {}, tip("bob", amount="0.50")),
    ("@flattr @bob 3 euros", {}, tip("bob", amount="3")),
    ("@flattr @bob €100", {}, tip("bob", amount="100")),
    ("@flattr @bob €0.10", {}, tip("bob", amount="0.10")),
    ("@flattr @bob 2", {}, tip("bob", amount="2")),
    ("@flattr @bob 2!", {}, tip("bob", amount="2")),
    ("@flattr @bob €2. Great work on the series", {}, tip("bob", amount="2")),
    # bad amounts
    ("@flattr @bob 1,000 €", {}, no(Outcome.bad_amount, "1,000 €")),
    ("@flattr @bob €1.000", {}, no(Outcome.bad_amount, "€1.000")),
    ("@flattr @bob €0.001", {}, no(Outcome.bad_amount, "€0.001")),
    ("@flattr @bob €0", {}, no(Outcome.bad_amount, "€0")),
    ("@flattr @bob 0.00 EUR", {}, no(Outcome.bad_amount, "0.00 EUR")),
    ("@flattr @bob -2€", {}, no(Outcome.bad_amount, "-2€")),
    ("@flattr @bob €-2", {}, no(Outcome.bad_amount, "€-2")),
    ("@flattr @bob €1.2.3", {}, no(Outcome.bad_amount, "€1.2.3")),
    ("@flattr @bob 2nd", {}, no(Outcome.bad_amount, "2nd")),
    ("@flattr @bob 2 thanks", {}, no(Outcome.bad_amount, "2")),
    ("@flattr @bob €2abc", {}, no(Outcome.bad_amount, "€2abc")),
    # other currencies
    ("@flattr @bob $1", {}, no(Outcome.wrong_currency, "$1")),
    ("@flattr @bob £2", {}, no(Outcome.wrong_currency, "£2")),
    ("@flattr @bob USD 2", {}, no(Outcome.wrong_currency, "USD 2")),
    ("@flattr @bob 2 dollars", {}, no(Outcome.wrong_currency, "2 dollars")),
    ("@flattr @bob ₹50", {}, no(Outcome.wrong_currency, "₹50")),
    ("@flattr @bob 5 CAD", {}, no(Outcome.wrong_currency, "5 CAD")),
    # bounds
    ("@flattr @bob €0.05", {}, no(Outcome.too_small, "€0.05")),
    ("@flattr @bob 0.09", {}, no(Outcome.too_small, "0.09")),
    ("@flattr @bob €100.01", {}, no(Outcome.too_large, "€100.01")),
    ("@flattr @bob 5000 EUR", {}, no(Outcome.too_large, "5000 EUR")),
    ("@flattr @bob €99999999999999999999", {}, no(Outcome.too_large, "€99999999999999999999")),
    # recipients: duplicates, the bot, the author
    ("@flattr @Bob @bob @BOB €2", {}, tip("Bob", amount="2")),
    ("@flattr @bob @flattr @carol", {}, tip("bob", "carol")),
    ("@flattr @alice @bob", BY_ALICE, tip("bob")),
    ("@flattr @alice", BY_ALICE, no(Outcome.self_tip, "@alice")),
    ("@flattr @ALICE €2", BY_ALICE, no(Outcome.self_tip, "@ALICE")),
    ("@flattr @flattr", {}, no(Outcome.bot_tip, "@flattr")),
    ("@flattr @Flattr €1", {}, no(Outcome.bot_tip, "@Flattr")),
    # reply tips
    # without a display range a reply must ask for money: "@carol @flattr" is the thread
    ("@carol @flattr", REPLY_TO_CAROL, NOTHING),
    ("@carol @flattr €0.50", REPLY_TO_CAROL, reply_tip("carol", "0.50")),
    ("@carol @flattr tip", REPLY_TO_CAROL, reply_tip("carol")),
    ("@carol @flattr flattr!", REPLY_TO_CAROL, reply_tip("carol")),
    ("@carol @dave @flattr 2 EUR", REPLY_TO_CAROL, reply_tip("carol", "2")),
    ("@carol @flattr 1", REPLY_TO_CAROL, reply_tip("carol", "1")),
    ("@carol @flattr tip €2 for this", REPLY_TO_CAROL, reply_tip("carol", "2")),
    ("@carol @flattr $1", REPLY_TO_CAROL, no(Outcome.wrong_currency, "$1")),
    ("@carol @flattr €500", REPLY_TO_CAROL, no(Outcome.too_large, "€500")),
    ("@alice @flattr tip", ALICE_TO_HERSELF, no(Outcome.self_tip, "@alice")),
    ("@alice @flattr @bob €1", {"in_reply_to_username": "alice"}, tip("bob", amount="1")),
    ("@alice @flattr @bob", {"in_reply_to_username": "alice"}, NOTHING),
    ("@alice @flattr @bob tip", {"in_reply_to_username": "alice"}, tip("bob")),
    # control commands
    ("@flattr help", {}, HELP),
    ("@flattr HELP?", {}, HELP),
    ("@flattr stop", {}, STOP),
    ("@flattr Stop please", {}, STOP),
    ("@flattr stop", REPLY_TO_BOT, STOP),
    ("@flattr @alice stop", REPLY_TO_BOT, STOP),
    ("@carol @flattr help", REPLY_TO_CAROL, HELP),
    # conversation: not a command
    ("Good @WilliamCohan dissection of @elonmusk's @flattr deal, also @PuckNews", {}, NOTHING),
    ("@someone @flattr what happened here???", {}, NOTHING),
    ("@carol @flattr what happened???", REPLY_TO_CAROL, NOTHING),
    ("@carol @flattr thanks for sharing", REPLY_TO_CAROL, NOTHING),
    ("@carol @flattr 2 reasons this is wrong", REPLY_TO_CAROL, NOTHING),
    ("@alice @flattr @bob nice!", {"in_reply_to_username": "alice"}, NOTHING),
    ("@carol @flattr", {}, NOTHING),
    ("@carol @flattr", REPLY_TO_BOT, NOTHING),
    ("@flattr @bob €2", REPLY_TO_BOT, NOTHING),
    ("@flattr @bob's thread is great", {}, NOTHING),
    ("@flattr @bob what do you think?", {}, NOTHING),
    ("@flattr @bob read this https://t.co/abc", {}, NOTHING),
    (
        "@flattr @bob this is a much longer sentence that goes on and on about many "
        "different things and clearly is not a tip at all",
        {},
        NOTHING,
    ),
    ("@flattr", {}, NOTHING),
    ("flattr @bob €2", {}, NOTHING),
    ("@flattrr @bob €2", {}, NOTHING),
    ("email me at me@flattr.com @bob", {}, NOTHING),
    ("@flattr/list @bob", {}, NOTHING),
    ("RT @alice: @flattr @bob €2", {}, NOTHING),
    ("@flattr @bob €2", {"author_username": "flattr"}, NOTHING),
    ("@flattr stopping by to say hi @bob", {}, NOTHING),
    ("@flattr stop doing this, here is why: https://t.co/abc", {}, NOTHING),
    ("", {}, NOTHING),
    # Unicode: full-width at signs and digits, invisible characters, right-to-left text
    ("\uff20flattr \uff20bob \uff12€", {}, tip("bob", amount="2")),
    ("@flattr\u200b@bob €2", {}, tip("bob", amount="2")),
    ("@flattr \u200f@bob \u200f€2", {}, tip("bob", amount="2")),
    ("\u05ea\u05d5\u05d3\u05d4 @flattr @bob", {}, tip("bob")),
    ("@flattr @bob \u0663€", {}, tip("bob", amount="3")),
    ("@flattr @bob\u0301 €2", {}, NOTHING),
    ("@flattr\u0301 @bob €2", {}, NOTHING),
]


@pytest.mark.parametrize(
    ("text", "context", "expected"),
    TABLE,
    ids=[f"{i:03d}:{text[:40]!r}" for i, (text, _c, _e) in enumerate(TABLE)],
)
def test_the_tip_language_reads_each_tweet_as_a_user_would(
    text: str, context: dict[str, Any], expected: Command
) -> None:
    assert parse(text, bot_username="flattr", **context) == expected


def test_a_display_range_over_the_whole_tweet_changes_nothing_outside_replies() -> None:
    for text, context, expected in TABLE:
        if "in_reply_to_username" in context:
            continue
        whole = (0, len(text))
        assert parse(text, bot_username="flattr", display_range=whole, **context) == expected


def typed(prefix: str, words: str, **context: Any) -> tuple[str, dict[str, Any]]:
    """A reply as X sends it: the thread's ``prefix``, then the ``words`` the author typed.

    ``display_text_range`` starts after the prefix (code points, as Python indexes).
    """
    text = prefix + words
    return text, {**context, "display_range": (len(prefix), len(text))}


def absent(text_and_context: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The same tweet without ``display_text_range`` (Mastodon, or X leaving it out)."""
    text, context = text_and_context
    return text, {k: v for k, v in context.items() if k != "display_range"}


BOB_UNDER_ALICE = {"in_reply_to_username": "alice", "author_username": "bob"}
CAROL_UNDER_ALICE = {"in_reply_to_username": "alice", "author_username": "carol"}

# Issue 14, case 1: the thread's mentions are context. (tweet with display range, what it
# reads as, what it reads as when X sends no display range).
THREADS: list[tuple[tuple[str, dict[str, Any]], Command, Command]] = [
    # Bob answers "🙏" under Alice's "@flattr @bob €2"; X prefills "@alice @flattr".
    (typed("@alice @flattr ", "🙏", **BOB_UNDER_ALICE), NOTHING, NOTHING),
    # Carol's "🎉" in the same thread.
    (typed("@alice @flattr @bob ", "🎉", **CAROL_UNDER_ALICE), NOTHING, NOTHING),
    (typed("@alice @flattr @bob ", "nice!", **CAROL_UNDER_ALICE), NOTHING, NOTHING),
    (typed("@alice @flattr @bob ", "", **CAROL_UNDER_ALICE), NOTHING, NOTHING),
    # An amount typed under a prefix that names the bot: on X the bot was not typed.
    (typed("@alice @flattr ", "€2", **BOB_UNDER_ALICE), NOTHING, reply_tip("alice", "2")),
    (typed("@alice @flattr @bob ", "€1", **CAROL_UNDER_ALICE), NOTHING, tip("bob", amount="1")),
    # The bot typed by the author: a reply tip to the author replied to.
    (typed("@alice ", "@flattr", **CAROL_UNDER_ALICE), reply_tip("alice"), NOTHING),
    (typed("@alice ", "@flattr 🙏", **CAROL_UNDER_ALICE), reply_tip("alice"), NOTHING),
    (
        typed("@alice ", "@flattr €2", **CAROL_UNDER_ALICE),
        reply_tip("alice", "2"),
        reply_tip("alice", "2"),
    ),
    (typed("@alice ", "@flattr tip", **CAROL_UNDER_ALICE), reply_tip("alice"), reply_tip("alice")),
    (typed("@alice ", "@flattr what happened???", **CAROL_UNDER_ALICE), NOTHING, NOTHING),
    (
        typed("@alice ", "@flattr", in_reply_to_username="alice", author_username="alice"),
        no(Outcome.self_tip, "@alice"),
        NOTHING,
    ),
    # An explicit tip typed in a reply is the author's own words, note and all.
    (typed("@alice ", "@flattr @bob 🎉", **CAROL_UNDER_ALICE), tip("bob"), NOTHING),
    (typed("@alice ", "@flattr @bob nice!", **CAROL_UNDER_ALICE), tip("bob"), NOTHING),
    (
        typed("@alice ", "@flattr @bob €2", **CAROL_UNDER_ALICE),
        tip("bob", amount="2"),
        tip("bob", amount="2"),
    ),
    (typed("@alice ", "@flattr @bob tip", **CAROL_UNDER_ALICE), tip("bob"), tip("bob")),
    (
        typed("@alice @dave ", "thanks @flattr @bob €2", **CAROL_UNDER_ALICE),
        tip("bob", amount="2"),
        tip("bob", amount="2"),
    ),
    # Commands answer the bot's notice: "stop" typed under the prefix "@flattr @alice".
    (typed("@flattr @alice ", "stop", in_reply_to_username="flattr"), STOP, STOP),
    (typed("@alice @flattr ", "help", **BOB_UNDER_ALICE), HELP, HELP),
    # A reply to the bot's own tweet never tips.
    (typed("@flattr ", "@flattr @bob €2", in_reply_to_username="flattr"), NOTHING, NOTHING),
]


@pytest.mark.parametrize(
    ("tweet", "with_range", "without_range"),
    THREADS,
    ids=[f"{i:02d}:{t[0][:40]!r}" for i, (t, _w, _o) in enumerate(THREADS)],
)
def test_only_the_words_the_author_typed_are_a_command(
    tweet: tuple[str, dict[str, Any]], with_range: Command, without_range: Command
) -> None:
    text, context = tweet
    assert parse(text, bot_username="flattr", **context) == with_range
    text, context = absent(tweet)
    assert parse(text, bot_username="flattr", **context) == without_range


BAD = Outcome.bad_amount
# Issue 14, cases 2 and 3: what follows the recipients, and how it must read. Never a flattr.
NEVER_GUESSED: list[tuple[str, Rejection]] = [
    ("€abc", no(BAD, "€abc")),
    ("€two", no(BAD, "€two")),
    ("€ two", no(BAD, "€ two")),
    ("~€2", no(BAD, "~€2")),
    ("US$2", no(Outcome.wrong_currency, "US$2")),
    ("~$2", no(Outcome.wrong_currency, "~$2")),
    ("C$5", no(Outcome.wrong_currency, "C$5")),
    ("€\u200b2", no(BAD, "€\u200b2")),
    ("€2\u200b50", no(BAD, "€2\u200b50")),
    ("❤️ €2", no(BAD, "€2")),
    ("thanks! €2", no(BAD, "€2")),
    ("€1 000", no(BAD, "€1 000")),
    ("€ 1 000", no(BAD, "€ 1 000")),
    ("EUR 1 000", no(BAD, "EUR 1 000")),
    ("€1 000,00", no(BAD, "€1 000,00")),
    ("€2 50", no(BAD, "€2 50")),
    ("1 000 €", no(BAD, "1 000 €")),
    ("€1\u00a0000", no(BAD, "€1\u00a0000")),
    ("€2/3", no(BAD, "€2/3")),
    ("€2 and €3 for carol", no(BAD, "€3")),
    ("2\ufe0f\u20e3", no(BAD, "2\ufe0f\u20e3")),
    ("EUR", no(BAD, "EUR")),
    ("thanks for episode 2", no(BAD, "2")),
    ("x2", no(BAD, "x2")),
]


def _as_sent(words: str, shape: str) -> tuple[str, dict[str, Any]]:
    if shape == "tweet":
        return "@flattr @bob " + words, {}
    if shape == "tweet, display range":
        text = "@flattr @bob " + words
        return text, {"display_range": (0, len(text))}
    return typed("@alice ", "@flattr @bob " + words, in_reply_to_username="alice")


@pytest.mark.parametrize("shape", ["tweet", "tweet, display range", "reply, display range"])
@pytest.mark.parametrize(
    ("words", "expected"), NEVER_GUESSED, ids=[repr(w) for w, _e in NEVER_GUESSED]
)
def test_an_amount_that_does_not_read_exactly_is_refused_never_guessed(
    words: str, expected: Rejection, shape: str
) -> None:
    text, context = _as_sent(words, shape)
    assert parse(text, bot_username="flattr", **context) == expected


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        # In a reply without display range the leading run may be the thread: a marked
        # amount is still refused, anything less is chatter. Either way nothing moves.
        ("€abc", no(BAD, "€abc")),
        ("US$2", no(Outcome.wrong_currency, "US$2")),
        ("€1 000", no(BAD, "€1 000")),
        ("€2 50", no(BAD, "€2 50")),
        ("❤️ €2", NOTHING),
        ("2 reasons this is wrong", NOTHING),
    ],
)
def test_a_reply_without_display_range_refuses_or_ignores_a_bad_amount(
    words: str, expected: Command
) -> None:
    text = "@alice @flattr @bob " + words
    assert parse(text, bot_username="flattr", in_reply_to_username="alice") == expected


@pytest.mark.parametrize("display_range", [None, "whole"])
def test_a_tip_to_several_recipients_reads_as_one_tip_for_each(display_range: str | None) -> None:
    text = "@flattr @c0 @c1 @c2 €2"
    shown = (0, len(text)) if display_range else None
    assert parse(text, bot_username="flattr", display_range=shown) == tip(
        "c0", "c1", "c2", amount="2"
    )


PHOTO = "https://t.co/ph0t0"
QUOTE = "https://t.co/qu0te"


@pytest.mark.parametrize(
    ("text", "attachments", "expected"),
    [
        (f"@flattr @bob €2 {PHOTO}", {PHOTO}, tip("bob", amount="2")),
        (f"@flattr @bob €2 {QUOTE}", {QUOTE}, tip("bob", amount="2")),
        (f"@flattr @bob {PHOTO}", {PHOTO}, tip("bob")),
        (f"@flattr @bob thanks! {PHOTO} {QUOTE}", {PHOTO, QUOTE}, tip("bob")),
        # Any other link keeps the rule: a link is conversation.
        (f"@flattr @bob €2 {PHOTO}", set(), NOTHING),
        ("@flattr @bob €2 https://t.co/other", {PHOTO}, NOTHING),
        (f"@flattr @bob {PHOTO} €2", {PHOTO}, NOTHING),
        (f"@flattr @bob €2 x{PHOTO}", {PHOTO}, NOTHING),
    ],
)
def test_a_tip_with_a_photo_or_a_quote_works(
    text: str, attachments: set[str], expected: Command
) -> None:
    assert parse(text, bot_username="flattr", attachment_urls=attachments) == expected
    shown = (0, len(text))
    assert (
        parse(text, bot_username="flattr", attachment_urls=attachments, display_range=shown)
        == expected
    )


def test_x_leaves_the_media_link_out_of_the_display_range() -> None:
    text = f"@alice @flattr @bob €2 {PHOTO}"
    shown = (len("@alice "), len(text) - len(PHOTO) - 1)
    assert parse(
        text, bot_username="flattr", in_reply_to_username="alice", display_range=shown
    ) == tip("bob", amount="2")


@pytest.mark.parametrize("display_range", [(5, 2), (-1, 4), (0, "9"), (True, 3), "0,3", (1,)])
def test_an_unusable_display_range_is_read_as_none(display_range: Any) -> None:
    text = "@flattr @bob €2"
    assert parse(text, bot_username="flattr", display_range=display_range) == tip("bob", amount="2")


def test_the_table_covers_every_outcome_the_parser_can_produce() -> None:
    produced = {type(e) for _t, _c, e in TABLE}
    rejections = {e.outcome for _t, _c, e in TABLE if isinstance(e, Rejection)}
    assert produced == {TipCommand, ControlCommand, Rejection, NotACommand}
    assert rejections == {
        Outcome.bad_amount,
        Outcome.wrong_currency,
        Outcome.too_small,
        Outcome.too_large,
        Outcome.self_tip,
        Outcome.bot_tip,
    }
    assert {e.action for _t, _c, e in TABLE if isinstance(e, ControlCommand)} == {"help", "stop"}
    assert any(isinstance(e, TipCommand) and e.is_reply for _t, _c, e in TABLE)
    assert len(TABLE) >= 60


def _fixture_mentions() -> list[str]:
    if not MENTIONS_FIXTURE.exists():
        return []
    pages = json.loads(MENTIONS_FIXTURE.read_text(encoding="utf-8"))
    return [tweet["text"] for page in pages for tweet in page["response"]["body"]["data"]]


@pytest.mark.skipif(not MENTIONS_FIXTURE.exists(), reason=f"{MENTIONS_FIXTURE} not found")
@pytest.mark.parametrize("text", _fixture_mentions() or [""])
def test_real_mentions_of_a_busy_account_are_conversation(text: str) -> None:
    assert parse(text, bot_username="Twitter") == NOTHING
    assert parse(text, bot_username="Twitter", in_reply_to_username="someone") == NOTHING


def test_a_flattr_has_no_amount() -> None:
    assert tip("bob").is_flattr
    assert not tip("bob", amount="2").is_flattr


def test_the_bot_handle_may_be_configured_with_its_at_sign() -> None:
    assert parse("@flattr @bob €2", bot_username="@Flattr") == tip("bob", amount="2")


def test_a_dollar_tip_is_accepted_where_the_deployment_counts_in_dollars() -> None:
    usd = AmountRules("USD", Money(10, "USD"), Money(10000, "USD"))
    assert parse("@flattr @bob $1", bot_username="flattr", rules=usd) == tip(
        "bob", amount="1", currency="USD"
    )
    assert parse("@flattr @bob 2", bot_username="flattr", rules=usd) == tip(
        "bob", amount="2", currency="USD"
    )
    assert parse("@flattr @bob €1", bot_username="flattr", rules=usd) == no(
        Outcome.wrong_currency, "€1"
    )


def test_a_yen_deployment_refuses_decimals() -> None:
    jpy = AmountRules("JPY", Money(10, "JPY"), Money(100000, "JPY"))
    assert parse("@flattr @bob ¥500", bot_username="flattr", rules=jpy) == tip(
        "bob", amount="500", currency="JPY"
    )
    assert parse("@flattr @bob ¥5.5", bot_username="flattr", rules=jpy) == no(
        Outcome.bad_amount, "¥5.5"
    )


def test_tip_bounds_in_another_currency_than_the_deployment_are_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="deployment currency"):
        AmountRules("USD")
    with pytest.raises(MoneyError):
        AmountRules("XYZ")


def test_anything_but_text_is_not_a_command() -> None:
    assert parse(None, bot_username="flattr") == NOTHING  # type: ignore[arg-type]
    assert parse("@flattr @bob", bot_username="") == NOTHING
    assert parse("@flattr @bob", bot_username="not a handle") == NOTHING


@pytest.mark.parametrize(
    "text",
    [
        "@flattr " * 1250,
        "@flattr @bob " + "1" * 9987,
        "@flattr @bob " + "1." * 4993,
        "@flattr @a ! " * 769,
        "\uff20flattr" * 1428,
        "\u200b" * 9990 + "@flattr @b",
        "@flattr\u0301" * 1250,
        "@" * 10000,
        "\u05d0@flattr @b " * 769,
    ],
    ids=lambda text: repr(text[:12]),
)
def test_ten_thousand_character_tweets_are_read_without_trouble(text: str) -> None:
    result = parse(text, bot_username="flattr", in_reply_to_username="b")
    assert isinstance(result, TipCommand | ControlCommand | Rejection | NotACommand)
