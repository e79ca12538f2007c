"""Claims and refusals: a creator proves who they are and the held money moves, or doesn't.

`claim` binds an account as claimed and posts every hold waiting for it, in one
transaction: each hold's amount moves to the creator and the fee moves from the creator
to `fees`. A hold that has already expired is voided back to its supporter instead: a
post after expiry would take money the supporter has been promised back. `refuse` voids
everything waiting and turns away later tips. `release_sweep` is the backstop that posts
holds for creators who are already claimed (a claim interrupted half-way, or a tip that
raced a claim), so money never waits for someone who signed up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from escrow.ledger import (
    FEES,
    Identity,
    Policy,
    Transfer,
    apply_transfers,
    ensure_account,
    held_for,
    is_held,
    lock_accounts,
    system_account,
)
from escrow.money import Money
from escrow.schema import TipState, accounts, tips
from escrow.tips import void_holds


@dataclass(frozen=True)
class ClaimResult:
    account_id: int
    gross: Money  # what the supporters gave
    fee: Money
    tips: int
    supporters: int
    expired: int  # holds found past their expiry and returned instead
    newly_claimed: bool

    @property
    def net(self) -> Money:
        return self.gross - self.fee


def _held_for(conn: Connection, recipient_id: int) -> list[Row[Any]]:
    return list(conn.execute(select(tips).where(held_for(recipient_id)).order_by(tips.c.id)))


def post_holds(
    conn: Connection, policy: Policy, recipient_id: int, now: datetime
) -> tuple[list[Row[Any]], list[Row[Any]]]:
    """Post every open hold for `recipient_id` (void the expired ones); returns both lists.

    Locks the creator, every supporter with a hold and `fees`, in id order, before it
    touches a hold, then resolves each hold with a state-gated UPDATE.
    """
    fees_id = system_account(conn, FEES)
    candidates = _held_for(conn, recipient_id)
    if not candidates:
        return [], []
    lock_accounts(conn, [recipient_id, fees_id, *(r.supporter_account_id for r in candidates)])
    # Re-read under the locks: another transaction may have resolved some meanwhile.
    locked_supporters = {r.supporter_account_id for r in candidates}
    current = [
        r for r in _held_for(conn, recipient_id) if r.supporter_account_id in locked_supporters
    ]
    due = [r for r in current if r.expires_at <= now]
    live = [r for r in current if r.expires_at > now]
    expired = void_holds(conn, policy, due, "expired", now)
    if not live:
        return [], expired
    won = set(
        conn.execute(
            update(tips)
            .where(tips.c.id.in_([r.id for r in live]), is_held())
            .values(
                state=TipState.POSTED,
                resolution="claimed",
                resolved_at=now,
                fee_minor=policy.fee(tips.c.amount_minor),
            )
            .returning(tips.c.id)
        ).scalars()
    )
    posted = [r for r in live if r.id in won]
    batch: list[Transfer] = []
    for r in posted:
        batch.append(
            Transfer(
                r.supporter_account_id,
                recipient_id,
                r.amount_minor,
                "post",
                pending_id=r.hold_transfer_id,
                tip_id=r.id,
            )
        )
        fee = policy.fee(r.amount_minor)
        if fee:
            batch.append(Transfer(recipient_id, fees_id, fee, "fee", tip_id=r.id))
    apply_transfers(conn, batch, now)
    return posted, expired


def claim(conn: Connection, policy: Policy, who: Identity, now: datetime) -> ClaimResult:
    """`who` has proven they own their X account: mark it claimed and release its holds."""
    account_id = ensure_account(conn, who, now)
    # Lock the creator together with `fees` and the supporters it will post from, in one
    # id-ordered call: locking the creator alone first and the (lower-id) supporters later
    # waits in a cycle with a tip that holds a supporter and wants the creator.
    waiting = [r.supporter_account_id for r in _held_for(conn, account_id)]
    fees = [system_account(conn, FEES)] if waiting else []
    row = lock_accounts(conn, [account_id, *fees, *waiting])[account_id]
    newly = row.status == "unclaimed"
    if newly:
        conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(status="claimed", claimed_at=now, updated_at=now)
        )
    if row.status == "refusing":
        posted: list[Row[Any]] = []
        expired: list[Row[Any]] = []
    else:
        posted, expired = post_holds(conn, policy, account_id, now)
    gross = sum(r.amount_minor for r in posted)
    fee = sum(policy.fee(r.amount_minor) for r in posted)
    return ClaimResult(
        account_id=account_id,
        gross=policy.money(gross),
        fee=policy.money(fee),
        tips=len(posted),
        supporters=len({r.supporter_account_id for r in posted}),
        expired=len(expired),
        newly_claimed=newly,
    )


@dataclass(frozen=True)
class RefuseResult:
    account_id: int
    voided: int
    returned: Money


def refuse(conn: Connection, policy: Policy, who: Identity, now: datetime) -> RefuseResult:
    """The creator wants no tips: void everything held for them and refuse later tips."""
    account_id = ensure_account(conn, who, now)
    # One id-ordered lock of the creator and its supporters (see `claim`).
    candidates = _held_for(conn, account_id)
    lock_accounts(conn, [account_id, *(r.supporter_account_id for r in candidates)])
    conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(status="refusing", updated_at=now)
    )
    voided = void_holds(conn, policy, _held_for(conn, account_id), "refused", now)
    return RefuseResult(account_id, len(voided), policy.money(sum(r.amount_minor for r in voided)))


def accept_tips(conn: Connection, who: Identity, now: datetime) -> bool:
    """Undo a refusal: the (signed-in) creator takes tips again. True if it changed."""
    account_id = ensure_account(conn, who, now)
    lock_accounts(conn, [account_id])
    result = conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id, accounts.c.status == "refusing")
        .values(status="claimed", claimed_at=now, updated_at=now)
    )
    return result.rowcount == 1


def release_sweep(conn: Connection, policy: Policy, now: datetime, limit: int = 100) -> int:
    """Post holds still waiting for creators who have already claimed; returns holds posted."""
    creators = conn.execute(
        select(tips.c.recipient_account_id)
        .join(accounts, accounts.c.id == tips.c.recipient_account_id)
        .where(is_held(), accounts.c.status == "claimed")
        .group_by(tips.c.recipient_account_id)
        .limit(limit)
    ).scalars()
    count = 0
    for creator_id in list(creators):
        posted, _ = post_holds(conn, policy, int(creator_id), now)
        count += len(posted)
    return count
