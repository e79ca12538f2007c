"""What maintainers see of money in by card: top-ups, subscriptions, refunds, disputes, debts.

`funds_list` gathers every row of the card side into one list of `FundsLine`s, newest
first, each with its state (`problem` wherever something did not add up: a payment in the
wrong amount or currency, an event that could not be read), for `tipjar funds list`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from escrow.schema import accounts, debts, reversals, subscriptions, topups

KINDS = ("topup", "subscription", "refund", "dispute", "debt")
LIMIT = 500


@dataclass(frozen=True)
class FundsLine:
    kind: str
    id: int
    platform: str | None
    user_id: str | None
    handle: str | None
    amount_minor: int
    state: str
    reference: str | None
    problem: str | None
    created_at: datetime
    detail: dict[str, int]  # kind-specific amounts: owed, taken, voided, months paid

    @property
    def who(self) -> str:
        if self.handle:
            return f"@{self.handle}"
        return f"{self.platform}:{self.user_id}" if self.platform else "(waiting)"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "platform": self.platform,
            "user_id": self.user_id,
            "handle": self.handle,
            "amount_minor": self.amount_minor,
            "state": self.state,
            "reference": self.reference,
            "problem": self.problem,
            "created_at": self.created_at.isoformat(),
            **{f"{k}_minor" if k != "months_paid" else k: v for k, v in self.detail.items()},
        }


def _who() -> list[Any]:
    return [accounts.c.platform, accounts.c.platform_user_id, accounts.c.handle]


def _topups(conn: Connection) -> list[FundsLine]:
    query = select(topups, *_who()).join(accounts, accounts.c.id == topups.c.account_id)
    return [
        FundsLine(
            "topup",
            r.id,
            r.platform,
            r.platform_user_id,
            r.handle,
            r.amount_minor,
            r.state,
            r.deposit_reference or r.checkout_session_id,
            r.problem,
            r.created_at,
            {},
        )
        for r in conn.execute(query.order_by(topups.c.id.desc()).limit(LIMIT))
    ]


def _subscriptions(conn: Connection) -> list[FundsLine]:
    query = select(subscriptions, *_who()).join(
        accounts, accounts.c.id == subscriptions.c.account_id
    )
    return [
        FundsLine(
            "subscription",
            r.id,
            r.platform,
            r.platform_user_id,
            r.handle,
            r.amount_minor,
            "problem" if r.problem else r.state,
            r.provider_subscription_id,
            r.problem,
            r.created_at,
            {"months_paid": int(r.months_paid)},
        )
        for r in conn.execute(query.order_by(subscriptions.c.id.desc()).limit(LIMIT))
    ]


def _reversals(conn: Connection) -> list[FundsLine]:
    query = select(reversals, *_who()).outerjoin(accounts, accounts.c.id == reversals.c.account_id)
    return [
        FundsLine(
            r.kind,
            r.id,
            r.platform,
            r.platform_user_id,
            r.handle,
            r.amount_minor,
            r.state,
            r.reference,
            r.problem,
            r.created_at,
            {"taken": int(r.taken_minor), "voided": int(r.voided_minor)},
        )
        for r in conn.execute(query.order_by(reversals.c.id.desc()).limit(LIMIT))
    ]


def _debts(conn: Connection) -> list[FundsLine]:
    query = (
        select(debts, reversals.c.reference, *_who())
        .join(accounts, accounts.c.id == debts.c.account_id)
        .join(reversals, reversals.c.id == debts.c.reversal_id)
    )
    lines = []
    for r in conn.execute(query.order_by(debts.c.id.desc()).limit(LIMIT)):
        owed = int(r.amount_minor - r.paid_minor - r.forgiven_minor)
        state = "open" if owed else ("forgiven" if r.forgiven_minor else "paid")
        lines.append(
            FundsLine(
                "debt",
                r.id,
                r.platform,
                r.platform_user_id,
                r.handle,
                r.amount_minor,
                state,
                r.reference,
                None,
                r.created_at,
                {"owed": owed, "paid": int(r.paid_minor), "forgiven": int(r.forgiven_minor)},
            )
        )
    return lines


def funds_list(conn: Connection, state: str | None = None) -> list[FundsLine]:
    """Every card-side row (the newest `LIMIT` of each kind), newest first; `state` filters."""
    lines = [*_topups(conn), *_subscriptions(conn), *_reversals(conn), *_debts(conn)]
    if state:
        lines = [line for line in lines if line.state == state]
    return sorted(lines, key=lambda line: (line.created_at, line.kind, line.id), reverse=True)
