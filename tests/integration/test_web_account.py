"""The account page: balances, history, retracting, refusing, budgets and notices."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from escrow.audit import check_ledger
from escrow.ledger import Identity, TipStatus
from escrow.schema import accounts
from tests.integration.test_web_support import Site, money_state, person_totals, text_of

ALICE = Identity.x("101", "alice")
BOB = Identity.x("102", "bob")
CAROL = Identity.x("2001", "carol")


def page_text(site: Site, path: str = "/me") -> str:
    response = site.client.get(path)
    assert response.status_code == 200
    return text_of(response.get_data(as_text=True))


def clean(engine) -> None:
    with engine.connect() as conn:
        assert check_ledger(conn) == []


def test_the_account_page_shows_balances_waiting_tips_and_history(site, engine):
    site.fund(ALICE, "10.00")
    site.fund(BOB, "5.00")
    site.tip(BOB, ALICE, "2.00", "to-alice")  # held: alice has not signed in yet
    site.sign_in(ALICE.user_id, "alice")  # €2.00 arrives, €1.80 after the fee
    site.tip(ALICE, CAROL, "3.00", "to-carol")  # held for carol

    said = page_text(site)

    assert "Signed in as @alice" in said
    assert "Available €8.80" in said
    assert "Reserved for tips waiting to be claimed €3.00" in said
    assert "@carol €3.00 2026-06-08 Retract" in said
    assert "to @carol €3.00 waiting for @carol to sign in" in said
    assert "from @bob €2.00 in your balance (€0.20 fee)" in said


def test_history_lists_the_twenty_newest_tips(site, clock):
    site.fund(ALICE, "50.00")
    site.sign_in(ALICE.user_id, "alice")
    for n in range(25):
        clock.advance(minutes=1)
        site.tip(ALICE, Identity.x(str(3000 + n), f"creator{n}"), "0.10", f"tweet-{n}")

    page = site.client.get("/me").get_data(as_text=True)
    history = page.split('id="history-h"')[1]

    assert "to @creator24" in history and "to @creator5" in history
    assert "to @creator4 " not in text_of(history)
    assert history.count("<tr>") == 20 + 1  # the header row, then twenty tips


def test_a_supporter_retracts_a_tip_that_is_still_waiting(site, engine):
    site.fund(ALICE, "10.00")
    held = site.tip(ALICE, CAROL, "3.00", "to-carol")
    site.sign_in(ALICE.user_id, "alice")

    response = site.post(f"/me/tips/{held.tip_id}/retract")

    assert response.status_code == 303
    assert "Your tip of €3.00 is back in your balance" in page_text(site)
    assert site.available(ALICE) == 1000
    assert site.ledger.account(CAROL).held_for_minor == 0
    clean(engine)


def test_a_supporter_cannot_retract_someone_elses_tip(site, engine):
    site.fund(BOB, "10.00")
    held = site.tip(BOB, CAROL, "3.00", "bobs-tip")
    site.fund(ALICE, "1.00")
    site.sign_in(ALICE.user_id, "alice")
    before = money_state(engine)

    site.post(f"/me/tips/{held.tip_id}/retract")

    assert "There is no such tip of yours" in page_text(site)
    assert money_state(engine) == before


def test_a_claimed_tip_can_no_longer_be_retracted(site, engine, rsps):
    site.fund(ALICE, "10.00")
    held = site.tip(ALICE, CAROL, "3.00", "to-carol")
    site.sign_in(CAROL.user_id, "carol", client=site.browser())
    site.sign_in(ALICE.user_id, "alice")
    before = money_state(engine)

    site.post(f"/me/tips/{held.tip_id}/retract")

    assert "already claimed or returned" in page_text(site)
    assert money_state(engine) == before


def test_refusing_asks_first_and_then_turns_tips_away(site, engine):
    site.fund(ALICE, "10.00")
    site.sign_in(CAROL.user_id, "carol")
    before = money_state(engine)

    confirm = page_text(site, "/me/refuse")
    unconfirmed = site.post("/me/refuse")

    assert "Turn tips away?" in confirm
    assert unconfirmed.status_code == 200
    assert "Yes, turn tips away" in text_of(unconfirmed.get_data(as_text=True))
    assert money_state(engine) == before

    site.post("/me/refuse", confirm="yes")

    assert "You now turn tips away" in page_text(site)
    assert site.ledger.account(CAROL).status == "refusing"
    assert site.tip(ALICE, CAROL, "1.00", "later").status == TipStatus.REFUSING_RECIPIENT
    clean(engine)


def set_status(engine, who: Identity, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(accounts).where(accounts.c.platform_user_id == who.user_id).values(status=status)
        )


def test_refusing_returns_whatever_still_waits_to_its_supporters(site, engine):
    site.fund(ALICE, "10.00")
    site.sign_in(CAROL.user_id, "carol")
    # A hold can still wait for a claimed creator when a tip raced the claim.
    set_status(engine, CAROL, "unclaimed")
    raced = site.tip(ALICE, CAROL, "1.00", "raced")
    set_status(engine, CAROL, "claimed")
    assert raced.status == TipStatus.HELD
    assert "Waiting for you €1.00" in page_text(site)

    site.post("/me/refuse", confirm="yes")

    assert "1 waiting tip (€1.00) went back to its supporter" in page_text(site)
    assert site.available(ALICE) == 1000
    assert site.ledger.account(CAROL).held_for_minor == 0
    assert person_totals(engine) == (1000, 1000)
    clean(engine)


def test_a_creator_who_refused_can_accept_tips_again(site, engine):
    site.fund(ALICE, "10.00")
    site.sign_in(CAROL.user_id, "carol")
    site.post("/me/refuse", confirm="yes")
    assert "Accept tips again" in page_text(site)

    site.post("/me/accept")

    assert "You accept tips again" in page_text(site)
    assert site.ledger.account(CAROL).status == "claimed"
    assert site.tip(ALICE, CAROL, "1.00", "welcome-back").status == TipStatus.POSTED
    clean(engine)


def test_a_creator_who_refused_is_told_so_at_sign_in(site):
    site.sign_in(CAROL.user_id, "carol")
    site.post("/me/refuse", confirm="yes")
    site.post("/logout")

    said = text_of(site.sign_in(CAROL.user_id, "carol").get_data(as_text=True))

    assert "You have chosen to turn tips away" in said


def test_a_supporter_sets_a_monthly_budget(site, engine):
    settlement = pytest.importorskip("escrow.flattrs")
    site.fund(ALICE, "10.00")
    site.sign_in(ALICE.user_id, "alice")

    site.post("/me/budget", amount="5.00")

    assert "Your monthly budget is now €5.00" in page_text(site)
    with engine.connect() as conn:
        account_id = site.ledger.account(ALICE).account_id
        assert settlement.get_budget(conn, account_id) == 500
    assert 'value="5.00"' in site.client.get("/me").get_data(as_text=True)


@pytest.mark.parametrize(
    ("amount", "message"),
    [("1.00", "must be at least €2.00"), ("lots", "is not an amount"), ("5.001", "not an amount")],
)
def test_a_budget_below_the_minimum_or_malformed_is_refused(site, engine, amount, message):
    settlement = pytest.importorskip("escrow.flattrs")
    site.fund(ALICE, "10.00")
    site.sign_in(ALICE.user_id, "alice")

    site.post("/me/budget", amount=amount)

    assert message in page_text(site)
    with engine.connect() as conn:
        assert settlement.get_budget(conn, site.ledger.account(ALICE).account_id) is None


def test_a_creator_opts_out_of_notices(site, engine):
    notices = pytest.importorskip("bot.outbox")
    site.sign_in(CAROL.user_id, "carol")

    site.post("/me/notices/opt-out")

    said = page_text(site)
    assert "will not send you notices any more" in said
    assert "Stop notices for good" not in said
    with engine.connect() as conn:
        assert notices.is_opted_out(conn, site.ledger.account(CAROL).account_id)


def test_actions_need_a_signed_in_account(site, engine):
    site.fund(ALICE, "10.00")
    held = site.tip(ALICE, CAROL, "1.00", "t")
    site.client.get("/claim")
    with site.client.session_transaction() as s:
        s["csrf"] = "a-token-of-a-signed-out-visitor"
    before = money_state(engine)

    for path in ("/me/budget", f"/me/tips/{held.tip_id}/retract", "/me/refuse", "/me/accept"):
        response = site.client.post(
            path, data={"csrf_token": "a-token-of-a-signed-out-visitor", "confirm": "yes"}
        )
        assert response.status_code == 303
        assert response.headers["Location"].endswith("/claim")

    assert money_state(engine) == before
