"""The audit: recompute the ledger from its transfers and list every inconsistency.

The account counters are a cache; the transfers are the truth. `check_ledger` recomputes
every counter from the transfers, checks that debits equal credits (posted and pending),
that no account that must not overdraw has, that every hold was resolved at most once,
with its own amount and accounts, and never posted after it expired, and that each tip's
state agrees with its transfers. It returns problems as data; an empty list is a clean
ledger. Everything is computed in SQL, so memory does not grow with the ledger.
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, func, or_, select
from sqlalchemy.orm import aliased

from escrow.schema import accounts, tips, transfers

POSTED_KINDS = ("deposit", "tip", "fee", "post", "payout")
MAX_LISTED = 20  # per kind of problem; a broken ledger should not flood the terminal


def _label(row: object) -> str:
    return f"account {row.id} ({row.platform}:{row.platform_user_id})"  # type: ignore[attr-defined]


def check_ledger(conn: Connection) -> list[str]:
    problems: list[str] = []
    t = transfers
    res = aliased(transfers)
    unresolved = ~select(res.c.id).where(res.c.pending_id == t.c.id).exists()

    # 1. Debits equal credits, posted and pending, across all accounts.
    sums = conn.execute(
        select(
            func.coalesce(func.sum(accounts.c.debits_posted), 0),
            func.coalesce(func.sum(accounts.c.credits_posted), 0),
            func.coalesce(func.sum(accounts.c.debits_pending), 0),
            func.coalesce(func.sum(accounts.c.credits_pending), 0),
        )
    ).one()
    if sums[0] != sums[1]:
        problems.append(f"posted debits {sums[0]} != posted credits {sums[1]}")
    if sums[2] != sums[3]:
        problems.append(f"pending debits {sums[2]} != pending credits {sums[3]}")

    # 2. Every counter equals the sum of its transfers.
    posted = t.c.kind.in_(POSTED_KINDS)
    pending = and_(t.c.kind == "hold", unresolved)
    flows = (
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
    rows = conn.execute(
        select(
            accounts,
            func.coalesce(flows.c.dp, 0).label("dp"),
            func.coalesce(flows.c.dq, 0).label("dq"),
            func.coalesce(inflows.c.cp, 0).label("cp"),
            func.coalesce(inflows.c.cq, 0).label("cq"),
        )
        .outerjoin(flows, flows.c.account_id == accounts.c.id)
        .outerjoin(inflows, inflows.c.account_id == accounts.c.id)
        .where(
            or_(
                accounts.c.debits_posted != func.coalesce(flows.c.dp, 0),
                accounts.c.debits_pending != func.coalesce(flows.c.dq, 0),
                accounts.c.credits_posted != func.coalesce(inflows.c.cp, 0),
                accounts.c.credits_pending != func.coalesce(inflows.c.cq, 0),
            )
        )
        .limit(MAX_LISTED)
    )
    for r in rows:
        problems.append(
            f"{_label(r)} counters (dp={r.debits_posted}, cp={r.credits_posted},"
            f" dq={r.debits_pending}, cq={r.credits_pending}) differ from its transfers"
            f" (dp={r.dp}, cp={r.cp}, dq={r.dq}, cq={r.cq})"
        )

    # 3. No overdraft.
    for r in conn.execute(
        select(accounts)
        .where(
            accounts.c.no_overdraft,
            accounts.c.credits_posted - accounts.c.debits_posted - accounts.c.debits_pending < 0,
        )
        .limit(MAX_LISTED)
    ):
        problems.append(f"{_label(r)} has a negative available balance")

    # 4. Each resolution matches its hold, once, and no post comes after expiry.
    hold = aliased(transfers)
    for r in conn.execute(
        select(t.c.id, t.c.kind, t.c.pending_id, hold.c.kind.label("hold_kind"))
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
        .limit(MAX_LISTED)
    ):
        problems.append(
            f"transfer {r.id} ({r.kind}) does not match the hold {r.pending_id} it resolves"
        )
    for r in conn.execute(
        select(t.c.pending_id, func.count().label("n"))
        .where(t.c.pending_id.is_not(None))
        .group_by(t.c.pending_id)
        .having(func.count() > 1)
        .limit(MAX_LISTED)
    ):
        problems.append(f"hold {r.pending_id} was resolved {r.n} times")
    for r in conn.execute(
        select(t.c.id, t.c.pending_id)
        .join(hold, hold.c.id == t.c.pending_id)
        .where(t.c.kind == "post", t.c.created_at > hold.c.expires_at)
        .limit(MAX_LISTED)
    ):
        problems.append(f"hold {r.pending_id} was posted (transfer {r.id}) after it expired")

    # 5. Tips agree with their transfers.
    resolution = aliased(transfers)
    for r in conn.execute(
        select(tips.c.id, tips.c.state, resolution.c.kind.label("rk"))
        .outerjoin(resolution, resolution.c.pending_id == tips.c.hold_transfer_id)
        .where(
            tips.c.hold_transfer_id.is_not(None),
            or_(
                and_(tips.c.state == "held", resolution.c.id.is_not(None)),
                and_(
                    tips.c.state == "voided",
                    or_(resolution.c.kind.is_(None), resolution.c.kind != "void"),
                ),
                and_(
                    tips.c.state == "posted",
                    or_(resolution.c.kind.is_(None), resolution.c.kind != "post"),
                ),
            ),
        )
        .limit(MAX_LISTED)
    ):
        problems.append(f"tip {r.id} is {r.state} but its hold's resolution is {r.rk or 'none'}")
    for r in conn.execute(
        select(tips.c.id)
        .where(
            tips.c.hold_transfer_id.is_(None),
            or_(
                tips.c.state != "posted",
                ~select(t.c.id).where(t.c.tip_id == tips.c.id, t.c.kind == "tip").exists(),
            ),
        )
        .limit(MAX_LISTED)
    ):
        problems.append(f"tip {r.id} was posted without its transfer")
    return problems
