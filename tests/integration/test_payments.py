"""Card payments end to end below the web pages: the real `stripe` client against the loopback
Stripe sandbox (or `responses`), signed webhooks into the ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
import responses
from prometheus_client import REGISTRY
from sqlalchemy import Engine, func, select

from bot.config import Settings, load_settings
from bot.payments import checkout
from bot.payments.gateway import PaymentsUnavailable, StripeGateway
from bot.payments.sandbox import SECRET_KEY, WEBHOOK_SECRET, StripeSandbox, sign
from bot.payments.webhooks import receive_webhook
from escrow import funding
from escrow.audit import check_ledger
from escrow.db import transaction
from escrow.ledger import Identity, Policy, TipStatus, ensure_account, find_account
from escrow.money import Money
from escrow.schema import budgets, deposits, stripe_events, subscriptions, topups
from escrow.tips import tip
from tests.conftest import Clock

POLICY = Policy(currency="EUR", fee_percent=10, hold_period=timedelta(days=90))
ALICE = Identity.x("1", "alice")
BOB = Identity.x("2", "bob")


def eur(minor: int) -> Money:
    return Money(minor, "EUR")


@pytest.fixture
def sandbox() -> Iterator[StripeSandbox]:
    box = StripeSandbox()
    box.start()
    yield box
    box.stop()


def settings_for(base: str) -> Settings:
    return load_settings(
        {
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": base,
            "PUBLIC_BASE_URL": "http://127.0.0.1:8000",
        },
        env_file=None,
    )


@pytest.fixture
def wired(engine: Engine, sandbox: StripeSandbox, clock: Clock) -> StripeSandbox:
    """The sandbox delivering its events straight into the webhook receiver."""
    clock.now = clock.now.replace(year=2026)

    def deliver(body: bytes, header: str) -> int:
        return receive_webhook(engine, POLICY, clock, body, header, WEBHOOK_SECRET).status

    sandbox.deliver = deliver
    return sandbox


def alice_id(engine: Engine) -> int:
    return int(transaction(engine, lambda c: ensure_account(c, ALICE, Clock()())))


def available(engine: Engine, who: Identity = ALICE) -> int:
    with engine.connect() as conn:
        row = find_account(conn, who)
    assert row is not None
    return int(row.credits_posted - row.debits_posted - row.debits_pending)


def count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def topup(engine: Engine, box: StripeSandbox, clock: Clock, minor: int) -> str:
    """Alice starts a top-up; returns the checkout session id (not paid yet)."""
    gateway = StripeGateway(settings_for(box.base_url), max_network_retries=0)
    session = checkout.start_topup(
        engine, settings_for(box.base_url), POLICY, gateway, clock, alice_id(engine), eur(minor)
    )
    return session.session_id


def audit_clean(engine: Engine) -> None:
    with engine.connect() as conn:
        assert check_ledger(conn) == []


# --- creating the checkout ---------------------------------------------------------------


def test_a_top_up_opens_a_checkout_session_with_its_idempotency_key_and_fields(
    engine: Engine, sandbox: StripeSandbox, clock: Clock
) -> None:
    session_id = topup(engine, sandbox, clock, 1000)
    method, path, params, key = sandbox.requests_seen[-1]
    with engine.connect() as conn:
        row = conn.execute(select(topups)).one()
    assert (method, path, key) == ("POST", "/v1/checkout/sessions", f"topup-{row.id}")
    assert params["mode"] == "payment"
    assert params["client_reference_id"] == str(row.id)
    assert params["metadata"] == {"tipjar_topup_id": str(row.id)}
    price = params["line_items"]["0"]["price_data"]
    assert (price["unit_amount"], price["currency"]) == ("1000", "eur")
    assert params["success_url"].startswith("http://127.0.0.1:8000/me")
    assert params["cancel_url"] == "http://127.0.0.1:8000/me"
    assert (row.state, row.checkout_session_id) == ("pending", session_id)
    assert count(engine, deposits) == 0  # nothing is credited before Stripe says it was paid


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500, "json": {"error": {"type": "api_error", "message": "boom"}}},
        {"body": requests.exceptions.ConnectTimeout("timed out")},
    ],
    ids=["stripe-5xx", "timeout"],
)
def test_stripe_down_leaves_the_top_up_pending_and_credits_nothing(
    engine: Engine, clock: Clock, failure: dict
) -> None:  # type: ignore[type-arg]
    base = "http://127.0.0.1:9"
    settings = settings_for(base)
    gateway = StripeGateway(settings, max_network_retries=0)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, f"{base}/v1/checkout/sessions", **failure)
        with pytest.raises(PaymentsUnavailable):
            checkout.start_topup(
                engine, settings, POLICY, gateway, clock, alice_id(engine), eur(500)
            )
        sent = mock.calls[0].request
    assert sent.headers["Idempotency-Key"] == "topup-1"
    with engine.connect() as conn:
        assert conn.execute(select(topups.c.state, topups.c.checkout_session_id)).one() == (
            "pending",
            None,
        )
    assert count(engine, deposits) == 0
    assert available(engine) == 0


# --- webhooks ----------------------------------------------------------------------------


def test_paying_in_the_sandbox_credits_the_top_up_once_even_when_redelivered(
    engine: Engine, wired: StripeSandbox, clock: Clock
) -> None:
    session_id = topup(engine, wired, clock, 1000)
    seen = webhooks_counted("checkout.session.completed")
    wired.pay(session_id)
    assert [d.status for d in wired.deliveries] == [200]
    assert available(engine) == 1000
    event = wired.deliveries[0].event
    for _ in range(3):
        assert wired.send(event) == 200
    assert available(engine) == 1000
    assert webhooks_counted("checkout.session.completed") == {
        "applied": seen["applied"] + 1,
        "duplicate": seen["duplicate"] + 3,
    }
    assert count(engine, stripe_events) == 1
    with engine.connect() as conn:
        row = conn.execute(select(topups)).one()
    intent = wired.objects[session_id]["payment_intent"]
    assert (row.state, row.deposit_reference) == ("paid", f"stripe:{intent}")
    audit_clean(engine)


def webhooks_counted(event_type: str) -> dict[str, float]:
    """The metrics' count of webhook events of `event_type`, by result."""
    return {
        result: REGISTRY.get_sample_value(
            "tipjar_webhook_events_total", {"type": event_type, "result": result}
        )
        or 0.0
        for result in ("applied", "duplicate")
    }


@pytest.mark.parametrize("how", ["forged", "missing", "stale", "other-secret"])
def test_a_webhook_without_a_good_signature_is_refused_and_changes_nothing(
    engine: Engine, wired: StripeSandbox, clock: Clock, how: str
) -> None:
    session_id = topup(engine, wired, clock, 1000)
    wired.hold_events = True
    wired.pay(session_id)
    (event,) = wired.queued
    body = json.dumps(event).encode()
    header = {
        "forged": sign(body, WEBHOOK_SECRET).replace("v1=", "v1=0"),
        "missing": "",
        "stale": sign(body, WEBHOOK_SECRET, timestamp=int(time.time()) - 301),
        "other-secret": sign(body, "whsec_someone_else"),
    }[how]
    answer = receive_webhook(engine, POLICY, clock, body, header or None, WEBHOOK_SECRET)
    assert answer.status == 400
    assert count(engine, stripe_events) == 0
    assert count(engine, deposits) == 0


def test_a_payment_in_the_wrong_currency_credits_nothing_and_shows_as_a_problem(
    engine: Engine, wired: StripeSandbox, clock: Clock
) -> None:
    session_id = topup(engine, wired, clock, 1000)
    wired.objects[session_id]["currency"] = "usd"
    wired.pay(session_id)
    assert [d.status for d in wired.deliveries] == [200]
    assert available(engine) == 0
    with engine.connect() as conn:
        row = conn.execute(select(topups)).one()
        result = conn.execute(select(stripe_events.c.result)).scalar_one()
    assert row.state == "problem" and "USD" in row.problem
    assert result.startswith("problem")
    audit_clean(engine)


def test_a_refund_delivered_before_the_payment_is_applied_once_the_payment_arrives(
    engine: Engine, wired: StripeSandbox, clock: Clock
) -> None:
    session_id = topup(engine, wired, clock, 1000)
    wired.hold_events = True
    wired.pay(session_id)
    wired.refund(wired.objects[session_id]["payment_intent"], 400)
    completed, refunded = wired.queued
    assert refunded["type"] == "charge.refunded"
    assert wired.send(refunded) == 200
    assert available(engine) == 0  # nothing to take yet: the refund waits
    assert wired.send(completed) == 200
    assert available(engine) == 600
    for event in (refunded, completed):
        assert wired.send(event) == 200
    assert available(engine) == 600
    audit_clean(engine)


def test_a_refund_larger_than_what_is_left_voids_holds_and_leaves_a_debt_that_blocks_tips(
    engine: Engine, wired: StripeSandbox, clock: Clock
) -> None:
    first = topup(engine, wired, clock, 1000)
    wired.pay(first)
    carol = Identity.x("3", "carol")
    from escrow import claims

    transaction(engine, lambda c: claims.claim(c, POLICY, carol, clock()))
    transaction(engine, lambda c: tip(c, POLICY, ALICE, carol, eur(600), "t1", clock()))
    held = transaction(engine, lambda c: tip(c, POLICY, ALICE, BOB, eur(300), "t2", clock()))
    assert held.status == TipStatus.HELD
    wired.refund(wired.objects[first]["payment_intent"])
    assert available(engine) == 0
    blocked = transaction(engine, lambda c: tip(c, POLICY, ALICE, carol, eur(10), "t3", clock()))
    assert (blocked.status, blocked.owed) == (TipStatus.INSUFFICIENT_FUNDS, eur(600))
    audit_clean(engine)

    second = topup(engine, wired, clock, 1000)
    wired.pay(second)
    assert available(engine) == 400  # the €6 debt was paid first
    again = transaction(engine, lambda c: tip(c, POLICY, ALICE, carol, eur(10), "t4", clock()))
    assert again.status == TipStatus.POSTED
    audit_clean(engine)


def test_a_dispute_freezes_the_payment_and_a_lost_one_takes_it(
    engine: Engine, wired: StripeSandbox, clock: Clock
) -> None:
    session_id = topup(engine, wired, clock, 1000)
    wired.pay(session_id)
    dispute = wired.dispute(wired.objects[session_id]["payment_intent"])
    assert available(engine) == 0
    wired.close_dispute(dispute["id"], won=False)
    assert available(engine) == 0
    with engine.connect() as conn:
        row = find_account(conn, ALICE)
    assert row is not None and row.debits_pending == 0 and row.debits_posted == 1000
    audit_clean(engine)


def test_a_monthly_budget_by_card_credits_each_month_and_sets_the_budget(
    engine: Engine, wired: StripeSandbox, clock: Clock
) -> None:
    settings = settings_for(wired.base_url)
    gateway = StripeGateway(settings, max_network_retries=0)
    session = checkout.start_subscription(
        engine, settings, POLICY, gateway, clock, alice_id(engine), eur(500)
    )
    params = wired.requests_seen[-1][2]
    assert params["mode"] == "subscription"
    assert params["line_items"]["0"]["price_data"]["recurring"] == {"interval": "month"}
    wired.pay(session.session_id)
    assert [d.event["type"] for d in wired.deliveries] == [
        "checkout.session.completed",
        "invoice.paid",
    ]
    assert available(engine) == 500
    sub_id = wired.objects[session.session_id]["subscription"]
    wired.renew(sub_id)
    assert available(engine) == 1000
    with engine.connect() as conn:
        assert conn.execute(select(budgets.c.monthly_budget_minor)).scalar() == 500
        row = conn.execute(select(subscriptions)).one()
    assert (row.state, row.months_paid, row.provider_subscription_id) == ("active", 2, sub_id)
    gateway.cancel_at_period_end(row.id, sub_id)
    with engine.connect() as conn:
        assert conn.execute(select(subscriptions.c.state)).scalar() == "canceling"
    audit_clean(engine)


def test_an_event_of_another_type_is_recorded_and_changes_nothing(
    engine: Engine, wired: StripeSandbox, clock: Clock
) -> None:
    event = {"id": "evt_other", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}
    assert wired.send(event) == 200
    with engine.connect() as conn:
        assert conn.execute(select(stripe_events.c.type, stripe_events.c.result)).one() == (
            "customer.created",
            "ignored: not a type tipjar acts on",
        )


def test_one_event_delivered_by_eight_threads_at_once_is_credited_once(
    pg_engine: Engine, sandbox: StripeSandbox, clock: Clock
) -> None:
    engine = pg_engine
    sandbox.hold_events = True
    session_id = topup(engine, sandbox, clock, 1000)
    sandbox.pay(session_id)
    (event,) = sandbox.queued
    body = json.dumps(event).encode()
    header = sign(body, WEBHOOK_SECRET)
    start = threading.Barrier(8)
    answers: list[int] = []

    def deliver() -> None:
        start.wait()
        answers.append(receive_webhook(engine, POLICY, clock, body, header, WEBHOOK_SECRET).status)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 8
    assert available(engine) == 1000
    assert count(engine, deposits) == 1
    audit_clean(engine)


def test_funding_errors_name_the_limits(
    engine: Engine, sandbox: StripeSandbox, clock: Clock
) -> None:
    settings = settings_for(sandbox.base_url)
    gateway = StripeGateway(settings, max_network_retries=0)
    with pytest.raises(funding.FundingError, match="smallest"):
        checkout.start_topup(engine, settings, POLICY, gateway, clock, alice_id(engine), eur(100))
    assert count(engine, topups) == 0


def test_partial_refunds_of_a_charge_without_its_refund_list_take_each_new_part_once(
    engine: Engine, wired: StripeSandbox, clock: Clock
) -> None:
    session_id = topup(engine, wired, clock, 1000)
    wired.pay(session_id)
    intent = wired.objects[session_id]["payment_intent"]
    for part in (300, 200):
        wired.refund(intent, part)
        event = wired.events[-1]
        event["data"]["object"]["refunds"] = None  # as an API version without the list sends it
        event["id"] += "-bare"
        assert wired.send(event) == 200
    # Each event came twice (with the list, and bare): each refund was taken once.
    assert available(engine) == 500
    audit_clean(engine)
