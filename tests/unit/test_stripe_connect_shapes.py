"""The Stripe sandbox's Connect objects have Stripe's real shapes: connected accounts,
account links, transfers, transfer reversals, and the Connect events that carry them."""

from __future__ import annotations

from typing import Any

import pytest

from bot.payments.sandbox import StripeSandbox
from tests.unit.test_stripe_sandbox_shapes import FIXTURES, _assert_shape

AUTH = {"Authorization": "Bearer sk_test_sandbox"}


@pytest.fixture(scope="module")
def played() -> dict[str, Any]:
    """A connected account onboarded, paid by a transfer, the transfer reversed."""
    box = StripeSandbox(hold_events=True)
    box.base_url = "http://127.0.0.1:1"
    api = box.app.test_client()
    account = api.post(
        "/v1/accounts",
        data={
            "controller[stripe_dashboard][type]": "express",
            "capabilities[transfers][requested]": "true",
            "metadata[tipjar_account]": "7",
        },
        headers=AUTH,
    ).get_json()
    link = api.post(
        "/v1/account_links",
        data={
            "account": account["id"],
            "type": "account_onboarding",
            "refresh_url": "http://127.0.0.1/me?payouts=refresh",
            "return_url": "http://127.0.0.1/me?payouts=back",
        },
        headers=AUTH,
    ).get_json()
    box.complete_onboarding(account["id"])
    transfer = api.post(
        "/v1/transfers",
        data={
            "amount": "180",
            "currency": "eur",
            "destination": account["id"],
            "metadata[tipjar_payout_id]": "1",
        },
        headers={**AUTH, "Idempotency-Key": "payout-1"},
    ).get_json()
    reversal = box.reverse_transfer(transfer["id"], 80)
    box.deauthorize(account["id"])
    return {
        "box": box,
        "account": account,
        "account_link": link,
        "transfer": transfer,
        "transfer_reversal": reversal,
    }


@pytest.mark.parametrize("kind", ["account", "account_link", "transfer", "transfer_reversal"])
def test_the_objects_the_api_returns_have_stripes_shapes(played: dict[str, Any], kind: str) -> None:
    _assert_shape(played[kind], FIXTURES[kind], kind)


def test_connect_events_carry_the_account_and_stripes_shapes(played: dict[str, Any]) -> None:
    box: StripeSandbox = played["box"]
    seen = {}
    for event in box.events:
        # Connect events add `account` (the connected account), which the example event of
        # the platform's own account leaves out.
        _assert_shape(
            {k: v for k, v in event.items() if k != "account"}, FIXTURES["event"], "event"
        )
        obj = event["data"]["object"]
        if obj["object"] in FIXTURES:
            _assert_shape(obj, FIXTURES[obj["object"]], obj["object"])
        seen[event["type"]] = event.get("account")
    account = played["account"]["id"]
    assert seen == {
        "account.updated": account,
        "transfer.reversed": None,  # about the platform's own transfer
        "account.application.deauthorized": account,
    }
    transfer = next(e for e in box.events if e["type"] == "transfer.reversed")["data"]["object"]
    assert transfer["amount_reversed"] == 80 and transfer["reversals"]["data"][0]["amount"] == 80
