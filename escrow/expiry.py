"""Expiry: holds nobody claimed in time go back to their supporters.

The operator never keeps money that isn't theirs: when a hold's `expires_at` has passed,
it is voided and the reserved amount is available to the supporter again. Work is done in
batches, each its own transaction. On PostgreSQL several workers can share a backlog: a
batch takes its holds with `FOR UPDATE SKIP LOCKED`, and takes the accounts with
`SKIP LOCKED` too, so an expiry never waits on a lock and can never be part of a deadlock.
A hold whose accounts are busy (a claim in progress) is simply left for the next batch;
if the claim wins, the state-gated void finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, select

from escrow.db import skip_locked, transaction
from escrow.ledger import Policy, is_held
from escrow.schema import accounts, tips
from escrow.tips import void_holds


@dataclass(frozen=True)
class ExpiryBatch:
    voided: int
    returned_minor: int
    skipped: int  # due holds left for later because their accounts were busy


def expire_batch(conn: Connection, policy: Policy, now: datetime, batch: int) -> ExpiryBatch:
    """Void up to `batch` due holds in this transaction."""
    due = list(
        conn.execute(
            skip_locked(
                select(tips)
                .where(is_held(), tips.c.expires_at <= now)
                .order_by(tips.c.expires_at, tips.c.id)
                .limit(batch)
            )
        )
    )
    if not due:
        return ExpiryBatch(0, 0, 0)
    wanted = sorted({r.supporter_account_id for r in due} | {r.recipient_account_id for r in due})
    got = set(
        conn.execute(
            skip_locked(
                select(accounts.c.id).where(accounts.c.id.in_(wanted)).order_by(accounts.c.id),
                key_share=True,
            )
        ).scalars()
    )
    ready = [r for r in due if r.supporter_account_id in got and r.recipient_account_id in got]
    voided = void_holds(conn, policy, ready, "expired", now)
    return ExpiryBatch(len(voided), sum(r.amount_minor for r in voided), len(due) - len(ready))


@dataclass(frozen=True)
class ExpiryRun:
    voided: int
    returned_minor: int
    batches: int


def expire_due(
    engine: Engine,
    policy: Policy,
    now: datetime,
    batch: int = 500,
    *,
    progress: Callable[[int], None] | None = None,
) -> ExpiryRun:
    """Void every hold due at `now`, `batch` holds per transaction, until none is left."""
    voided = returned = batches = 0
    while True:
        result = transaction(engine, lambda conn: expire_batch(conn, policy, now, batch))
        batches += 1
        voided += result.voided
        returned += result.returned_minor
        if progress is not None and result.voided:
            progress(result.voided)
        # Stop when nothing is due, or when a whole batch was busy elsewhere (another
        # worker or a claim holds it); the next run picks up whatever remains.
        if result.voided == 0:
            return ExpiryRun(voided, returned, batches)
