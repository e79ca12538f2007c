"""Amounts, counters and references have bounds, kept by the ledger and by the database.

Issue 15: a deposit of €999,999,999,999,999.99 was accepted; after 93 of them SQLite
counters silently became REAL and the audit crashed, PostgreSQL answered "bigint out of
range"; a 200-character reference was stored on SQLite and crashed PostgreSQL.
"""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import DataError, IntegrityError

from escrow.ledger import Identity, LedgerError, Policy
from escrow.money import MAX_MINOR, Money, MoneyError
from escrow.schema import accounts, deposits, transfers
from escrow.service import Ledger

ALICE = Identity.x("1", "alice")


@pytest.fixture
def ledger(engine, clock):
    return Ledger(engine, Policy(), clock)


def test_a_deposit_above_the_largest_amount_is_refused_and_changes_nothing(ledger):
    with pytest.raises(MoneyError, match="above the largest amount allowed"):
        ledger.deposit(ALICE, Money(MAX_MINOR + 1), "big")

    assert ledger.account(ALICE) is None
    assert ledger.check_ledger() == []


def test_a_balance_never_grows_past_the_largest_amount(ledger):
    ledger.deposit(ALICE, Money(MAX_MINOR), "r1")

    with pytest.raises(LedgerError, match="above the largest amount allowed"):
        ledger.deposit(ALICE, Money(1), "r2")

    assert ledger.account(ALICE).available_minor == MAX_MINOR
    assert ledger.check_ledger() == []


def test_ninety_three_huge_deposits_stop_at_the_bound_and_the_audit_still_runs(ledger):
    huge = Money.parse("999999999999999.99", "EUR")
    refused = 0
    for i in range(93):
        try:
            ledger.deposit(Identity.x(str(100 + i)), huge, f"r{i}")
        except (MoneyError, LedgerError):
            refused += 1

    assert refused == 93
    assert ledger.check_ledger() == []


def test_a_reference_longer_than_128_characters_is_refused_on_both_databases(ledger):
    with pytest.raises(LedgerError, match="at most 128 characters"):
        ledger.deposit(ALICE, Money(100), "r" * 200)

    ledger.deposit(ALICE, Money(100), "r" * 128)
    assert ledger.account(ALICE).available_minor == 100


def test_the_database_itself_refuses_oversized_counters_amounts_and_references(ledger, engine):
    ledger.deposit(ALICE, Money(100), "r1")
    with engine.connect() as conn:
        query = select(accounts.c.id).where(accounts.c.handle == "alice")
        account_id = conn.execute(query).scalar_one()
        row = conn.execute(select(deposits)).one()

    def refused(stmt):
        # PostgreSQL refuses a too-long reference by its column type (DataError).
        with pytest.raises((IntegrityError, DataError)), engine.begin() as conn:
            conn.execute(stmt)

    refused(
        update(accounts).where(accounts.c.id == account_id).values(credits_posted=MAX_MINOR + 1)
    )
    refused(
        insert(transfers).values(
            debit_account_id=account_id,
            credit_account_id=_funding(engine),
            amount_minor=MAX_MINOR + 1,
            kind="deposit",
            created_at=row.created_at,
        )
    )
    refused(
        insert(deposits).values(
            reference="x" * 129,
            account_id=account_id,
            amount_minor=1,
            transfer_id=row.transfer_id,
            created_at=row.created_at,
        )
    )
    assert ledger.check_ledger() == []


def _funding(engine):
    with engine.connect() as conn:
        query = text("SELECT id FROM accounts WHERE status = 'system' LIMIT 1")
        return conn.execute(query).scalar()
