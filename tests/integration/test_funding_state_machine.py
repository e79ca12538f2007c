"""Card money in and back out against a plain model: random top-ups, tips, refunds and
disputes on both databases.

A reference model with plain numbers says what each step must do: a top-up pays open debts
first; a refund takes from what is available, voiding the supporter's newest held tips if
needed, and what it still cannot take is a debt; a dispute freezes the same way and is
released (its debt forgiven, what was paid towards it given back) if won, taken if lost; a
supporter in debt cannot tip. After every step each person's available and reserved money
and open debt equal the model's, and `check_ledger()` is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from escrow import claims, funding
from escrow.audit import check_ledger
from escrow.db import transaction
from escrow.debts import open_debt
from escrow.ledger import Identity, Policy, TipStatus, ensure_account
from escrow.money import Money
from escrow.schema import accounts
from escrow.tips import tip
from tests.integration.test_ledger_state_machine import fresh_database

POLICY = Policy(currency="EUR", fee_percent=10, hold_period=timedelta(days=90))
SUPPORTERS = st.sampled_from(["1", "2"])
CREATORS = st.sampled_from(["3", "4"])  # 3 is claimed (tips post), 4 is not (tips are held)
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def who(user: str) -> Identity:
    return Identity.x(user, f"u{user}")


@dataclass
class Debt:
    amount: int
    paid: int = 0
    forgiven: int = 0

    @property
    def owed(self) -> int:
        return self.amount - self.paid - self.forgiven


@dataclass
class Person:
    posted: int = 0
    reserved: int = 0
    debts: list[Debt] = field(default_factory=list)

    @property
    def available(self) -> int:
        return self.posted - self.reserved

    @property
    def owed(self) -> int:
        return sum(d.owed for d in self.debts)


@dataclass
class Payment:
    user: str
    amount: int
    reversed: bool = False


@dataclass
class Dispute:
    user: str
    frozen: int
    debt: Debt | None
    open: bool = True


def funding_machine(db_url: str, template: Path | None, workdir: Path) -> type:  # noqa: C901
    examples = iter(range(1_000_000))

    class FundingMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.engine = fresh_database(db_url, template, workdir, next(examples))
            self.people = {u: Person() for u in "1234"}
            self.payments: list[Payment] = []
            self.held: list[tuple[int, str, int]] = []  # (tip id, supporter, amount), id order
            self.disputes: dict[str, Dispute] = {}
            self.sources = 0
            transaction(self.engine, lambda c: claims.claim(c, POLICY, who("3"), NOW))
            for user in "124":
                transaction(self.engine, lambda c, u=user: ensure_account(c, who(u), NOW))

        def teardown(self) -> None:
            self.engine.dispose()

        def pay_debts(self, person: Person) -> None:
            for debt in person.debts:
                part = min(debt.owed, person.available)
                debt.paid += part
                person.posted -= part

        def cover(self, user: str, amount: int) -> int:
            """Void the newest holds until `amount` is available; returns what can be taken."""
            person = self.people[user]
            for entry in reversed(list(self.held)):
                if person.available >= amount:
                    break
                if entry[1] == user:
                    self.held.remove(entry)
                    person.reserved -= entry[2]
            return min(person.available, amount)

        @rule(user=SUPPORTERS, amount=st.integers(200, 3000))
        def top_up(self, user: str, amount: int) -> None:
            payment = f"pi_{len(self.payments)}"

            def work(conn: Any) -> str:
                account = ensure_account(conn, who(user), NOW)
                topup = funding.start_topup(conn, POLICY, account, Money(amount), NOW)
                return funding.credit_topup(conn, POLICY, topup, payment, amount, "eur", NOW)

            assert transaction(self.engine, work).startswith("credited")
            self.payments.append(Payment(user, amount))
            person = self.people[user]
            person.posted += amount
            self.pay_debts(person)

        @rule(user=SUPPORTERS, creator=CREATORS, amount=st.integers(1, 1500))
        def tips(self, user: str, creator: str, amount: int) -> None:
            self.sources += 1
            source = f"t{self.sources}"
            result = transaction(
                self.engine,
                lambda c: tip(c, POLICY, who(user), who(creator), Money(amount), source, NOW),
            )
            person = self.people[user]
            if person.owed or person.available < amount:
                assert result.status == TipStatus.INSUFFICIENT_FUNDS
                assert (result.owed is not None) == (person.owed > 0)
                return
            if creator == "3":
                assert result.status == TipStatus.POSTED
                person.posted -= amount
                self.people["3"].posted += amount - POLICY.fee(amount)
            else:
                assert result.status == TipStatus.HELD
                assert result.tip_id is not None
                person.reserved += amount
                self.held.append((result.tip_id, user, amount))

        @precondition(lambda self: any(not p.reversed for p in self.payments))
        @rule(data=st.data(), dispute=st.booleans())
        def money_is_taken_back(self, data: st.DataObject, dispute: bool) -> None:
            index = data.draw(
                st.sampled_from([i for i, p in enumerate(self.payments) if not p.reversed])
            )
            payment = self.payments[index]
            payment.reversed = True
            amount = payment.amount if dispute else data.draw(st.integers(1, payment.amount))
            kind = "dispute" if dispute else "refund"
            reversal = funding.Reversal(kind, f"x{index}", f"pi_{index}", None, amount, "eur")
            transaction(self.engine, lambda c: funding.take_back(c, POLICY, reversal, NOW))
            person = self.people[payment.user]
            taken = self.cover(payment.user, amount)
            debt = Debt(amount - taken) if amount > taken else None
            if debt:
                person.debts.append(debt)
            if dispute:
                person.reserved += taken
                self.disputes[f"x{index}"] = Dispute(payment.user, taken, debt)
            else:
                person.posted -= taken

        @precondition(lambda self: any(d.open for d in self.disputes.values()))
        @rule(data=st.data(), won=st.booleans())
        def a_dispute_closes(self, data: st.DataObject, won: bool) -> None:
            name = data.draw(st.sampled_from([k for k, d in self.disputes.items() if d.open]))
            transaction(self.engine, lambda c: funding.close_dispute(c, POLICY, name, won, NOW))
            dispute = self.disputes[name]
            dispute.open = False
            person = self.people[dispute.user]
            person.reserved -= dispute.frozen
            if not won:
                person.posted -= dispute.frozen
                return
            if dispute.debt is not None:
                person.posted += dispute.debt.paid
                dispute.debt.forgiven += dispute.debt.owed
            self.pay_debts(person)

        @invariant()
        def the_ledger_agrees_with_the_model(self) -> None:
            with self.engine.connect() as conn:
                assert check_ledger(conn) == []
                rows = {
                    r.platform_user_id: r
                    for r in conn.execute(select(accounts).where(accounts.c.platform == "x"))
                }
                owed = {u: open_debt(conn, int(r.id)) for u, r in rows.items()}
            for user in "12":
                row, person = rows[user], self.people[user]
                assert (
                    row.credits_posted - row.debits_posted - row.debits_pending,
                    row.debits_pending,
                    owed[user],
                ) == (person.available, person.reserved, person.owed)

    return FundingMachine


def test_money_in_and_back_out_behaves_like_its_model(
    db_url: str, request: Any, tmp_path: Path
) -> None:
    on_sqlite = db_url.startswith("sqlite")
    template = request.getfixturevalue("sqlite_template") if on_sqlite else None
    run_state_machine_as_test(
        funding_machine(db_url, template, tmp_path),
        settings=settings(
            max_examples=20 if on_sqlite else 8,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
