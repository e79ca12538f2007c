"""Provider events: each verified event recorded once, its effect applied in the same transaction.

The web adapter verifies an event's signature and hands the parsed event (a plain mapping
in the provider's JSON shape) to `receive`, inside one transaction. `receive` inserts the
event's id into `stripe_events` first: a redelivery, or the same event delivered twice at
once, finds the id taken (the insert waits for the other transaction on PostgreSQL, and
SQLite serializes writers) and changes nothing. Otherwise the handler registered for the
event's endpoint and type applies the effect and its one-line result is stored with the
event; an event type without a handler is recorded and nothing else happens.

Handlers are registered by (endpoint, type) with `handles`, so the payouts side (the
`connect` endpoint) adds its own without touching the funding side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, update

from escrow.db import insert_ignore
from escrow.ledger import LedgerError, Policy
from escrow.money import MoneyError
from escrow.schema import EVENT_ENDPOINTS, stripe_events

Event = Mapping[str, Any]
Handler = Callable[[Connection, Policy, Event, datetime], str]

HANDLERS: dict[tuple[str, str], Handler] = {}


def handles(endpoint: str, *types: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of `types` at `endpoint`."""
    if endpoint not in EVENT_ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}")

    def register(handler: Handler) -> Handler:
        for event_type in types:
            HANDLERS[(endpoint, event_type)] = handler
        return handler

    return register


def _insert_ignore(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert the event row unless its id is taken; True if this call inserted it.

    Asked through RETURNING: SQLAlchemy reports no rowcount (-1) for an INSERT on
    PostgreSQL, which would take every redelivery for a first delivery.
    """
    stmt = insert_ignore(conn, stripe_events, "id").values(**row).returning(stripe_events.c.id)
    return conn.execute(stmt).first() is not None


def _apply(conn: Connection, policy: Policy, handler: Handler, event: Event, now: datetime) -> str:
    """Run `handler` in a savepoint. An event it cannot read, or a request the ledger
    refuses, is recorded as a problem with everything the handler wrote undone: the
    provider would only redeliver the same event, so retrying cannot help."""
    savepoint = conn.begin_nested()
    try:
        result = handler(conn, policy, event, now)
    except (LedgerError, MoneyError, KeyError, TypeError, ValueError) as e:
        savepoint.rollback()
        return f"problem: {type(e).__name__}: {e}"[:255]
    savepoint.commit()
    return result


@dataclass(frozen=True)
class Received:
    event_id: str
    event_type: str
    duplicate: bool
    result: str


def receive(
    conn: Connection, policy: Policy, event: Event, endpoint: str, now: datetime
) -> Received:
    """Record `event` once and apply its effect; a seen event id changes nothing."""
    event_id = str(event.get("id") or "")
    event_type = str(event.get("type") or "")
    if not event_id or not event_type:
        raise ValueError("an event needs its id and type")
    fresh = _insert_ignore(
        conn,
        {
            "id": event_id,
            "endpoint": endpoint,
            "type": event_type[:96],
            "account": event.get("account"),
            "received_at": now,
            "result": "received",
        },
    )
    if not fresh:
        return Received(event_id, event_type, True, "already received")
    handler = HANDLERS.get((endpoint, event_type))
    if handler is None:
        result = "ignored: not a type tipjar acts on"
    else:
        result = _apply(conn, policy, handler, event, now)
    conn.execute(
        update(stripe_events).where(stripe_events.c.id == event_id).values(result=result[:255])
    )
    return Received(event_id, event_type, False, result)
