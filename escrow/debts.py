"""Debts: what a refund or a lost dispute could not take from a supporter.

`escrow.funding` records debts and pays them from new money; this module only answers who
owes what, for `escrow.tips`, which refuses every tip of a supporter in debt.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, func, select

from escrow.schema import debts


def open_debt(conn: Connection, account_id: int) -> int:
    """What `account_id` still owes from refunds and disputes (0: nothing)."""
    owed = conn.execute(
        select(
            func.coalesce(
                func.sum(debts.c.amount_minor - debts.c.paid_minor - debts.c.forgiven_minor), 0
            )
        ).where(debts.c.account_id == account_id, debts.c.settled_at.is_(None))
    ).scalar_one()
    return int(owed)


def debtors(conn: Connection, account_ids: Sequence[int]) -> dict[int, int]:
    """Of `account_ids`, those with an open debt, and how much each owes."""
    if not account_ids:
        return {}
    owed = debts.c.amount_minor - debts.c.paid_minor - debts.c.forgiven_minor
    rows = conn.execute(
        select(debts.c.account_id, func.sum(owed))
        .where(debts.c.account_id.in_(list(account_ids)), debts.c.settled_at.is_(None))
        .group_by(debts.c.account_id)
    )
    return {int(aid): int(total) for aid, total in rows}


__all__ = ["debtors", "open_debt"]
