"""The escrow ledger's operations, one scenario at a time, on SQLite and PostgreSQL.

Each scenario ends with the audit clean and the books balanced: what people hold (posted,
available or reserved in holds) plus the operator's fees equals everything deposited.
`assert_books_balance` is shared with the other ledger test modules.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, Table, func, select, text, update

from escrow import claims
from escrow import tips as tips_module
from escrow.audit import ProblemKind, check_ledger
from escrow.ledger import Clock, Identity, LedgerError, Policy, TipStatus, find_account
from escrow.money import Money, MoneyError
from escrow.reports import escrow_balances, holds_for
from escrow.schema import accounts, deposits, tips, transfers
from escrow.service import Ledger

POLICY = Policy(currency="EUR", fee_percent=10, hold_period=timedelta(days=90))
ALICE = Identity.x("1", "alice")
BOB = Identity.x("2", "bob")
CAROL = Identity.x("3", "carol")
DAVE = Identity.x("4", "dave")


def eur(text: str) -> Money:
    return Money.parse(text, "EUR")


def rows(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def fees_minor(engine: Engine) -> int:
    with engine.connect() as conn:
        row = find_account(conn, Identity("system", "fees"))
    return 0 if row is None else int(row.credits_posted - row.debits_posted)


def assert_books_balance(engine: Engine) -> None:
    """The audit is clean, and nothing was lost or doubled since the first deposit."""
    with engine.connect() as conn:
        assert check_ledger(conn) == []
        held_by_people = conn.execute(
            select(
                func.coalesce(func.sum(accounts.c.credits_posted - accounts.c.debits_posted), 0)
            ).where(accounts.c.platform != "system")
        ).scalar_one()
        deposited = conn.execute(
            select(func.coalesce(func.sum(deposits.c.amount_minor), 0))
        ).scalar_one()
    assert held_by_people + fees_minor(engine) == deposited


def view(ledger: Ledger, who: Identity) -> tuple[int, int, int]:
    """(available, reserved in own holds, held for it), in minor units."""
    account = ledger.account(who)
    assert account is not None
    return account.available_minor, account.reserved_minor, account.held_for_minor


@pytest.fixture
def ledger(engine: Engine, clock: Clock) -> Ledger:
    return Ledger(engine, POLICY, clock)


# --- deposits ---------------------------------------------------------------------------


def test_a_deposit_credits_the_supporter_once_per_reference(ledger, engine):
    first = ledger.deposit(ALICE, eur("10.00"), "r1")
    again = ledger.deposit(ALICE, eur("10.00"), "r1")

    assert (first.replayed, first.available) == (False, eur("10.00"))
    assert (again.replayed, again.available) == (True, eur("10.00"))
    assert view(ledger, ALICE) == (1000, 0, 0)
    assert rows(engine, transfers) == 1
    assert rows(engine, deposits) == 1
    assert_books_balance(engine)


def test_a_reference_reused_for_another_amount_or_account_is_refused_and_changes_nothing(
    ledger, engine
):
    ledger.deposit(ALICE, eur("10.00"), "r1")

    with pytest.raises(LedgerError, match="different deposit"):
        ledger.deposit(ALICE, eur("5.00"), "r1")
    with pytest.raises(LedgerError, match="different deposit"):
        ledger.deposit(CAROL, eur("10.00"), "r1")

    assert view(ledger, ALICE) == (1000, 0, 0)
    assert ledger.account(CAROL) is None, "the refused deposit left an account behind"
    assert rows(engine, transfers) == 1
    assert_books_balance(engine)


@pytest.mark.parametrize(
    ("amount", "reference", "error"),
    [
        (Money(0, "EUR"), "r2", MoneyError),
        (Money(500, "USD"), "r2", MoneyError),
        (Money(500, "EUR"), "   ", LedgerError),
    ],
    ids=["zero", "another-currency", "no-reference"],
)
def test_a_deposit_that_cannot_be_money_is_refused(ledger, engine, amount, reference, error):
    with pytest.raises(error):
        ledger.deposit(ALICE, amount, reference)
    assert rows(engine, transfers) == 0
    assert ledger.account(ALICE) is None


# --- tips -------------------------------------------------------------------------------


def test_a_tip_to_a_claimed_creator_posts_at_once_with_the_fee_floored(ledger, engine):
    ledger.deposit(ALICE, eur("10.00"), "r1")
    ledger.claim(BOB)

    result = ledger.tip(ALICE, BOB, eur("0.99"), "tweet-1")

    assert result.status == TipStatus.POSTED
    assert result.fee == eur("0.09"), "10% of 0.99 is 0.099: the odd part stays with bob"
    assert result.available == eur("9.01")
    assert result.expires_at is None
    assert view(ledger, ALICE) == (901, 0, 0)
    assert view(ledger, BOB) == (90, 0, 0)
    assert fees_minor(engine) == 9
    assert_books_balance(engine)


def test_a_tip_to_an_unclaimed_creator_is_held_until_the_hold_period_ends(ledger, engine, clock):
    ledger.deposit(ALICE, eur("10.00"), "r1")

    result = ledger.tip(ALICE, BOB, eur("2.50"), "tweet-1")

    assert result.status == TipStatus.HELD
    assert result.expires_at == clock.now + timedelta(days=90)
    assert result.available == eur("7.50")
    assert view(ledger, ALICE) == (750, 250, 0)
    assert view(ledger, BOB) == (0, 0, 250)
    assert ledger.account(BOB).status == "unclaimed"
    assert fees_minor(engine) == 0
    assert_books_balance(engine)


def test_a_tip_to_a_creator_who_refuses_tips_is_refused(ledger, engine):
    ledger.deposit(ALICE, eur("10.00"), "r1")
    ledger.refuse(BOB)

    result = ledger.tip(ALICE, BOB, eur("1.00"), "tweet-1")

    assert result.status == TipStatus.REFUSING_RECIPIENT
    assert not result.applied
    assert view(ledger, ALICE) == (1000, 0, 0)
    assert rows(engine, tips) == 0
    assert_books_balance(engine)


def test_a_tip_larger_than_the_balance_is_refused_and_writes_nothing(ledger, engine):
    ledger.deposit(ALICE, eur("1.00"), "r1")

    result = ledger.tip(ALICE, BOB, eur("1.01"), "tweet-1")

    assert result.status == TipStatus.INSUFFICIENT_FUNDS
    assert result.available == eur("1.00")
    assert result.supporter_ever_funded
    assert view(ledger, ALICE) == (100, 0, 0)
    assert (rows(engine, tips), rows(engine, transfers)) == (0, 1)
    assert_books_balance(engine)


def test_a_supporter_who_never_deposited_cannot_tip_and_no_account_is_made(ledger, engine):
    result = ledger.tip(CAROL, BOB, eur("1.00"), "tweet-1")

    assert result.status == TipStatus.INSUFFICIENT_FUNDS
    assert not result.supporter_ever_funded
    assert ledger.account(CAROL) is None
    assert ledger.account(BOB) is None
    assert_books_balance(engine)


@pytest.mark.parametrize("claimed", [False, True], ids=["held", "posted"])
def test_the_same_tweet_tipping_the_same_creator_twice_applies_once(ledger, engine, claimed):
    ledger.deposit(ALICE, eur("10.00"), "r1")
    if claimed:
        ledger.claim(BOB)

    first = ledger.tip(ALICE, BOB, eur("1.00"), "tweet-1")
    again = ledger.tip(ALICE, BOB, eur("1.00"), "tweet-1")

    assert first.applied and not first.replayed
    assert again.replayed and again.status == first.status
    assert again.tip_id == first.tip_id
    assert view(ledger, ALICE)[0] == 900
    assert rows(engine, tips) == 1
    assert_books_balance(engine)


def test_one_tweet_can_tip_several_creators(ledger, engine):
    ledger.deposit(ALICE, eur("10.00"), "r1")

    assert ledger.tip(ALICE, BOB, eur("1.00"), "tweet-1").status == TipStatus.HELD
    assert ledger.tip(ALICE, CAROL, eur("1.00"), "tweet-1").status == TipStatus.HELD

    assert view(ledger, ALICE) == (800, 200, 0)
    assert_books_balance(engine)


def test_a_page_of_tips_can_pass_on_money_received_earlier_in_the_same_page(ledger, engine):
    """tip_many applies a page as the same tips one by one would, and never trips the CHECK."""
    ledger.deposit(ALICE, eur("10.00"), "r1")
    ledger.claim(BOB)
    page = [
        tips_module.TipRequest(ALICE, BOB, eur("5.00"), "tweet-1"),
        tips_module.TipRequest(BOB, CAROL, eur("4.00"), "tweet-2"),
        tips_module.TipRequest(BOB, CAROL, eur("4.00"), "tweet-2"),
        tips_module.TipRequest(BOB, DAVE, eur("1.00"), "tweet-3"),
    ]

    results = ledger.run(lambda c, now: tips_module.tip_many(c, POLICY, page, now))

    assert [(r.status, r.replayed) for r in results] == [
        (TipStatus.POSTED, False),
        (TipStatus.HELD, False),
        (TipStatus.HELD, True),
        (TipStatus.INSUFFICIENT_FUNDS, False),
    ]
    assert view(ledger, BOB) == (50, 400, 0)
    assert view(ledger, CAROL) == (0, 0, 400)
    assert_books_balance(engine)


def test_a_tip_to_oneself_is_refused_and_writes_nothing(ledger, engine):
    ledger.deposit(ALICE, eur("10.00"), "r1")

    result = ledger.tip(ALICE, Identity.x("1", "alice_renamed"), eur("1.00"), "tweet-1")

    assert result.status == TipStatus.SELF_TIP
    assert view(ledger, ALICE) == (1000, 0, 0)
    assert rows(engine, tips) == 0
    assert_books_balance(engine)


# --- claims -----------------------------------------------------------------------------


def test_a_claim_posts_every_hold_at_once_and_a_second_claim_pays_nothing_more(ledger, engine):
    ledger.deposit(ALICE, eur("10.00"), "r1")
    ledger.deposit(CAROL, eur("5.00"), "r2")
    for n, (who, amount) in enumerate(
        [(ALICE, "0.99"), (ALICE, "2.50"), (ALICE, "1.00"), (CAROL, "0.55")]
    ):
        ledger.tip(who, BOB, eur(amount), f"tweet-{n}")

    result = ledger.claim(BOB)

    assert result.newly_claimed
    assert (result.tips, result.supporters, result.expired) == (4, 2, 0)
    assert result.gross == eur("5.04")
    assert result.fee == eur("0.49"), "the fee is floored per tip: 9 + 25 + 10 + 5 cents"
    assert result.net == eur("4.55")
    assert view(ledger, BOB) == (455, 0, 0)
    assert ledger.account(BOB).status == "claimed"
    assert view(ledger, ALICE) == (551, 0, 0)
    assert view(ledger, CAROL) == (445, 0, 0)
    assert fees_minor(engine) == 49
    assert ledger.escrow_balances().holds == 0
    with engine.connect() as conn:
        fees_recorded = conn.execute(select(tips.c.fee_minor).order_by(tips.c.id)).scalars()
        assert list(fees_recorded) == [9, 25, 10, 5]

    again = ledger.claim(BOB)

    assert (again.newly_claimed, again.tips, again.gross) == (False, 0, eur("0"))
    assert view(ledger, BOB) == (455, 0, 0)
    assert fees_minor(engine) == 49
    assert_books_balance(engine)


def test_a_claim_returns_holds_already_past_their_expiry_instead_of_posting_them(
    ledger, engine, clock
):
    ledger.deposit(ALICE, eur("10.00"), "r1")
    ledger.tip(ALICE, BOB, eur("3.00"), "old")
    clock.advance(days=60)
    ledger.tip(ALICE, BOB, eur("1.00"), "new")
    clock.advance(days=30)  # "old" expires at exactly this instant; "new" has 60 days left

    result = ledger.claim(BOB)

    assert (result.tips, result.expired, result.gross) == (1, 1, eur("1.00"))
    assert view(ledger, ALICE) == (900, 0, 0)
    assert view(ledger, BOB) == (90, 0, 0)
    with engine.connect() as conn:
        states = dict(conn.execute(select(tips.c.source_id, tips.c.resolution)).all())
    assert states == {"old": "expired", "new": "claimed"}
    assert_books_balance(engine)


def test_a_claim_by_a_creator_who_refuses_tips_moves_nothing(ledger, engine):
    ledger.refuse(BOB)

    result = ledger.claim(BOB)

    assert (result.newly_claimed, result.tips) == (False, 0)
    assert ledger.account(BOB).status == "refusing"
    assert_books_balance(engine)


# --- retraction, refusal ----------------------------------------------------------------


def test_a_supporter_retracts_one_held_tip_and_gets_it_back(ledger, engine):
    ledger.deposit(ALICE, eur("10.00"), "r1")
    kept = ledger.tip(ALICE, BOB, eur("1.00"), "tweet-1")
    taken_back = ledger.tip(ALICE, BOB, eur("2.00"), "tweet-2")

    assert ledger.retract(CAROL, taken_back.tip_id).reason == "not_yours"
    result = ledger.retract(ALICE, taken_back.tip_id)

    assert (result.retracted, result.amount, result.reason) == (True, eur("2.00"), "retracted")
    assert view(ledger, ALICE) == (900, 100, 0)
    assert view(ledger, BOB) == (0, 0, 100)
    assert ledger.retract(ALICE, taken_back.tip_id).reason == "not_held"
    assert ledger.retract(ALICE, 999_999).reason == "not_found"
    assert [h.tip_id for h in ledger.run(lambda c, now: holds_for(c, BOB))] == [kept.tip_id]
    assert_books_balance(engine)


def test_a_tip_cannot_be_retracted_once_the_creator_claimed_it(ledger, engine):
    ledger.deposit(ALICE, eur("10.00"), "r1")
    held = ledger.tip(ALICE, BOB, eur("1.00"), "tweet-1")
    ledger.claim(BOB)

    result = ledger.retract(ALICE, held.tip_id)

    assert (result.retracted, result.reason) == (False, "not_held")
    assert view(ledger, BOB) == (90, 0, 0)
    assert view(ledger, ALICE) == (900, 0, 0)
    assert_books_balance(engine)


def test_a_creator_who_refuses_tips_sends_every_hold_back_and_turns_later_tips_away(ledger, engine):
    ledger.deposit(ALICE, eur("10.00"), "r1")
    ledger.deposit(CAROL, eur("5.00"), "r2")
    ledger.tip(ALICE, BOB, eur("1.00"), "tweet-1")
    ledger.tip(CAROL, BOB, eur("0.50"), "tweet-2")
    ledger.tip(ALICE, DAVE, eur("2.00"), "tweet-3")

    result = ledger.refuse(BOB)

    assert (result.voided, result.returned) == (2, eur("1.50"))
    assert view(ledger, ALICE) == (800, 200, 0), "the hold for dave stays"
    assert view(ledger, CAROL) == (500, 0, 0)
    assert view(ledger, BOB) == (0, 0, 0)
    assert ledger.tip(ALICE, BOB, eur("1.00"), "tweet-4").status == TipStatus.REFUSING_RECIPIENT
    assert_books_balance(engine)


def test_a_creator_who_accepts_tips_again_gets_later_tips_at_once(ledger, engine):
    ledger.deposit(ALICE, eur("10.00"), "r1")
    ledger.refuse(BOB)

    assert ledger.run(lambda c, now: claims.accept_tips(c, BOB, now)) is True
    assert ledger.run(lambda c, now: claims.accept_tips(c, BOB, now)) is False

    assert ledger.account(BOB).status == "claimed"
    assert ledger.tip(ALICE, BOB, eur("1.00"), "tweet-1").status == TipStatus.POSTED
    assert view(ledger, BOB) == (90, 0, 0)
    assert_books_balance(engine)


# --- expiry and the release sweep -------------------------------------------------------


def test_expiry_returns_only_the_due_holds_in_batches(ledger, engine, clock):
    ledger.deposit(ALICE, eur("10.00"), "r1")
    for n in range(5):
        ledger.tip(ALICE, Identity.x(str(100 + n)), eur("0.10"), f"due-{n}")
    clock.advance(days=1)
    ledger.tip(ALICE, BOB, eur("1.00"), "not-due")
    clock.advance(days=89)  # the five are due at exactly this instant

    run = ledger.expire_due(batch=2)

    assert (run.voided, run.returned_minor) == (5, 50)
    assert run.batches >= 3
    assert view(ledger, ALICE) == (900, 100, 0)
    assert view(ledger, BOB) == (0, 0, 100)
    assert ledger.expire_due(batch=2).voided == 0
    assert_books_balance(engine)


def test_the_release_sweep_posts_holds_left_behind_for_a_claimed_creator(ledger, engine):
    ledger.deposit(ALICE, eur("10.00"), "r1")
    ledger.tip(ALICE, BOB, eur("2.00"), "tweet-1")
    # A claim that marked the account but never got to its holds.
    with engine.begin() as conn:
        conn.execute(
            update(accounts).where(accounts.c.platform_user_id == "2").values(status="claimed")
        )

    assert ledger.release_sweep() == 1

    assert view(ledger, BOB) == (180, 0, 0)
    assert view(ledger, ALICE) == (800, 0, 0)
    assert fees_minor(engine) == 20
    assert ledger.release_sweep() == 0
    assert_books_balance(engine)


# --- reports and the audit --------------------------------------------------------------


def test_escrow_balances_show_what_waits_for_each_creator(ledger, engine, clock):
    t0 = clock.now
    ledger.deposit(ALICE, eur("10.00"), "r1")
    ledger.deposit(CAROL, eur("5.00"), "r2")
    ledger.tip(ALICE, BOB, eur("1.00"), "tweet-1")
    clock.advance(days=1)
    ledger.tip(ALICE, BOB, eur("2.00"), "tweet-2")
    clock.advance(days=1)
    ledger.tip(CAROL, BOB, eur("0.50"), "tweet-3")
    clock.advance(days=1)
    ledger.tip(ALICE, DAVE, eur("5.00"), "tweet-4")

    report = ledger.escrow_balances()

    assert (report.total_held_minor, report.holds) == (850, 4)
    assert [(r.handle, r.held_minor) for r in report.recipients] == [("dave", 500), ("bob", 350)]
    bob = report.recipients[1]
    assert (bob.platform, bob.user_id, bob.tips, bob.supporters) == ("x", "2", 3, 2)
    assert bob.oldest_at == t0
    assert bob.next_expiry_at == t0 + timedelta(days=90)
    assert bob.notices_sent == 0
    alice = ledger.account(ALICE)
    assert (alice.handle, alice.status) == ("alice", "unclaimed")
    assert (alice.available_minor, alice.reserved_minor, alice.held_for_minor) == (200, 800, 0)
    assert view(ledger, BOB) == (0, 0, 350)
    held = ledger.run(lambda c, now: holds_for(c, BOB))
    assert [(h.supporter_handle, h.amount_minor, h.source_id) for h in held] == [
        ("alice", 100, "tweet-1"),
        ("alice", 200, "tweet-2"),
        ("carol", 50, "tweet-3"),
    ]
    assert_books_balance(engine)


def test_escrow_balances_of_an_empty_ledger_are_zero(engine):
    with engine.connect() as conn:
        report = escrow_balances(conn)
    assert (report.total_held_minor, report.holds, report.recipients) == (0, 0, [])


def test_the_audit_finds_a_counter_changed_behind_the_ledgers_back(ledger, engine):
    ledger.deposit(ALICE, eur("10.00"), "r1")
    ledger.tip(ALICE, BOB, eur("1.00"), "tweet-1")
    assert ledger.check_ledger() == []

    with engine.begin() as conn:
        conn.execute(
            text("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE handle = 'alice'")
        )

    problems = ledger.check_ledger()
    assert any("posted debits 1000 != posted credits 1001" in p.message for p in problems)
    assert any("x:1" in p.message and "differ from its transfers" in p.message for p in problems)
    assert {p.kind for p in problems} >= {ProblemKind.UNBALANCED, ProblemKind.COUNTERS}
    assert any(p.kind == ProblemKind.COUNTERS and p.account_id is not None for p in problems)


def test_the_audit_finds_a_tip_whose_state_disagrees_with_its_hold(ledger, engine):
    ledger.deposit(ALICE, eur("10.00"), "r1")
    held = ledger.tip(ALICE, BOB, eur("1.00"), "tweet-1")

    with engine.begin() as conn:
        conn.execute(
            update(tips)
            .where(tips.c.id == held.tip_id)
            .values(state="voided", resolution="expired")
        )

    problems = ledger.check_ledger()
    assert [p.message for p in problems] == [
        f"tip {held.tip_id} is voided but its hold's resolution is none"
    ]
    assert [(p.kind, p.tip_id) for p in problems] == [(ProblemKind.TIP_VS_HOLD, held.tip_id)]
