"""The ledger's self-check: `check_ledger` run on a schedule, recorded, and obeyed.

Liberapay's payday checks its database before and after it moves money; tipjar does the
same. `run_check` runs `escrow.audit.check_ledger` and records the outcome in
`audit_runs` (the worker's daily check, the checks around each settlement, and every
`tipjar audit` a maintainer runs). A failed check stops settlement, and payouts, until a
maintainer's audit comes back clean: `ledger_blocked` says whether that is the case, and
`require_sound_ledger` is the guard that money-moving batch jobs call before they start.
A failure found by the worker is thus never cleared by the worker itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, insert, select

from escrow.audit import check_ledger
from escrow.db import transaction
from escrow.ledger import Clock, LedgerError
from escrow.schema import audit_runs

DAILY = "daily"
BEFORE_SETTLEMENT = "before_settlement"
AFTER_SETTLEMENT = "after_settlement"
MAINTAINER = "maintainer"
T = TypeVar("T")
DETAILS_KEPT = 50  # problems stored per run; the count is always the full one


class LedgerUnsound(LedgerError):
    """Money must not move in bulk: the newest self-check found problems."""


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str


@dataclass(frozen=True)
class AuditRun:
    id: int
    trigger: str
    ok: bool
    problems: int
    details: tuple[Problem, ...]  # as recorded: the first DETAILS_KEPT of a stored run
    started_at: datetime
    finished_at: datetime


def as_problem(problem: Any) -> Problem:
    """A problem from `check_ledger` as (kind, message), whether it is text or typed."""
    message = getattr(problem, "message", None)
    if message is None:
        return Problem("ledger", str(problem))
    return Problem(str(getattr(problem, "kind", "ledger")), str(message))


def record(
    conn: Connection,
    trigger: str,
    problems: Sequence[Any],
    started_at: datetime,
    finished_at: datetime,
) -> AuditRun:
    """Record one check's outcome and return it."""
    found = tuple(as_problem(p) for p in problems)
    # Typed problems keep what they concern (account, transfer, tip) in the record too.
    details = json.dumps(
        [
            p.as_json() if hasattr(p, "as_json") else {"kind": f.kind, "message": f.message}
            for p, f in zip(problems[:DETAILS_KEPT], found, strict=False)
        ]
    )
    run_id = conn.execute(
        insert(audit_runs)
        .values(
            trigger=trigger,
            ok=not found,
            problems=len(found),
            details=details,
            started_at=started_at,
            finished_at=finished_at,
        )
        .returning(audit_runs.c.id)
    ).scalar_one()
    return AuditRun(int(run_id), trigger, not found, len(found), found, started_at, finished_at)


def run_check(engine: Engine, trigger: str, clock: Clock) -> AuditRun:
    """Check the ledger now and record the result (one read, then one short write)."""
    started = clock()
    with engine.connect() as conn:
        problems = check_ledger(conn)
    finished = clock()
    return transaction(engine, lambda conn: record(conn, trigger, problems, started, finished))


def _run(row: Any) -> AuditRun:
    details = tuple(Problem(str(d["kind"]), str(d["message"])) for d in json.loads(row.details))
    return AuditRun(
        int(row.id),
        row.trigger,
        bool(row.ok),
        int(row.problems),
        details,
        row.started_at,
        row.finished_at,
    )


def last_run(conn: Connection) -> AuditRun | None:
    """The newest recorded check, or None before the first one."""
    row = conn.execute(select(audit_runs).order_by(audit_runs.c.id.desc()).limit(1)).one_or_none()
    return _run(row) if row is not None else None


def ledger_blocked(conn: Connection) -> AuditRun | None:
    """The failed check that stops bulk money moves, or None when they may run.

    Blocked while the newest failed check is newer than the newest clean audit that a
    maintainer ran: a clean daily check does not lift it, a person has to look.
    """
    failed = conn.execute(
        select(func.max(audit_runs.c.id)).where(audit_runs.c.ok.is_(False))
    ).scalar_one()
    if failed is None:
        return None
    cleared = conn.execute(
        select(func.max(audit_runs.c.id)).where(
            audit_runs.c.ok.is_(True), audit_runs.c.trigger == MAINTAINER
        )
    ).scalar_one()
    if cleared is not None and cleared > failed:
        return None
    row = conn.execute(select(audit_runs).where(audit_runs.c.id == failed)).one()
    return _run(row)


def require_sound_ledger(conn: Connection, what: str) -> None:
    """Raise LedgerUnsound when a failed self-check stops `what` (settlement, payouts)."""
    failed = ledger_blocked(conn)
    if failed is not None:
        when = failed.finished_at.strftime("%Y-%m-%d %H:%M UTC")
        raise LedgerUnsound(
            f"{what} is stopped: the ledger check of {when} ({failed.trigger}) found"
            f" {failed.problems} problem(s); run `tipjar audit` and, once it is clean,"
            f" {what} resumes"
        )


def around_settlement(engine: Engine, clock: Clock, settle: Callable[[], T]) -> tuple[T, AuditRun]:
    """Check the ledger, run `settle` (which refuses if the check failed), check again.

    Returns what `settle` returned and the check after it; a failed check after the
    settlement is recorded and stops the next one.
    """
    run_check(engine, BEFORE_SETTLEMENT, clock)
    result = settle()
    return result, run_check(engine, AFTER_SETTLEMENT, clock)
