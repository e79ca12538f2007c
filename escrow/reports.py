"""Reports: what is held in escrow, for whom, and what one account looks like.

These are read-only views for maintainers (`tipjar escrow balances`, `tipjar accounts
show`) and for the web pages. Amounts are returned as integer minor units; formatting is
the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Subquery, func, select

from escrow.ledger import Identity, available, find_account, held_for, is_held
from escrow.schema import accounts, tips


@dataclass(frozen=True)
class HeldFor:
    account_id: int
    platform: str
    user_id: str
    handle: str | None
    held_minor: int
    tips: int
    supporters: int
    oldest_at: datetime
    next_expiry_at: datetime
    notices_sent: int = 0


@dataclass(frozen=True)
class EscrowBalances:
    total_held_minor: int
    holds: int
    recipients: list[HeldFor]


def held_by_recipient(created_before: datetime | None = None) -> Subquery:
    """Per recipient of open holds: held_minor, tips, supporters, oldest_at, next_expiry_at.

    With `created_before`, only the holds made before then count.
    """
    where = [is_held()]
    if created_before is not None:
        where.append(tips.c.created_at <= created_before)
    return (
        select(
            tips.c.recipient_account_id.label("account_id"),
            func.sum(tips.c.amount_minor).label("held_minor"),
            func.count().label("tips"),
            func.count(tips.c.supporter_account_id.distinct()).label("supporters"),
            func.min(tips.c.created_at).label("oldest_at"),
            func.min(tips.c.expires_at).label("next_expiry_at"),
        )
        .where(*where)
        .group_by(tips.c.recipient_account_id)
        .subquery()
    )


def escrow_balances(conn: Connection, limit: int | None = None) -> EscrowBalances:
    """Held money per recipient, largest first, with totals over every hold."""
    held = is_held()
    per = held_by_recipient()
    query = (
        select(accounts.c.platform, accounts.c.platform_user_id, accounts.c.handle, per)
        .join(per, per.c.account_id == accounts.c.id)
        .order_by(per.c.held_minor.desc(), accounts.c.id)
    )
    if limit is not None:
        query = query.limit(limit)
    notices = notices_sent_by_recipient(conn)
    recipients = [
        HeldFor(
            account_id=r.account_id,
            platform=r.platform,
            user_id=r.platform_user_id,
            handle=r.handle,
            held_minor=int(r.held_minor),
            tips=int(r.tips),
            supporters=int(r.supporters),
            oldest_at=r.oldest_at,
            next_expiry_at=r.next_expiry_at,
            notices_sent=notices.get(r.account_id, 0),
        )
        for r in conn.execute(query)
    ]
    totals = conn.execute(
        select(func.coalesce(func.sum(tips.c.amount_minor), 0), func.count()).where(held)
    ).one()
    return EscrowBalances(int(totals[0]), int(totals[1]), recipients)


def notices_sent_by_recipient(conn: Connection) -> dict[int, int]:
    """Creator notices sent per recipient account (zero until the outbox exists)."""
    from escrow.schema import metadata

    outbox = metadata.tables.get("outbox")
    if outbox is None:
        return {}
    rows = conn.execute(
        select(outbox.c.recipient_account_id, func.count())
        .where(outbox.c.kind == "creator_notice", outbox.c.state == "sent")
        .group_by(outbox.c.recipient_account_id)
    )
    return {int(a): int(n) for a, n in rows if a is not None}


@dataclass(frozen=True)
class AccountView:
    account_id: int
    platform: str
    user_id: str
    handle: str | None
    status: str
    available_minor: int
    reserved_minor: int  # in this account's outgoing holds
    held_for_minor: int  # in holds waiting for this account


def account_view(row: Row[Any]) -> AccountView:
    return AccountView(
        account_id=int(row.id),
        platform=row.platform,
        user_id=row.platform_user_id,
        handle=row.handle,
        status=row.status,
        available_minor=available(row),
        reserved_minor=int(row.debits_pending),
        held_for_minor=int(row.credits_pending),
    )


def account_by_id(conn: Connection, account_id: int) -> AccountView | None:
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).one_or_none()
    return account_view(row) if row else None


@dataclass(frozen=True)
class Hold:
    tip_id: int
    supporter_user_id: str
    supporter_handle: str | None
    amount_minor: int
    created_at: datetime
    expires_at: datetime
    source_id: str


def holds_for(conn: Connection, who: Identity) -> list[Hold]:
    """The open holds waiting for `who`, oldest first."""
    creator = find_account(conn, who)
    if creator is None:
        return []
    rows = conn.execute(
        select(tips, accounts.c.platform_user_id, accounts.c.handle)
        .join(accounts, accounts.c.id == tips.c.supporter_account_id)
        .where(held_for(creator.id))
        .order_by(tips.c.created_at, tips.c.id)
    )
    return [
        Hold(
            tip_id=r.id,
            supporter_user_id=r.platform_user_id,
            supporter_handle=r.handle,
            amount_minor=r.amount_minor,
            created_at=r.created_at,
            expires_at=r.expires_at,
            source_id=r.source_id,
        )
        for r in rows
    ]
