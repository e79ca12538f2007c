"""Reply texts: one per outcome, short enough to post, addressed to the author only."""

from __future__ import annotations

import re
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.commands import Outcome
from bot.mentions import extract_mentions
from bot.replies import (
    MAX_TWEET_LENGTH,
    REPLIES,
    ReplyContext,
    creator_notice,
    help_text,
    reply_for,
    stop_confirmation,
    tweet_length,
)
from escrow.money import Money

LINK = re.compile(r"https?://|www\.|\w\.(?:com|org|net|io|co|ly)\b", re.IGNORECASE)
SILENT = {Outcome.tipped, Outcome.held, Outcome.flattred, Outcome.not_a_command}
LINKED = {Outcome.unknown_supporter}

FULL = ReplyContext(
    author_handle="alice",
    recipients=("bob", "@carol"),
    amount=Money(200),
    available=Money(120),
    needed=Money(200),
    min_tip=Money(10),
    max_tip=Money(10000),
    currency="EUR",
    signup_url="https://tipjar.example/signup",
    claim_url="https://tipjar.example/claim",
    detail="€0.001",
)
HOSTILE = ReplyContext(
    author_handle="@alice",
    recipients=("@evil", "\uff20spam", "x" * 40, "bob.com", *[f"user{i}" for i in range(200)]),
    amount=Money(10**15),
    available=Money(10**15),
    needed=Money(10**16),
    min_tip=Money(10),
    max_tip=Money(10000),
    signup_url="javascript:alert(1)",
    detail="https://evil.example @evil",
)
EMPTY = ReplyContext(author_handle="alice")


def assert_postable(text: str, author: str, link_allowed: bool) -> None:
    assert tweet_length(text) <= MAX_TWEET_LENGTH
    assert text.startswith(f"@{author} ")
    assert {m.lower() for m in extract_mentions(text)} <= {author.lower()}
    assert text.count("@") + text.count("\uff20") == 1
    if not link_allowed:
        assert not LINK.search(text), text


def test_every_outcome_has_a_reply_function() -> None:
    assert set(REPLIES) == set(Outcome)
    assert all(callable(REPLIES[outcome]) for outcome in Outcome)


@pytest.mark.parametrize("outcome", list(Outcome), ids=str)
@pytest.mark.parametrize("ctx", [FULL, HOSTILE, EMPTY], ids=["full", "hostile", "empty"])
def test_every_reply_is_postable_and_mentions_only_the_author(
    outcome: Outcome, ctx: ReplyContext
) -> None:
    text = reply_for(outcome, ctx)
    if outcome in SILENT:
        assert text is None
        return
    assert text is not None
    link_allowed = outcome in LINKED and ctx.signup_url == FULL.signup_url
    assert_postable(text, "alice", link_allowed)


def test_a_supporter_short_of_funds_is_told_what_they_have_and_what_the_tip_needs() -> None:
    one = ReplyContext("alice", ("bob",), Money(200), available=Money(120), needed=Money(200))
    assert reply_for(Outcome.insufficient_funds, one) == (
        "@alice you have €1.20 available; that tip needs €2.00. Nothing was sent."
    )


def test_a_tip_to_several_recipients_states_what_the_whole_tweet_needed() -> None:
    three = ReplyContext(
        "alice", ("c0", "c1", "@c2"), Money(200), available=Money(500), needed=Money(600)
    )
    assert reply_for(Outcome.insufficient_funds, three) == (
        "@alice you have €5.00 available; tipping c0, c1 and c2 €2.00 each needs €6.00. "
        "Nothing was sent."
    )


def test_a_supporter_in_debt_is_told_why_tips_are_paused() -> None:
    owed = ReplyContext("alice", available=Money(0, "EUR"), owed=Money(400, "EUR"))
    assert reply_for(Outcome.insufficient_funds, owed) == (
        "@alice your tips are paused: a card payment was refunded or disputed and you owe"
        " €4.00. The next money you add pays it first. Nothing was sent."
    )


def test_a_supporter_without_funds_gets_the_sign_up_link_last() -> None:
    text = reply_for(Outcome.unknown_supporter, FULL)
    assert text is not None and text.endswith(" https://tipjar.example/signup")


def test_an_unusable_sign_up_link_is_left_out() -> None:
    text = reply_for(Outcome.unknown_supporter, HOSTILE)
    assert text is not None and "javascript" not in text


def test_other_handles_are_named_without_their_at_sign() -> None:
    text = reply_for(Outcome.unknown_recipient, FULL)
    assert text == (
        "@alice I couldn't find bob and carol on X, so nothing was sent. "
        "Check the spelling and try again."
    )


def test_a_bad_amount_is_quoted_back_with_examples_in_the_deployment_currency() -> None:
    text = reply_for(Outcome.bad_amount, FULL)
    assert text is not None and "“€0.001”" in text and "€2" in text and "2.50 EUR" in text


def test_text_that_is_not_an_amount_is_never_quoted_back() -> None:
    for detail in ("2.com", "https://x.y", "@evil", "bit.ly/x", "a" * 40):
        text = reply_for(Outcome.bad_amount, ReplyContext("alice", detail=detail))
        assert text is not None and detail not in text


def test_the_bounds_are_stated_when_an_amount_is_out_of_them() -> None:
    small = reply_for(Outcome.too_small, ReplyContext("alice", min_tip=Money(10), detail="€0.05"))
    large = reply_for(Outcome.too_large, ReplyContext("alice", max_tip=Money(10000), detail="€500"))
    assert small == "@alice the smallest tip is €0.10, so “€0.05” wasn't sent."
    assert large == "@alice the largest tip is €100.00, so “€500” wasn't sent."


def test_a_wrong_currency_reply_names_the_deployment_currency() -> None:
    text = reply_for(Outcome.wrong_currency, ReplyContext("alice", currency="GBP", detail="$1"))
    assert text == "@alice tips here are in GBP, so “$1” wasn't sent. Write it like £2."


def test_a_long_list_of_names_is_cut_at_a_word_with_an_ellipsis() -> None:
    names = tuple("a" * 20 + str(i) for i in range(30))
    text = reply_for(Outcome.already_flattred, ReplyContext("alice", recipients=names))
    assert text is not None and tweet_length(text) <= MAX_TWEET_LENGTH


def test_an_overlong_reply_is_truncated_with_an_ellipsis() -> None:
    huge = Money(10**18)
    text = reply_for(Outcome.insufficient_funds, ReplyContext("alice", available=huge, needed=huge))
    assert text is not None and tweet_length(text) <= MAX_TWEET_LENGTH
    long_ctx = ReplyContext("alice", min_tip=Money(10**200), max_tip=Money(10**200))
    text = help_text(long_ctx)
    assert tweet_length(text) <= MAX_TWEET_LENGTH and text.endswith("…")


def test_help_and_stop_answer_the_author() -> None:
    assert help_text(FULL).startswith("@alice to tip a creator")
    assert "€0.10 to €100.00" in help_text(FULL)
    assert stop_confirmation(FULL).startswith("@alice done: no more notices")


def test_the_creator_notice_says_what_waits_from_whom_and_until_when() -> None:
    text = creator_notice(
        "bob", Money(360), 4, 6, "https://tipjar.example/claim", date(2026, 2, 19), False
    )
    assert text == (
        "@bob you have €3.60 waiting from 4 supporters (6 tips) on tipjar. Claim it by 19 Feb; "
        "after that it goes back to them. Reply 'stop' for no more notices. "
        "Sign in with X to claim: https://tipjar.example/claim"
    )


def test_the_reminder_notice_speaks_of_one_supporter_in_the_singular() -> None:
    text = creator_notice(
        "bob", Money(50), 1, 1, "https://tipjar.example/claim", date(2026, 5, 3), True
    )
    assert text.startswith("@bob a reminder: €0.50 from 1 supporter is still waiting")
    assert "by 3 May" in text and "(1 tip)" not in text


def test_a_creator_notice_fits_a_post_whatever_the_url_length() -> None:
    url = "https://tipjar.example/claim?" + "t=" + "x" * 500
    text = creator_notice("b" * 20, Money(10**17), 10**9, 10**10, url, date(2026, 12, 31), True)
    assert text.endswith(" " + url)
    assert_postable(text, "b" * 20, link_allowed=True)


def test_a_creator_notice_needs_a_usable_claim_link() -> None:
    with pytest.raises(ValueError):
        creator_notice("bob", Money(1), 1, 1, "not a url", date(2026, 1, 1), False)


def test_the_length_counts_urls_as_23_and_wide_characters_as_2() -> None:
    assert tweet_length("abc") == 3
    assert tweet_length("€") == 2
    assert tweet_length("see https://example.com/" + "x" * 100) == 4 + 23


@settings(max_examples=200, deadline=None)
@given(
    author=st.from_regex(r"[A-Za-z0-9_]{1,20}", fullmatch=True),
    recipients=st.lists(st.text(max_size=30), max_size=20).map(tuple),
    detail=st.text(max_size=60),
    outcome=st.sampled_from([o for o in Outcome if o not in SILENT]),
)
def test_no_input_makes_a_reply_too_long_or_mention_someone_else(
    author: str, recipients: tuple[str, ...], detail: str, outcome: Outcome
) -> None:
    ctx = ReplyContext(author, recipients=recipients, detail=detail, needed=Money(1))
    text = reply_for(outcome, ctx)
    assert text is not None
    assert_postable(text, author, link_allowed=False)
