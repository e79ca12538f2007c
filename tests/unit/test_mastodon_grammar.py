"""The tip language on Mastodon: a status as typed, rendered to HTML as Mastodon does, read
back by the adapter and parsed as the listener parses it."""

from __future__ import annotations

import pytest

from bot.commands import AmountRules, ControlCommand, NotACommand, Rejection, TipCommand
from bot.listener import _parse
from bot.platforms.mastodon.api import MastodonPlatform
from bot.platforms.mastodon.sandbox import Fediverse
from bot.platforms.mastodon.sandbox.server import notification_json
from bot.platforms.mastodon.sandbox.world import Notification
from escrow.money import Money

HOME, OTHER = "home.social", "other.social"
RULES = AmountRules("EUR", Money(10, "EUR"), Money(10_000, "EUR"))


@pytest.fixture(scope="module")
def fedi() -> Fediverse:
    world = Fediverse()
    world.add_instance(HOME, f"https://{HOME}")
    world.add_instance(OTHER, f"https://{OTHER}")
    for domain, name in [
        (HOME, "flattr"),
        (HOME, "alice"),
        (HOME, "dave"),
        (OTHER, "bob"),
        (OTHER, "carol"),
        (OTHER, "flattr"),
    ]:
        world.add_account(domain, name)
    return world


@pytest.fixture(scope="module")
def api() -> MastodonPlatform:
    return MastodonPlatform(base_url=f"https://{HOME}", access_token="t", bot_acct=f"flattr@{HOME}")


def read(fedi, api, status):
    note = notification_json(
        fedi, Notification(1, "mention", status.author, status.id, status.created_at), HOME
    )
    mention = api._mention(note)
    assert mention is not None
    return mention, _parse(api.bot_handle, RULES, mention)


def typed(fedi, api, text, author="alice@home.social"):
    return read(fedi, api, fedi.post(author, text))


def eur(text: str) -> Money:
    return Money.parse(text, "EUR")


def recipients(mention, command):
    return [mention.mentioned_ids.get(h.casefold()) for h in command.recipients]


@pytest.mark.parametrize(
    ("text", "who", "amount"),
    [
        ("@flattr @bob@other.social €2", ["bob@other.social"], "2.00"),
        ("@flattr @dave €2", ["dave@home.social"], "2.00"),
        ("@flattr @dave@home.social 2,50 €", ["dave@home.social"], "2.50"),
        ("@flattr @bob@other.social @dave 1 EUR", ["bob@other.social", "dave@home.social"], "1"),
        ("@flattr@home.social @bob@other.social €2\n\nthanks!", ["bob@other.social"], "2"),
        ("@flattr @bob@other.social", ["bob@other.social"], None),
    ],
)
def test_explicit_tips_name_full_addresses(fedi, api, text, who, amount):
    mention, command = typed(fedi, api, text)
    assert isinstance(command, TipCommand), (mention.text, command)
    assert recipients(mention, command) == who
    assert command.amount == (eur(amount) if amount else None)


@pytest.mark.parametrize(("text", "action"), [("@flattr help", "help"), ("@flattr stop", "stop")])
def test_help_and_stop(fedi, api, text, action):
    assert typed(fedi, api, text)[1] == ControlCommand(action)


def test_a_malformed_amount_is_refused_not_guessed(fedi, api):
    command = typed(fedi, api, "@flattr @bob@other.social €2.505")[1]
    assert isinstance(command, Rejection)


def test_an_unlinked_handle_is_nobody(fedi, api):
    mention, command = typed(fedi, api, "@flattr @nobody@nowhere.example €2")
    assert not (isinstance(command, TipCommand) and recipients(mention, command) != [None])
    assert "nobody" not in mention.mentioned_ids


def test_an_impostor_named_like_the_bot_is_not_the_bot(fedi, api):
    mention, command = typed(fedi, api, "@flattr@other.social @bob@other.social €2")
    assert isinstance(command, NotACommand)
    assert mention.mentioned_ids.get("flattr") is None


def test_a_prefilled_reply_with_an_amount_tips_the_author_replied_to(fedi, api):
    carol_post = fedi.post("carol@other.social", "@flattr@home.social look what I made")
    mention, command = read(fedi, api, fedi.reply("alice@home.social", carol_post.id, "€1"))
    assert mention.text == "@carol @flattr €1"
    assert isinstance(command, TipCommand) and command.is_reply
    assert mention.in_reply_to_user_id == "carol@other.social"
    assert command.amount == eur("1")


def test_a_prefilled_reply_with_the_keyword_flattrs_the_author(fedi, api):
    carol_post = fedi.post("carol@other.social", "@flattr@home.social look")
    mention, command = read(fedi, api, fedi.reply("alice@home.social", carol_post.id, "tip"))
    assert isinstance(command, TipCommand) and command.is_reply and command.amount is None
    assert mention.in_reply_to_user_id == "carol@other.social"


@pytest.mark.parametrize("words", ["🎉", "congrats!", "what happened???"])
def test_a_prefilled_reply_without_money_words_is_chatter(fedi, api, words):
    tip = fedi.post("carol@other.social", "@flattr@home.social @bob@other.social €2")
    mention, command = read(fedi, api, fedi.reply("alice@home.social", tip.id, words))
    assert mention.text.startswith("@carol @flattr @bob ")
    assert isinstance(command, NotACommand), command


def test_a_prefilled_reply_with_an_amount_after_the_recipients_is_a_tip(fedi, api):
    tip = fedi.post("carol@other.social", "@flattr@home.social @bob@other.social €2")
    mention, command = read(fedi, api, fedi.reply("alice@home.social", tip.id, "€3"))
    assert isinstance(command, TipCommand)
    assert recipients(mention, command) == ["bob@other.social"]
