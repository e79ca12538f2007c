"""Starting a payment from /me: the row first, then Stripe's checkout, then the row learns it.

A top-up (or subscription) row is committed before Stripe is asked for a Checkout Session,
with the idempotency key `topup-<id>` (`subscription-<id>`): if Stripe is down or slow the
row simply stays `pending` (nothing is charged, nothing credited) and the supporter can try
again; if Stripe answered but our process died before saving the session id, the next
attempt with the same key gets the same session back. Stripe's refusal marks the row failed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from bot.config import Settings
from bot.payments.gateway import Checkout, PaymentRefused, StripeGateway
from escrow import funding
from escrow.db import transaction
from escrow.ledger import Clock, Policy
from escrow.money import Money
from escrow.schema import subscriptions, topups


def start_topup(
    engine: Engine,
    settings: Settings,
    policy: Policy,
    gateway: StripeGateway,
    clock: Clock,
    account_id: int,
    amount: Money,
) -> Checkout:
    """Write the top-up and open its checkout; raises PaymentsUnavailable or FundingError."""
    funding.check_amount(policy, amount, settings.topup_min, settings.topup_max)
    topup_id = transaction(
        engine, lambda conn: funding.start_topup(conn, policy, account_id, amount, clock())
    )
    return _open_topup(engine, gateway, clock, topup_id, amount.minor, policy.currency)


def reopen_topup(engine: Engine, gateway: StripeGateway, clock: Clock, row: Any) -> Checkout:
    """Try a pending top-up's checkout again: the same row, the same idempotency key."""
    return _open_topup(engine, gateway, clock, int(row.id), int(row.amount_minor), row.currency)


def _open_topup(
    engine: Engine,
    gateway: StripeGateway,
    clock: Clock,
    topup_id: int,
    amount_minor: int,
    code: str,
) -> Checkout:
    try:
        checkout = gateway.topup_session(topup_id, amount_minor, code)
    except PaymentRefused as refused:
        reason = str(refused)
        transaction(engine, lambda conn: funding.mark_failed(conn, topup_id, reason, clock()))
        raise
    transaction(
        engine,
        lambda conn: funding.session_created(conn, topups, topup_id, checkout.session_id, clock()),
    )
    return checkout


def start_subscription(
    engine: Engine,
    settings: Settings,
    policy: Policy,
    gateway: StripeGateway,
    clock: Clock,
    account_id: int,
    amount: Money,
) -> Checkout:
    """Write the subscription and open its checkout (monthly payments of `amount`)."""
    funding.check_amount(policy, amount, settings.topup_min, settings.topup_max)
    sub_id = transaction(
        engine,
        lambda conn: funding.start_subscription(conn, policy, account_id, amount, clock()),
    )
    checkout = gateway.subscription_session(sub_id, amount.minor, policy.currency)
    transaction(
        engine,
        lambda conn: funding.session_created(
            conn, subscriptions, sub_id, checkout.session_id, clock()
        ),
    )
    return checkout
