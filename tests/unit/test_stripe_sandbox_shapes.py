"""The Stripe sandbox's objects have Stripe's real shapes: every field it sends exists in
Stripe's own fixture of that object (../shared/stripe/fixtures3.json) with the same JSON
type, and the fields tipjar reads are all there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.payments.sandbox import StripeSandbox

# ../shared beside the checkout (a worktree may sit one level deeper than the main one).
STRIPE_FIXTURES = next(
    (
        p / "shared" / "stripe" / "fixtures3.json"
        for p in Path(__file__).resolve().parents
        if (p / "shared" / "stripe" / "fixtures3.json").is_file()
    ),
    None,
)
if STRIPE_FIXTURES is None:
    pytest.skip("shared Stripe fixtures are absent", allow_module_level=True)
FIXTURES = json.loads(STRIPE_FIXTURES.read_text())["resources"]

# What tipjar's webhook handlers read from each object.
READ = {
    "checkout.session": {
        "id",
        "mode",
        "metadata",
        "client_reference_id",
        "payment_status",
        "payment_intent",
        "amount_total",
        "currency",
        "subscription",
        "customer",
        "url",
    },
    "charge": {"id", "payment_intent", "refunds", "amount_refunded", "currency", "customer"},
    "refund": {"id", "amount", "currency", "status"},
    "dispute": {"id", "amount", "currency", "payment_intent", "charge", "status"},
    "invoice": {"id", "amount_paid", "currency", "customer", "parent", "lines"},
    "subscription": {"id", "status", "cancel_at_period_end", "items"},
    "event": {"id", "type", "data", "created", "api_version"},
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _assert_shape(obj: dict[str, Any], fixture: dict[str, Any], where: str) -> None:
    for key, value in obj.items():
        if key.startswith("_"):
            continue
        assert key in fixture, f"{where}.{key} is not a field of Stripe's object"
        expected = fixture[key]
        if value is None or expected is None:
            continue
        assert _kind(value) == _kind(expected), f"{where}.{key}: {value!r} vs {expected!r}"


@pytest.fixture(scope="module")
def played() -> StripeSandbox:
    """One of everything: a paid top-up, a refund, a dispute, a subscription month."""
    box = StripeSandbox(hold_events=True)
    box.base_url = "http://127.0.0.1:1"
    pay = box.app.test_client()
    for mode, extra in (
        ("payment", {}),
        ("subscription", {"line_items[0][price_data][recurring][interval]": "month"}),
    ):
        form = {
            "mode": mode,
            "client_reference_id": "1",
            "metadata[tipjar_topup_id]": "1",
            "line_items[0][quantity]": "1",
            "line_items[0][price_data][currency]": "eur",
            "line_items[0][price_data][unit_amount]": "1000",
            "success_url": "http://127.0.0.1/me",
            "cancel_url": "http://127.0.0.1/me",
            **extra,
        }
        answer = pay.post(
            "/v1/checkout/sessions", data=form, headers={"Authorization": "Bearer sk_test_sandbox"}
        )
        assert answer.status_code == 200
        box.pay(answer.get_json()["id"])
    intent = next(
        o
        for o in box.objects.values()
        if o["object"] == "checkout.session" and o["mode"] == "payment"
    )["payment_intent"]
    box.refund(intent, 300)
    dispute = box.dispute(intent)
    box.close_dispute(dispute["id"], won=True)
    box.cancel(next(k for k, o in box.objects.items() if o["object"] == "subscription"))
    return box


def test_every_event_and_its_object_have_stripes_shapes(played: StripeSandbox) -> None:
    types = set()
    for event in played.events:
        _assert_shape(event, FIXTURES["event"], "event")
        obj = event["data"]["object"]
        _assert_shape(obj, FIXTURES[obj["object"]], obj["object"])
        assert READ[obj["object"]] <= set(obj), f"{obj['object']} lacks fields tipjar reads"
        for refund in obj.get("refunds", {}).get("data", []):
            _assert_shape(refund, FIXTURES["refund"], "refund")
            assert READ["refund"] <= set(refund)
        types.add(event["type"])
    assert READ["event"] <= set(played.events[0])
    assert types == {
        "checkout.session.completed",
        "invoice.paid",
        "charge.refunded",
        "charge.dispute.created",
        "charge.dispute.closed",
        "customer.subscription.updated",
    }


def test_the_session_the_api_returns_has_stripes_shape(played: StripeSandbox) -> None:
    session = next(o for o in played.objects.values() if o["object"] == "checkout.session")
    _assert_shape(played.public(session), FIXTURES["checkout.session"], "checkout.session")
