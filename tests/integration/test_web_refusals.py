"""Sign-ins and forms the web app refuses: each gets a plain 4xx page and moves no money."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import responses
from sqlalchemy import select

from escrow.audit import check_ledger
from escrow.ledger import Identity
from escrow.schema import oauth_states
from tests.integration.test_web_support import Site, assert_refused, money_state

ALICE = Identity.x("101", "alice")
CAROL = Identity.x("2001", "carol")


@pytest.fixture
def site(site: Site) -> Site:
    """The shared site (tests/integration/conftest.py), with Carol owed 5.00 by Alice."""
    site.fund(ALICE, "10.00")
    site.tip(ALICE, CAROL, "3.00", "tweet-1")
    site.tip(ALICE, CAROL, "2.00", "tweet-2")
    return site


def verifiers(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(oauth_states.c.code_verifier)).scalars())


def refused_and_nothing_moved(site: Site, response, before) -> str:
    said = assert_refused(response, *site.x.issued_tokens, *verifiers(site.engine))
    assert money_state(site.engine) == before  # balances, holds and account statuses
    assert "account_id" not in site.session()
    with site.engine.connect() as conn:
        assert check_ledger(conn) == []
    return said


def with_state(callback: str, state: str | None) -> str:
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    if state is None:
        query.pop("state")
    else:
        query["state"] = state
    return "/oauth/callback?" + urlencode(query)


def test_a_callback_without_a_state_is_refused(site, engine):
    before = money_state(engine)
    callback = site.x.approve(site.start(), CAROL.user_id, "carol")

    said = refused_and_nothing_moved(site, site.client.get(with_state(callback, None)), before)

    assert "no state" in said
    assert site.x.token_requests == []


def test_a_forged_state_is_refused(site, engine):
    before = money_state(engine)
    callback = site.x.approve(site.start(), CAROL.user_id, "carol")

    response = site.client.get(with_state(callback, "forged-by-someone-else"))

    refused_and_nothing_moved(site, response, before)
    assert site.x.token_requests == []


def test_a_state_is_good_for_one_sign_in_only(site, engine):
    callback = site.x.approve(site.start(), CAROL.user_id, "carol")
    cookie_before = site.client.get_cookie("tipjar_session").value
    site.client.get(callback)
    before = money_state(engine)
    site.post("/logout")

    # Even replayed with the very cookie that started it, the state is spent.
    site.client.set_cookie("tipjar_session", cookie_before, domain="localhost")
    said = refused_and_nothing_moved(site, site.client.get(callback), before)

    assert "already used" in said
    assert len(site.x.token_requests) == 1


def test_a_state_older_than_ten_minutes_is_refused(site, engine, clock):
    before = money_state(engine)
    callback = site.x.approve(site.start(), CAROL.user_id, "carol")
    clock.advance(minutes=10, seconds=1)

    said = refused_and_nothing_moved(site, site.client.get(callback), before)

    assert "longer than 10 minutes" in said
    assert site.x.token_requests == []


def test_a_state_started_in_another_browser_is_refused(site, engine):
    before = money_state(engine)
    victim = site.browser()
    # The attacker starts a sign-in and sends their own callback link to someone else.
    callback = site.x.approve(site.start(), "666", "mallory")

    said = refused_and_nothing_moved(site, victim.get(callback), before)

    assert "not started in this browser" in said
    assert "account_id" not in site.session(victim)
    assert site.x.token_requests == []


def test_a_code_x_will_not_exchange_is_refused(site, engine):
    before = money_state(engine)
    site.x.token_failure = (400, {"error": "invalid_request", "error_description": "bad code"})

    said = refused_and_nothing_moved(site, site.sign_in(CAROL.user_id, "carol"), before)

    assert "X did not accept this sign-in" in said
    assert site.x.me_requests == []


def test_an_unreachable_token_endpoint_is_refused(site, engine, rsps):
    before = money_state(engine)
    rsps.replace(
        responses.POST,
        site.settings.x_oauth_token_url,
        body=requests.ConnectionError("connection refused"),
    )

    said = refused_and_nothing_moved(site, site.sign_in(CAROL.user_id, "carol"), before)

    assert "could not reach X" in said


@pytest.mark.parametrize("status", [500, 401])
def test_a_failing_users_me_is_refused(site, engine, status):
    before = money_state(engine)
    site.x.me_failure = status

    said = refused_and_nothing_moved(site, site.sign_in(CAROL.user_id, "carol"), before)

    assert "would not tell us who you are" in said
    assert len(site.x.me_requests) == 1


POSTS = [
    ("/me/budget", {"amount": "5.00"}),
    ("/me/tips/1/retract", {}),
    ("/me/notices/opt-out", {}),
    ("/me/refuse", {"confirm": "yes"}),
    ("/me/accept", {}),
]


@pytest.mark.parametrize("token", ["missing", "wrong"])
def test_a_form_posted_without_its_csrf_token_is_refused(site, engine, token):
    site.fund(CAROL, "1.00")
    site.sign_in(ALICE.user_id, "alice")  # alice's own held tips are retractable
    site.csrf()  # the session has a token; the forms below just don't carry it
    before = money_state(engine)

    for path, form in POSTS:
        sent = form if token == "missing" else {**form, "csrf_token": "x" * 43}
        response = site.client.post(path, data=sent)

        said = assert_refused(response, *site.x.issued_tokens)
        assert "This form has expired" in said, path
        assert money_state(engine) == before, path
    assert site.session()["account_id"]
