"""Payments: Stripe as tipjar's card provider (the only package that imports `stripe`).

- `gateway`: the adapter over the official client: Checkout Sessions for one-off top-ups
  and monthly subscriptions, cancellation, each with an idempotency key from our row id;
- `webhooks`: signature verification and the event handlers that turn Stripe's events
  into `escrow.funding` effects, recorded once through `escrow.events`;
- `payouts`: money out through Stripe Connect: onboarding, the payout relay, the schedule
  and the Connect events; `details` encrypts the manual provider's payout details;
- `sandbox`: a loopback stand-in for the few Stripe endpoints used, which delivers signed
  webhooks as Stripe does (tests, the demo, local runs).
"""
