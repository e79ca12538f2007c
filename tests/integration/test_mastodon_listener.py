"""Tips by mention on Mastodon, through the same exactly-once path as X, on both databases.

The bot's instance and a creator's instance are the loopback stand-in; tipjar talks to them
with the real Mastodon.py. X is the in-memory fake of the port.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from bot import app as composition
from bot.config import Settings
from bot.listener import cursor_key, poll_once
from bot.notices import plan_notices
from bot.outbox import send_pending
from bot.platforms.mastodon.api import MastodonPlatform
from bot.platforms.mastodon.sandbox import Fault, MastodonSandbox
from bot.scheduler import Jobs
from bot.state import get_state
from escrow import claims
from escrow.audit import check_ledger
from escrow.db import transaction
from escrow.ledger import Identity
from escrow.schema import accounts, outbox, tips
from escrow.service import Ledger
from tests.integration.test_mastodon_claim import MastodonSite
from tests.integration.test_web_support import person_totals, text_of
from tests.support.fake_x import FakeXApi


@pytest.fixture
def fedi():
    with MastodonSandbox() as sandbox:
        yield sandbox


def settings_for(fedi: MastodonSandbox) -> Settings:
    return Settings(
        platforms=("x", "mastodon"),
        mastodon_base_url=fedi.home.base_url,
        mastodon_access_token=fedi.bot_token,
        mastodon_bot_acct=fedi.bot_address,
        allow_loopback_instances=True,
        public_base_url="http://localhost:8000",
    )


@pytest.fixture
def bot(fedi, clock) -> MastodonPlatform:
    return MastodonPlatform(
        base_url=fedi.home.base_url,
        access_token=fedi.bot_token,
        bot_acct=fedi.bot_address,
        clock=clock,
    )


def people(fedi):
    world = fedi.world
    alice = world.add_account(fedi.home.domain, "alice")
    bob = world.add_account(fedi.other.domain, "bob")
    return alice, bob


def ident(account) -> Identity:
    return Identity("mastodon", account.address, account.address)


def held(engine, address: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.coalesce(func.sum(tips.c.amount_minor), 0))
                .join(accounts, accounts.c.id == tips.c.recipient_account_id)
                .where(
                    accounts.c.platform == "mastodon",
                    accounts.c.platform_user_id == address,
                    tips.c.state == "held",
                )
            ).scalar_one()
        )


def test_a_supporter_on_one_instance_tips_a_creator_on_the_other(engine, clock, fedi, bot):
    settings = settings_for(fedi)
    alice, bob = people(fedi)
    Ledger(engine, composition.policy(settings), clock).deposit(
        ident(alice), settings.money(1000), "dep-alice"
    )
    tip = fedi.world.post(alice.address, f"@flattr @bob@{fedi.other.domain} €2")

    result = poll_once(engine, bot, settings, clock=clock)

    assert (result.processed, result.tips_applied) == (1, 1)
    assert held(engine, bob.address) == 200
    with engine.connect() as conn:
        assert get_state(conn, cursor_key("mastodon")) == "1"
        assert check_ledger(conn) == []

    clock.advance(days=1)  # a tip counts for a notice once it has stood a day
    transaction(engine, lambda conn: plan_notices(conn, settings, clock()))
    sent = send_pending(engine, bot, clock())
    assert sent.sent == 1
    notice = next(
        s for s in fedi.world.statuses.values() if s.in_reply_to_id == tip.id
    )  # posted in the thread, mentioning the creator, no wider than unlisted
    assert notice.author == fedi.bot_address
    assert bob.address in notice.mentions and notice.visibility == "unlisted"
    assert "Sign in with Mastodon" in notice.text
    assert any(n.type == "mention" for n in fedi.other.data.notifications[bob.address])

    again = poll_once(engine, bot, settings, clock=clock)  # nothing new, nothing doubled
    assert again.processed == 0 and held(engine, bob.address) == 200


def test_an_edit_a_boost_and_thread_chatter_change_nothing(engine, clock, fedi, bot):
    settings = settings_for(fedi)
    alice, bob = people(fedi)
    Ledger(engine, composition.policy(settings), clock).deposit(
        ident(alice), settings.money(1000), "dep-alice"
    )
    tip = fedi.world.post(alice.address, f"@flattr @bob@{fedi.other.domain} €2")
    poll_once(engine, bot, settings, clock=clock)
    before = person_totals(engine), held(engine, bob.address)

    fedi.world.edit(tip.id, f"@flattr @bob@{fedi.other.domain} €50")
    fedi.world.boost(bob.address, tip.id)
    fedi.world.reply(bob.address, tip.id, "thank you so much!")
    fedi.world.post(alice.address, "@flattr@" + fedi.home.domain + " what is this?")
    result = poll_once(engine, bot, settings, clock=clock)

    assert result.tips_applied == 0
    assert (person_totals(engine), held(engine, bob.address)) == before


def test_a_429_leaves_the_cursor_and_resumes_after_the_reset(engine, clock, fedi, bot):
    settings = settings_for(fedi)
    alice, _bob = people(fedi)
    fedi.world.post(alice.address, f"@flattr @bob@{fedi.other.domain} €2")
    fedi.world.fail_next(fedi.home.domain, Fault("/api/v1/notifications", status=429))

    limited = poll_once(engine, bot, settings, clock=clock)

    assert limited.rate_limited_until is not None and limited.processed == 0
    with engine.connect() as conn:
        assert get_state(conn, cursor_key("mastodon")) in (None, "")
    assert poll_once(engine, bot, settings, clock=clock).rate_limited_until is not None
    clock.now = limited.rate_limited_until
    assert poll_once(engine, bot, settings, clock=clock).processed == 1


def test_a_5xx_loses_nothing(engine, clock, fedi, bot):
    settings = settings_for(fedi)
    alice, _bob = people(fedi)
    fedi.world.post(alice.address, f"@flattr @bob@{fedi.other.domain} €2")
    fedi.world.fail_next(fedi.home.domain, Fault("/api/v1/notifications", status=503))
    assert poll_once(engine, bot, settings, clock=clock).error
    assert poll_once(engine, bot, settings, clock=clock).processed == 1


def test_many_mentions_are_read_across_pages_exactly_once(engine, clock, fedi, bot):
    settings = settings_for(fedi)
    alice, _bob = people(fedi)
    for n in range(7):
        fedi.world.post(alice.address, f"@flattr @bob@{fedi.other.domain} €{n + 1}")
    result = poll_once(engine, bot, settings, clock=clock, page_size=3)
    assert (result.pages, result.processed) == (3, 7)
    assert poll_once(engine, bot, settings, clock=clock, page_size=3).processed == 0


def test_one_worker_serves_x_and_mastodon_and_both_creators_claim(engine, clock, fedi, bot):
    settings = settings_for(fedi)
    alice, bob = people(fedi)
    x = FakeXApi(bot_username="flattr")
    carol = x.add_user("carol")
    policy = composition.policy(settings)
    ledger = Ledger(engine, policy, clock)
    x_supporter = x.add_user("dana")
    ledger.deposit(Identity("x", x_supporter.user_id, "dana"), settings.money(500), "dep-dana")
    ledger.deposit(ident(alice), settings.money(500), "dep-alice")
    x.add_mention(x_supporter, "@flattr @carol €3")
    fedi.world.post(alice.address, f"@flattr @bob@{fedi.other.domain} €2")

    jobs = Jobs(settings, engine, x, clock, threading.Event(), (bot,))
    jobs.poll()
    clock.advance(days=1)  # a tip counts for a notice once it has stood a day
    jobs.notices()

    assert held(engine, bob.address) == 200
    assert ledger.account(Identity("x", carol.user_id)).held_for_minor == 300
    assert x.calls_to("reply") and any(s.in_reply_to_id for s in fedi.world.statuses.values())
    with engine.connect() as conn:
        by_platform = dict(
            conn.execute(select(outbox.c.platform, func.count()).group_by(outbox.c.platform)).all()
        )
    assert by_platform == {"x": 1, "mastodon": 1}

    transaction(
        engine,
        lambda conn: claims.claim(conn, policy, Identity("x", carol.user_id, "carol"), clock()),
    )
    site = MastodonSite(engine, clock, fedi)
    page = site.sign_in(f"@bob@{fedi.other.domain}", "bob")
    assert "€1.80" in text_of(page.get_data(as_text=True))
    assert ledger.account(ident(bob)).available_minor == 180
    assert ledger.account(Identity("x", carol.user_id)).available_minor == 270
    assert person_totals(engine) == (1000, 1000)
    with engine.connect() as conn:
        assert check_ledger(conn) == []
    assert urlsplit(site.settings.public_base_url).hostname == "localhost"


def test_mastodon_api_calls_are_counted_like_x_ones(engine, clock, fedi, bot):
    settings = settings_for(fedi)
    alice, _bob = people(fedi)
    fedi.world.post(alice.address, f"@flattr @bob@{fedi.other.domain} €2")
    endpoint = "GET /api/v1/notifications"

    def calls(status: str) -> float:
        labels = {"platform": "mastodon", "endpoint": endpoint, "status": status}
        return REGISTRY.get_sample_value("tipjar_platform_api_calls_total", labels) or 0.0

    ok, failed = calls("200"), calls("503")
    fedi.world.fail_next(fedi.home.domain, Fault("/api/v1/notifications", status=503))
    assert poll_once(engine, bot, settings, clock=clock).error
    assert poll_once(engine, bot, settings, clock=clock).processed == 1

    assert calls("503") - failed == 1
    assert calls("200") - ok >= 1
