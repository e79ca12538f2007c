"""A loopback stand-in for the few Stripe endpoints tipjar uses, for tests, the demo and local runs.

It speaks Stripe's wire format to the real `stripe` client (form-encoded POSTs with nested
`a[b]=c` keys, JSON objects shaped like Stripe's own, errors as `{"error": {...}}`,
`Idempotency-Key` replays) and plays the supporter's side in a browser: the session's `url`
is a page here with a "Pay" button. Paying completes the session and delivers the events
Stripe would (`checkout.session.completed`; for a subscription also `invoice.paid`), signed
with the endpoint secret exactly as Stripe signs them (`Stripe-Signature: t=…,v1=…`),
before the browser is sent back to `success_url`. The control methods (`refund`,
`dispute`, `close_dispute`, `renew`) let a test or the demo play the rest of a payment's
life. Object shapes are checked against Stripe's fixtures by a test.

It listens only on loopback, and keeps everything in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from flask import Flask, Response, redirect, request
from markupsafe import escape
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Response as BaseResponse

from bot.hosts import is_loopback

SECRET_KEY = "sk_test_sandbox"  # noqa: S105 (the sandbox's own, well-known test key)
WEBHOOK_SECRET = "whsec_sandbox"  # noqa: S105
API_VERSION = "2025-09-30.clover"


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header value for `body`, as Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def parse_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's nested form keys (`line_items[0][price_data][currency]=eur`) as dicts."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


@dataclass
class Delivery:
    event: dict[str, Any]
    status: int


@dataclass
class StripeSandbox:
    """The stand-in's state and its server. `deliver` sends one signed event body."""

    webhook_url: str = ""
    webhook_secret: str = WEBHOOK_SECRET
    host: str = "127.0.0.1"
    port: int = 0
    hold_events: bool = False  # queue events instead of delivering them (`flush` sends)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    queued: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    requests_seen: list[tuple[str, str, dict[str, Any], str | None]] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)  # HTTP statuses for the next API calls
    deliver: Callable[[bytes, str], int] | None = None

    def __post_init__(self) -> None:
        if not is_loopback(self.host):
            raise ValueError("the Stripe sandbox listens on loopback only")
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._idempotent: dict[str, tuple[int, dict[str, Any]]] = {}
        self._server: BaseWSGIServer | None = None
        self._http = requests.Session()
        self._http.trust_env = False  # webhooks go to loopback, never through a proxy
        self.base_url = ""
        self.app = self._create_app()

    # -- objects ---------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_sbx{next(self._ids):06d}{secrets.token_hex(4)}"

    def _event(self, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        event = {
            "id": self.new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": json.loads(json.dumps(obj))},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        with self._lock:
            self.events.append(event)
            if self.hold_events:
                self.queued.append(event)
                return event
        self.send(event)
        return event

    def send(self, event: dict[str, Any], *, signature: str | None = None) -> int:
        """Deliver `event` to the webhook endpoint, signed; returns the HTTP status."""
        body = json.dumps(event).encode()
        header = signature or sign(body, self.webhook_secret)
        if self.deliver is not None:
            status = self.deliver(body, header)
        elif self.webhook_url:
            status = self._http.post(
                self.webhook_url,
                data=body,
                headers={"Stripe-Signature": header, "Content-Type": "application/json"},
                timeout=30,
            ).status_code
        else:
            status = 0
        with self._lock:
            self.deliveries.append(Delivery(event, status))
        return status

    def flush(self) -> list[int]:
        """Deliver the queued events, in the order they were queued."""
        with self._lock:
            queued, self.queued = self.queued, []
        return [self.send(e) for e in queued]

    def _session(self, params: dict[str, Any]) -> dict[str, Any]:
        items = params.get("line_items", {})
        price = items.get("0", {}).get("price_data", {})
        amount = int(price.get("unit_amount", 0))
        session_id = self.new_id("cs_test")
        return {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": amount,
            "amount_total": amount,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": int(time.time()),
            "currency": str(price.get("currency", "eur")).lower(),
            "customer": None,
            "expires_at": int(time.time()) + 86400,
            "livemode": False,
            "metadata": params.get("metadata", {}),
            "mode": params.get("mode", "payment"),
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "subscription": None,
            "success_url": params.get("success_url"),
            "url": f"{self.base_url}/pay/{session_id}",
            "_subscription_metadata": params.get("subscription_data", {}).get("metadata", {}),
        }

    def public(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def pay(self, session_id: str) -> dict[str, Any]:
        """The supporter pays the session: complete it and deliver Stripe's events."""
        with self._lock:
            session = self.objects[session_id]
            if session["status"] == "complete":
                return session
            session["status"], session["payment_status"] = "complete", "paid"
            customer: str = self.new_id("cus")
            session["customer"] = customer
            if session["mode"] == "payment":
                intent = self.new_id("pi")
                session["payment_intent"] = intent
                self._charge(intent, session["amount_total"], session["currency"], customer)
        if session["mode"] == "subscription":
            return self._start_subscription(session, customer)
        self._event("checkout.session.completed", self.public(session))
        return session

    def _charge(self, intent: str, amount: int, currency: str, customer: str) -> dict[str, Any]:
        charge_id = self.new_id("ch")
        charge: dict[str, Any] = {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "captured": True,
            "created": int(time.time()),
            "currency": currency,
            "customer": customer,
            "disputed": False,
            "livemode": False,
            "metadata": {},
            "paid": True,
            "payment_intent": intent,
            "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "url": ""},
            "status": "succeeded",
        }
        self.objects[charge_id] = charge
        self.objects[intent] = {"id": intent, "object": "payment_intent", "latest_charge": charge}
        return charge

    def _start_subscription(self, session: dict[str, Any], customer: str) -> dict[str, Any]:
        sub_id = self.new_id("sub")
        now = int(time.time())
        sub = {
            "id": sub_id,
            "object": "subscription",
            "cancel_at_period_end": False,
            "canceled_at": None,
            "created": now,
            "currency": session["currency"],
            "customer": customer,
            "items": {
                "object": "list",
                "data": [{"current_period_start": now, "current_period_end": now + 30 * 86400}],
            },
            "livemode": False,
            "metadata": session["_subscription_metadata"],
            "status": "active",
            "_amount": session["amount_total"],
        }
        with self._lock:
            self.objects[sub_id] = sub
            session["subscription"] = sub_id
        self._event("checkout.session.completed", self.public(session))
        self.renew(sub_id)
        return session

    def renew(self, sub_id: str) -> dict[str, Any]:
        """A month of `sub_id` is paid: an invoice, its charge, `invoice.paid`."""
        with self._lock:
            sub = self.objects[sub_id]
            intent = self.new_id("pi")
            self._charge(intent, sub["_amount"], sub["currency"], sub["customer"])
            now = int(time.time())
            invoice = {
                "id": self.new_id("in"),
                "object": "invoice",
                "amount_due": sub["_amount"],
                "amount_paid": sub["_amount"],
                "amount_remaining": 0,
                "created": now,
                "currency": sub["currency"],
                "customer": sub["customer"],
                "lines": {
                    "object": "list",
                    "data": [{"period": {"start": now, "end": now + 30 * 86400}}],
                },
                "livemode": False,
                "parent": {
                    "type": "subscription_details",
                    "subscription_details": {"metadata": sub["metadata"], "subscription": sub_id},
                },
                "period_end": now,
                "period_start": now,
                "status": "paid",
                "total": sub["_amount"],
            }
            self.objects[invoice["id"]] = invoice
        self._event("invoice.paid", invoice)
        return invoice

    def refund(self, intent: str, amount: int | None = None) -> dict[str, Any]:
        """Refund (part of) the charge of payment intent `intent`: `charge.refunded`."""
        with self._lock:
            charge = self.objects[intent]["latest_charge"]
            amount = charge["amount"] - charge["amount_refunded"] if amount is None else amount
            refund = {
                "id": self.new_id("re"),
                "object": "refund",
                "amount": amount,
                "charge": charge["id"],
                "created": int(time.time()),
                "currency": charge["currency"],
                "metadata": {},
                "payment_intent": intent,
                "reason": "requested_by_customer",
                "status": "succeeded",
            }
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
            charge["refunds"]["data"].insert(0, refund)
            self.objects[refund["id"]] = refund
        self._event("charge.refunded", self.public(charge))
        return refund

    def dispute(self, intent: str) -> dict[str, Any]:
        """The cardholder disputes the charge of `intent`: `charge.dispute.created`."""
        with self._lock:
            charge = self.objects[intent]["latest_charge"]
            charge["disputed"] = True
            dispute = {
                "id": self.new_id("dp"),
                "object": "dispute",
                "amount": charge["amount"],
                "charge": charge["id"],
                "created": int(time.time()),
                "currency": charge["currency"],
                "livemode": False,
                "metadata": {},
                "payment_intent": intent,
                "reason": "fraudulent",
                "status": "needs_response",
            }
            self.objects[dispute["id"]] = dispute
        self._event("charge.dispute.created", dispute)
        return dispute

    def close_dispute(self, dispute_id: str, *, won: bool) -> dict[str, Any]:
        with self._lock:
            dispute = self.objects[dispute_id]
            dispute["status"] = "won" if won else "lost"
        self._event("charge.dispute.closed", dispute)
        return dispute

    def cancel(self, sub_id: str) -> dict[str, Any]:
        with self._lock:
            sub = self.objects[sub_id]
            sub["cancel_at_period_end"] = True
        self._event("customer.subscription.updated", self.public(sub))
        return sub

    # -- HTTP ------------------------------------------------------------------------------

    def _create_app(self) -> Flask:
        app = Flask(__name__)

        def error(status: int, kind: str, message: str) -> tuple[Response, int]:
            body = {"error": {"type": kind, "message": message}}
            return Response(json.dumps(body), content_type="application/json"), status

        def api(work: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
            auth = request.headers.get("Authorization", "")
            key = request.headers.get("Idempotency-Key")
            params = parse_form(list(request.form.items(multi=True)))
            with self._lock:
                self.requests_seen.append((request.method, request.path, params, key))
                if self.faults:
                    return error(self.faults.pop(0), "api_error", "the sandbox was told to fail")
                if auth != f"Bearer {SECRET_KEY}":
                    return error(401, "invalid_request_error", "Invalid API Key provided")
                if key and key in self._idempotent:
                    status, body = self._idempotent[key]
                    return Response(json.dumps(body), content_type="application/json"), status
                body = work(params)
                if key:
                    self._idempotent[key] = (200, body)
            return Response(json.dumps(body), content_type="application/json")

        @app.post("/v1/checkout/sessions")
        def create_session() -> Any:
            def work(params: dict[str, Any]) -> dict[str, Any]:
                session = self._session(params)
                self.objects[session["id"]] = session
                return self.public(session)

            return api(work)

        @app.post("/v1/subscriptions/<sub_id>")
        def update_subscription(sub_id: str) -> Any:
            if sub_id not in self.objects:
                return error(404, "invalid_request_error", f"No such subscription: '{sub_id}'")
            return api(lambda params: self.public(self.cancel(sub_id)))

        @app.get("/pay/<session_id>")
        def pay_page(session_id: str) -> Any:
            session = self.objects.get(session_id)
            if session is None:
                return error(404, "invalid_request_error", "No such checkout session")
            amount = f"{session['amount_total'] / 100:.2f} {session['currency'].upper()}"
            monthly = " every month" if session["mode"] == "subscription" else ""
            return (
                "<!doctype html><title>Stripe sandbox checkout</title>"
                "<h1>Stripe sandbox: test payment</h1>"
                f"<p>Pay <strong>{escape(amount)}</strong>{monthly} to tipjar.</p>"
                f'<form method="post"><button name="pay" value="1">Pay {escape(amount)}</button>'
                f'</form><p><a href="{escape(session["cancel_url"] or "")}">Cancel</a></p>'
            )

        @app.post("/pay/<session_id>")
        def pay(session_id: str) -> BaseResponse:
            if session_id not in self.objects:
                return Response("no such session", status=404)
            session = self.pay(session_id)
            return redirect(session["success_url"] or "/", 303)

        return app

    def start(self) -> str:
        """Serve on host:port (0 = any free port) from a daemon thread; returns base_url."""
        if self._server is None:
            server = make_server(
                self.host, self.port, self.app, threaded=True, request_handler=_Quiet
            )
            threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
            ).start()
            self._server = server
            self.base_url = f"http://{self.host}:{server.server_port}"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def env(self) -> dict[str, str]:
        """Environment that points tipjar at this stand-in."""
        return {
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_WEBHOOK_SECRET": self.webhook_secret,
            "STRIPE_API_BASE": self.base_url,
        }
