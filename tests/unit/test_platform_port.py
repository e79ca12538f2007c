"""The platform port's contract: what every adapter (X today, Mastodon next) must offer.

An adapter is a `Platform` (read mentions, look people up, reply, DM, as the bot) and its
web sign-in a `SignIn`; its values are the port's own frozen types, so the listener and
the relay never see a client library or its JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime

import requests

from bot.config import Settings
from bot.platforms import Mention, Platform, PlatformUser, SignIn
from bot.platforms.x.signin import XSignIn
from tests.support import x_payloads as xp
from tests.support.fake_x import FakeXApi

WHEN = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def test_the_x_adapter_and_the_fake_are_platforms_named_x():
    for platform in (xp.tweepy_x("999", lambda: WHEN, max_retries=0), FakeXApi()):
        assert isinstance(platform, Platform)
        assert platform.name == "x" and platform.bot_user_id == "999"


def test_the_x_sign_in_is_a_sign_in_port():
    sign_in = XSignIn(Settings(x_client_id="cid", x_client_secret="cs"), requests.Session())
    assert isinstance(sign_in, SignIn)
    assert (sign_in.platform, sign_in.label, sign_in.configured) == ("x", "X", True)
    assert not XSignIn(Settings(), requests.Session()).configured


def test_a_mention_without_the_optional_facts_is_all_its_text_and_no_media():
    mention = Mention(
        platform="x",
        id="2",
        original_id="1",
        text="@flattr @bob €1",
        author_id="10",
        author_handle="alice",
        created_at=WHEN,
        in_reply_to_user_id=None,
        in_reply_to_handle=None,
        is_repost=False,
        conversation_id="1",
    )
    assert mention.display_range is None and mention.attachment_urls == frozenset()
    assert mention.visibility is None and mention.mentioned_ids == {}
    assert mention.is_edit
    assert mention.author == PlatformUser("x", "10", "alice")


def test_the_fake_reads_mentions_as_port_values():
    x = FakeXApi()
    x.add_mention("alice", "@flattr @bob €1")
    page = x.mentions(since_id=None)
    assert all(isinstance(u, PlatformUser) and u.platform == "x" for u in page.users.values())
    assert page.mentions[0].platform == "x"
