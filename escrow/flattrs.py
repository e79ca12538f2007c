"""Flattrs: the shares a supporter records during a month, their budgets, and the months.

A flattr moves no money when it is made. `record_flattr` records one share for
(supporter, recipient, month of the tweet's `created_at` in UTC), at most one per pair and
month; `record_flattrs` records the shares of one tweet to several creators together, all
or none. What a share becomes is decided when its month is settled (`escrow.settlement`),
from the supporter's monthly budget (`set_budget`/`get_budget`; a supporter who never set
one gives the deployment's minimum).

Decisions where the brief left room:
- A flattr that arrives after its supporter was settled for the tweet's month, or after
  the month's settlement completed (a poll running late), counts in the month it was
  recorded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, exists, select

from escrow.db import dialect_insert, for_key_share, upsert
from escrow.ledger import (
    Identity,
    LedgerError,
    Policy,
    ensure_account,
    find_account,
    lock_accounts,
)
from escrow.money import Money
from escrow.schema import budgets, settlement_runs, settlements, shares

MIN_MONTHLY_BUDGET_MINOR = 200  # the default of settings.min_monthly_budget (2.00)

_PERIOD = re.compile(r"(\d{4})-(0[1-9]|1[0-2])\Z")


class SettlementError(LedgerError):
    """A settlement that cannot run as asked (a month not ended, a malformed period)."""


# --- months ------------------------------------------------------------------------------


def period_of(moment: datetime) -> str:
    """The month ``YYYY-MM`` that `moment` falls in, in UTC."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: a flattr's month is taken in UTC")
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """The first instant of `period` and the first instant after it, in UTC."""
    m = _PERIOD.match(period.strip())
    if not m:
        raise SettlementError(f"{period!r} is not a month like 2026-03")
    year, month = int(m.group(1)), int(m.group(2))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


# --- flattrs -----------------------------------------------------------------------------


class FlattrStatus(StrEnum):
    RECORDED = "recorded"
    ALREADY_FLATTRED = "already_flattred"
    REFUSING_RECIPIENT = "refusing_recipient"
    UNKNOWN_SUPPORTER = "unknown_supporter"  # no account at all: never funded
    SELF_TIP = "self_tip"


@dataclass(frozen=True)
class FlattrResult:
    status: FlattrStatus
    period: str
    share_id: int | None = None
    replayed: bool = False  # the same tweet again: the share it recorded the first time

    @property
    def recorded(self) -> bool:
        return self.status == FlattrStatus.RECORDED


def _run_of(conn: Connection, period: str) -> Any:
    """The month's run row, key-share-locked: the month's completion waits for this
    transaction, and this one for it. Batches do not take the row's lock until they add
    their totals, after their accounts, which is why this lock must not be stronger:
    FOR SHARE here, taken before the accounts, could deadlock with them."""
    return conn.execute(
        for_key_share(
            select(settlement_runs.c.completed_at).where(settlement_runs.c.period == period)
        )
    ).one_or_none()


def _month_is_closed(conn: Connection, run: Any, period: str, supporter_id: int) -> bool:
    """True when `supporter_id` can no longer get a share of `period` settled with it.

    Asked with the supporter locked, so their marker, if any, is committed and visible
    (even when the month's run began after `run` was read).
    """
    if run is not None and run.completed_at is not None:
        return True
    marker = select(settlements.c.period).where(
        settlements.c.period == period, settlements.c.supporter_account_id == supporter_id
    )
    return bool(conn.execute(select(exists(marker))).scalar())


def record_flattr(
    conn: Connection,
    policy: Policy,
    supporter: Identity,
    recipient: Identity,
    tweet_created_at: datetime,
    source: str,
    now: datetime,
) -> FlattrResult:
    """Record the share of a flattr; it moves no money until its month is settled.

    One share per (supporter, recipient, UTC month of the tweet): a second flattr of the
    same creator in that month is `already_flattred` (the same tweet again is a replay of
    the first and reports `recorded`). A supporter without an account is
    `unknown_supporter` and nothing is created; one with an account but no money still
    gets the share (they may fund it before the month ends). Creates the recipient's
    account, as a tip would.
    """
    (result,) = record_flattrs(conn, policy, supporter, [recipient], tweet_created_at, source, now)
    return result


def record_flattrs(
    conn: Connection,
    policy: Policy,
    supporter: Identity,
    recipients: Sequence[Identity],
    tweet_created_at: datetime,
    source: str,
    now: datetime,
) -> list[FlattrResult]:
    """Record the shares of one tweet that flattrs several creators: one decision.

    The supporter and every recipient are locked together (id order) before any share is
    looked at, and all the tweet's shares land in the same month under that lock, so a
    settlement sees all of them or none. Each recipient's result follows `record_flattr`.
    """
    period = period_of(tweet_created_at)
    if not source:
        raise LedgerError("a flattr needs its source (the tweet id) to be idempotent")
    found = find_account(conn, supporter)
    me = (supporter.platform, supporter.user_id)
    others = [r for r in recipients if (r.platform, r.user_id) != me]
    if found is None or not others:
        status = FlattrStatus.UNKNOWN_SUPPORTER if found is None else FlattrStatus.SELF_TIP
        return [
            FlattrResult(FlattrStatus.SELF_TIP if (r.platform, r.user_id) == me else status, period)
            for r in recipients
        ]
    supporter_id = int(found.id)
    run = _run_of(conn, period)
    ids = {(r.platform, r.user_id): ensure_account(conn, r, now) for r in others}
    # The supporter's lock orders this flattr against their settlement (which locks them
    # before reading their shares): the shares land either before it or in a later month.
    locked = lock_accounts(conn, [supporter_id, *ids.values()])
    if _month_is_closed(conn, run, period, supporter_id):
        later = period_of(now)
    else:
        later = period
    return [
        FlattrResult(FlattrStatus.SELF_TIP, period)
        if (r.platform, r.user_id) == me
        else _record_share(
            conn,
            _Share(supporter_id, ids[(r.platform, r.user_id)], source, tweet_created_at),
            (period, later),
            locked[ids[(r.platform, r.user_id)]].status == "refusing",
            now,
        )
        for r in recipients
    ]


@dataclass(frozen=True)
class _Share:
    supporter_id: int
    recipient_id: int
    source: str
    flattred_at: datetime


def _existing_share(conn: Connection, share: _Share, month: str) -> Any:
    return conn.execute(
        select(shares.c.id, shares.c.source_id).where(
            shares.c.period == month,
            shares.c.supporter_account_id == share.supporter_id,
            shares.c.recipient_account_id == share.recipient_id,
        )
    ).one_or_none()


def _record_share(
    conn: Connection, share: _Share, months: tuple[str, str], refusing: bool, now: datetime
) -> FlattrResult:
    """One recipient's share, its accounts locked: `months` is (the tweet's month, the
    month it counts in: a later one when the tweet's month is closed to the supporter)."""
    period, later = months
    row = _existing_share(conn, share, period)
    if row is not None and row.source_id == share.source:
        return FlattrResult(FlattrStatus.RECORDED, period, int(row.id), replayed=True)
    if refusing:
        return FlattrResult(FlattrStatus.REFUSING_RECIPIENT, period)
    if later != period:
        period = later
        row = _existing_share(conn, share, period)
    if row is None:
        conn.execute(
            dialect_insert(conn, shares)
            .values(
                period=period,
                supporter_account_id=share.supporter_id,
                recipient_account_id=share.recipient_id,
                source_id=share.source,
                state="open",
                flattred_at=share.flattred_at,
                created_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=["period", "supporter_account_id", "recipient_account_id"]
            )
        )
        row = _existing_share(conn, share, period)
        if row.source_id == share.source:
            return FlattrResult(FlattrStatus.RECORDED, period, int(row.id))
    if row.source_id == share.source:
        return FlattrResult(FlattrStatus.RECORDED, period, int(row.id), replayed=True)
    return FlattrResult(FlattrStatus.ALREADY_FLATTRED, period, int(row.id))


# --- budgets -----------------------------------------------------------------------------


def set_budget(
    conn: Connection, policy: Policy, who: Identity, amount: Money, minimum: Money, now: datetime
) -> Money:
    """Set `who`'s monthly flattr budget; refuses an amount below `minimum`."""
    minor = policy.check(amount)
    if amount.currency != minimum.currency or minor < minimum.minor:
        raise LedgerError(f"a monthly budget must be at least {minimum}, not {amount}")
    account_id = ensure_account(conn, who, now)
    values = {"account_id": account_id, "monthly_budget_minor": minor, "updated_at": now}
    conn.execute(upsert(conn, budgets, ["account_id"], values))
    return amount


def get_budget(conn: Connection, account_id: int) -> int | None:
    """The monthly budget set for `account_id`, in minor units; None if never set."""
    value = conn.execute(
        select(budgets.c.monthly_budget_minor).where(budgets.c.account_id == account_id)
    ).scalar_one_or_none()
    return None if value is None else int(value)
