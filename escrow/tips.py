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

from escrow.db import allocate_ids_of, bulk_insert, one_of
from escrow.debts import debtors
from escrow.decide import (
    Account,
    Book,
    NewTip,
    PriorTip,
    TipRequest,
    TipResult,
    decide_tips,
    with_tip_ids,
)
from escrow.ledger import (
    FEES,
    SYSTEM,
    Identity,
    LedgerError,
    Policy,
    Transfer,
    apply_transfers,
    available,
    bind_currency,
    ensure_accounts,
    find_account,
    is_held,
    lock_accounts,
    lock_accounts_of,
    system_account,
)
from escrow.money import Money
from escrow.schema import TipState, tips, transfers


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
    """Apply `requests` in order, as `escrow.decide.decide_tips` decides them.

    The listener applies a whole page of mentions at once: the accounts of every request are
    created and locked together (id order), the decider works on their balances in memory,
    and the rows go in as bulk inserts. A request whose (source, recipient) exists already,
    in the database or earlier in the same batch, is a replay that moves nothing.
    """
    for r in requests:
        policy.check(r.amount)
        if not r.source:
            raise LedgerError("a tip needs its source (the tweet id) to be idempotent")
    if not requests:
        return []
    bind_currency(conn, policy.currency, now)
    book, fees_id = _load_book(conn, requests, now)
    decisions = decide_tips(requests, book, policy, now)
    tip_ids = _write_tips(conn, decisions.new, fees_id, now)
    return with_tip_ids(decisions, tip_ids)


_FEES = Identity(SYSTEM, FEES)
_FEES_KEY = (_FEES.platform, _FEES.user_id)


def _load_book(conn: Connection, requests: Sequence[TipRequest], now: datetime) -> tuple[Book, int]:
    """The accounts of `requests` (recipients of funded supporters created), locked, and
    the tips of their sources applied before; and the id of the `fees` account.

    One statement finds and locks supporters, recipients and `fees` alike; only accounts
    this batch creates need another. A page of tips is written in as few statements as it
    can be, since each one is a round trip on PostgreSQL.
    """
    everyone = [_FEES, *(r.supporter for r in requests), *(r.recipient for r in requests)]
    found = lock_accounts_of(conn, everyone)
    payers = {(r.supporter.platform, r.supporter.user_id) for r in requests} & found.keys()
    # Who can pay: a supporter with an account, or one this batch creates as a recipient
    # of someone who can (a tip earlier in the batch may fund them, as one by one).
    paying = set(payers)
    while True:
        funded = [r for r in requests if (r.supporter.platform, r.supporter.user_id) in paying]
        more = {(r.recipient.platform, r.recipient.user_id) for r in funded} - paying
        if not more:
            break
        paying |= more
    ids = ensure_accounts(conn, [r.recipient for r in funded], now, known=found)
    ids.update({k: int(found[k].id) for k in payers})
    locked = {int(row.id): row for row in found.values()}
    fees_id = int(found[_FEES_KEY].id) if _FEES_KEY in found else system_account(conn, FEES)
    locked.update(lock_accounts(conn, {*ids.values(), fees_id} - locked.keys()))
    owed = debtors(conn, [ids[k] for k in payers])
    accounts = {
        aid: Account(
            aid, str(row.status), available(row), int(row.credits_posted), owed.get(aid, 0)
        )
        for aid, row in locked.items()
    }
    # Tips applied before, by (source, recipient). Asked by source alone, the leading column
    # of the unique index: a row-value IN list would be planned as a scan on PostgreSQL.
    keys = {(r.source, ids[(r.recipient.platform, r.recipient.user_id)]) for r in funded}
    sources = sorted({source for source, _ in keys})
    prior: dict[tuple[str, int], PriorTip] = {}
    for i in range(0, len(sources), 500):
        for row in conn.execute(
            select(tips).where(one_of(conn, tips.c.source_id, sources[i : i + 500]))
        ):
            if (row.source_id, row.recipient_account_id) in keys:
                prior[(row.source_id, row.recipient_account_id)] = PriorTip(
                    int(row.id),
                    int(row.amount_minor),
                    int(row.fee_minor),
                    row.hold_transfer_id is not None,
                    row.expires_at,
                )
    return Book(ids, accounts, prior), fees_id


def _write_tips(conn: Connection, new: Sequence[NewTip], fees_id: int, now: datetime) -> list[int]:
    """Write the decided tips and their transfers; returns their tip ids, in order.

    Ids first, so each tip is written once, already pointing at its hold, and every row
    goes in by bulk insert (COPY on PostgreSQL).
    """
    fee_count = sum(1 for t in new if t.fee_minor)
    reserved = allocate_ids_of(conn, {tips: len(new), transfers: len(new) + fee_count})
    tip_ids, transfer_ids = reserved[tips.name], iter(reserved[transfers.name])
    batch: list[Transfer] = []
    rows: list[dict[str, Any]] = []
    for t, tid in zip(new, tip_ids, strict=True):
        move_id = next(transfer_ids)
        kind = "hold" if t.held else "tip"
        batch.append(
            Transfer(
                t.supporter_id,
                t.recipient_id,
                t.amount_minor,
                kind,
                expires_at=t.expires_at,
                tip_id=tid,
                id=move_id,
            )
        )
        if t.fee_minor:
            fee_id = next(transfer_ids)
            batch.append(
                Transfer(t.recipient_id, fees_id, t.fee_minor, "fee", tip_id=tid, id=fee_id)
            )
        rows.append(
            {
                "id": tid,
                "source_id": t.source,
                "supporter_account_id": t.supporter_id,
                "recipient_account_id": t.recipient_id,
                "kind": t.kind,
                "amount_minor": t.amount_minor,
                "fee_minor": t.fee_minor,
                "state": TipState.HELD if t.held else TipState.POSTED,
                "hold_transfer_id": move_id if t.held else None,
                "expires_at": t.expires_at,
                "created_at": now,
            }
        )
    # One counter UPDATE per account carries the batch's net movement, so a creator paid
    # earlier in the batch may spend it on a later hold without tripping the CHECK.
    apply_transfers(conn, batch, now)
    bulk_insert(conn, tips, rows)
    return tip_ids


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
