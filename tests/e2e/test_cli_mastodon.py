"""Maintainers name Mastodon accounts by address in every command."""

from __future__ import annotations

from escrow.ledger import Identity
from escrow.money import Money
from tests.e2e.test_cli_ledger import Tipjar, tipjar, upgraded  # noqa: F401 (fixtures)


def test_addresses_work_in_deposit_show_and_balances(upgraded: Tipjar):  # noqa: F811
    deposit = upgraded.json("funds", "deposit", "@Mira@Home.Social", "5.00", "--reference", "m1")
    assert deposit["available_minor"] == 500
    shown = upgraded.json("accounts", "show", "mastodon:mira@home.social")
    assert (shown["platform"], shown["user_id"]) == ("mastodon", "mira@home.social")
    assert shown["available_minor"] == 500

    ledger = upgraded.ledger()
    noor = Identity("mastodon", "noor@other.social", "noor@other.social")
    ledger.tip(Identity("mastodon", "mira@home.social"), noor, Money(150, "EUR"), "mastodon:9")
    balances = upgraded.json("escrow", "balances")
    (row,) = balances["recipients"]
    assert (row["platform"], row["user_id"], row["held_minor"]) == (
        "mastodon",
        "noor@other.social",
        150,
    )
    text = upgraded("escrow", "balances").stdout
    assert "mastodon:noor@other.social" in text


def test_a_malformed_address_is_refused_with_a_clear_message(upgraded: Tipjar):  # noqa: F811
    done = upgraded("accounts", "show", "mastodon:not an address")
    assert done.returncode != 0
    assert "mastodon:bob@example.social" in done.stderr
