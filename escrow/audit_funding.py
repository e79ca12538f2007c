"""The audit of money in by card and back out: deposits, top-ups, refunds, disputes, debts.

Part of `escrow.audit.check_ledger`: every deposit (the card payments' `stripe:` ones among
them) is backed by its `deposit` transfer, every paid top-up by its deposit, every refund
or dispute by the transfer that took or froze it (and a closed dispute by the void or post
that resolved the freeze); what a refund or dispute took plus its debt is its amount; and
each debt's paid amount is the sum of its payments, each a `refund` transfer from the
debtor. Each statement returns the rows that are problems.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from sqlalchemy import Select, case, func, or_, select
from sqlalchemy.orm import aliased

from escrow.schema import debt_payments, debts, deposits, reversals, topups, transfers

MAX_LISTED = 20


@cache
def funding_checks() -> list[tuple[Select[Any], Callable[[Any], str]]]:
    """Money in and back out: deposits, top-ups, refunds and disputes against their
    transfers. Every row returned is a problem."""
    t = transfers
    resolution = aliased(transfers)
    deposit_entry = (
        select(deposits.c.reference)
        .outerjoin(t, t.c.id == deposits.c.transfer_id)
        .where(
            or_(
                t.c.id.is_(None),
                t.c.kind != "deposit",
                t.c.amount_minor != deposits.c.amount_minor,
                t.c.credit_account_id != deposits.c.account_id,
            )
        )
    )
    topup_paid = (
        select(topups.c.id)
        .outerjoin(deposits, deposits.c.reference == topups.c.deposit_reference)
        .where(
            topups.c.state == "paid",
            or_(
                deposits.c.reference.is_(None),
                deposits.c.amount_minor != topups.c.amount_minor,
                deposits.c.account_id != topups.c.account_id,
            ),
        )
    )
    taken_kind = case((reversals.c.kind == "refund", "refund"), else_="hold")
    reversal_entry = (
        select(reversals.c.reference)
        .outerjoin(t, t.c.id == reversals.c.transfer_id)
        .where(
            reversals.c.taken_minor > 0,
            or_(
                t.c.id.is_(None),
                t.c.kind != taken_kind,
                t.c.amount_minor != reversals.c.taken_minor,
                t.c.debit_account_id != reversals.c.account_id,
            ),
        )
    )
    closed_kind = case((reversals.c.state == "won", "void"), else_="post")
    dispute_closed = (
        select(reversals.c.reference)
        .outerjoin(resolution, resolution.c.id == reversals.c.resolution_transfer_id)
        .where(
            reversals.c.kind == "dispute",
            reversals.c.state.in_(("won", "lost")),
            reversals.c.taken_minor > 0,
            or_(
                resolution.c.id.is_(None),
                resolution.c.kind != closed_kind,
                resolution.c.pending_id != reversals.c.transfer_id,
            ),
        )
    )
    return [
        (
            deposit_entry.limit(MAX_LISTED),
            lambda r: f"deposit {r.reference} does not match its transfer",
        ),
        (
            topup_paid.limit(MAX_LISTED),
            lambda r: f"top-up {r.id} is paid but its deposit is missing or differs",
        ),
        (
            reversal_entry.limit(MAX_LISTED),
            lambda r: f"{r.reference} does not match the transfer that took or froze it",
        ),
        (
            dispute_closed.limit(MAX_LISTED),
            lambda r: f"{r.reference} is closed but its freeze was not released or taken",
        ),
    ]


@cache
def debt_checks() -> list[tuple[Select[Any], Callable[[Any], str]]]:
    """Refunds and disputes add up to what they took and what is owed; debts to their
    payments, each of which is a refund transfer from the debtor."""
    t = transfers
    debt_amount = func.coalesce(
        select(debts.c.amount_minor).where(debts.c.reversal_id == reversals.c.id).scalar_subquery(),
        0,
    )
    reversal_total = select(reversals.c.reference).where(
        reversals.c.state.in_(("taken", "open", "won", "lost")),
        reversals.c.amount_minor != reversals.c.taken_minor + debt_amount,
    )
    paid_sum = (
        select(func.coalesce(func.sum(debt_payments.c.amount_minor), 0))
        .where(debt_payments.c.debt_id == debts.c.id)
        .scalar_subquery()
    )
    debt_paid = select(debts.c.id, debts.c.paid_minor, paid_sum.label("sum")).where(
        debts.c.paid_minor != paid_sum
    )
    payment_entry = (
        select(debt_payments.c.id, debt_payments.c.debt_id)
        .join(debts, debts.c.id == debt_payments.c.debt_id)
        .outerjoin(t, t.c.id == debt_payments.c.transfer_id)
        .where(
            or_(
                t.c.id.is_(None),
                t.c.kind != "refund",
                t.c.amount_minor != debt_payments.c.amount_minor,
                t.c.debit_account_id != debts.c.account_id,
            )
        )
    )
    return [
        (
            reversal_total.limit(MAX_LISTED),
            lambda r: f"{r.reference}: what was taken and what is owed do not add up",
        ),
        (
            debt_paid.limit(MAX_LISTED),
            lambda r: f"debt {r.id} says {r.paid_minor} paid, its payments add up to {r.sum}",
        ),
        (
            payment_entry.limit(MAX_LISTED),
            lambda r: f"payment {r.id} of debt {r.debt_id} does not match its transfer",
        ),
    ]
