"""Mastodon statuses read as text: HTML to lines, mentions from `mentions[]` only."""

from __future__ import annotations

import pytest

from bot.platforms.mastodon.text import (
    StatusMention,
    display_handle,
    full_address,
    mentions_of,
    parse_address,
    status_text,
)

HOME = "home.social"


def h_card(url: str, username: str) -> str:
    return (
        f'<span class="h-card" translate="no"><a href="{url}" class="u-url mention">'
        f"@<span>{username}</span></a></span>"
    )


BOT = StatusMention("flattr@home.social", "flattr", "https://home.social/@flattr", "1")
BOB = StatusMention("bob@other.social", "bob", "https://other.social/@bob", "2")
LOCAL_BOB = StatusMention("bob@home.social", "bob", "https://home.social/@bob", "3")


def test_local_accounts_get_the_bots_domain_and_remote_ones_keep_theirs():
    assert full_address("Bob", HOME) == "bob@home.social"
    assert full_address("Bob@Other.Social", HOME) == "bob@other.social"
    assert display_handle("bob@other.social") == "@bob@other.social"
    with pytest.raises(ValueError):
        full_address("not an acct!", HOME)


def test_addresses_typed_by_people():
    assert parse_address("@Bob@Other.Social") == ("bob", "other.social")
    assert parse_address("bob@127.0.0.1:3000") == ("bob", "127.0.0.1:3000")
    assert parse_address("@bob") is None
    assert parse_address("bob@localhost") is None


def test_paragraphs_and_line_breaks_become_newlines_and_links_their_text():
    html = (
        f"<p>{h_card(BOT.url, 'flattr')} {h_card(BOB.url, 'bob')} €2</p>"
        '<p>thanks for <a href="https://x.example/a" rel="nofollow">'
        '<span class="invisible">https://</span><span class="">x.example/a</span></a><br>'
        "see you &amp; bye</p>"
    )
    read = status_text(html, [BOT, BOB], bot_address=BOT.address)
    assert read.text == "@flattr @bob €2\n\nthanks for https://x.example/a\nsee you & bye"
    assert read.handles == {"flattr": "flattr@home.social", "bob": "bob@other.social"}


def test_two_accounts_with_one_username_are_told_apart():
    cards = [h_card(BOT.url, "flattr"), h_card(BOB.url, "bob"), h_card(LOCAL_BOB.url, "bob")]
    html = f"<p>{' '.join(cards)}</p>"
    read = status_text(html, [BOT, BOB, LOCAL_BOB], bot_address=BOT.address)
    first, second = read.text.split()[1:]
    assert read.handles[first[1:].casefold()] == "bob@other.social"
    assert read.handles[second[1:].casefold()] == "bob@home.social"
    assert first != second


def test_an_impostor_with_the_bots_username_never_reads_as_the_bot():
    evil = StatusMention("flattr@evil.social", "flattr", "https://evil.social/@flattr", "9")
    html = f"<p>{h_card(evil.url, 'flattr')} {h_card(BOB.url, 'bob')} €2</p>"
    read = status_text(html, [evil, BOB], bot_address=BOT.address)
    assert not read.text.startswith("@flattr ")
    assert "flattr" not in read.handles


def test_an_at_sign_that_is_no_mention_link_cannot_be_read_as_one():
    html = f"<p>{h_card(BOT.url, 'flattr')} @bob €2</p>"
    read = status_text(html, [BOT], bot_address=BOT.address)
    assert read.text.startswith("@flattr @\u200bbob")
    assert "bob" not in read.handles


def test_a_mention_link_is_known_by_its_text_when_the_href_differs():
    link = '<a href="https://other.social/users/bob" class="mention">@bob</a>'
    html = f"<p>{h_card(BOT.url, 'flattr')} {link}</p>"
    assert status_text(html, [BOT, BOB], bot_address=BOT.address).text == "@flattr @bob"


def test_mentions_are_read_from_the_status_and_bad_entries_dropped():
    status = {
        "mentions": [
            {"id": "1", "username": "flattr", "acct": "flattr", "url": BOT.url},
            {"id": "2", "username": "bob", "acct": "bob@other.social", "url": BOB.url},
            {"id": "3", "username": None, "acct": "x"},
            "junk",
        ]
    }
    assert mentions_of(status, HOME) == [BOT, BOB]
    assert mentions_of({"mentions": None}, HOME) == []
