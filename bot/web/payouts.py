"""Getting paid on /me: Stripe Connect onboarding, withdrawals, manual payout details, and
Stripe's Connect webhook.

- `POST /me/payouts/connect` creates the creator's connected account once and sends the
  browser (303) to Stripe's onboarding; Stripe sends it back to `/me?payouts=back`, or, when
  the single-use link expired, to `/me?payouts=refresh`, which answers with a new link.
- `POST /me/payouts` (field `amount`) reserves the amount for a payout
  (`escrow.payouts.request_payout`); the worker's relay sends it. Every refusal (below the
  minimum, above what is available, not connected, one already on its way) is a message
  and nothing moves.
- `POST /me/payouts/details` (manual provider) stores where to be paid, encrypted; it is
  shown back masked and never logged.
- `POST /stripe/webhook/connect` verifies with STRIPE_CONNECT_WEBHOOK_SECRET and records
  each event once (`bot.payments.webhooks.receive_webhook`, endpoint `connect`).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, flash, redirect, request, session, url_for
from sqlalchemy import Connection, select
from werkzeug.wrappers import Response as BaseResponse

from bot.config import Settings
from bot.payments import details
from bot.payments import payouts as connect
from bot.payments.gateway import PaymentRefused, PaymentsUnavailable
from bot.payments.webhooks import receive_webhook
from bot.web.context import Web
from bot.web.payments import parse_amount
from bot.web.security import log
from escrow import payouts
from escrow.db import transaction
from escrow.ledger import LedgerError, available
from escrow.money import MoneyError
from escrow.schema import accounts

CONNECT_ORIGIN = "https://connect.stripe.com"
STRIPE_API = "https://api.stripe.com"
RECENT = 5


def form_targets(settings: Settings) -> list[str]:
    """Where a "Get paid" form's redirect may lead: Stripe's onboarding (or the sandbox)."""
    if settings.payout_method != "stripe":
        return []
    if settings.stripe_api_base == STRIPE_API:
        return [CONNECT_ORIGIN]
    return [CONNECT_ORIGIN, settings.stripe_api_base]


def _creator(conn: Connection) -> Any | None:
    account_id = session.get("account_id")
    if not isinstance(account_id, int) or isinstance(account_id, bool):
        return None
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).one_or_none()
    if row is None or row.status not in payouts.PERSONS:
        return None
    return row


def payouts_view(web: Web, conn: Connection, row: Any) -> dict[str, Any]:
    """What the "Get paid" section of /me shows."""
    settings = web.settings
    account_id = int(row.id)
    where = payouts.payout_account(conn, account_id)
    masked = None
    if where is not None and where.details_ciphertext and settings.payout_details_key:
        try:
            plain = details.decrypt(settings.payout_details_key, where.details_ciphertext)
            masked = details.mask(plain)
        except details.DetailsError:
            masked = "(unreadable: please enter them again)"
    sums = payouts.totals(conn, account_id)
    return {
        "method": settings.payout_method,
        "minimum": settings.payout_min,
        "schedule": settings.payout_schedule,
        "available": web.policy.money(available(row)),
        "connected": bool(where is not None and where.stripe_account_id),
        "enabled": bool(where is not None and where.payouts_enabled),
        "masked": masked,
        "pending": payouts.pending_payout(conn, account_id),
        "paid_out": web.policy.money(sums.paid_out_minor),
        "in_payout": web.policy.money(sums.in_payout_minor),
        "recent": payouts.list_payouts(conn, account_id=account_id, limit=RECENT),
        "back": request.args.get("payouts") == "back",
    }


def _back(message: str, category: str) -> BaseResponse:
    flash(message, category)
    return redirect(url_for("me"), 303)


class GetPaidPages:
    """The "Get paid" routes of /me and the Connect webhook, bound to one web context."""

    def __init__(self, web: Web, gateway: connect.ConnectGateway | None) -> None:
        self.web = web
        self.settings = web.settings
        self._gateway = gateway

    def gateway(self) -> connect.ConnectGateway:
        if self._gateway is None:
            self._gateway = connect.ConnectGateway(self.settings)
        return self._gateway

    def _creator(self) -> Any | None:
        with self.web.engine.connect() as conn:
            return _creator(conn)

    def context(self) -> dict[str, Any]:
        if request.endpoint != "me" or self.settings.payout_method == "off":
            return {}
        with self.web.engine.connect() as conn:
            row = _creator(conn)
            if row is None:
                return {}
            return {"get_paid": payouts_view(self.web, conn, row)}

    def _onboarding(self, account_id: int) -> BaseResponse:
        try:
            url = connect.start_connect(self.web.engine, self.gateway(), self.web.clock, account_id)
        except PaymentsUnavailable:
            return _back("Stripe could not be reached. Please try again in a moment.", "problem")
        except (PaymentRefused, LedgerError) as e:
            log.warning("connecting account %d failed: %s", account_id, e)
            return _back("Stripe refused to set up your payout account.", "problem")
        return redirect(url, 303)

    def refresh(self) -> BaseResponse | None:
        """Stripe sends the creator back to /me when the single-use link expired: a new one."""
        if request.endpoint != "me" or request.args.get("payouts") != "refresh":
            return None
        if self.settings.payout_method != "stripe":
            return None
        with self.web.engine.connect() as conn:
            row = _creator(conn)
            where = payouts.payout_account(conn, int(row.id)) if row is not None else None
        if row is None or where is None or not where.stripe_account_id:
            return None
        return self._onboarding(int(row.id))

    def connect(self) -> BaseResponse:
        row = self._creator()
        if row is None:
            return redirect(url_for("claim_page"), 303)
        if self.settings.payout_method != "stripe":
            return _back("Payouts through Stripe are not available here.", "problem")
        return self._onboarding(int(row.id))

    def withdraw(self) -> BaseResponse:
        row = self._creator()
        if row is None:
            return redirect(url_for("claim_page"), 303)
        method = self.settings.payout_method
        if method == "off":
            return _back("Withdrawals are not available here.", "problem")
        raw = request.form.get("amount", "").strip()
        try:
            amount = parse_amount(raw, self.settings.currency)
        except MoneyError:
            return _back(f"“{raw[:20]}” is not an amount. Write it like 10.00.", "problem")
        account_id, web = int(row.id), self.web
        try:
            payout_id = transaction(
                web.engine,
                lambda conn: payouts.request_payout(
                    conn,
                    web.policy,
                    account_id,
                    amount.minor,
                    provider=method,
                    minimum_minor=self.settings.payout_min_minor,
                    now=web.now(),
                ),
            )
        except LedgerError as e:
            return _back(f"Nothing was withdrawn: {e}.", "problem")
        log.info("payout %d requested by account %d", payout_id, account_id)
        how = "Stripe" if method == "stripe" else "the people running this site"
        return _back(f"Your withdrawal of {amount} is on its way; {how} will pay it.", "ok")

    def save_details(self) -> BaseResponse:
        row = self._creator()
        if row is None:
            return redirect(url_for("claim_page"), 303)
        if self.settings.payout_method != "manual":
            return _back("Payout details are not used here.", "problem")
        try:
            ciphertext = details.encrypt(
                self.settings.payout_details_key, request.form.get("details", "")
            )
        except details.DetailsError as e:
            return _back(f"Nothing was saved: {e}.", "problem")
        account_id, web = int(row.id), self.web
        transaction(
            web.engine, lambda conn: payouts.save_details(conn, account_id, ciphertext, web.now())
        )
        return _back("Saved. Withdrawals will be paid there.", "ok")

    def webhook(self) -> tuple[dict[str, Any], int]:
        answer = receive_webhook(
            self.web.engine,
            self.web.policy,
            self.web.clock,
            request.get_data(cache=False),
            request.headers.get("Stripe-Signature"),
            self.settings.stripe_connect_webhook_secret,
            endpoint=connect.CONNECT,
        )
        return {"received": answer.status == 200}, answer.status


def register(app: Flask, web: Web, gateway: connect.ConnectGateway | None = None) -> None:
    pages = GetPaidPages(web, gateway)
    app.context_processor(pages.context)
    app.before_request(pages.refresh)
    app.add_url_rule("/me/payouts/connect", "connect_payouts", pages.connect, methods=["POST"])
    app.add_url_rule("/me/payouts", "request_payout", pages.withdraw, methods=["POST"])
    app.add_url_rule("/me/payouts/details", "save_details", pages.save_details, methods=["POST"])
    app.add_url_rule(
        "/stripe/webhook/connect", "stripe_connect_webhook", pages.webhook, methods=["POST"]
    )
