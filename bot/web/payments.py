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

from collections.abc import Callable
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


def _back(message: str, category: str) -> BaseResponse:
    flash(message, category)
    return redirect(url_for("me"), 303)


class MoneyInPages:
    """The routes of adding money, bound to one app's `Web` and Stripe gateway."""

    def __init__(self, web: Web, gateway: StripeGateway | None) -> None:
        self.web = web
        self.settings = web.settings
        self._gateway = gateway

    @property
    def gateway(self) -> StripeGateway:
        if self._gateway is None:
            self._gateway = StripeGateway(self.settings)
        return self._gateway

    def context(self) -> dict[str, Any]:
        """The "Add money" section's values, for /me only."""
        if request.endpoint != "me":
            return {}
        with self.web.engine.connect() as conn:
            row = _signed_in(conn)
            if row is None:
                return {}
            return {"money_in": money_in_view(self.web, conn, int(row.id))}

    def _amount(self) -> Money | str:
        """The form's amount within the limits, or why not."""
        raw = request.form.get("amount", "").strip()
        try:
            amount = parse_amount(raw, self.settings.currency)
            funding.check_amount(
                self.web.policy, amount, self.settings.topup_min, self.settings.topup_max
            )
        except MoneyError:
            return f"“{raw[:20]}” is not an amount. Write it like 10.00."
        except LedgerError as e:
            return f"Nothing was charged: {e}."
        return amount

    def _checkout(self, start: Callable[[], Checkout], what: str) -> BaseResponse:
        try:
            opened = start()
        except PaymentsUnavailable:
            return _back(
                f"Stripe could not be reached, so {what} did not start and nothing was"
                " charged. Please try again in a moment.",
                "problem",
            )
        except PaymentRefused as e:
            log.warning("Stripe refused a checkout: %s", e)
            return _back(f"Stripe refused {what}; nothing was charged.", "problem")
        except LedgerError as e:
            return _back(f"Nothing was charged: {e}.", "problem")
        session.pop("retry_topup", None)
        return redirect(opened.url, 303)

    def _supporter(self) -> Any | None:
        with self.web.engine.connect() as conn:
            return _signed_in(conn)

    def topup(self) -> BaseResponse:
        """`POST /me/topup`: a one-off top-up (or a retry of one Stripe did not open)."""
        row = self._supporter()
        if row is None:
            return redirect(url_for("claim_page"), 303)
        if not self.settings.topups_enabled:
            return _back("Card payments are not available here.", "problem")
        web, account_id = self.web, int(row.id)
        retry = _retryable(web, account_id, request.form.get("topup_id", ""))
        amount = web.policy.money(int(retry.amount_minor)) if retry else self._amount()
        if isinstance(amount, str):
            return _back(amount, "problem")

        def start() -> Checkout:
            if retry is not None:
                return checkout.reopen_topup(web.engine, self.gateway, web.clock, retry)
            try:
                return checkout.start_topup(
                    web.engine,
                    self.settings,
                    web.policy,
                    self.gateway,
                    web.clock,
                    account_id,
                    amount,
                )
            except PaymentsUnavailable:
                session["retry_topup"] = _latest_pending(web, account_id)
                raise

        return self._checkout(start, f"your top-up of {amount}")

    def subscribe(self) -> BaseResponse:
        """`POST /me/subscription`: a monthly payment that also sets the monthly budget."""
        row = self._supporter()
        if row is None:
            return redirect(url_for("claim_page"), 303)
        if not self.settings.topups_enabled:
            return _back("Card payments are not available here.", "problem")
        amount = self._amount()
        if isinstance(amount, str):
            return _back(amount, "problem")
        web, account_id = self.web, int(row.id)
        return self._checkout(
            lambda: checkout.start_subscription(
                web.engine, self.settings, web.policy, self.gateway, web.clock, account_id, amount
            ),
            f"your monthly budget of {amount}",
        )

    def cancel(self) -> BaseResponse:
        """`POST /me/subscription/cancel`: stop at the end of the month already paid."""
        with self.web.engine.connect() as conn:
            row = _signed_in(conn)
            sub = _live_subscription(conn, int(row.id)) if row is not None else None
        if row is None:
            return redirect(url_for("claim_page"), 303)
        if sub is None or sub.state != "active" or not sub.provider_subscription_id:
            return _back("You have no monthly payment to cancel.", "problem")
        try:
            self.gateway.cancel_at_period_end(int(sub.id), sub.provider_subscription_id)
        except (PaymentsUnavailable, PaymentRefused):
            return _back(
                "Stripe could not be reached; nothing changed. Please try again.", "problem"
            )
        web = self.web
        transaction(web.engine, lambda conn: funding.cancel_requested(conn, sub.id, web.now()))
        return _back("Your monthly payment stops at the end of the month already paid.", "ok")

    def webhook(self) -> tuple[dict[str, Any], int]:
        """`POST /stripe/webhook`: Stripe's signed events, recorded and applied once."""
        answer = receive_webhook(
            self.web.engine,
            self.web.policy,
            self.web.clock,
            request.get_data(cache=False),
            request.headers.get("Stripe-Signature"),
            self.settings.stripe_webhook_secret,
        )
        return {"received": answer.status == 200}, answer.status


def register(app: Flask, web: Web, gateway: StripeGateway | None = None) -> None:
    pages = MoneyInPages(web, gateway)
    app.context_processor(pages.context)
    app.add_url_rule("/me/topup", "topup", pages.topup, methods=["POST"])
    app.add_url_rule("/me/subscription", "subscribe", pages.subscribe, methods=["POST"])
    app.add_url_rule(
        "/me/subscription/cancel", "cancel_subscription", pages.cancel, methods=["POST"]
    )
    app.add_url_rule("/stripe/webhook", "stripe_webhook", pages.webhook, methods=["POST"])


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
