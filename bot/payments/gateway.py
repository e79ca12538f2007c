"""The Stripe adapter: create Checkout Sessions and cancel subscriptions, nothing else.

One `StripeClient` per process, pointed at `STRIPE_API_BASE` (the sandbox and tests use a
loopback address). Every call that can lead to a payment carries an idempotency key derived
from our own row (`topup-<id>`, `subscription-<id>`), so a retry after a crash or a timeout
asks Stripe for the same session instead of a second one. Failures are sorted for the
caller: `PaymentsUnavailable` (Stripe down, slow or overloaded: the row stays pending and
the supporter may try again) and `PaymentRefused` (Stripe said no for good).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import stripe

from bot.config import Settings
from bot.hosts import is_loopback

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 20


class PaymentsUnavailable(Exception):
    """Stripe could not be reached or failed on its side; nothing was charged."""


class PaymentRefused(Exception):
    """Stripe refused the request itself (a 4xx other than rate limiting)."""


@dataclass(frozen=True)
class Checkout:
    session_id: str
    url: str


def _line(currency: str, amount_minor: int, name: str, monthly: bool) -> dict[str, Any]:
    price: dict[str, Any] = {
        "currency": currency.lower(),
        "unit_amount": amount_minor,
        "product_data": {"name": name},
    }
    if monthly:
        price["recurring"] = {"interval": "month"}
    return {"quantity": 1, "price_data": price}


class StripeGateway:
    """What tipjar asks of Stripe, through the official client."""

    def __init__(self, settings: Settings, *, max_network_retries: int = 2) -> None:
        self.settings = settings
        session = requests.Session()
        # A loopback API (the sandbox) is reached directly, never through a proxy.
        session.trust_env = not is_loopback(urlsplit(settings.stripe_api_base).hostname or "")
        self.client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses={"api": settings.stripe_api_base},
            http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS, session=session),
            max_network_retries=max_network_retries,
        )

    def _urls(self) -> dict[str, str]:
        base = self.settings.public_base_url.rstrip("/")
        return {"success_url": f"{base}/me?paid=1", "cancel_url": f"{base}/me"}

    def topup_session(self, topup_id: int, amount_minor: int, currency: str) -> Checkout:
        """A Checkout Session paying `amount_minor` once into top-up `topup_id`."""
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": str(topup_id),
            "metadata": {"tipjar_topup_id": str(topup_id)},
            "payment_intent_data": {"metadata": {"tipjar_topup_id": str(topup_id)}},
            "line_items": [_line(currency, amount_minor, "tipjar balance", monthly=False)],
            **self._urls(),
        }
        return self._create(params, f"topup-{topup_id}")

    def subscription_session(self, sub_id: int, amount_minor: int, currency: str) -> Checkout:
        """A Checkout Session starting a monthly payment of `amount_minor`."""
        meta = {"tipjar_subscription_id": str(sub_id)}
        params: dict[str, Any] = {
            "mode": "subscription",
            "client_reference_id": f"subscription-{sub_id}",
            "metadata": meta,
            "subscription_data": {"metadata": meta},
            "line_items": [_line(currency, amount_minor, "tipjar monthly budget", monthly=True)],
            **self._urls(),
        }
        return self._create(params, f"subscription-{sub_id}")

    def cancel_at_period_end(self, sub_id: int, provider_subscription_id: str) -> None:
        """Stop a subscription after the month already paid."""
        self._call(
            lambda: self.client.v1.subscriptions.update(
                provider_subscription_id,
                {"cancel_at_period_end": True},
                {"idempotency_key": f"subscription-{sub_id}-cancel"},
            )
        )

    def _create(self, params: dict[str, Any], key: str) -> Checkout:
        session = self._call(
            lambda: self.client.v1.checkout.sessions.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": key},
            )
        )
        if not session.url:
            raise PaymentsUnavailable("Stripe answered without a checkout URL")
        return Checkout(session.id, session.url)

    def _call(self, request: Any) -> Any:
        try:
            return request()
        except (stripe.APIConnectionError, stripe.RateLimitError) as e:
            log.warning("Stripe unreachable or busy: %s", type(e).__name__)
            raise PaymentsUnavailable(type(e).__name__) from None
        except stripe.StripeError as e:
            status = e.http_status or 0
            log.warning("Stripe refused (%s, HTTP %s): %s", type(e).__name__, status, e.code)
            if status >= 500 or status in (0, 409):
                raise PaymentsUnavailable(f"HTTP {status}") from None
            raise PaymentRefused(e.user_message or type(e).__name__) from None
