"""Stripe webhooks: verify the signature, then record and apply each event exactly once.

`receive_webhook` is what `POST /stripe/webhook` calls with the raw body and the
`Stripe-Signature` header. The signature is checked with `stripe.Webhook.construct_event`
(HMAC-SHA256 with the endpoint's `whsec_` secret over `"<t>.<body>"`, at most 300 s old);
a missing, wrong or stale signature is a 400 and nothing is read or changed. A verified
event goes to `escrow.events.receive` in one transaction: the event id is recorded with
the effect, so a redelivery answers 200 and changes nothing.

The handlers below read Stripe's event shapes (the `data.object` of each type) and call
`escrow.funding`; they are registered by event type for the `platform` endpoint. Payouts
register theirs for the `connect` endpoint the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from sqlalchemy import Connection, Engine, func, select

from bot.metrics import observe_webhook
from escrow import events, funding
from escrow.db import transaction
from escrow.ledger import Clock, Policy
from escrow.schema import reversals, topups

log = logging.getLogger(__name__)

TOLERANCE_SECONDS = 300
PLATFORM = "platform"


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    message: str


def verify(body: bytes, header: str | None, secret: str) -> dict[str, Any]:
    """The event in `body` if its signature is good; raises ValueError otherwise."""
    if not secret:
        raise ValueError("no webhook secret is configured")
    if not header:
        raise ValueError("no Stripe-Signature header")
    try:
        stripe.Webhook.construct_event(body, header, secret, tolerance=TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as e:
        raise ValueError(f"bad signature: {e.user_message or 'no match'}") from None
    event = json.loads(body)
    if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
        raise ValueError("not an event")
    return event


def receive_webhook(
    engine: Engine,
    policy: Policy,
    clock: Clock,
    body: bytes,
    header: str | None,
    secret: str,
    endpoint: str = PLATFORM,
) -> WebhookAnswer:
    """Verify, record and apply one delivery; the HTTP status to answer Stripe with."""
    try:
        event = verify(body, header, secret)
    except ValueError as e:
        log.info("webhook refused: %s", e)
        observe_webhook("unverified", "refused")
        return WebhookAnswer(400, "signature verification failed")
    received = transaction(
        engine, lambda conn: events.receive(conn, policy, event, endpoint, clock())
    )
    log.info(
        "webhook %s %s: %s",
        received.event_type,
        received.event_id,
        received.result,
    )
    observe_webhook(received.event_type, _outcome(received))
    return WebhookAnswer(200, received.result)


def _outcome(received: events.Received) -> str:
    """A bounded label for the metrics: the recorded result is free text."""
    if received.duplicate:
        return "duplicate"
    for outcome in ("ignored", "problem"):
        if received.result.startswith(outcome):
            return outcome
    return "applied"


# --- reading Stripe's objects -------------------------------------------------------------


def _object(event: Mapping[str, Any]) -> Mapping[str, Any]:
    obj = event["data"]["object"]
    if not isinstance(obj, Mapping):
        raise TypeError("data.object is not an object")
    return obj


def _row_id(value: Any) -> int | None:
    text = str(value or "").removeprefix("subscription-")
    return int(text) if text.isdigit() else None


def _time(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _id(value: Any) -> str | None:
    """An id that may come expanded (an object with `id`) or as a plain string."""
    if isinstance(value, Mapping):
        return str(value.get("id") or "") or None
    return str(value) if value else None


# --- handlers -------------------------------------------------------------------------------


@events.handles(PLATFORM, "checkout.session.completed", "checkout.session.async_payment_succeeded")
def checkout_paid(conn: Connection, policy: Policy, event: Any, now: datetime) -> str:
    session = _object(event)
    metadata = session.get("metadata") or {}
    if session.get("mode") == "subscription":
        sub_row = _row_id(
            metadata.get("tipjar_subscription_id") or session.get("client_reference_id")
        )
        if sub_row is None:
            return "ignored: not a tipjar subscription"
        return funding.subscription_started(
            conn, sub_row, _id(session.get("subscription")), _id(session.get("customer")), now
        )
    topup_id = _row_id(metadata.get("tipjar_topup_id") or session.get("client_reference_id"))
    if topup_id is None:
        return "ignored: not a tipjar top-up"
    if session.get("payment_status") != "paid":
        # A delayed method (bank debit): the money is credited on async_payment_succeeded.
        return f"waiting: payment_status is {session.get('payment_status')}"
    payment_id = _id(session.get("payment_intent")) or str(session["id"])
    return funding.credit_topup(
        conn,
        policy,
        topup_id,
        payment_id,
        int(session["amount_total"]),
        str(session["currency"]),
        now,
    )


@events.handles(PLATFORM, "checkout.session.async_payment_failed", "checkout.session.expired")
def checkout_failed(conn: Connection, policy: Policy, event: Any, now: datetime) -> str:
    session = _object(event)
    topup_id = _row_id((session.get("metadata") or {}).get("tipjar_topup_id"))
    if topup_id is None or session.get("mode") != "payment":
        return "ignored: not a tipjar top-up"
    state = conn.execute(select(topups.c.state).where(topups.c.id == topup_id)).scalar()
    if state != "pending":
        return f"ignored: top-up is {state}"
    reason = "payment failed" if event["type"].endswith("failed") else "checkout expired"
    funding.mark_failed(conn, topup_id, reason, now)
    return f"top-up {topup_id} failed: {reason}"


def _invoice_subscription(invoice: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """Our subscription row and Stripe's subscription id, wherever this API version put them."""
    details = (invoice.get("parent") or {}).get("subscription_details") or invoice.get(
        "subscription_details"
    )
    details = details or {}
    lines = (invoice.get("lines") or {}).get("data") or [{}]
    metadata = details.get("metadata") or lines[0].get("metadata") or {}
    provider_id = _id(details.get("subscription")) or _id(invoice.get("subscription"))
    return _row_id(metadata.get("tipjar_subscription_id")), provider_id


@events.handles(PLATFORM, "invoice.paid")
def invoice_paid(conn: Connection, policy: Policy, event: Any, now: datetime) -> str:
    invoice = _object(event)
    if int(invoice.get("amount_paid") or 0) <= 0:
        return "ignored: nothing was paid"
    sub_row, provider_id = _invoice_subscription(invoice)
    if sub_row is None and provider_id is None:
        return "ignored: not a subscription invoice"
    lines = (invoice.get("lines") or {}).get("data") or [{}]
    period_end = _time((lines[0].get("period") or {}).get("end") or invoice.get("period_end"))
    return funding.credit_invoice(
        conn,
        policy,
        funding.Invoice(
            invoice_id=str(invoice["id"]),
            subscription_row=sub_row,
            provider_subscription_id=provider_id,
            customer_id=_id(invoice.get("customer")),
            amount_minor=int(invoice["amount_paid"]),
            currency=str(invoice["currency"]),
            period_end=period_end,
            payment_id=_id(invoice.get("payment_intent")),
        ),
        now,
    )


@events.handles(PLATFORM, "customer.subscription.updated", "customer.subscription.deleted")
def subscription_updated(conn: Connection, policy: Policy, event: Any, now: datetime) -> str:
    sub = _object(event)
    items = (sub.get("items") or {}).get("data") or [{}]
    period_end = sub.get("current_period_end") or items[0].get("current_period_end")
    return funding.subscription_changed(
        conn,
        str(sub["id"]),
        status="canceled" if event["type"].endswith("deleted") else str(sub.get("status")),
        cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
        period_end=_time(period_end),
        now=now,
    )


def _charge_payment(charge: Mapping[str, Any]) -> str:
    return _id(charge.get("invoice")) or _id(charge.get("payment_intent")) or str(charge["id"])


@events.handles(PLATFORM, "charge.refunded")
def charge_refunded(conn: Connection, policy: Policy, event: Any, now: datetime) -> str:
    charge = _object(event)
    payment_id = _charge_payment(charge)
    refunds = [
        r
        for r in ((charge.get("refunds") or {}).get("data") or [])
        if r.get("status") in ("succeeded", "pending")
    ]
    if not refunds:
        # The charge came without its refunds listed: what was refunded beyond what is
        # recorded for this charge is one refund, named by the charge and its new total.
        total = int(charge.get("amount_refunded") or 0)
        recorded = int(
            conn.execute(
                select(func.coalesce(func.sum(reversals.c.amount_minor), 0)).where(
                    reversals.c.charge_id == str(charge["id"]), reversals.c.kind == "refund"
                )
            ).scalar_one()
        )
        if total <= recorded:
            return "already recorded: nothing refunded beyond what was taken"
        refund_id = f"{charge['id']}-{total}"
        refunds = [{"id": refund_id, "amount": total - recorded, "currency": charge["currency"]}]
    results = [
        funding.take_back(
            conn,
            policy,
            funding.Reversal(
                kind="refund",
                provider_id=str(r["id"]),
                payment_id=payment_id,
                charge_id=str(charge["id"]),
                amount_minor=int(r["amount"]),
                currency=str(r.get("currency") or charge["currency"]),
                customer_id=_id(charge.get("customer")),
            ),
            now,
        )
        for r in refunds
    ]
    return "; ".join(results)


@events.handles(PLATFORM, "charge.dispute.created")
def dispute_created(conn: Connection, policy: Policy, event: Any, now: datetime) -> str:
    dispute = _object(event)
    payment_id = _id(dispute.get("payment_intent")) or _id(dispute.get("charge"))
    if payment_id is None:
        return "problem: the dispute names no payment"
    return funding.take_back(
        conn,
        policy,
        funding.Reversal(
            kind="dispute",
            provider_id=str(dispute["id"]),
            payment_id=payment_id,
            charge_id=_id(dispute.get("charge")),
            amount_minor=int(dispute["amount"]),
            currency=str(dispute["currency"]),
        ),
        now,
    )


@events.handles(PLATFORM, "charge.dispute.closed")
def dispute_closed(conn: Connection, policy: Policy, event: Any, now: datetime) -> str:
    dispute = _object(event)
    won = dispute.get("status") in ("won", "warning_closed")
    return funding.close_dispute(conn, policy, str(dispute["id"]), won, now)
