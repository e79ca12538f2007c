"""Claiming through the web: a creator signs in with X and what waited for them arrives."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from bot.web import oauth
from escrow.audit import check_ledger
from escrow.ledger import Identity
from escrow.schema import accounts, oauth_states, tips
from tests.integration.test_web_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    Site,
    money_state,
    person_totals,
    text_of,
)

SUPPORTERS = [Identity.x(str(100 + i), name) for i, name in enumerate(["al", "bo", "di", "ed"])]
CAROL = Identity.x("2001", "carol")


def four_tips_for_carol(site: Site) -> None:
    for n, supporter in enumerate(SUPPORTERS):
        site.fund(supporter, "10.00")
        assert site.tip(supporter, CAROL, "1.00", f"tweet-{n}").status == "held"


def fees_posted(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(accounts.c.credits_posted).where(
                accounts.c.platform == "system", accounts.c.platform_user_id == "fees"
            )
        ).scalar_one()


def test_signing_in_releases_every_hold_once_and_shows_what_arrived(site, engine):
    four_tips_for_carol(site)

    page = site.sign_in(CAROL.user_id, "carol")

    assert page.status_code == 200
    said = text_of(page.get_data(as_text=True))
    assert "€3.60 from 4 supporters" in said
    assert "€4.00" in said and "10% fee of €0.40" in said
    assert site.available(CAROL) == 360
    assert fees_posted(engine) == 40
    with engine.connect() as conn:
        assert {r.state for r in conn.execute(select(tips))} == {"posted"}
        assert check_ledger(conn) == []

    again = site.sign_in(CAROL.user_id, "carol")

    assert "Nothing was waiting for you" in text_of(again.get_data(as_text=True))
    assert site.available(CAROL) == 360
    assert fees_posted(engine) == 40
    assert person_totals(engine) == (4000, 4000)
    with engine.connect() as conn:
        assert check_ledger(conn) == []


def test_the_account_is_bound_to_the_id_x_returns_never_to_a_handle_in_the_url(site, engine):
    mallory = Identity.x("666", "mallory")
    site.fund(SUPPORTERS[0], "5.00")
    site.tip(SUPPORTERS[0], CAROL, "1.00", "t-carol")
    site.tip(SUPPORTERS[0], mallory, "2.00", "t-mallory")
    callback = site.x.approve(site.start(), CAROL.user_id, "carol")

    page = site.client.get(
        callback + "&handle=mallory&user_id=666&screen_name=mallory", follow_redirects=True
    )

    assert "€0.90 from 1 supporter" in text_of(page.get_data(as_text=True))
    assert site.ledger.account(mallory).held_for_minor == 200
    assert site.ledger.account(mallory).status == "unclaimed"
    assert site.ledger.account(CAROL).status == "claimed"
    assert site.session()["account_id"] == site.ledger.account(CAROL).account_id


def test_a_renamed_creator_still_gets_what_was_tipped_to_the_old_handle(site):
    four_tips_for_carol(site)

    page = site.sign_in(CAROL.user_id, "carol_renamed")

    said = text_of(page.get_data(as_text=True))
    assert "€3.60 from 4 supporters" in said and "@carol_renamed" in said
    assert site.ledger.account(CAROL).handle == "carol_renamed"


def test_a_creator_with_nothing_waiting_is_told_so_and_signed_in(site, engine):
    page = site.sign_in("3003", "newbie")

    said = text_of(page.get_data(as_text=True))
    assert "Nothing was waiting for you" in said
    assert site.client.get("/me").status_code == 200
    with engine.connect() as conn:
        assert check_ledger(conn) == []


def test_holds_that_expired_before_sign_in_go_back_and_the_page_says_so(site, clock, engine):
    four_tips_for_carol(site)
    clock.advance(days=91)

    page = site.sign_in(CAROL.user_id, "carol")

    said = text_of(page.get_data(as_text=True))
    assert "Nothing was waiting for you" in said
    assert "4 tips had waited longer than 90 days" in said
    assert all(site.available(s) == 1000 for s in SUPPORTERS)
    with engine.connect() as conn:
        assert check_ledger(conn) == []


def test_declining_on_x_is_answered_politely_and_changes_nothing(site, engine):
    four_tips_for_carol(site)
    before = money_state(engine)

    page = site.client.get(site.x.deny(site.start()))

    assert page.status_code == 200
    assert "You did not sign in" in text_of(page.get_data(as_text=True))
    assert money_state(engine) == before
    assert "account_id" not in site.session()


def test_sign_in_asks_x_for_a_pkce_s256_code_with_the_configured_client(site, engine):
    location = site.start()

    asked = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert location.startswith(site.settings.x_oauth_authorize_url + "?")
    assert asked["client_id"] == CLIENT_ID
    assert asked["redirect_uri"] == "http://localhost:8000/oauth/callback"
    assert asked["scope"] == "users.read tweet.read"
    assert asked["code_challenge_method"] == "S256"
    assert len(asked["code_challenge"]) == 43
    with engine.connect() as conn:  # nothing is stored until the browser comes back
        assert conn.execute(select(oauth_states)).all() == []
    # The browser's session keeps only a hash of the state; the verifier never leaves the
    # server (it is derived from the state under the secret key).
    verifier = oauth.code_verifier(site.app.config["SECRET_KEY"], asked["state"])
    assert asked["code_challenge"] == oauth.pkce_challenge(verifier)
    assert asked["state"] not in str(site.session())
    assert verifier not in location
    assert verifier not in str(site.session())


def test_the_code_is_exchanged_as_a_confidential_client_and_users_me_gets_the_token(site):
    site.sign_in(CAROL.user_id, "carol")

    (exchange,) = site.x.token_requests
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert exchange.headers["Authorization"] == f"Basic {basic}"
    form = {k: v[0] for k, v in parse_qs(exchange.body).items()}
    assert set(form) == {"grant_type", "code", "redirect_uri", "code_verifier", "client_id"}
    assert form["grant_type"] == "authorization_code"
    (me,) = site.x.me_requests
    assert me.headers["Authorization"] == f"Bearer {site.x.issued_tokens[0]}"


def test_the_result_page_is_shown_once_and_a_reload_does_not_repeat_the_sign_in(site):
    four_tips_for_carol(site)
    site.sign_in(CAROL.user_id, "carol")

    reload = site.client.get("/claim/done")

    assert reload.status_code == 303
    assert reload.headers["Location"].endswith("/me")
    assert len(site.x.token_requests) == 1
