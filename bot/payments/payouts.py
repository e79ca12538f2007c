"""Money out through Stripe Connect: onboarding, the payout relay, the schedule, Connect events.

- `ConnectGateway` adds to the Stripe adapter what payouts ask of Stripe: a connected
  account with controller properties (Stripe-hosted onboarding and dashboard, the
  `transfers` capability requested, `metadata[tipjar_account]`), an Account Link for its
  onboarding, and `Transfer.create` with the idempotency key `payout-<id>`.
- `start_connect` creates the creator's connected account once (idempotency key
  `account-<account>-<n>`; the id is saved before anything else is asked) and returns a
  fresh onboarding link; Account Links are single use and expire in minutes, so every
  visit gets a new one.
- `run_relay` sends the due Stripe payouts (`escrow.payouts.claim_due`): a transfer posts
  the payout, a refusal voids it (the money is back in the creator's balance), and Stripe
  being down or slow leaves it for a later attempt with the same key, so a crash between
  Stripe's answer and our commit is answered on the rerun with the same transfer.
- `schedule_payouts` (PAYOUT_SCHEDULE weekly or monthly) asks for a payout of the whole
  available balance of every payable creator at or above PAYOUT_MIN.
- The Connect webhook handlers keep `payouts_enabled` (`account.updated`), disconnect
  (`account.application.deauthorized`) and give reversed transfers back
  (`transfer.reversed`, sent to the platform endpoint; also accepted on the Connect one).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from bot.config import Settings
from bot.payments.gateway import PaymentRefused, PaymentsUnavailable, StripeGateway
from escrow import events, payouts, selfcheck
from escrow.db import transaction
from escrow.ledger import Clock, LedgerError, Policy, available
from escrow.schema import accounts

log = logging.getLogger(__name__)

CONNECT = "connect"
PLATFORM = "platform"
RELAY_BATCH = 20


@dataclass(frozen=True)
class Sent:
    transfer_id: str


class ConnectGateway(StripeGateway):
    """The Stripe calls of payouts, through the same client and error sorting as top-ups."""

    def __init__(self, settings: Settings, *, max_network_retries: int = 0) -> None:
        # No retries inside the client: the relay retries with backoff, with the same key.
        super().__init__(settings, max_network_retries=max_network_retries)

    def create_account(self, account_id: int, number: int) -> str:
        """A connected account for tipjar account `account_id` (its `number`-th connection)."""
        params: dict[str, Any] = {
            "controller": {
                "fees": {"payer": "application"},
                "losses": {"payments": "application"},
                "requirement_collection": "stripe",
                "stripe_dashboard": {"type": "express"},
            },
            "capabilities": {"transfers": {"requested": True}},
            "metadata": {"tipjar_account": str(account_id)},
        }
        account = self._call(
            lambda: self.client.v1.accounts.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": f"account-{account_id}-{number}"},
            )
        )
        return str(account.id)

    def onboarding_link(self, stripe_account_id: str) -> str:
        """A single-use Stripe-hosted onboarding page for `stripe_account_id`."""
        base = self.settings.public_base_url.rstrip("/")
        link = self._call(
            lambda: self.client.v1.account_links.create(
                {
                    "account": stripe_account_id,
                    "type": "account_onboarding",
                    "refresh_url": f"{base}/me?payouts=refresh",
                    "return_url": f"{base}/me?payouts=back",
                }
            )
        )
        return str(link.url)

    def transfer(self, payout_id: int, amount_minor: int, currency: str, destination: str) -> Sent:
        """Send payout `payout_id` to `destination`; the same payout always asks the same."""
        made = self._call(
            lambda: self.client.v1.transfers.create(
                {
                    "amount": amount_minor,
                    "currency": currency.lower(),
                    "destination": destination,
                    "metadata": {"tipjar_payout_id": str(payout_id)},
                },
                {"idempotency_key": f"payout-{payout_id}"},
            )
        )
        return Sent(str(made.id))


# --- onboarding ---------------------------------------------------------------------------


def start_connect(engine: Engine, gateway: ConnectGateway, clock: Clock, account_id: int) -> str:
    """The onboarding URL for `account_id`, creating its connected account the first time."""
    existing, number = transaction(
        engine, lambda conn: payouts.connection_key(conn, account_id, clock())
    )
    if existing is None:
        made = gateway.create_account(account_id, number)
        transaction(engine, lambda conn: payouts.connected(conn, account_id, made, number, clock()))
        existing = made
    return gateway.onboarding_link(existing)


# --- the relay ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayRun:
    sent: int = 0
    refused: int = 0
    retry: int = 0

    def __str__(self) -> str:
        return f"{self.sent} sent, {self.refused} refused, {self.retry} to retry"


def run_relay(
    engine: Engine, gateway: ConnectGateway, clock: Clock, limit: int = RELAY_BATCH
) -> RelayRun:
    """Send every Stripe payout due now, `limit` per claim, until none is due.

    Raises selfcheck.LedgerUnsound, sending nothing, while a failed ledger check stops
    money from leaving (as it stops settlement) until a maintainer's audit is clean.
    """
    with engine.connect() as conn:
        selfcheck.require_sound_ledger(conn, "payouts")
    sent = refused = retry = 0
    while True:
        rows = transaction(engine, lambda conn: payouts.claim_due(conn, clock(), limit))
        if not rows:
            return RelayRun(sent, refused, retry)
        for row in rows:
            outcome = _send(engine, gateway, clock, row)
            sent += outcome == "sent"
            refused += outcome == "refused"
            retry += outcome == "retry"


def _send(engine: Engine, gateway: ConnectGateway, clock: Clock, row: Any) -> str:
    payout_id = int(row.id)
    if not row.destination:
        reason = "no connected account to pay"
        transaction(engine, lambda conn: payouts.void_payout(conn, payout_id, reason, clock()))
        return "refused"
    try:
        made = gateway.transfer(payout_id, int(row.amount_minor), row.currency, row.destination)
    except PaymentsUnavailable as e:
        error = f"Stripe unavailable ({e}); attempt {row.attempts}"
        transaction(engine, lambda conn: payouts.retry_later(conn, payout_id, error, clock()))
        log.warning("payout %d: %s", payout_id, error)
        return "retry"
    except PaymentRefused as e:
        reason = f"Stripe refused: {e}"
        transaction(engine, lambda conn: payouts.void_payout(conn, payout_id, reason, clock()))
        log.warning("payout %d voided: %s", payout_id, reason)
        return "refused"
    result = transaction(
        engine, lambda conn: payouts.post_payout(conn, payout_id, made.transfer_id, clock())
    )
    log.info("%s", result)
    return "sent"


def schedule_payouts(engine: Engine, settings: Settings, policy: Policy, clock: Clock) -> list[int]:
    """Request a payout of the whole available balance of every payable creator; their ids."""
    method = settings.payout_method
    if method == "off":
        return []
    with engine.connect() as conn:
        selfcheck.require_sound_ledger(conn, "payouts")
        candidates = payouts.scheduled_candidates(conn, method, settings.payout_min_minor)
    made = []
    for account_id in candidates:

        def request(conn: Connection, account_id: int = account_id) -> int | None:
            row = conn.execute(select(accounts).where(accounts.c.id == account_id)).one()
            try:
                return payouts.request_payout(
                    conn,
                    policy,
                    account_id,
                    available(row),
                    provider=method,
                    minimum_minor=settings.payout_min_minor,
                    now=clock(),
                    origin="schedule",
                )
            except LedgerError as e:
                log.info("scheduled payout of account %d skipped: %s", account_id, e)
                return None

        payout_id = transaction(engine, request)
        if payout_id is not None:
            made.append(payout_id)
    return made


# --- Connect events -----------------------------------------------------------------------


def _object(event: Mapping[str, Any]) -> Mapping[str, Any]:
    obj = event["data"]["object"]
    if not isinstance(obj, Mapping):
        raise TypeError("data.object is not an object")
    return obj


@events.handles(CONNECT, "account.updated")
def account_updated(conn: Connection, policy: Policy, event: Any, now: datetime) -> str:
    account = _object(event)
    return payouts.account_updated(
        conn, str(account["id"]), bool(account.get("payouts_enabled")), now
    )


@events.handles(CONNECT, "account.application.deauthorized")
def deauthorized(conn: Connection, policy: Policy, event: Any, now: datetime) -> str:
    account = event.get("account")
    if not account:
        return "ignored: no connected account named"
    return payouts.disconnect(conn, str(account), now)


def transfer_reversed(conn: Connection, policy: Policy, event: Any, now: datetime) -> str:
    transfer = _object(event)
    raw = str((transfer.get("metadata") or {}).get("tipjar_payout_id") or "")
    listed = [
        (str(r["id"]), int(r["amount"]))
        for r in ((transfer.get("reversals") or {}).get("data") or [])
    ]
    if not listed and transfer.get("amount_reversed"):
        # Without the list, one reversal per new total reversed.
        total = int(transfer["amount_reversed"])
        listed = [(f"{transfer['id']}-{total}", total)]
    return payouts.reversed_at_provider(
        conn, str(transfer["id"]), int(raw) if raw.isdigit() else None, listed, now
    )


events.handles(PLATFORM, "transfer.reversed")(transfer_reversed)
events.handles(CONNECT, "transfer.reversed")(transfer_reversed)
