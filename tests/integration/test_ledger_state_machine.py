"""The ledger against a plain model: random sequences of every operation, on both databases.

Hypothesis drives deposits, tips (some larger than the balance), claims, retractions,
refusals, acceptances, the passing of time, expiry, the release sweep and replays of
earlier operations. A reference model written with plain dicts says what each step must
do; after every step each account's available, reserved and held-for amounts, its status,
every tip's state and the fees must equal the model's, and the audit must be clean.
Each example starts from an empty database.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, select, text, update

from escrow import claims
from escrow.audit import check_ledger
from escrow.db import make_engine
from escrow.ledger import Identity, LedgerError, Policy, TipStatus
from escrow.money import Money
from escrow.schema import accounts, metadata, tips
from escrow.service import Ledger

POLICY = Policy(currency="EUR", fee_percent=10, hold_period=timedelta(days=2))
USERS = ["1", "2", "3", "4"]
PEOPLE = st.sampled_from(USERS)
# The hold period is one of the steps, so time often lands exactly on an expiry: the
# instant at which a hold already counts as expired.
STEPS = st.sampled_from([timedelta(hours=1), timedelta(days=1), timedelta(days=2)])


def who(user_id: str) -> Identity:
    return Identity.x(user_id, f"u{user_id}")


@dataclass
class Account:
    status: str = "unclaimed"
    posted: int = 0  # credits_posted - debits_posted
    reserved: int = 0  # debits_pending: this account's own holds
    held_for: int = 0  # credits_pending: holds waiting for it

    @property
    def available(self) -> int:
        return self.posted - self.reserved


@dataclass
class Tip:
    supporter: str
    recipient: str
    amount: int
    expires_at: datetime | None  # None: posted at once
    state: str


@dataclass
class Model:
    """What the ledger must do, with none of its machinery."""

    now: datetime
    accounts: dict[str, Account] = field(default_factory=dict)
    tips: dict[int, Tip] = field(default_factory=dict)
    by_source: dict[tuple[str, str], int] = field(default_factory=dict)
    deposits: dict[str, tuple[str, int]] = field(default_factory=dict)
    fees: int = 0

    def ensure(self, user_id: str) -> Account:
        return self.accounts.setdefault(user_id, Account())

    def void(self, tip: Tip, state: str = "voided") -> None:
        self.accounts[tip.supporter].reserved -= tip.amount
        self.accounts[tip.recipient].held_for -= tip.amount
        tip.state = state

    def post(self, tip: Tip) -> int:
        fee = POLICY.fee(tip.amount)
        self.void(tip, "posted")
        self.accounts[tip.supporter].posted -= tip.amount
        self.accounts[tip.recipient].posted += tip.amount - fee
        self.fees += fee
        return fee

    def held_for(self, user_id: str) -> list[Tip]:
        return [
            t for _, t in sorted(self.tips.items()) if t.recipient == user_id and t.state == "held"
        ]

    def due(self) -> list[Tip]:
        return [
            t
            for t in self.tips.values()
            if t.state == "held" and t.expires_at is not None and t.expires_at <= self.now
        ]

    def post_holds(self, user_id: str) -> tuple[list[Tip], list[Tip]]:
        posted, expired = [], []
        for t in self.held_for(user_id):
            assert t.expires_at is not None
            if t.expires_at <= self.now:
                self.void(t)
                expired.append(t)
            else:
                self.post(t)
                posted.append(t)
        return posted, expired


def fresh_database(db_url: str, template: Path | None, workdir: Path, n: int) -> Engine:
    """An empty, migrated database for one example."""
    if template is not None:
        path = workdir / f"example-{n}.db"
        shutil.copyfile(template, path)
        return make_engine(f"sqlite:///{path}")
    engine = make_engine(db_url)
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    return engine


def ledger_machine(db_url: str, template: Path | None, workdir: Path) -> type:  # noqa: C901
    examples = iter(range(1_000_000))

    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.engine = fresh_database(db_url, template, workdir, next(examples))
            self.model = Model(now=datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
            self.ledger = Ledger(self.engine, POLICY, lambda: self.model.now)
            self.sources = 0
            self.sent: set[tuple[str, str, str]] = set()

        def teardown(self) -> None:
            self.engine.dispose()

        # --- money in ---------------------------------------------------------------

        @initialize(amounts=st.lists(st.integers(100, 2000), min_size=3, max_size=3))
        def supporters_fund_their_accounts(self, amounts: list[int]) -> None:
            # People 1-3 start with money; 4 starts unknown, until someone tips them.
            for user, amount in zip(["1", "2", "3"], amounts, strict=True):
                self.deposit(user, amount)

        @rule(user=PEOPLE, amount=st.integers(1, 2000))
        def deposit(self, user: str, amount: int) -> None:
            m = self.model
            reference = f"r{len(m.deposits)}"
            result = self.ledger.deposit(who(user), Money(amount), reference)
            assert not result.replayed
            m.deposits[reference] = (user, amount)
            m.ensure(user).posted += amount
            assert result.available.minor == m.accounts[user].available

        @precondition(lambda self: self.model.deposits)
        @rule(data=st.data(), same=st.booleans(), user=PEOPLE, amount=st.integers(1, 2000))
        def deposit_again(self, data: st.DataObject, same: bool, user: str, amount: int) -> None:
            """The same reference again: a replay if it is the same deposit, else refused."""
            m = self.model
            reference = data.draw(st.sampled_from(sorted(m.deposits)))
            if same:
                user, amount = m.deposits[reference]
            if (user, amount) != m.deposits[reference]:
                with pytest.raises(LedgerError):
                    self.ledger.deposit(who(user), Money(amount), reference)
                return
            result = self.ledger.deposit(who(user), Money(amount), reference)
            assert result.replayed
            assert result.available.minor == m.accounts[user].available

        # --- tips -------------------------------------------------------------------

        @rule(
            page=st.lists(
                st.tuples(PEOPLE, st.integers(1, len(USERS)), st.integers(1, 700)),
                min_size=1,
                max_size=4,
            )
        )
        def tips_arrive(self, page: list[tuple[str, int, int]]) -> None:
            """A page of mentions: a few tips, one after another (some too large).

            The recipient is the supporter's `step`-th neighbour, so a self-tip is the rare
            case (step == number of people) rather than the one Hypothesis tries first.
            """
            for supporter, step, amount in page:
                recipient = USERS[(USERS.index(supporter) + step) % len(USERS)]
                self.sources += 1
                self.send(supporter, recipient, amount, f"tweet-{self.sources}")

        @precondition(lambda self: self.sent)
        @rule(data=st.data(), amount=st.integers(1, 700))
        def a_tweet_is_delivered_again(self, data: st.DataObject, amount: int) -> None:
            supporter, recipient, source = data.draw(st.sampled_from(sorted(self.sent)))
            self.send(supporter, recipient, amount, source)

        def send(self, supporter: str, recipient: str, amount: int, source: str) -> None:
            m = self.model
            result = self.ledger.tip(who(supporter), who(recipient), Money(amount), source)
            if supporter == recipient:
                assert result.status == TipStatus.SELF_TIP
                return
            self.sent.add((supporter, recipient, source))
            if supporter not in m.accounts:
                assert result.status == TipStatus.INSUFFICIENT_FUNDS
                assert not result.supporter_ever_funded
                return
            payer, creator = m.accounts[supporter], m.ensure(recipient)
            prior = m.by_source.get((source, recipient))
            if prior is not None:
                was_held = m.tips[prior].expires_at is not None
                assert result.replayed and result.tip_id == prior
                assert result.status == (TipStatus.HELD if was_held else TipStatus.POSTED)
            elif creator.status == "refusing":
                assert result.status == TipStatus.REFUSING_RECIPIENT
            elif payer.available < amount:
                assert result.status == TipStatus.INSUFFICIENT_FUNDS
            else:
                assert result.tip_id is not None and result.tip_id not in m.tips
                assert not result.replayed
                m.by_source[(source, recipient)] = result.tip_id
                if creator.status == "claimed":
                    t = Tip(supporter, recipient, amount, None, "posted")
                    m.tips[result.tip_id] = t
                    payer.posted -= amount
                    creator.posted += amount - POLICY.fee(amount)
                    m.fees += POLICY.fee(amount)
                    assert result.status == TipStatus.POSTED
                    assert result.fee == Money(POLICY.fee(amount))
                else:
                    expires_at = m.now + POLICY.hold_period
                    m.tips[result.tip_id] = Tip(supporter, recipient, amount, expires_at, "held")
                    payer.reserved += amount
                    creator.held_for += amount
                    assert result.status == TipStatus.HELD
                    assert result.expires_at == expires_at
            assert result.available.minor == payer.available

        @precondition(lambda self: self.model.tips)
        @rule(data=st.data(), by_someone_else=st.booleans(), any_tip=st.booleans())
        def retract(self, data: st.DataObject, by_someone_else: bool, any_tip: bool) -> None:
            m = self.model
            held = [i for i, t in m.tips.items() if t.state == "held"]
            tip_id = data.draw(st.sampled_from(sorted(m.tips if any_tip or not held else held)))
            t = m.tips[tip_id]
            supporter = data.draw(PEOPLE) if by_someone_else else t.supporter
            result = self.ledger.retract(who(supporter), tip_id)
            if supporter != t.supporter:
                assert result.reason == "not_yours"
            elif t.state != "held":
                assert result.reason == "not_held"
            else:
                assert result.reason == "retracted"
                m.void(t)
            assert result.retracted == (result.reason == "retracted")

        # --- creators ---------------------------------------------------------------

        def someone_with_holds(self, data: st.DataObject) -> str:
            """A creator with money waiting (most rules are more telling with one), or anyone."""
            waiting = sorted({t.recipient for t in self.model.tips.values() if t.state == "held"})
            return data.draw(st.sampled_from(waiting or USERS))

        @rule(user=PEOPLE, data=st.data(), anyone=st.booleans())
        def claim(self, user: str, data: st.DataObject, anyone: bool) -> None:
            m = self.model
            user = self.someone_with_holds(data) if not anyone else user
            result = self.ledger.claim(who(user))
            account = m.ensure(user)
            newly = account.status == "unclaimed"
            if newly:
                account.status = "claimed"
            posted: list[Tip] = []
            expired: list[Tip] = []
            if account.status != "refusing":
                posted, expired = m.post_holds(user)
            assert result.newly_claimed == newly
            assert (result.tips, result.expired) == (len(posted), len(expired))
            assert result.gross.minor == sum(t.amount for t in posted)
            assert result.fee.minor == sum(POLICY.fee(t.amount) for t in posted)
            assert result.supporters == len({t.supporter for t in posted})

        @rule(user=PEOPLE, refuses=st.booleans(), anyone=st.booleans(), data=st.data())
        def creator_refuses_or_accepts_tips(
            self, user: str, refuses: bool, anyone: bool, data: st.DataObject
        ) -> None:
            m = self.model
            user = self.someone_with_holds(data) if refuses and not anyone else user
            account = m.ensure(user)
            if refuses:
                result = self.ledger.refuse(who(user))
                account.status = "refusing"
                voided = m.held_for(user)
                for t in voided:
                    m.void(t)
                assert result.voided == len(voided)
                assert result.returned.minor == sum(t.amount for t in voided)
                return
            changed = self.ledger.run(lambda c, now: claims.accept_tips(c, who(user), now))
            assert changed == (account.status == "refusing")
            if changed:
                account.status = "claimed"

        @precondition(
            lambda self: any(a.status == "unclaimed" for a in self.model.accounts.values())
        )
        @rule(data=st.data(), sweep_later=st.booleans())
        def a_claim_is_interrupted_after_marking_the_account(
            self, data: st.DataObject, sweep_later: bool
        ) -> None:
            """The account says claimed but its holds still wait: the sweep must post them."""
            unclaimed = sorted(u for u, a in self.model.accounts.items() if a.status == "unclaimed")
            user = data.draw(st.sampled_from(unclaimed))
            with self.engine.begin() as conn:
                conn.execute(
                    update(accounts)
                    .where(accounts.c.platform == "x", accounts.c.platform_user_id == user)
                    .values(status="claimed")
                )
            self.model.accounts[user].status = "claimed"
            if sweep_later:
                self.release_sweep()

        def release_sweep(self) -> None:
            m = self.model
            count = 0
            for user, account in m.accounts.items():
                if account.status == "claimed":
                    count += len(m.post_holds(user)[0])
            assert self.ledger.release_sweep() == count

        # --- time -------------------------------------------------------------------

        @rule(
            step=STEPS,
            then=st.sampled_from(["nothing", "expiry", "claim"]),
            batch=st.integers(1, 3),
            data=st.data(),
        )
        def time_passes(self, step: timedelta, then: str, batch: int, data: st.DataObject) -> None:
            """The clock moves on; then maybe the expiry job (and the sweep), or a claim."""
            self.model.now += step
            if then == "expiry":
                self.expire(batch)
                self.release_sweep()
            elif then == "claim":
                self.claim(data.draw(PEOPLE), data, anyone=False)

        def expire(self, batch: int) -> None:
            m = self.model
            due = m.due()
            run = self.ledger.expire_due(batch=batch)
            for t in due:
                m.void(t)
            assert (run.voided, run.returned_minor) == (len(due), sum(t.amount for t in due))

        # --- after every step -------------------------------------------------------

        @invariant()
        def the_ledger_agrees_with_the_model(self) -> None:
            m = self.model
            with self.engine.connect() as conn:
                assert check_ledger(conn) == []
                rows = conn.execute(select(accounts)).all()
                states = {i: s for i, s in conn.execute(select(tips.c.id, tips.c.state))}
            actual = {
                r.platform_user_id: (
                    r.status,
                    r.credits_posted - r.debits_posted - r.debits_pending,
                    r.debits_pending,
                    r.credits_pending,
                )
                for r in rows
                if r.platform == "x"
            }
            expected = {
                u: (a.status, a.available, a.reserved, a.held_for) for u, a in m.accounts.items()
            }
            assert actual == expected
            assert states == {i: t.state for i, t in m.tips.items()}
            system = {r.platform_user_id: r for r in rows if r.platform == "system"}
            fees = system["fees"].credits_posted if "fees" in system else 0
            deposited = system["funding"].debits_posted if "funding" in system else 0
            assert fees == m.fees
            # Nothing lost, nothing doubled: people's money plus fees is what came in.
            assert sum(a.posted for a in m.accounts.values()) + fees == deposited
            assert deposited == sum(amount for _, amount in m.deposits.values())

    return LedgerMachine


def test_the_ledger_behaves_like_its_model(db_url: str, request: Any, tmp_path: Path) -> None:
    on_sqlite = db_url.startswith("sqlite")
    template = request.getfixturevalue("sqlite_template") if on_sqlite else None
    machine = ledger_machine(db_url, template, tmp_path)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40 if on_sqlite else 15,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
