"""Money in by card and back out, at the ledger: top-ups, subscriptions, refunds, disputes
and debts, on SQLite and PostgreSQL. Every scenario ends with the audit clean and the books
balanced: what people hold plus fees equals what came in less what went back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, func, select

from escrow import claims, funding
from escrow.audit import check_ledger
from escrow.db import transaction
from escrow.debts import open_debt
from escrow.ledger import Identity, Policy, TipStatus, ensure_account, find_account
from escrow.money import Money
from escrow.schema import accounts, budgets, deposits, reversals, tips, topups, transfers
from escrow.tips import tip

POLICY = Policy(currency="EUR", fee_percent=10, hold_period=timedelta(days=90))
ALICE = Identity.x("1", "alice")
BOB = Identity.x("2", "bob")  # unclaimed: Alice's tips to him are held
CAROL = Identity.x("3", "carol")  # claimed: tips to her post at once
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def eur(minor: int) -> Money:
    return Money(minor, "EUR")


def run(engine: Engine, work):  # type: ignore[no-untyped-def]
    return transaction(engine, lambda conn: work(conn))


def paid_topup(engine: Engine, who: Identity, minor: int, payment: str) -> int:
    def work(conn: Connection) -> int:
        account_id = ensure_account(conn, who, NOW)
        topup_id = funding.start_topup(conn, POLICY, account_id, eur(minor), NOW)
        funding.credit_topup(conn, POLICY, topup_id, payment, minor, "eur", NOW)
        return topup_id

    return int(run(engine, work))


def available_of(engine: Engine, who: Identity) -> int:
    with engine.connect() as conn:
        row = find_account(conn, who)
        assert row is not None
        return int(row.credits_posted - row.debits_posted - row.debits_pending)


def assert_books_balance(engine: Engine) -> None:
    with engine.connect() as conn:
        assert check_ledger(conn) == []
        people = conn.execute(
            select(func.sum(accounts.c.credits_posted - accounts.c.debits_posted)).where(
                accounts.c.platform != "system"
            )
        ).scalar_one()
        fees = conn.execute(
            select(accounts.c.credits_posted - accounts.c.debits_posted).where(
                accounts.c.platform_user_id == "fees"
            )
        ).scalar()
        came_in = conn.execute(select(func.coalesce(func.sum(deposits.c.amount_minor), 0))).scalar()
        went_back = conn.execute(
            select(func.coalesce(func.sum(transfers.c.amount_minor), 0)).where(
                transfers.c.kind == "refund"
            )
        ).scalar()
        frozen_taken = conn.execute(
            select(func.coalesce(func.sum(reversals.c.taken_minor), 0)).where(
                reversals.c.kind == "dispute", reversals.c.state == "lost"
            )
        ).scalar()
    assert (people or 0) + (fees or 0) == came_in - went_back - frozen_taken


def test_a_paid_top_up_is_credited_once_however_often_it_is_reported(engine: Engine) -> None:
    topup_id = paid_topup(engine, ALICE, 1000, "pi_1")
    for _ in range(3):
        result = run(
            engine,
            lambda c: funding.credit_topup(c, POLICY, topup_id, "pi_1", 1000, "eur", NOW),
        )
        assert result.startswith("already credited")
    assert available_of(engine, ALICE) == 1000
    with engine.connect() as conn:
        row = conn.execute(select(topups)).one()
    assert (row.state, row.deposit_reference) == ("paid", "stripe:pi_1")
    assert_books_balance(engine)


def test_a_payment_in_another_currency_credits_nothing_and_is_a_problem(engine: Engine) -> None:
    def work(conn: Connection) -> str:
        topup_id = funding.start_topup(
            conn, POLICY, ensure_account(conn, ALICE, NOW), eur(1000), NOW
        )
        return funding.credit_topup(conn, POLICY, topup_id, "pi_1", 1000, "usd", NOW)

    assert run(engine, work).startswith("problem")
    with engine.connect() as conn:
        row = conn.execute(select(topups)).one()
        assert conn.execute(select(func.count()).select_from(deposits)).scalar() == 0
    assert row.state == "problem" and "USD" in row.problem
    assert_books_balance(engine)


def test_a_refund_larger_than_available_voids_holds_records_a_debt_and_blocks_tips(
    engine: Engine,
) -> None:
    run(engine, lambda c: claims.claim(c, POLICY, CAROL, NOW))
    paid_topup(engine, ALICE, 1000, "pi_1")
    posted = run(engine, lambda c: tip(c, POLICY, ALICE, CAROL, eur(500), "t1", NOW))
    held = run(engine, lambda c: tip(c, POLICY, ALICE, BOB, eur(300), "t2", NOW))
    assert (posted.status, held.status) == (TipStatus.POSTED, TipStatus.HELD)
    assert available_of(engine, ALICE) == 200

    # The whole €10 is refunded: €2 available and the €3 hold cover half; €5 is a debt.
    refund = funding.Reversal("refund", "re_1", "pi_1", "ch_1", 1000, "eur")
    result = run(engine, lambda c: funding.take_back(c, POLICY, refund, NOW))
    assert result == "refunded 500, voided 300 of tips, debt 500"
    assert available_of(engine, ALICE) == 0
    with engine.connect() as conn:
        assert conn.execute(
            select(tips.c.state, tips.c.resolution).where(tips.c.id == held.tip_id)
        ).one() == ("voided", "reversed")
        assert open_debt(conn, find_account(conn, ALICE).id) == 500  # type: ignore[union-attr]
    assert_books_balance(engine)

    # Tips are refused while the debt is open, and say why.
    paid_topup(engine, ALICE, 300, "pi_2")  # pays €3 of the €5 owed
    assert available_of(engine, ALICE) == 0
    refused = run(engine, lambda c: tip(c, POLICY, ALICE, CAROL, eur(100), "t3", NOW))
    assert refused.status == TipStatus.INSUFFICIENT_FUNDS
    assert refused.owed == eur(200)

    # New money pays the rest of the debt first; then tips go through again.
    paid_topup(engine, ALICE, 500, "pi_3")
    assert available_of(engine, ALICE) == 300
    with engine.connect() as conn:
        assert open_debt(conn, find_account(conn, ALICE).id) == 0  # type: ignore[union-attr]
    again = run(engine, lambda c: tip(c, POLICY, ALICE, CAROL, eur(100), "t4", NOW))
    assert again.status == TipStatus.POSTED
    assert_books_balance(engine)


def test_a_refund_before_its_payment_waits_and_is_applied_with_it(engine: Engine) -> None:
    refund = funding.Reversal("refund", "re_1", "pi_1", "ch_1", 400, "eur")
    assert run(engine, lambda c: funding.take_back(c, POLICY, refund, NOW)).startswith("waiting")
    assert run(engine, lambda c: funding.take_back(c, POLICY, refund, NOW)).startswith("already")
    paid_topup(engine, ALICE, 1000, "pi_1")
    assert available_of(engine, ALICE) == 600
    assert_books_balance(engine)


@pytest.mark.parametrize("won", [True, False])
def test_a_dispute_freezes_the_money_until_it_closes(engine: Engine, won: bool) -> None:
    paid_topup(engine, ALICE, 1000, "pi_1")
    dispute = funding.Reversal("dispute", "dp_1", "pi_1", "ch_1", 1000, "eur")
    assert run(engine, lambda c: funding.take_back(c, POLICY, dispute, NOW)).startswith(
        "frozen 1000"
    )
    assert available_of(engine, ALICE) == 0
    assert_books_balance(engine)
    run(engine, lambda c: funding.close_dispute(c, POLICY, "dp_1", won, NOW))
    assert available_of(engine, ALICE) == (1000 if won else 0)
    assert run(engine, lambda c: funding.close_dispute(c, POLICY, "dp_1", won, NOW)).startswith(
        "already"
    )
    assert_books_balance(engine)


def test_a_won_dispute_forgives_its_debt_and_returns_what_was_paid_towards_it(
    engine: Engine,
) -> None:
    run(engine, lambda c: claims.claim(c, POLICY, CAROL, NOW))
    paid_topup(engine, ALICE, 1000, "pi_1")
    run(engine, lambda c: tip(c, POLICY, ALICE, CAROL, eur(600), "t1", NOW))
    dispute = funding.Reversal("dispute", "dp_1", "pi_1", "ch_1", 1000, "eur")
    assert run(engine, lambda c: funding.take_back(c, POLICY, dispute, NOW)) == (
        "frozen 400, voided 0 of tips, debt 600"
    )
    paid_topup(engine, ALICE, 200, "pi_2")  # pays €2 of the €6 owed
    run(engine, lambda c: funding.close_dispute(c, POLICY, "dp_1", True, NOW))
    assert available_of(engine, ALICE) == 600  # the €4 frozen and the €2 paid come back
    with engine.connect() as conn:
        assert open_debt(conn, find_account(conn, ALICE).id) == 0  # type: ignore[union-attr]
    assert_books_balance(engine)


def test_a_paid_invoice_credits_the_month_and_sets_the_monthly_budget(engine: Engine) -> None:
    def start(conn: Connection) -> int:
        account_id = ensure_account(conn, ALICE, NOW)
        return funding.start_subscription(conn, POLICY, account_id, eur(500), NOW)

    sub_id = run(engine, start)
    invoice = funding.Invoice("in_1", sub_id, "sub_1", "cus_1", 500, "eur", NOW)
    for _ in range(2):
        run(engine, lambda c: funding.credit_invoice(c, POLICY, invoice, NOW))
    assert available_of(engine, ALICE) == 500
    with engine.connect() as conn:
        assert conn.execute(select(budgets.c.monthly_budget_minor)).scalar() == 500
    assert_books_balance(engine)


def test_a_supporter_in_debt_flattrs_nobody_at_settlement(engine: Engine) -> None:
    from escrow.flattrs import record_flattr
    from escrow.settlement import settle

    run(engine, lambda c: claims.claim(c, POLICY, CAROL, NOW))
    run(engine, lambda c: claims.claim(c, POLICY, ALICE, NOW))
    paid_topup(engine, ALICE, 1000, "pi_1")
    paid_topup(engine, CAROL, 1000, "pi_2")
    run(engine, lambda c: tip(c, POLICY, ALICE, CAROL, eur(800), "t1", NOW))
    refund = funding.Reversal("refund", "re_1", "pi_1", "ch_1", 1000, "eur")
    run(engine, lambda c: funding.take_back(c, POLICY, refund, NOW))  # €2 taken, €8 owed
    run(engine, lambda c: tip(c, POLICY, CAROL, ALICE, eur(500), "back", NOW))  # Alice gets €5
    run(engine, lambda c: record_flattr(c, POLICY, ALICE, BOB, NOW, "flattr-1", NOW))
    before = available_of(engine, ALICE)
    assert before > 0

    summary = settle(engine, POLICY, "2026-03", NOW + timedelta(days=30))

    assert summary.unfunded_shares == 1
    assert available_of(engine, ALICE) == before
    assert_books_balance(engine)


def test_the_audit_names_a_debt_or_a_refund_that_does_not_match_its_transfers(
    engine: Engine,
) -> None:
    from sqlalchemy import update

    from escrow.schema import debts

    run(engine, lambda c: claims.claim(c, POLICY, CAROL, NOW))
    paid_topup(engine, ALICE, 1000, "pi_1")
    run(engine, lambda c: tip(c, POLICY, ALICE, CAROL, eur(600), "t1", NOW))
    refund = funding.Reversal("refund", "re_1", "pi_1", "ch_1", 1000, "eur")
    run(engine, lambda c: funding.take_back(c, POLICY, refund, NOW))
    paid_topup(engine, ALICE, 200, "pi_2")
    assert_books_balance(engine)

    with engine.begin() as conn:
        conn.execute(update(debts).values(paid_minor=100))
        conn.execute(update(reversals).values(taken_minor=399))
        problems = check_ledger(conn)
        conn.rollback()
    assert any("debt 1 says 100 paid, its payments add up to 200" in str(p) for p in problems)
    assert any("stripe-refund:re_1 does not match the transfer" in str(p) for p in problems)
