"""The ledger's front door: each operation in its own retried transaction.

`Ledger` binds an engine, the deployment's `Policy` and a clock, and runs each escrow
operation as one unit of work through `escrow.db.transaction`. Code that must combine
several operations with other writes in one transaction (the listener commits a whole
page of mentions at once) calls the operation functions with its own connection instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection, Engine

from escrow import audit, claims, decide, expiry, funding, ledger, reports, tips
from escrow.db import transaction
from escrow.ledger import Clock, Identity, Policy, utcnow
from escrow.money import Money

T = TypeVar("T")


class Ledger:
    def __init__(self, engine: Engine, policy: Policy, clock: Clock = utcnow):
        self.engine = engine
        self.policy = policy
        self.clock = clock

    def run(self, work: Callable[[Connection, datetime], T]) -> T:
        """Run `work(conn, now)` in one retried transaction; `now` is read per attempt."""
        return transaction(self.engine, lambda conn: work(conn, self.clock()))

    def deposit(self, who: Identity, amount: Money, reference: str) -> ledger.DepositResult:
        """A deposit; any debt from a refund or dispute is paid from it first."""
        return self.run(lambda c, now: funding.deposit(c, self.policy, who, amount, reference, now))

    def tip(
        self, supporter: Identity, recipient: Identity, amount: Money, source: str
    ) -> decide.TipResult:
        return self.run(
            lambda c, now: tips.tip(c, self.policy, supporter, recipient, amount, source, now)
        )

    def claim(self, who: Identity) -> claims.ClaimResult:
        return self.run(lambda c, now: claims.claim(c, self.policy, who, now))

    def retract(self, supporter: Identity, tip_id: int) -> tips.RetractResult:
        return self.run(lambda c, now: tips.retract(c, self.policy, supporter, tip_id, now))

    def refuse(self, who: Identity) -> claims.RefuseResult:
        return self.run(lambda c, now: claims.refuse(c, self.policy, who, now))

    def release_sweep(self) -> int:
        return self.run(lambda c, now: claims.release_sweep(c, self.policy, now))

    def expire_due(
        self,
        now: datetime | None = None,
        batch: int = 500,
        progress: Callable[[int], None] | None = None,
    ) -> expiry.ExpiryRun:
        return expiry.expire_due(
            self.engine, self.policy, now or self.clock(), batch, progress=progress
        )

    def check_ledger(self) -> list[audit.LedgerProblem]:
        with self.engine.connect() as conn:
            return audit.check_ledger(conn)

    def escrow_balances(self) -> reports.EscrowBalances:
        with self.engine.connect() as conn:
            return reports.escrow_balances(conn)

    def account(self, who: Identity) -> reports.AccountView | None:
        with self.engine.connect() as conn:
            row = ledger.find_account(conn, who)
            return reports.account_view(row) if row else None
