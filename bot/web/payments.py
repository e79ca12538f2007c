"""Adding money on /me: card top-ups and a monthly budget by card, and Stripe's webhook.

`POST /me/topup` and `POST /me/subscription` write their row and send the browser (303)
to Stripe Checkout; nothing is credited until Stripe's signed event arrives at
`POST /stripe/webhook`, which records it once and applies it in one transaction, so /me
shows the new balance as soon as the browser comes back. When Stripe cannot be reached the
row stays pending and /me offers to try again with the same row (the same idempotency
key, so Stripe never opens two checkouts for one top-up). Without STRIPE_SECRET_KEY the
section says how this operator takes money instead.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, flash, redirect, request, session, url_for
from sqlalchemy import Connection, select
from werkzeug.wrappers import Response as BaseResponse

from bot.config import Settings
from bot.payments import checkout
from bot.payments.gateway import (
    Checkout,
    PaymentRefused,
    PaymentsUnavailable,
    StripeGateway,
)
from bot.payments.webhooks import receive_webhook
from bot.web.context import Web
from bot.web.security import log
from escrow import funding
from escrow.db import transaction
from escrow.debts import open_debt
from escrow.ledger import LedgerError
from escrow.money import Money, MoneyError, currency
from escrow.schema import accounts, subscriptions, topups

RECENT_TOPUPS = 5
CHECKOUT_ORIGIN = "https://checkout.stripe.com"
STRIPE_API = "https://api.stripe.com"


def form_targets(settings: Settings) -> list[str]:
    """Where an "Add money" form's redirect may lead: Stripe Checkout (or the sandbox)."""
    if not settings.topups_enabled:
        return []
    if settings.stripe_api_base == STRIPE_API:
        return [CHECKOUT_ORIGIN]
    return [CHECKOUT_ORIGIN, settings.stripe_api_base]


def parse_amount(raw: str, code: str) -> Money:
    """``5``, ``5.00``, ``€5``, ``5 EUR`` -> Money; raises MoneyError for anything else."""
    cur = currency(code)
    cleaned = raw.strip()
    for mark in (cur.symbol.strip(), cur.code, cur.code.lower()):
        cleaned = cleaned.removeprefix(mark).removesuffix(mark).strip()
    return Money.parse(cleaned, cur.code)


def _signed_in(conn: Connection) -> Any | None:
    account_id = session.get("account_id")
    if not isinstance(account_id, int) or isinstance(account_id, bool):
        return None
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).one_or_none()
    if row is None or row.status not in ("claimed", "refusing"):
        return None
    return row


def _live_subscription(conn: Connection, account_id: int) -> Any | None:
    return conn.execute(
        select(subscriptions)
        .where(
            subscriptions.c.account_id == account_id,
            subscriptions.c.state.in_(("active", "canceling", "pending")),
        )
        .order_by(subscriptions.c.id.desc())
        .limit(1)
    ).one_or_none()


def money_in_view(web: Web, conn: Connection, account_id: int) -> dict[str, Any]:
    """What the "Add money" section of /me shows for `account_id`."""
    recent = conn.execute(
        select(topups)
        .where(topups.c.account_id == account_id)
        .order_by(topups.c.id.desc())
        .limit(RECENT_TOPUPS)
    ).all()
    retry = session.get("retry_topup")
    return {
        "enabled": web.settings.topups_enabled,
        "choices": web.settings.topup_choices,
        "min": web.settings.topup_min,
        "max": web.settings.topup_max,
        "topups": recent,
        "retry": next((t for t in recent if t.id == retry and t.state == "pending"), None),
        "subscription": _live_subscription(conn, account_id),
        "owed": web.policy.money(open_debt(conn, account_id)),
        "paid_back": request.args.get("paid") == "1",
    }


def register(app: Flask, web: Web, gateway: StripeGateway | None = None) -> None:
    settings = web.settings
    state: dict[str, StripeGateway] = {} if gateway is None else {"gateway": gateway}

    def stripe_gateway() -> StripeGateway:
        if "gateway" not in state:
            state["gateway"] = StripeGateway(settings)
        return state["gateway"]

    @app.context_processor
    def money_in() -> dict[str, Any]:
        if request.endpoint != "me":
            return {}
        with web.engine.connect() as conn:
            row = _signed_in(conn)
            if row is None:
                return {}
            return {"money_in": money_in_view(web, conn, int(row.id))}

    def back(message: str, category: str) -> BaseResponse:
        flash(message, category)
        return redirect(url_for("me"), 303)

    def amount_from_form() -> Money | str:
        raw = request.form.get("amount", "").strip()
        try:
            amount = parse_amount(raw, settings.currency)
            funding.check_amount(web.policy, amount, settings.topup_min, settings.topup_max)
        except MoneyError:
            return f"“{raw[:20]}” is not an amount. Write it like 10.00."
        except LedgerError as e:
            return f"Nothing was charged: {e}."
        return amount

    def go_to_checkout(start: Any, what: str) -> BaseResponse:
        try:
            opened: Checkout = start()
        except PaymentsUnavailable:
            return back(
                f"Stripe could not be reached, so {what} did not start and nothing was"
                " charged. Please try again in a moment.",
                "problem",
            )
        except PaymentRefused as e:
            log.warning("Stripe refused a checkout: %s", e)
            return back(f"Stripe refused {what}; nothing was charged.", "problem")
        except LedgerError as e:
            return back(f"Nothing was charged: {e}.", "problem")
        session.pop("retry_topup", None)
        return redirect(opened.url, 303)

    @app.post("/me/topup")
    def topup() -> BaseResponse:
        with web.engine.connect() as conn:
            row = _signed_in(conn)
        if row is None:
            return redirect(url_for("claim_page"), 303)
        if not settings.topups_enabled:
            return back("Card payments are not available here.", "problem")
        retry = _retryable(web, int(row.id), request.form.get("topup_id", ""))
        if retry is not None:
            amount: Money | str = web.policy.money(int(retry.amount_minor))
        else:
            amount = amount_from_form()
        if isinstance(amount, str):
            return back(amount, "problem")
        gateway = stripe_gateway()

        def start() -> Checkout:
            if retry is not None:
                return checkout.reopen_topup(web.engine, gateway, web.clock, retry)
            try:
                return checkout.start_topup(
                    web.engine, settings, web.policy, gateway, web.clock, int(row.id), amount
                )
            except PaymentsUnavailable:
                session["retry_topup"] = _latest_pending(web, int(row.id))
                raise

        return go_to_checkout(start, f"your top-up of {amount}")

    @app.post("/me/subscription")
    def subscribe() -> BaseResponse:
        with web.engine.connect() as conn:
            row = _signed_in(conn)
        if row is None:
            return redirect(url_for("claim_page"), 303)
        if not settings.topups_enabled:
            return back("Card payments are not available here.", "problem")
        amount = amount_from_form()
        if isinstance(amount, str):
            return back(amount, "problem")
        gateway = stripe_gateway()
        return go_to_checkout(
            lambda: checkout.start_subscription(
                web.engine, settings, web.policy, gateway, web.clock, int(row.id), amount
            ),
            f"your monthly budget of {amount}",
        )

    @app.post("/me/subscription/cancel")
    def cancel_subscription() -> BaseResponse:
        with web.engine.connect() as conn:
            row = _signed_in(conn)
            sub = _live_subscription(conn, int(row.id)) if row is not None else None
        if row is None:
            return redirect(url_for("claim_page"), 303)
        if sub is None or sub.state != "active" or not sub.provider_subscription_id:
            return back("You have no monthly payment to cancel.", "problem")
        try:
            stripe_gateway().cancel_at_period_end(int(sub.id), sub.provider_subscription_id)
        except (PaymentsUnavailable, PaymentRefused):
            return back(
                "Stripe could not be reached; nothing changed. Please try again.", "problem"
            )
        transaction(web.engine, lambda conn: funding.cancel_requested(conn, sub.id, web.now()))
        return back("Your monthly payment stops at the end of the month already paid.", "ok")

    @app.post("/stripe/webhook")
    def stripe_webhook() -> tuple[dict[str, Any], int]:
        answer = receive_webhook(
            web.engine,
            web.policy,
            web.clock,
            request.get_data(cache=False),
            request.headers.get("Stripe-Signature"),
            settings.stripe_webhook_secret,
        )
        return {"received": answer.status == 200}, answer.status


def _retryable(web: Web, account_id: int, raw: str) -> Any | None:
    """The supporter's own pending top-up `raw` that never got its checkout, if any."""
    if not raw.isdigit():
        return None
    with web.engine.connect() as conn:
        return conn.execute(
            select(topups).where(
                topups.c.id == int(raw),
                topups.c.account_id == account_id,
                topups.c.state == "pending",
            )
        ).one_or_none()


def _latest_pending(web: Web, account_id: int) -> int | None:
    with web.engine.connect() as conn:
        return conn.execute(
            select(topups.c.id)
            .where(topups.c.account_id == account_id, topups.c.state == "pending")
            .order_by(topups.c.id.desc())
            .limit(1)
        ).scalar()
