"""Getting paid on /me: a creator connects Stripe, withdraws, and is paid once; the manual
provider keeps payout details encrypted; refusals change nothing. Stripe is the loopback
sandbox, its signed Connect events arrive at the real `POST /stripe/webhook/connect`."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import select

from bot.cli import main
from bot.payments import payouts as relay
from bot.payments.sandbox import (
    CONNECT_WEBHOOK_SECRET,
    SECRET_KEY,
    WEBHOOK_SECRET,
    StripeSandbox,
    sign,
)
from escrow.audit import check_ledger
from escrow.ledger import Identity
from escrow.money import Money
from escrow.schema import payout_accounts, payouts, stripe_events
from tests.integration.test_web_support import Site, text_of

BOB = Identity.x("2001", "bob")
IBAN = "DE89 3704 0044 0532 0130 00"


@pytest.fixture
def stripe_box() -> Iterator[StripeSandbox]:
    box = StripeSandbox()
    box.start()
    yield box
    box.stop()


def hooked(site: Site, box: StripeSandbox) -> Site:
    """Deliver the sandbox's events to the site's two webhook routes, as Stripe does."""
    hook = site.browser()  # Stripe's side: no cookies, no CSRF token

    def to(path: str) -> Any:
        def deliver(body: bytes, header: str) -> int:
            return int(hook.post(path, data=body, headers={"Stripe-Signature": header}).status_code)

        return deliver

    box.deliver = to("/stripe/webhook")
    box.deliver_connect = to("/stripe/webhook/connect")
    return site


@pytest.fixture
def shop(engine: Any, clock: Any, rsps: Any, stripe_box: StripeSandbox) -> Site:
    rsps.add_passthru(stripe_box.base_url)
    site = Site(
        engine,
        clock,
        rsps,
        stripe_secret_key=SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_connect_webhook_secret=CONNECT_WEBHOOK_SECRET,
        stripe_api_base=stripe_box.base_url,
        payout_min_minor=100,
    )
    return hooked(site, stripe_box)


KEY = Fernet.generate_key().decode()


@pytest.fixture
def manual(engine: Any, clock: Any, rsps: Any) -> Site:
    return Site(
        engine,
        clock,
        rsps,
        payout_provider="manual",
        payout_details_key=KEY,
        payout_min_minor=100,
    )


def page(site: Site, client: Any = None, path: str = "/me") -> str:
    response = (client or site.client).get(path)
    assert response.status_code == 200
    return text_of(response.get_data(as_text=True))


def bob_with(site: Site, minor: int = 180) -> None:
    site.sign_in(BOB.user_id, "bob")
    site.ledger.deposit(BOB, Money(minor, "EUR"), "tips-for-bob")


def onboard(box: StripeSandbox, location: str) -> str:
    """The creator submits Stripe's onboarding page; where Stripe sends the browser back."""
    path = urlsplit(location).path
    stripe_page = box.app.test_client()
    assert "Submit" in stripe_page.get(path).get_data(as_text=True)
    answer = stripe_page.post(path)
    assert answer.status_code == 303
    return str(answer.headers["Location"])


def nothing_moved(site: Site, minor: int = 180) -> None:
    with site.engine.connect() as conn:
        assert conn.execute(select(payouts.c.id)).first() is None
        assert check_ledger(conn) == []
    assert site.available(BOB) == minor


def test_bob_connects_stripe_withdraws_and_is_paid_once(
    shop: Site, stripe_box: StripeSandbox
) -> None:
    bob_with(shop)
    said = page(shop)
    assert "Get paid with Stripe" in said and "Paid out €0.00" in said

    response = shop.post("/me/payouts/connect")
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith(stripe_box.base_url + "/onboard/acct_")
    back = onboard(stripe_box, location)
    assert back == "http://localhost:8000/me?payouts=back"
    assert "Your Stripe account is connected" in page(shop, path="/me?payouts=back")

    response = shop.post("/me/payouts", amount="1.80")
    assert response.status_code == 303
    said = page(shop)
    assert "Your withdrawal of €1.80 is on its way" in said
    assert "On its way to you €1.80" in said and "Available €0.00" in said
    assert "Reserved for tips waiting to be claimed €0.00" in said  # a payout is no tip

    relay.run_relay(shop.engine, relay.ConnectGateway(shop.settings), shop.clock)
    said = page(shop)
    assert "Paid out €1.80" in said and "€1.80, paid" in said
    (made,) = stripe_box.transfers()
    assert made["amount"] == 180 and made["destination"] == location.split("/")[-2]
    with shop.engine.connect() as conn:
        assert conn.execute(select(payouts.c.state)).scalars().all() == ["posted"]
        assert check_ledger(conn) == []


def test_an_expired_onboarding_link_brings_bob_back_to_a_new_one(
    shop: Site, stripe_box: StripeSandbox
) -> None:
    bob_with(shop)
    first = shop.post("/me/payouts/connect").headers["Location"]
    stripe_page = stripe_box.app.test_client()
    token = urlsplit(first).path.rsplit("/", 1)[1]
    stripe_box.objects[f"link_{token}"]["expires_at"] = 0
    refresh = stripe_page.get(urlsplit(first).path)
    assert refresh.status_code == 303
    assert refresh.headers["Location"] == "http://localhost:8000/me?payouts=refresh"
    again = shop.client.get("/me?payouts=refresh")
    assert again.status_code == 303
    second = again.headers["Location"]
    assert second != first and second.split("/")[-2] == first.split("/")[-2]
    accounts_made = [p for _, p, _, _ in stripe_box.requests_seen if p == "/v1/accounts"]
    assert len(accounts_made) == 1


def test_two_tabs_submitting_at_once_make_one_payout(shop: Site, stripe_box: StripeSandbox) -> None:
    bob_with(shop, 2500)
    onboard(stripe_box, shop.post("/me/payouts/connect").headers["Location"])
    token = shop.csrf()  # both tabs were loaded before either was submitted
    first = shop.client.post("/me/payouts", data={"amount": "10.00", "csrf_token": token})
    second = shop.client.post("/me/payouts", data={"amount": "10.00", "csrf_token": token})
    assert first.status_code == second.status_code == 303
    said = page(shop)
    assert "already on its way" in said
    with shop.engine.connect() as conn:
        assert conn.execute(select(payouts.c.amount_minor)).scalars().all() == [1000]
        assert check_ledger(conn) == []
    assert shop.available(BOB) == 1500


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("1.81", "you have only €1.80 available"),
        ("0.50", "the smallest withdrawal is €1.00"),
        ("lots", "is not an amount"),
    ],
)
def test_a_bad_amount_is_refused_with_nothing_moved(
    shop: Site, stripe_box: StripeSandbox, amount: str, message: str
) -> None:
    bob_with(shop)
    onboard(stripe_box, shop.post("/me/payouts/connect").headers["Location"])
    shop.post("/me/payouts", amount=amount)
    assert message in page(shop)
    nothing_moved(shop)


def test_a_creator_without_payouts_enabled_is_refused(shop: Site) -> None:
    bob_with(shop)
    shop.post("/me/payouts/connect")  # Stripe's sign-up never finished
    said = page(shop)
    assert "Continue with Stripe" in said and "Withdraw" not in said
    shop.post("/me/payouts", amount="1.80")
    assert "Stripe does not let your account receive payouts yet" in page(shop)
    nothing_moved(shop)


def test_a_post_without_its_csrf_token_moves_nothing(shop: Site, stripe_box: StripeSandbox) -> None:
    bob_with(shop)
    onboard(stripe_box, shop.post("/me/payouts/connect").headers["Location"])
    response = shop.client.post("/me/payouts", data={"amount": "1.80"})
    assert response.status_code in (400, 403)
    assert shop.client.post("/me/payouts/connect", data={}).status_code in (400, 403)
    nothing_moved(shop)


def test_a_forged_connect_webhook_is_refused_and_changes_nothing(
    shop: Site, stripe_box: StripeSandbox
) -> None:
    bob_with(shop)
    account = shop.post("/me/payouts/connect").headers["Location"].split("/")[-2]
    event = {
        "id": "evt_forged",
        "type": "account.updated",
        "account": account,
        "data": {"object": {"id": account, "object": "account", "payouts_enabled": True}},
    }
    body = json.dumps(event).encode()
    hook = shop.browser()
    for header in ("t=1,v1=00", sign(body, WEBHOOK_SECRET), ""):  # the platform secret is wrong
        answer = hook.post(
            "/stripe/webhook/connect", data=body, headers={"Stripe-Signature": header}
        )
        assert answer.status_code == 400
    with shop.engine.connect() as conn:
        assert conn.execute(select(stripe_events.c.id)).first() is None
        assert not conn.execute(select(payout_accounts.c.payouts_enabled)).scalar_one()
    good = hook.post(
        "/stripe/webhook/connect",
        data=body,
        headers={"Stripe-Signature": sign(body, CONNECT_WEBHOOK_SECRET)},
    )
    assert good.status_code == 200
    with shop.engine.connect() as conn:
        assert conn.execute(select(payout_accounts.c.payouts_enabled)).scalar_one()


def test_manual_payout_details_are_encrypted_at_rest_and_shown_masked(
    manual: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bob_with(manual)
    said = page(manual)
    assert "pay withdrawals by hand" in said and "Withdraw" not in said
    manual.post("/me/payouts/details", details=IBAN)
    said = page(manual)
    assert "Now: •••• 3000" in said and "3704" not in said
    with manual.engine.connect() as conn:
        stored = conn.execute(select(payout_accounts)).one()
    assert stored.details_ciphertext and "DE89" not in stored.details_ciphertext
    assert all("0532" not in str(value) for value in stored)
    assert "0532" not in caplog.text
    if manual.engine.dialect.name == "sqlite":
        raw = open(manual.engine.url.database or "", "rb").read()
        assert b"0532" not in raw


def test_manual_payouts_are_exported_marked_paid_or_cancelled_once(
    manual: Site, db_url: str
) -> None:
    bob_with(manual, 2000)
    manual.post("/me/payouts/details", details=IBAN)
    manual.post("/me/payouts", amount="12.00")
    assert "Your withdrawal of €12.00 is on its way" in page(manual)
    env = {
        "DATABASE_URL": db_url,
        "PAYOUT_PROVIDER": "manual",
        "PAYOUT_DETAILS_KEY": KEY,
        "STRIPE_SECRET_KEY": "",
    }
    runner = CliRunner()

    def tipjar(*args: str) -> Any:
        return runner.invoke(main, list(args), env=env, prog_name="tipjar")

    exported = tipjar("payouts", "export", "--csv")
    assert exported.exit_code == 0, exported.output
    lines = exported.stdout.strip().splitlines()
    assert lines[0] == "id,creator,amount,currency,details,requested_at"
    assert lines[1].startswith(f"1,@bob,12.00,EUR,{IBAN},")

    paid = tipjar("payouts", "mark-paid", "1", "--reference", "bank-0107")
    assert paid.exit_code == 0 and "posted as bank-0107" in paid.stdout
    again = tipjar("payouts", "mark-paid", "1", "--reference", "bank-0108")
    assert again.exit_code == 1 and "already paid as bank-0107" in again.stderr
    assert tipjar("payouts", "export", "--csv").stdout.strip().count("\n") == 0

    manual.post("/me/payouts", amount="8.00")
    cancelled = tipjar("payouts", "cancel", "2")
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout
    assert tipjar("payouts", "cancel", "2").exit_code == 1
    listed = tipjar("payouts", "list", "--json")
    states = {p["id"]: (p["state"], p["reference"]) for p in json.loads(listed.stdout)["payouts"]}
    assert states == {1: ("posted", "bank-0107"), 2: ("voided", None)}
    shown = json.loads(tipjar("accounts", "show", "@bob", "--json").stdout)
    assert (shown["paid_out_minor"], shown["in_payout_minor"], shown["available_minor"]) == (
        1200,
        0,
        800,
    )
    assert tipjar("audit").exit_code == 0
