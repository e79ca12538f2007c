"""Pending flattrs on the account page: listed with their tweet date, cancellable until the
month is settled, only by the supporter who made them (issue 14)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import func, select

from bot.cli import main
from escrow.flattrs import period_of, record_flattr
from escrow.ledger import Identity, Policy
from escrow.schema import shares
from escrow.settlement import settle
from tests.integration.test_web_account import clean, page_text
from tests.integration.test_web_support import Site, money_state

ALICE = Identity.x("101", "alice")
BOB = Identity.x("102", "bob")
CAROL = Identity.x("2001", "carol")
DAVE = Identity.x("2002", "dave")


def flattr(site: Site, supporter: Identity, creator: Identity, source: str) -> int:
    now = site.clock()
    with site.engine.begin() as conn:
        result = record_flattr(conn, Policy(), supporter, creator, now, source, now)
    assert result.share_id is not None
    return result.share_id


def open_shares(site: Site) -> int:
    with site.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(shares).where(shares.c.state == "open")
            ).scalar_one()
        )


def test_this_months_flattrs_are_listed_and_one_can_be_cancelled(site, engine):
    site.fund(ALICE, "10.00")
    to_carol = flattr(site, ALICE, CAROL, "tweet-carol")
    flattr(site, ALICE, DAVE, "tweet-dave")
    site.sign_in(ALICE.user_id, "alice")
    day = site.clock().strftime("%Y-%m-%d")

    said = page_text(site)
    assert f"{day} @carol Cancel" in said and f"{day} @dave Cancel" in said

    response = site.post(f"/me/flattrs/{to_carol}/cancel")

    assert response.status_code == 303
    said = page_text(site)
    assert "That flattr is cancelled" in said
    assert "@carol Cancel" not in said and f"{day} @dave Cancel" in said
    assert open_shares(site) == 1
    clean(engine)


def test_a_supporter_cannot_cancel_someone_elses_flattr(site, engine):
    site.fund(BOB, "10.00")
    bobs = flattr(site, BOB, CAROL, "bobs-flattr")
    site.fund(ALICE, "1.00")
    site.sign_in(ALICE.user_id, "alice")

    site.post(f"/me/flattrs/{bobs}/cancel")

    assert "There is no such flattr of yours" in page_text(site)
    assert open_shares(site) == 1


def test_a_cancel_needs_the_form_token_and_a_signed_in_supporter(site, engine):
    site.fund(ALICE, "10.00")
    share = flattr(site, ALICE, CAROL, "tweet")
    site.sign_in(ALICE.user_id, "alice")

    forged = site.client.post(f"/me/flattrs/{share}/cancel", data={})
    assert forged.status_code in (400, 403)
    assert open_shares(site) == 1

    stranger = site.browser()
    stranger.get("/claim")
    with stranger.session_transaction() as s:
        s["csrf"] = "a-token-of-a-signed-out-visitor"
    response = stranger.post(
        f"/me/flattrs/{share}/cancel", data={"csrf_token": "a-token-of-a-signed-out-visitor"}
    )
    assert response.status_code == 303 and response.headers["Location"].endswith("/claim")
    assert open_shares(site) == 1


def test_a_settled_flattr_can_no_longer_be_cancelled(site, engine, clock):
    site.fund(ALICE, "10.00")
    share = flattr(site, ALICE, CAROL, "tweet")
    period = period_of(clock())
    clock.advance(days=40)
    settle(engine, Policy(), period, clock(), workers=1)
    site.sign_in(ALICE.user_id, "alice")
    before = money_state(engine)

    site.post(f"/me/flattrs/{share}/cancel")

    assert "already settled" in page_text(site)
    assert money_state(engine) == before
    clean(engine)


def test_a_cancelled_flattr_takes_no_share_of_the_budget(site, engine, clock):
    site.fund(ALICE, "10.00")
    to_carol = flattr(site, ALICE, CAROL, "tweet-carol")
    flattr(site, ALICE, DAVE, "tweet-dave")
    site.sign_in(ALICE.user_id, "alice")
    site.post(f"/me/flattrs/{to_carol}/cancel")
    period = period_of(clock())
    clock.advance(days=40)

    settle(engine, Policy(), period, clock(), workers=1)

    assert site.ledger.account(CAROL) is None or site.ledger.account(CAROL).held_for_minor == 0
    assert site.ledger.account(DAVE).held_for_minor == 200  # the whole €2.00 default budget
    clean(engine)


def test_accounts_show_counts_the_pending_flattrs(site, db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no developer's .env
    site.fund(ALICE, "10.00")
    flattr(site, ALICE, CAROL, "tweet-carol")
    flattr(site, ALICE, DAVE, "tweet-dave")
    env = {"DATABASE_URL": db_url, "LOG_LEVEL": "WARNING"}

    shown = CliRunner().invoke(main, ["accounts", "show", "x:101", "--json"], env=env)
    text = CliRunner().invoke(main, ["accounts", "show", "x:101"], env=env)

    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["pending_flattrs"] == 2
    assert "flattrs pending       2 until the month is settled" in text.output
