"""Tips: a supporter gives a creator an amount, posted at once or held in escrow.

A tip to a claimed creator posts at once, with the operator's fee moved from the creator
to `fees` in the same transaction. A tip to an unclaimed creator becomes a hold: the
amount is reserved from the supporter (`debits_pending`) for the creator
(`credits_pending`) until a claim posts it or an expiry, a retraction or a refusal voids
it. A tip is idempotent on (source, recipient): applying the same tweet twice returns the
first result and moves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from escrow.ledger import (
    FEES,
    Identity,
    LedgerError,
    Policy,
    TipStatus,
    Transfer,
    _insert,
    apply_transfers,
    available,
    bind_currency,
    ensure_account,
    find_account,
    lock_accounts,
    system_account,
)
from escrow.money import Money
from escrow.schema import accounts, tips


@dataclass(frozen=True)
class TipResult:
    status: TipStatus
    amount: Money
    available: Money  # the supporter's available balance after the tip (or as it stands)
    tip_id: int | None = None
    fee: Money | None = None
    expires_at: datetime | None = None
    replayed: bool = False
    supporter_ever_funded: bool = True

    @property
    def applied(self) -> bool:
        return self.status in (TipStatus.POSTED, TipStatus.HELD)


def _existing(conn: Connection, policy: Policy, source: str, recipient_id: int) -> Row[Any] | None:
    return conn.execute(
        select(tips).where(tips.c.source_id == source, tips.c.recipient_account_id == recipient_id)
    ).one_or_none()


def _replay(policy: Policy, row: Row[Any], supporter: Row[Any]) -> TipResult:
    status = TipStatus.HELD if row.hold_transfer_id is not None else TipStatus.POSTED
    return TipResult(
        status=status,
        amount=policy.money(row.amount_minor),
        available=policy.money(available(supporter)),
        tip_id=row.id,
        fee=policy.money(row.fee_minor),
        expires_at=row.expires_at,
        replayed=True,
    )


def tip(
    conn: Connection,
    policy: Policy,
    supporter: Identity,
    recipient: Identity,
    amount: Money,
    source: str,
    now: datetime,
    *,
    kind: str = "tip",
) -> TipResult:
    """Move `amount` from `supporter` to `recipient` for the tweet (or share) `source`."""
    minor = policy.check(amount)
    if not source:
        raise LedgerError("a tip needs its source (the tweet id) to be idempotent")
    if (supporter.platform, supporter.user_id) == (recipient.platform, recipient.user_id):
        return TipResult(TipStatus.SELF_TIP, amount, policy.money(0))
    bind_currency(conn, policy.currency, now)

    found = find_account(conn, supporter)
    if found is None:
        # Nobody funded this supporter yet; creating an empty account would only add noise.
        return TipResult(
            TipStatus.INSUFFICIENT_FUNDS, amount, policy.money(0), supporter_ever_funded=False
        )
    supporter_id = int(found.id)
    recipient_id = ensure_account(conn, recipient, now)
    fees_id = system_account(conn, FEES)
    locked = lock_accounts(conn, [supporter_id, recipient_id, fees_id])
    payer, creator = locked[supporter_id], locked[recipient_id]

    prior = _existing(conn, policy, source, recipient_id)
    if prior is not None:
        return _replay(policy, prior, payer)
    if creator.status == "refusing":
        return TipResult(TipStatus.REFUSING_RECIPIENT, amount, policy.money(available(payer)))
    if available(payer) < minor:
        return TipResult(
            TipStatus.INSUFFICIENT_FUNDS,
            amount,
            policy.money(available(payer)),
            supporter_ever_funded=payer.credits_posted > 0,
        )

    held = creator.status != "claimed"
    expires_at = now + policy.hold_period if held else None
    fee = 0 if held else policy.fee(minor)
    tip_id = conn.execute(
        _insert(conn, tips)
        .values(
            source_id=source,
            supporter_account_id=supporter_id,
            recipient_account_id=recipient_id,
            kind=kind,
            amount_minor=minor,
            fee_minor=fee,
            # A hold row is written as posted and flipped to held once its transfer
            # exists, so the CHECK that a held tip has a hold is never violated.
            state="posted",
            expires_at=expires_at,
            created_at=now,
        )
        .returning(tips.c.id)
    ).scalar_one()

    if held:
        (hold_id,) = apply_transfers(
            conn,
            [
                Transfer(
                    supporter_id, recipient_id, minor, "hold", expires_at=expires_at, tip_id=tip_id
                )
            ],
            now,
            return_ids=True,
        )
        conn.execute(
            update(tips).where(tips.c.id == tip_id).values(state="held", hold_transfer_id=hold_id)
        )
        status = TipStatus.HELD
    else:
        batch = [Transfer(supporter_id, recipient_id, minor, "tip", tip_id=tip_id)]
        if fee:
            batch.append(Transfer(recipient_id, fees_id, fee, "fee", tip_id=tip_id))
        apply_transfers(conn, batch, now)
        status = TipStatus.POSTED
    after = conn.execute(select(accounts).where(accounts.c.id == supporter_id)).one()
    return TipResult(
        status=status,
        amount=amount,
        available=policy.money(available(after)),
        tip_id=tip_id,
        fee=policy.money(fee),
        expires_at=expires_at,
    )


def void_holds(
    conn: Connection, policy: Policy, rows: list[Row[Any]], reason: str, now: datetime
) -> list[Row[Any]]:
    """Void the holds of `rows` (tips, with their accounts already locked) back to supporters.

    The UPDATE is gated on `state = 'held'`, so of two transactions racing for one hold
    only the first resolves it; the transfer's unique `pending_id` is the second guard.
    Returns the tips this call voided.
    """
    if not rows:
        return []
    won = conn.execute(
        update(tips)
        .where(tips.c.id.in_([r.id for r in rows]), tips.c.state == "held")
        .values(state="voided", resolution=reason, resolved_at=now)
        .returning(tips.c.id)
    ).scalars()
    won_ids = set(won)
    voided = [r for r in rows if r.id in won_ids]
    apply_transfers(
        conn,
        [
            Transfer(
                r.supporter_account_id,
                r.recipient_account_id,
                r.amount_minor,
                "void",
                pending_id=r.hold_transfer_id,
                tip_id=r.id,
            )
            for r in voided
        ],
        now,
    )
    return voided


@dataclass(frozen=True)
class RetractResult:
    retracted: bool
    amount: Money
    reason: str  # "retracted", or why not: "not_found", "not_yours", "not_held"


def retract(
    conn: Connection, policy: Policy, supporter: Identity, tip_id: int, now: datetime
) -> RetractResult:
    """The supporter takes back one tip that is still waiting for its creator."""
    row = conn.execute(select(tips).where(tips.c.id == tip_id)).one_or_none()
    payer = find_account(conn, supporter)
    if row is None:
        return RetractResult(False, policy.money(0), "not_found")
    amount = policy.money(row.amount_minor)
    if payer is None or row.supporter_account_id != payer.id:
        return RetractResult(False, amount, "not_yours")
    lock_accounts(conn, [row.supporter_account_id, row.recipient_account_id])
    row = conn.execute(select(tips).where(tips.c.id == tip_id)).one()
    if row.state != "held":
        return RetractResult(False, amount, "not_held")
    if not void_holds(conn, policy, [row], "retracted", now):
        return RetractResult(False, amount, "not_held")
    return RetractResult(True, amount, "retracted")
