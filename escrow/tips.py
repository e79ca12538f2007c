"""Tips: a supporter gives a creator an amount, posted at once or held in escrow.

A tip to a claimed creator posts at once, with the operator's fee moved from the creator
to `fees` in the same transaction. A tip to an unclaimed creator becomes a hold: the
amount is reserved from the supporter (`debits_pending`) for the creator
(`credits_pending`) until a claim posts it or an expiry, a retraction or a refusal voids
it. A tip is idempotent on (source, recipient): applying the same tweet twice returns the
first result and moves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    allocate_ids,
    apply_transfers,
    available,
    bind_currency,
    bulk_insert,
    ensure_accounts,
    find_account,
    find_accounts,
    is_held,
    lock_accounts,
    one_of,
    system_account,
)
from escrow.money import Money
from escrow.schema import TipState, tips, transfers


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


@dataclass(frozen=True)
class TipRequest:
    supporter: Identity
    recipient: Identity
    amount: Money
    source: str
    kind: str = "tip"


def _replay(policy: Policy, row: Row[Any], available_minor: int) -> TipResult:
    status = TipStatus.HELD if row.hold_transfer_id is not None else TipStatus.POSTED
    return TipResult(
        status=status,
        amount=policy.money(row.amount_minor),
        available=policy.money(available_minor),
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
    return tip_many(conn, policy, [TipRequest(supporter, recipient, amount, source, kind)], now)[0]


def tip_many(
    conn: Connection, policy: Policy, requests: Sequence[TipRequest], now: datetime
) -> list[TipResult]:
    """Apply `requests` in order, exactly as many calls of `tip` would, in a few statements.

    The listener applies a whole page of mentions at once: the accounts of every request are
    created and locked together (id order), balances are tracked in memory as the requests
    are decided one after another, and the rows go in as bulk inserts. A request whose
    (source, recipient) exists already, in the database or earlier in the same batch, is a
    replay that moves nothing.
    """
    for r in requests:
        policy.check(r.amount)
        if not r.source:
            raise LedgerError("a tip needs its source (the tweet id) to be idempotent")
    if not requests:
        return []
    bind_currency(conn, policy.currency, now)

    payers = find_accounts(conn, [r.supporter for r in requests])
    funded = [r for r in requests if (r.supporter.platform, r.supporter.user_id) in payers]
    ids = ensure_accounts(conn, [r.recipient for r in funded], now)
    ids.update({k: int(row.id) for k, row in payers.items()})
    fees_id = system_account(conn, FEES)
    locked = lock_accounts(conn, [*ids.values(), fees_id])
    balance = {aid: available(row) for aid, row in locked.items()}
    credited = {aid: int(row.credits_posted) for aid, row in locked.items()}

    def key(r: TipRequest) -> tuple[str, int]:
        return r.source, ids[(r.recipient.platform, r.recipient.user_id)]

    # Tips applied before, by (source, recipient). Asked by source alone, the leading column
    # of the unique index: a row-value IN list would be planned as a scan on PostgreSQL.
    prior: dict[tuple[str, int], Row[Any]] = {}
    keys = {key(r) for r in funded}
    sources = sorted({source for source, _ in keys})
    for i in range(0, len(sources), 500):
        for row in conn.execute(
            select(tips).where(one_of(conn, tips.c.source_id, sources[i : i + 500]))
        ):
            if (row.source_id, row.recipient_account_id) in keys:
                prior[(row.source_id, row.recipient_account_id)] = row

    # Decided results, or (index of the new tip, supporter's available then, is a replay).
    results: list[TipResult | tuple[int, int, bool]] = []
    new_rows: list[dict[str, Any]] = []
    pending: dict[tuple[str, int], int] = {}  # new tips of this batch -> index in new_rows
    for r in requests:
        if (r.supporter.platform, r.supporter.user_id) == (
            r.recipient.platform,
            r.recipient.user_id,
        ):
            results.append(TipResult(TipStatus.SELF_TIP, r.amount, policy.money(0)))
            continue
        payer = payers.get((r.supporter.platform, r.supporter.user_id))
        if payer is None:
            # Nobody funded this supporter yet; creating an empty account would only add noise.
            results.append(
                TipResult(
                    TipStatus.INSUFFICIENT_FUNDS,
                    r.amount,
                    policy.money(0),
                    supporter_ever_funded=False,
                )
            )
            continue
        payer_id = int(payer.id)
        k = key(r)
        if k in prior:
            results.append(_replay(policy, prior[k], balance[payer_id]))
            continue
        if k in pending:  # the same tip earlier in this batch: a replay
            results.append((pending[k], balance[payer_id], True))
            continue
        creator = locked[k[1]]
        minor = r.amount.minor
        if creator.status == "refusing":
            status = TipStatus.REFUSING_RECIPIENT
            results.append(TipResult(status, r.amount, policy.money(balance[payer_id])))
            continue
        if balance[payer_id] < minor:
            results.append(
                TipResult(
                    TipStatus.INSUFFICIENT_FUNDS,
                    r.amount,
                    policy.money(balance[payer_id]),
                    supporter_ever_funded=credited[payer_id] > 0,
                )
            )
            continue
        held = creator.status != "claimed"
        balance[payer_id] -= minor
        if not held:
            credited[k[1]] += minor
            balance[k[1]] += minor - policy.fee(minor)
        pending[k] = len(new_rows)
        new_rows.append(
            {
                "source_id": r.source,
                "supporter_account_id": payer_id,
                "recipient_account_id": k[1],
                "kind": r.kind,
                "amount_minor": minor,
                "fee_minor": 0 if held else policy.fee(minor),
                "state": TipState.POSTED,  # or held, once its hold has an id (below)
                "expires_at": now + policy.hold_period if held else None,
                "created_at": now,
            }
        )
        results.append((pending[k], balance[payer_id], False))

    # Ids first, so each tip is written once, already pointing at its hold, and every
    # row goes in by bulk insert (COPY on PostgreSQL).
    tip_ids = allocate_ids(conn, tips, len(new_rows))
    fee_count = sum(1 for new in new_rows if new["expires_at"] is None and new["fee_minor"])
    transfer_ids = iter(allocate_ids(conn, transfers, len(new_rows) + fee_count))
    batch: list[Transfer] = []
    for new, tid in zip(new_rows, tip_ids, strict=True):
        payer, creator, minor = (
            new["supporter_account_id"],
            new["recipient_account_id"],
            new["amount_minor"],
        )
        new["id"] = tid
        if new["expires_at"] is not None:
            hold_id = next(transfer_ids)
            batch.append(
                Transfer(
                    payer,
                    creator,
                    minor,
                    "hold",
                    expires_at=new["expires_at"],
                    tip_id=tid,
                    id=hold_id,
                )
            )
            new["state"], new["hold_transfer_id"] = TipState.HELD, hold_id
            continue
        new["hold_transfer_id"] = None
        batch.append(Transfer(payer, creator, minor, "tip", tip_id=tid, id=next(transfer_ids)))
        if new["fee_minor"]:
            batch.append(
                Transfer(
                    creator, fees_id, new["fee_minor"], "fee", tip_id=tid, id=next(transfer_ids)
                )
            )
    # One counter UPDATE per account carries the batch's net movement, so a creator paid
    # earlier in the batch may spend it on a later hold without tripping the CHECK.
    apply_transfers(conn, batch, now)
    bulk_insert(conn, tips, new_rows)

    out: list[TipResult] = []
    for result in results:
        if isinstance(result, TipResult):
            out.append(result)
            continue
        index, available_then, replayed = result
        new = new_rows[index]
        out.append(
            TipResult(
                status=TipStatus.HELD if new["expires_at"] is not None else TipStatus.POSTED,
                amount=policy.money(new["amount_minor"]),
                available=policy.money(available_then),
                tip_id=tip_ids[index],
                fee=policy.money(new["fee_minor"]),
                expires_at=new["expires_at"],
                replayed=replayed,
            )
        )
    return out


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
        .where(tips.c.id.in_([r.id for r in rows]), is_held())
        .values(state=TipState.VOIDED, resolution=reason, resolved_at=now)
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
    if row.state != TipState.HELD:
        return RetractResult(False, amount, "not_held")
    if not void_holds(conn, policy, [row], "retracted", now):
        return RetractResult(False, amount, "not_held")
    return RetractResult(True, amount, "retracted")
