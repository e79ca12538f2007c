"""The audit: recompute the ledger from its transfers and list every inconsistency.

The account counters are a cache; the transfers are the truth. `check_ledger` recomputes
every counter from the transfers, checks that debits equal credits (posted and pending),
that no account that must not overdraw has, that every hold was resolved at most once,
with its own amount and accounts, and never posted after it expired, and that each tip's
state agrees with its transfers, and (`escrow.audit_funding`) that every deposit, refund,
dispute and debt payment is in double entry, and (`escrow.payouts`) that every payout is
pending, posted or voided exactly once, in agreement with its hold and reversals. It returns
problems as data (`LedgerProblem`: kind, the account, transfer or tip concerned, a message);
an empty list is a clean ledger.
Everything is computed in SQL, so memory does not grow with the ledger; the statements
are built once per process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import Connection, Select, and_, func, or_, select
from sqlalchemy.orm import aliased

from escrow.audit_funding import debt_checks, funding_checks
from escrow.ledger import available_of, is_held
from escrow.payouts import audit_checks as payout_checks
from escrow.schema import TipState, accounts, tips, transfers

POSTED_KINDS = ("deposit", "tip", "fee", "post", "payout", "refund")
MAX_LISTED = 20  # per kind of problem; a broken ledger should not flood the terminal


class ProblemKind(StrEnum):
    UNBALANCED = "unbalanced"  # debits and credits of all accounts differ
    COUNTERS = "counters"  # an account's counters differ from its transfers
    OVERDRAWN = "overdrawn"
    MISMATCHED_RESOLUTION = "mismatched_resolution"  # a post/void unlike its hold
    RESOLVED_TWICE = "resolved_twice"
    POSTED_AFTER_EXPIRY = "posted_after_expiry"
    TIP_VS_HOLD = "tip_vs_hold"  # a tip's state disagrees with its hold's resolution
    TIP_UNPAID = "tip_unpaid"  # a posted tip without its transfer
    FUNDING = "funding"  # a deposit, refund, dispute or debt unlike its transfers
    PAYOUT = "payout"  # a payout unlike its hold, its resolution or its reversals


@dataclass(frozen=True)
class LedgerProblem:
    """One inconsistency, as data: what kind, what it concerns, and a sentence for people."""

    kind: ProblemKind
    message: str
    account_id: int | None = None
    transfer_id: int | None = None
    tip_id: int | None = None

    def __str__(self) -> str:
        return self.message

    def as_json(self) -> dict[str, object]:
        return {
            "kind": str(self.kind),
            "message": self.message,
            "account_id": self.account_id,
            "transfer_id": self.transfer_id,
            "tip_id": self.tip_id,
        }


def _label(row: Any) -> str:
    return f"account {row.id} ({row.platform}:{row.platform_user_id})"


def _counter_drift() -> Select[Any]:
    """The accounts whose counters differ from what their transfers add up to."""
    t = transfers
    res = aliased(transfers)
    unresolved = ~select(res.c.id).where(res.c.pending_id == t.c.id).exists()
    posted = t.c.kind.in_(POSTED_KINDS)
    pending = and_(t.c.kind == "hold", unresolved)

    outflows = (
        select(
            t.c.debit_account_id.label("account_id"),
            func.sum(t.c.amount_minor).filter(posted).label("dp"),
            func.sum(t.c.amount_minor).filter(pending).label("dq"),
        )
        .group_by(t.c.debit_account_id)
        .subquery()
    )
    inflows = (
        select(
            t.c.credit_account_id.label("account_id"),
            func.sum(t.c.amount_minor).filter(posted).label("cp"),
            func.sum(t.c.amount_minor).filter(pending).label("cq"),
        )
        .group_by(t.c.credit_account_id)
        .subquery()
    )
    dp, dq = func.coalesce(outflows.c.dp, 0), func.coalesce(outflows.c.dq, 0)
    cp, cq = func.coalesce(inflows.c.cp, 0), func.coalesce(inflows.c.cq, 0)
    counters = (
        select(accounts, dp.label("dp"), dq.label("dq"), cp.label("cp"), cq.label("cq"))
        .outerjoin(outflows, outflows.c.account_id == accounts.c.id)
        .outerjoin(inflows, inflows.c.account_id == accounts.c.id)
        .where(
            or_(
                accounts.c.debits_posted != dp,
                accounts.c.debits_pending != dq,
                accounts.c.credits_posted != cp,
                accounts.c.credits_pending != cq,
            )
        )
    )
    return counters


def _tip_drift() -> tuple[Select[Any], Select[Any]]:
    """Tips whose state disagrees with their hold's resolution; posted tips never paid."""
    t = transfers
    resolution = aliased(transfers)
    tip_vs_hold = (
        select(tips.c.id, tips.c.state, resolution.c.kind.label("rk"))
        .outerjoin(resolution, resolution.c.pending_id == tips.c.hold_transfer_id)
        .where(
            tips.c.hold_transfer_id.is_not(None),
            or_(
                and_(is_held(), resolution.c.id.is_not(None)),
                and_(
                    tips.c.state == TipState.VOIDED,
                    or_(resolution.c.kind.is_(None), resolution.c.kind != "void"),
                ),
                and_(
                    tips.c.state == TipState.POSTED,
                    or_(resolution.c.kind.is_(None), resolution.c.kind != "post"),
                ),
            ),
        )
    )
    unpaid = select(tips.c.id).where(
        tips.c.hold_transfer_id.is_(None),
        or_(
            tips.c.state != TipState.POSTED,
            ~select(t.c.id).where(t.c.tip_id == tips.c.id, t.c.kind == "tip").exists(),
        ),
    )
    return tip_vs_hold, unpaid


@cache
def _checks() -> list[tuple[Select[Any], Callable[[Any], LedgerProblem]]]:
    """(statement, how to describe each row it returns): every row returned is a problem."""
    t = transfers
    hold = aliased(transfers)
    counters = _counter_drift()
    overdrawn = select(accounts).where(
        accounts.c.no_overdraft,
        available_of(accounts.c) < 0,
    )
    mismatched = (
        select(t.c.id, t.c.kind, t.c.pending_id)
        .join(hold, hold.c.id == t.c.pending_id)
        .where(
            t.c.kind.in_(("post", "void")),
            or_(
                hold.c.kind != "hold",
                t.c.amount_minor != hold.c.amount_minor,
                t.c.debit_account_id != hold.c.debit_account_id,
                t.c.credit_account_id != hold.c.credit_account_id,
            ),
        )
    )
    twice = (
        select(t.c.pending_id, func.count().label("n"))
        .where(t.c.pending_id.is_not(None))
        .group_by(t.c.pending_id)
        .having(func.count() > 1)
    )
    late = (
        select(t.c.id, t.c.pending_id)
        .join(hold, hold.c.id == t.c.pending_id)
        .where(t.c.kind == "post", t.c.created_at > hold.c.expires_at)
    )
    tip_vs_hold, unpaid = _tip_drift()
    return [
        (
            counters.limit(MAX_LISTED),
            lambda r: LedgerProblem(
                ProblemKind.COUNTERS,
                f"{_label(r)} counters (dp={r.debits_posted}, cp={r.credits_posted},"
                f" dq={r.debits_pending}, cq={r.credits_pending}) differ from its transfers"
                f" (dp={r.dp}, cp={r.cp}, dq={r.dq}, cq={r.cq})",
                account_id=r.id,
            ),
        ),
        (
            overdrawn.limit(MAX_LISTED),
            lambda r: LedgerProblem(
                ProblemKind.OVERDRAWN,
                f"{_label(r)} has a negative available balance",
                account_id=r.id,
            ),
        ),
        (
            mismatched.limit(MAX_LISTED),
            lambda r: LedgerProblem(
                ProblemKind.MISMATCHED_RESOLUTION,
                f"transfer {r.id} ({r.kind}) does not match the hold {r.pending_id} it resolves",
                transfer_id=r.id,
            ),
        ),
        (
            twice.limit(MAX_LISTED),
            lambda r: LedgerProblem(
                ProblemKind.RESOLVED_TWICE,
                f"hold {r.pending_id} was resolved {r.n} times",
                transfer_id=r.pending_id,
            ),
        ),
        (
            late.limit(MAX_LISTED),
            lambda r: LedgerProblem(
                ProblemKind.POSTED_AFTER_EXPIRY,
                f"hold {r.pending_id} was posted (transfer {r.id}) after it expired",
                transfer_id=r.id,
            ),
        ),
        (
            tip_vs_hold.limit(MAX_LISTED),
            lambda r: LedgerProblem(
                ProblemKind.TIP_VS_HOLD,
                f"tip {r.id} is {r.state} but its hold's resolution is {r.rk or 'none'}",
                tip_id=r.id,
            ),
        ),
        (
            unpaid.limit(MAX_LISTED),
            lambda r: LedgerProblem(
                ProblemKind.TIP_UNPAID, f"tip {r.id} was posted without its transfer", tip_id=r.id
            ),
        ),
    ]


@cache
def _totals() -> Select[Any]:
    return select(
        func.coalesce(func.sum(accounts.c.debits_posted), 0),
        func.coalesce(func.sum(accounts.c.credits_posted), 0),
        func.coalesce(func.sum(accounts.c.debits_pending), 0),
        func.coalesce(func.sum(accounts.c.credits_pending), 0),
    )


def check_ledger(conn: Connection) -> list[LedgerProblem]:
    """Every inconsistency between the counters, the transfers and the tips; [] is clean."""
    problems: list[LedgerProblem] = []
    debits, credits, debits_pending, credits_pending = conn.execute(_totals()).one()
    if debits != credits:
        problems.append(
            LedgerProblem(
                ProblemKind.UNBALANCED, f"posted debits {debits} != posted credits {credits}"
            )
        )
    if debits_pending != credits_pending:
        problems.append(
            LedgerProblem(
                ProblemKind.UNBALANCED,
                f"pending debits {debits_pending} != pending credits {credits_pending}",
            )
        )
    for statement, describe in _checks():
        problems.extend(describe(row) for row in conn.execute(statement))
    for statement, say in [*funding_checks(), *debt_checks()]:
        problems.extend(
            LedgerProblem(ProblemKind.FUNDING, say(row)) for row in conn.execute(statement)
        )
    for statement, say in payout_checks():
        problems.extend(
            LedgerProblem(ProblemKind.PAYOUT, say(row)) for row in conn.execute(statement)
        )
    return problems
