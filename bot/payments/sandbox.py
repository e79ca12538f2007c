"""A loopback stand-in for the few Stripe endpoints tipjar uses, for tests, the demo and local runs.

It speaks Stripe's wire format to the real `stripe` client (form-encoded POSTs with nested
`a[b]=c` keys, JSON objects shaped like Stripe's own, errors as `{"error": {...}}`,
`Idempotency-Key` replays) and plays the supporter's side in a browser: the session's `url`
is a page here with a "Pay" button. Paying completes the session and delivers the events
Stripe would (`checkout.session.completed`; for a subscription also `invoice.paid`), signed
with the endpoint secret exactly as Stripe signs them (`Stripe-Signature: t=…,v1=…`),
before the browser is sent back to `success_url`. For payouts it serves Connect: connected
accounts, Account Links whose onboarding page enables payouts when submitted (and sends
`account.updated`, a Connect event with a top-level `account`, signed with the Connect
endpoint's own secret), transfers (refused, as Stripe does, to an account that cannot
receive them) and reversals (`transfer.reversed`). The control methods (`refund`,
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
CONNECT_WEBHOOK_SECRET = "whsec_sandbox_connect"  # noqa: S105
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


def _api_error(message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "message": message, "code": code}}


class _Refusal(Exception):
    """A request the stand-in refuses as Stripe would (an HTTP 4xx with an error body)."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.body = body or _api_error(message)


def _answer(
    work: Callable[[dict[str, Any]], dict[str, Any]], params: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """What the API answers to `work`: 200 and its object, or the refusal it raised."""
    try:
        return 200, work(params)
    except _Refusal as refusal:
        return refusal.status, refusal.body


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


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
    # Connect: events about connected accounts go to their own endpoint and secret.
    connect_webhook_url: str = ""
    connect_webhook_secret: str = CONNECT_WEBHOOK_SECRET
    deliver_connect: Callable[[bytes, str], int] | None = None

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

    def _event(
        self, event_type: str, obj: dict[str, Any], account: str | None = None
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
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
        if account is not None:
            event["account"] = account  # a Connect event: about a connected account
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
        connect = "account" in event
        secret = self.connect_webhook_secret if connect else self.webhook_secret
        header = signature or sign(body, secret)
        deliver = self.deliver_connect if connect else self.deliver
        url = self.connect_webhook_url if connect else self.webhook_url
        if deliver is not None:
            status = deliver(body, header)
        elif url:
            status = self._http.post(
                url,
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

    # -- Connect: connected accounts, onboarding, transfers, reversals ---------------------

    def _account(self, params: dict[str, Any]) -> dict[str, Any]:
        account_id = self.new_id("acct")
        requested = params.get("capabilities", {}).get("transfers", {}).get("requested")
        return {
            "id": account_id,
            "object": "account",
            "business_type": None,
            "capabilities": {"transfers": "inactive" if requested else None},
            "charges_enabled": False,
            "controller": {
                "type": "application",
                "is_controller": True,
                **params.get("controller", {}),
            },
            "country": "DE",
            "created": int(time.time()),
            "default_currency": "eur",
            "details_submitted": False,
            "email": None,
            "metadata": params.get("metadata", {}),
            "payouts_enabled": False,
            "requirements": {"currently_due": ["external_account", "tos_acceptance.date"]},
            "type": "none",
        }

    def _account_link(self, params: dict[str, Any]) -> dict[str, Any]:
        token = secrets.token_urlsafe(12)
        now = int(time.time())
        link = {
            "object": "account_link",
            "created": now,
            "expires_at": now + 300,
            "url": f"{self.base_url}/onboard/{params.get('account')}/{token}",
            "_account": params.get("account"),
            "_return_url": params.get("return_url"),
            "_refresh_url": params.get("refresh_url"),
            "_used": False,
        }
        self.objects[f"link_{token}"] = link
        return link

    def complete_onboarding(self, account_id: str) -> dict[str, Any]:
        """The creator finished Stripe's onboarding: payouts enabled, `account.updated`."""
        with self._lock:
            account = self.objects[account_id]
            account.update(details_submitted=True, payouts_enabled=True, charges_enabled=False)
            account["capabilities"]["transfers"] = "active"
            account["requirements"] = {"currently_due": []}
        self._event("account.updated", self.public(account), account=account_id)
        return account

    def deauthorize(self, account_id: str) -> dict[str, Any]:
        """The creator removed tipjar from their Stripe account."""
        application = {"id": "ca_sandbox", "object": "application", "name": "tipjar"}
        with self._lock:
            self.objects[account_id]["_deauthorized"] = True
        return self._event("account.application.deauthorized", application, account=account_id)

    def _transfer(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        destination = str(params.get("destination", ""))
        account = self.objects.get(destination)
        if account is None or account.get("object") != "account":
            return 400, _api_error(f"No such destination: '{destination}'", "resource_missing")
        if account["capabilities"].get("transfers") != "active" or account.get("_deauthorized"):
            return 400, _api_error(
                "Your destination account needs to have at least one of the following"
                " capabilities enabled: transfers, crypto_transfers, legacy_payments",
                "insufficient_capabilities_for_transfer",
            )
        transfer_id = self.new_id("tr")
        transfer = {
            "id": transfer_id,
            "object": "transfer",
            "amount": int(params.get("amount", 0)),
            "amount_reversed": 0,
            "created": int(time.time()),
            "currency": str(params.get("currency", "eur")).lower(),
            "description": None,
            "destination": destination,
            "destination_payment": self.new_id("py"),
            "livemode": False,
            "metadata": params.get("metadata", {}),
            "reversals": {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/transfers/{transfer_id}/reversals",
            },
            "reversed": False,
            "source_transaction": None,
            "transfer_group": None,
        }
        self.objects[transfer_id] = transfer
        return 200, transfer

    def transfers(self) -> list[dict[str, Any]]:
        return [o for o in self.objects.values() if o.get("object") == "transfer"]

    def reverse_transfer(self, transfer_id: str, amount: int | None = None) -> dict[str, Any]:
        """Reverse (part of) a transfer: the money comes back, `transfer.reversed`."""
        with self._lock:
            transfer = self.objects[transfer_id]
            left = transfer["amount"] - transfer["amount_reversed"]
            amount = left if amount is None else amount
            reversal = {
                "id": self.new_id("trr"),
                "object": "transfer_reversal",
                "amount": amount,
                "balance_transaction": None,
                "created": int(time.time()),
                "currency": transfer["currency"],
                "destination_payment_refund": None,
                "metadata": {},
                "source_refund": None,
                "transfer": transfer_id,
            }
            transfer["amount_reversed"] += amount
            transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
            transfer["reversals"]["data"].insert(0, reversal)
            self.objects[reversal["id"]] = reversal
        self._event("transfer.reversed", self.public(transfer))
        return reversal

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
                status, body = _answer(work, params)
                if key:
                    self._idempotent[key] = (status, body)
            return Response(json.dumps(body), content_type="application/json"), status

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

        self._connect_routes(app, api, error)
        return app

    def _link(self, account_id: str, token: str) -> dict[str, Any] | None:
        link = self.objects.get(f"link_{token}")
        return link if link is not None and link["_account"] == account_id else None

    def _connect_routes(
        self, app: Flask, api: Callable[..., Any], error: Callable[..., Any]
    ) -> None:
        """Connect's endpoints: accounts, account links (and their onboarding page),
        transfers and reversals."""

        @app.post("/v1/accounts")
        def create_account() -> Any:
            def work(params: dict[str, Any]) -> dict[str, Any]:
                account = self._account(params)
                self.objects[account["id"]] = account
                return self.public(account)

            return api(work)

        @app.post("/v1/account_links")
        def create_account_link() -> Any:
            def work(params: dict[str, Any]) -> dict[str, Any]:
                if params.get("account") not in self.objects:
                    raise _Refusal(400, f"No such account: '{params.get('account')}'")
                return self.public(self._account_link(params))

            return api(work)

        @app.post("/v1/transfers")
        def create_transfer() -> Any:
            def work(params: dict[str, Any]) -> dict[str, Any]:
                status, body = self._transfer(params)
                if status != 200:
                    raise _Refusal(status, body["error"]["message"], body)
                return body

            return api(work)

        @app.post("/v1/transfers/<transfer_id>/reversals")
        def create_reversal(transfer_id: str) -> Any:
            if transfer_id not in self.objects:
                return error(404, "invalid_request_error", f"No such transfer: '{transfer_id}'")
            return api(
                lambda params: self.reverse_transfer(transfer_id, _int(params.get("amount")))
            )

        self._onboarding_routes(app, error)

    def _onboarding_routes(self, app: Flask, error: Callable[..., Any]) -> None:
        """Stripe's hosted onboarding, played: a page whose Submit enables payouts."""

        @app.get("/onboard/<account_id>/<token>")
        def onboarding_page(account_id: str, token: str) -> Any:
            link = self._link(account_id, token)
            if link is None:
                return error(404, "invalid_request_error", "No such onboarding link")
            if link["_used"] or link["expires_at"] < time.time():
                # Stripe sends the creator to refresh_url to get a new link.
                return redirect(link["_refresh_url"] or "/", 303)
            return (
                "<!doctype html><title>Stripe sandbox onboarding</title>"
                "<h1>Stripe sandbox: get paid by tipjar</h1>"
                "<p>Stripe would ask here for your bank account and identity.</p>"
                '<form method="post"><button name="submit" value="1">Submit</button></form>'
            )

        @app.post("/onboard/<account_id>/<token>")
        def onboard(account_id: str, token: str) -> BaseResponse:
            link = self._link(account_id, token)
            if link is None:
                return Response("no such onboarding link", status=404)
            if link["_used"] or link["expires_at"] < time.time():
                return redirect(link["_refresh_url"] or "/", 303)
            link["_used"] = True
            self.complete_onboarding(account_id)
            return redirect(link["_return_url"] or "/", 303)

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
            "STRIPE_CONNECT_WEBHOOK_SECRET": self.connect_webhook_secret,
        }
