"""`tipjar funds list`: what a maintainer sees of card money, as text and as JSON."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from escrow import funding
from escrow.db import transaction
from escrow.ledger import Identity, Policy, ensure_account
from escrow.money import Money
from tests.e2e.test_cli_ledger import Tipjar, tipjar, upgraded  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_funds_list_shows_top_ups_refunds_debts_and_problems(upgraded: Tipjar) -> None:  # noqa: F811
    engine = upgraded.ledger().engine
    policy = Policy()

    def story(conn):  # type: ignore[no-untyped-def]
        alice = ensure_account(conn, Identity.x("1", "alice"), NOW)
        paid = funding.start_topup(conn, policy, alice, Money(1000, "EUR"), NOW)
        funding.credit_topup(conn, policy, paid, "pi_1", 1000, "eur", NOW)
        odd = funding.start_topup(conn, policy, alice, Money(500, "EUR"), NOW)
        funding.credit_topup(conn, policy, odd, "pi_2", 500, "usd", NOW)
        refund = funding.Reversal("refund", "re_1", "pi_1", "ch_1", 1000, "eur")
        funding.take_back(conn, policy, refund, NOW)

    transaction(engine, story)
    listed = upgraded.json("funds", "list")
    problems = upgraded.json("funds", "list", "--state", "problem")
    text = upgraded("funds", "list")

    kinds = {(i["kind"], i["state"]) for i in listed["items"]}
    assert kinds == {("topup", "paid"), ("topup", "problem"), ("refund", "taken")}
    assert listed["currency"] == "EUR"
    refund = next(i for i in listed["items"] if i["kind"] == "refund")
    assert (refund["amount_minor"], refund["taken_minor"], refund["handle"]) == (
        1000,
        1000,
        "alice",
    )
    (problem,) = problems["items"]
    assert problem["amount_minor"] == 500 and "USD" in problem["problem"]
    assert text.returncode == 0 and "stripe-refund:re_1" in text.stdout
