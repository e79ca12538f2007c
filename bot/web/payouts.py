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


def register(app: Flask, web: Web, gateway: connect.ConnectGateway | None = None) -> None:
    settings = web.settings
    state: dict[str, connect.ConnectGateway] = {} if gateway is None else {"gateway": gateway}

    def stripe_gateway() -> connect.ConnectGateway:
        if "gateway" not in state:
            state["gateway"] = connect.ConnectGateway(settings)
        return state["gateway"]

    def back(message: str, category: str) -> BaseResponse:
        flash(message, category)
        return redirect(url_for("me"), 303)

    @app.context_processor
    def get_paid() -> dict[str, Any]:
        if request.endpoint != "me" or settings.payout_method == "off":
            return {}
        with web.engine.connect() as conn:
            row = _creator(conn)
            if row is None:
                return {}
            return {"get_paid": payouts_view(web, conn, row)}

    def onboarding(account_id: int) -> BaseResponse:
        try:
            url = connect.start_connect(web.engine, stripe_gateway(), web.clock, account_id)
        except PaymentsUnavailable:
            return back("Stripe could not be reached. Please try again in a moment.", "problem")
        except (PaymentRefused, LedgerError) as e:
            log.warning("connecting account %d failed: %s", account_id, e)
            return back("Stripe refused to set up your payout account.", "problem")
        return redirect(url, 303)

    @app.before_request
    def refresh_onboarding() -> BaseResponse | None:
        # Stripe sends the creator back here when the single-use link expired: a new one.
        if request.endpoint != "me" or request.args.get("payouts") != "refresh":
            return None
        if settings.payout_method != "stripe":
            return None
        with web.engine.connect() as conn:
            row = _creator(conn)
            where = payouts.payout_account(conn, int(row.id)) if row is not None else None
        if row is None or where is None or not where.stripe_account_id:
            return None
        return onboarding(int(row.id))

    @app.post("/me/payouts/connect")
    def connect_payouts() -> BaseResponse:
        with web.engine.connect() as conn:
            row = _creator(conn)
        if row is None:
            return redirect(url_for("claim_page"), 303)
        if settings.payout_method != "stripe":
            return back("Payouts through Stripe are not available here.", "problem")
        return onboarding(int(row.id))

    @app.post("/me/payouts")
    def request_payout() -> BaseResponse:
        with web.engine.connect() as conn:
            row = _creator(conn)
        if row is None:
            return redirect(url_for("claim_page"), 303)
        if settings.payout_method == "off":
            return back("Withdrawals are not available here.", "problem")
        raw = request.form.get("amount", "").strip()
        try:
            amount = parse_amount(raw, settings.currency)
        except MoneyError:
            return back(f"“{raw[:20]}” is not an amount. Write it like 10.00.", "problem")
        account_id = int(row.id)
        try:
            payout_id = transaction(
                web.engine,
                lambda conn: payouts.request_payout(
                    conn,
                    web.policy,
                    account_id,
                    amount.minor,
                    provider=settings.payout_method,
                    minimum_minor=settings.payout_min_minor,
                    now=web.now(),
                ),
            )
        except LedgerError as e:
            return back(f"Nothing was withdrawn: {e}.", "problem")
        log.info("payout %d requested by account %d", payout_id, account_id)
        how = "Stripe" if settings.payout_method == "stripe" else "the people running this site"
        return back(f"Your withdrawal of {amount} is on its way; {how} will pay it.", "ok")

    @app.post("/me/payouts/details")
    def save_details() -> BaseResponse:
        with web.engine.connect() as conn:
            row = _creator(conn)
        if row is None:
            return redirect(url_for("claim_page"), 303)
        if settings.payout_method != "manual":
            return back("Payout details are not used here.", "problem")
        try:
            ciphertext = details.encrypt(
                settings.payout_details_key, request.form.get("details", "")
            )
        except details.DetailsError as e:
            return back(f"Nothing was saved: {e}.", "problem")
        account_id = int(row.id)
        transaction(
            web.engine, lambda conn: payouts.save_details(conn, account_id, ciphertext, web.now())
        )
        return back("Saved. Withdrawals will be paid there.", "ok")

    @app.post("/stripe/webhook/connect")
    def stripe_connect_webhook() -> tuple[dict[str, Any], int]:
        answer = receive_webhook(
            web.engine,
            web.policy,
            web.clock,
            request.get_data(cache=False),
            request.headers.get("Stripe-Signature"),
            settings.stripe_connect_webhook_secret,
            endpoint=connect.CONNECT,
        )
        return {"received": answer.status == 200}, answer.status
