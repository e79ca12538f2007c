"""Adding money on /me through the Stripe sandbox: the supporter's side of card payments,
with the sandbox's signed webhooks arriving at the real `POST /stripe/webhook` route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.payments.sandbox import SECRET_KEY, WEBHOOK_SECRET, StripeSandbox, sign
from escrow.audit import check_ledger
from escrow.ledger import Identity
from escrow.schema import stripe_events, topups
from tests.integration.test_web_support import Site, text_of

ALICE = Identity.x("101", "alice")
CAROL = Identity.x("2001", "carol")


@pytest.fixture
def stripe_box() -> Iterator[StripeSandbox]:
    box = StripeSandbox()
    box.start()
    yield box
    box.stop()


@pytest.fixture
def shop(engine: Any, clock: Any, rsps: Any, stripe_box: StripeSandbox) -> Site:
    """The site with card top-ups on, Stripe played by the sandbox."""
    rsps.add_passthru(stripe_box.base_url)
    site = Site(
        engine,
        clock,
        rsps,
        stripe_secret_key=SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe_box.base_url,
    )
    hook = site.browser()  # Stripe's side: no cookies, no CSRF token

    def deliver(body: bytes, header: str) -> int:
        return int(
            hook.post(
                "/stripe/webhook", data=body, headers={"Stripe-Signature": header}
            ).status_code
        )

    stripe_box.deliver = deliver
    return site


def page(site: Site) -> str:
    response = site.client.get("/me")
    assert response.status_code == 200
    return text_of(response.get_data(as_text=True))


def session_of(location: str) -> str:
    return location.rsplit("/", 1)[1]


def test_a_supporter_adds_ten_euros_by_card_and_sees_it_at_once(
    shop: Site, stripe_box: StripeSandbox, engine: Any
) -> None:
    shop.sign_in(ALICE.user_id, "alice")
    assert "Add €5.00 Add €10.00 Add €25.00" in page(shop)

    response = shop.post("/me/topup", amount="10.00")
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith(stripe_box.base_url + "/pay/")
    assert "Pay" in stripe_box.app.test_client().get(f"/pay/{session_of(location)}").get_data(
        as_text=True
    )
    stripe_box.pay(session_of(location))

    said = page(shop)
    assert "Available €10.00" in said
    assert "€10.00, added" in said
    with engine.connect() as conn:
        assert check_ledger(conn) == []


def test_the_webhook_refuses_a_forged_signature_and_takes_no_csrf_token(
    shop: Site, stripe_box: StripeSandbox
) -> None:
    hook = shop.browser()
    body = b'{"id": "evt_1", "type": "customer.created", "data": {"object": {}}}'
    forged = hook.post("/stripe/webhook", data=body, headers={"Stripe-Signature": "t=1,v1=00"})
    good = hook.post(
        "/stripe/webhook", data=body, headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET)}
    )
    assert (forged.status_code, good.status_code) == (400, 200)
    with shop.engine.connect() as conn:
        assert conn.execute(select(stripe_events.c.id)).scalars().all() == ["evt_1"]


def test_stripe_down_offers_a_retry_of_the_same_top_up(
    shop: Site, stripe_box: StripeSandbox
) -> None:
    shop.sign_in(ALICE.user_id, "alice")
    stripe_box.faults = [500, 500, 500]
    response = shop.post("/me/topup", amount="10.00")
    assert response.status_code == 303 and response.headers["Location"].endswith("/me")
    said = page(shop)
    assert "Stripe could not be reached" in said and "nothing was charged" in said
    assert "Try your top-up of €10.00 again" in said
    assert shop.available(ALICE) == 0

    with shop.engine.connect() as conn:
        (topup_id,) = conn.execute(select(topups.c.id)).scalars().all()
    retried = shop.post("/me/topup", topup_id=str(topup_id))
    assert retried.status_code == 303
    assert retried.headers["Location"].startswith(stripe_box.base_url)
    assert {key for *_, key in stripe_box.requests_seen} == {f"topup-{topup_id}"}
    stripe_box.pay(session_of(retried.headers["Location"]))
    assert shop.available(ALICE) == 1000


def test_amounts_outside_the_limits_are_refused_with_nothing_started(shop: Site) -> None:
    shop.sign_in(ALICE.user_id, "alice")
    shop.post("/me/topup", amount="1.00")
    assert "the smallest amount to add is €2.00" in page(shop)
    shop.post("/me/topup", amount="lots")
    assert "is not an amount" in page(shop)
    with shop.engine.connect() as conn:
        assert conn.execute(select(topups.c.id)).first() is None


def test_a_monthly_budget_by_card_is_credited_shown_and_cancelled(
    shop: Site, stripe_box: StripeSandbox
) -> None:
    shop.sign_in(ALICE.user_id, "alice")
    response = shop.post("/me/subscription", amount="5.00")
    assert response.status_code == 303
    stripe_box.pay(session_of(response.headers["Location"]))
    said = page(shop)
    assert "Available €5.00" in said
    assert "You add €5.00 every month by card" in said
    assert "Now: €5.00 a month." in said

    shop.post("/me/subscription/cancel")
    said = page(shop)
    assert "Your monthly payment of €5.00 stops at the end of the month already paid" in said


def test_a_refund_that_leaves_a_debt_is_explained_on_the_page(
    shop: Site, stripe_box: StripeSandbox
) -> None:
    shop.sign_in(ALICE.user_id, "alice")
    location = shop.post("/me/topup", amount="10.00").headers["Location"]
    stripe_box.pay(session_of(location))
    shop.ledger.claim(CAROL)
    shop.tip(ALICE, CAROL, "4.00", "to-carol")
    stripe_box.refund(stripe_box.objects[session_of(location)]["payment_intent"])
    said = page(shop)
    assert "Available €0.00" in said
    assert "You owe €4.00" in said


def test_without_a_stripe_key_the_page_says_how_to_add_money(
    engine: Any, clock: Any, rsps: Any
) -> None:
    site = Site(engine, clock, rsps)
    site.sign_in(ALICE.user_id, "alice")
    said = page(site)
    assert "This site does not take card payments" in said
    assert "tipjar funds deposit" in said
    site.post("/me/topup", amount="10.00")
    assert "Card payments are not available here" in page(site)
