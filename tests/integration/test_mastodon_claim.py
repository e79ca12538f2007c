"""Sign in with Mastodon: a creator claims on their own instance; every refusal changes nothing.

The instances are the loopback stand-in, driven by the real Mastodon.py inside tipjar;
the browser is Flask's test client.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine, func, select

from bot.platforms.mastodon.guard import GuardedSession
from bot.platforms.mastodon.sandbox import Fault, MastodonSandbox
from bot.web import create_app
from escrow.audit import check_ledger
from escrow.ledger import Identity
from escrow.schema import mastodon_apps, mastodon_sign_ins
from escrow.service import Ledger
from tests.integration.test_web_support import (
    assert_refused,
    money_state,
    text_of,
    web_settings,
)


@pytest.fixture(scope="module")
def fedi():
    with MastodonSandbox() as sandbox:
        sandbox.world.add_account(sandbox.other.domain, "bob")
        sandbox.world.add_account(sandbox.other.domain, "carla")
        yield sandbox


class MastodonSite:
    def __init__(self, engine: Engine, clock: Any, fedi: MastodonSandbox, **overrides: Any):
        self.engine, self.clock, self.fedi = engine, clock, fedi
        self.settings = web_settings(
            platforms=("x", "mastodon"), allow_loopback_instances=True, **overrides
        )
        self.app = create_app(self.settings, engine=engine, clock=clock)
        self.client = self.app.test_client()
        self.ledger = Ledger(engine, self._policy(), clock)

    def _policy(self) -> Any:
        from bot import app as composition

        return composition.policy(self.settings)

    def csrf(self) -> str:
        page = self.client.get("/claim").get_data(as_text=True)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, "no CSRF token on the claim page"
        return found.group(1)

    def start(self, address: str) -> Any:
        return self.client.post(
            "/claim/mastodon", data={"address": address, "csrf_token": self.csrf()}
        )

    def authorize_url(self, address: str) -> str:
        page = self.start(address)
        assert page.status_code == 200, text_of(page.get_data(as_text=True))
        found = re.search(r'href="([^"]+/oauth/authorize\?[^"]+)"', page.get_data(as_text=True))
        assert found
        return found.group(1).replace("&amp;", "&")

    def sign_in(self, address: str, username: str) -> Any:
        callback = self.fedi.approve(self.authorize_url(address), username)
        parts = urlsplit(callback)
        return self.client.get(f"{parts.path}?{parts.query}", follow_redirects=True)

    def callback(self, callback: str) -> Any:
        parts = urlsplit(callback)
        return self.client.get(f"{parts.path}?{parts.query}", follow_redirects=True)


@pytest.fixture
def msite(engine, clock, fedi) -> MastodonSite:
    return MastodonSite(engine, clock, fedi)


def bob(fedi) -> Identity:
    address = f"bob@{fedi.other.domain}"
    return Identity("mastodon", address, address)


def held_tip_for_bob(msite: MastodonSite) -> None:
    alice = Identity("mastodon", f"alice@{msite.fedi.home.domain}")
    msite.ledger.deposit(alice, msite.settings.money(500), "dep-alice")
    msite.ledger.tip(alice, bob(msite.fedi), msite.settings.money(200), "mastodon:1")


def test_bob_signs_in_on_his_instance_and_his_tip_arrives(msite, engine):
    held_tip_for_bob(msite)

    page = msite.sign_in(f"@bob@{msite.fedi.other.domain}", "bob")

    said = text_of(page.get_data(as_text=True))
    assert page.status_code == 200
    assert "€1.80 from 1 supporter" in said
    assert msite.ledger.account(bob(msite.fedi)).status == "claimed"
    with engine.connect() as conn:
        assert check_ledger(conn) == []
        apps = conn.execute(select(func.count()).select_from(mastodon_apps)).scalar_one()
    assert apps == 1

    msite.client = msite.app.test_client()  # another browser
    msite.sign_in(msite.fedi.other.domain, "bob")  # the instance alone is enough too
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mastodon_apps)).scalar_one() == 1


def test_the_account_bound_is_the_one_that_signed_in_not_the_one_typed(msite):
    held_tip_for_bob(msite)

    page = msite.sign_in(f"@bob@{msite.fedi.other.domain}", "carla")

    assert "signed in" in text_of(page.get_data(as_text=True))
    assert msite.ledger.account(bob(msite.fedi)).status == "unclaimed"
    carla = Identity("mastodon", f"carla@{msite.fedi.other.domain}")
    assert msite.ledger.account(carla).status == "claimed"


def test_pkce_is_used_where_the_instance_lists_s256(msite):
    url = msite.authorize_url(msite.fedi.other.domain)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["scope"] == ["read:accounts"]


def refused_changes_nothing(msite: MastodonSite, engine: Engine, act) -> str:
    held_tip_for_bob(msite)
    before = money_state(engine)
    response = act()
    text = assert_refused(response)
    assert money_state(engine) == before
    assert msite.ledger.account(bob(msite.fedi)).status == "unclaimed"
    return text


def test_a_forged_state_changes_nothing(msite, engine):
    url = msite.authorize_url(msite.fedi.other.domain)
    callback = msite.fedi.approve(url, "bob")
    forged = re.sub(r"state=[^&]+", "state=forged-state-value", callback)
    said = refused_changes_nothing(msite, engine, lambda: msite.callback(forged))
    assert "not started in this browser" in said


def test_a_replayed_state_changes_nothing(msite, engine):
    held_tip_for_bob(msite)
    callback = msite.fedi.approve(msite.authorize_url(msite.fedi.other.domain), "carla")
    msite.callback(callback)  # carla signs in: the state is spent
    before = money_state(engine)
    replay = msite.callback(callback)
    assert_refused(replay)
    assert money_state(engine) == before


def test_a_state_from_another_browser_changes_nothing(msite, engine):
    callback = msite.fedi.approve(msite.authorize_url(msite.fedi.other.domain), "bob")
    other = msite.app.test_client()
    parts = urlsplit(callback)
    said = refused_changes_nothing(msite, engine, lambda: other.get(f"{parts.path}?{parts.query}"))
    assert "not started in this browser" in said


def test_an_expired_state_changes_nothing(msite, engine, clock):
    from datetime import timedelta

    callback = msite.fedi.approve(msite.authorize_url(msite.fedi.other.domain), "bob")
    clock.now += timedelta(minutes=11)
    said = refused_changes_nothing(msite, engine, lambda: msite.callback(callback))
    assert "10 minutes" in said


def test_an_instance_answering_for_another_domain_is_refused(msite, engine, fedi):
    fedi.other.data.answers_for = fedi.home.domain  # "bob@the bot's instance", it says
    try:
        callback = fedi.approve(msite.authorize_url(fedi.other.domain), "bob")
        said = refused_changes_nothing(msite, engine, lambda: msite.callback(callback))
    finally:
        fedi.other.data.answers_for = None
    assert "another domain" in said


def test_loopback_instances_are_refused_without_the_switch(engine, clock, fedi):
    site = MastodonSite(engine, clock, fedi)
    site.settings = web_settings(platforms=("mastodon",), allow_loopback_instances=False)
    site.app = create_app(site.settings, engine=engine, clock=clock)
    site.client = site.app.test_client()
    said = assert_refused(site.start(f"bob@{fedi.other.domain}"))
    assert "private address" in said
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mastodon_sign_ins)).scalar_one() == 0


def test_an_address_resolving_to_a_private_address_is_refused(msite, engine):
    msite.app.extensions["mastodon_sessions"] = lambda allow: GuardedSession(
        allow_loopback=allow, resolve=lambda host, port: ["93.184.216.34", "10.1.2.3"]
    )
    said = refused_changes_nothing(msite, engine, lambda: msite.start("@bob@intranet.example"))
    assert "private address" in said
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mastodon_apps)).scalar_one() == 0


def test_a_slow_instance_is_refused(msite, engine, fedi):
    msite.app.extensions["mastodon_sessions"] = lambda allow: GuardedSession(
        allow_loopback=allow, timeout=(0.5, 0.2)
    )
    fedi.world.fail_next(fedi.other.domain, Fault("/.well-known/oauth", status=200, delay=0.6))
    said = refused_changes_nothing(msite, engine, lambda: msite.start(fedi.other.domain))
    assert "in time" in said


def test_an_oversized_answer_is_refused(msite, engine, fedi):
    fedi.world.fail_next(fedi.other.domain, Fault("/oauth/token", status=200, size=400_000))
    callback = fedi.approve(msite.authorize_url(fedi.other.domain), "bob")
    said = refused_changes_nothing(msite, engine, lambda: msite.callback(callback))
    assert "too much" in said


def test_a_mastodon_only_site_offers_no_sign_in_with_x(engine, clock, fedi):
    site = MastodonSite(engine, clock, fedi)
    site.settings = web_settings(platforms=("mastodon",), mastodon_bot_acct="flattr@bots.example")
    site.app = create_app(site.settings, engine=engine, clock=clock)
    site.client = site.app.test_client()

    page = text_of(site.client.get("/claim").get_data(as_text=True))
    assert "Sign in with X" not in page
    assert "Sign in with Mastodon" in page
    assert "@flattr@bots.example @you" in page
    started = site.client.get("/claim/start")
    assert started.status_code == 404
    assert "Location" not in started.headers

    both = MastodonSite(engine, clock, fedi)  # X and Mastodon: both buttons
    page = text_of(both.client.get("/claim").get_data(as_text=True))
    assert "Sign in with X" in page and "Sign in with Mastodon" in page
