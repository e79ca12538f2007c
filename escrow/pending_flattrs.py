"""A supporter's pending flattrs: the shares not settled yet, and withdrawing one.

A flattr moves no money when it is made (see `escrow.flattrs`): it records a share that
the month's settlement turns into a tip. Until then the supporter may look at their open
shares and cancel any of them. Cancelling deletes the open share (no money ever moved for
it, and the flattr tweet stays recorded as processed, so it is never read again); a new
flattr of the same creator in the same month records a share again.

Cancelling locks the supporter's account first, as recording a share and settling a
supporter do, so a cancel and that supporter's settlement never interleave: a share
already settled (or whose supporter the month's settlement has already counted) cannot be
cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, delete, func, select

from escrow.flattrs import _month_is_closed, _run_of
from escrow.ledger import lock_accounts
from escrow.schema import accounts, shares


@dataclass(frozen=True)
class PendingFlattr:
    """One open share of a supporter: whom they flattred, and when they tweeted it."""

    share_id: int
    period: str
    recipient_platform: str
    recipient_user_id: str
    recipient_handle: str | None
    flattred_at: datetime


class CancelStatus(StrEnum):
    CANCELLED = "cancelled"
    NOT_FOUND = "not_found"  # no such share of this supporter
    SETTLED = "settled"  # its month was settled for this supporter: too late


def pending_flattrs(conn: Connection, supporter_account_id: int) -> list[PendingFlattr]:
    """The supporter's open shares, oldest tweet first."""
    rows = conn.execute(
        select(
            shares.c.id,
            shares.c.period,
            shares.c.flattred_at,
            accounts.c.platform,
            accounts.c.platform_user_id,
            accounts.c.handle,
        )
        .join(accounts, accounts.c.id == shares.c.recipient_account_id)
        .where(shares.c.supporter_account_id == supporter_account_id, shares.c.state == "open")
        .order_by(shares.c.flattred_at, shares.c.id)
    ).all()
    return [
        PendingFlattr(
            share_id=int(r.id),
            period=str(r.period),
            recipient_platform=str(r.platform),
            recipient_user_id=str(r.platform_user_id),
            recipient_handle=r.handle,
            flattred_at=r.flattred_at,
        )
        for r in rows
    ]


def count_pending_flattrs(conn: Connection, supporter_account_id: int) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(shares)
            .where(
                shares.c.supporter_account_id == supporter_account_id,
                shares.c.state == "open",
            )
        ).scalar_one()
    )


def cancel_flattr(conn: Connection, supporter_account_id: int, share_id: int) -> CancelStatus:
    """Withdraw `share_id` if it is the supporter's own and not settled yet."""
    lock_accounts(conn, [supporter_account_id])
    row = conn.execute(
        select(shares.c.period, shares.c.state).where(
            shares.c.id == share_id, shares.c.supporter_account_id == supporter_account_id
        )
    ).one_or_none()
    if row is None:
        return CancelStatus.NOT_FOUND
    period = str(row.period)
    if row.state != "open" or _month_is_closed(
        conn, _run_of(conn, period), period, supporter_account_id
    ):
        return CancelStatus.SETTLED
    conn.execute(delete(shares).where(shares.c.id == share_id, shares.c.state == "open"))
    return CancelStatus.CANCELLED
