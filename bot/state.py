"""Durable key-value state: the small facts the workers keep between runs, and their lock.

A row of the `state` table per key: the listener's cursor per platform
(`<platform>.mentions.since_id`), a platform's "rate limited until" instants, and keys
that exist only to be locked (`lock_state`) so two pollers or planners never work on the
same thing at once. Values are strings; `get_time` reads an ISO instant.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from escrow.schema import state


def dialect_insert(conn: Connection, table: Any) -> Any:
    """An INSERT with the dialect's ON CONFLICT clauses (PostgreSQL or SQLite)."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def get_state(conn: Connection, key: str) -> str | None:
    value = conn.execute(select(state.c.value).where(state.c.key == key)).scalar_one_or_none()
    return None if value is None else str(value)


def put_state(conn: Connection, key: str, value: str, now: datetime) -> None:
    stmt = dialect_insert(conn, state).values(key=key, value=value, updated_at=now)
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value, "updated_at": now})
    )


def lock_state(conn: Connection, key: str, now: datetime, default: str = "") -> str:
    """Lock the `state` row `key` for this transaction (created if missing); its value.

    Serializes the writers of one piece of state on PostgreSQL (SQLite's BEGIN IMMEDIATE
    already does), so two pollers or planners never work on the same thing at once.
    """
    conn.execute(
        dialect_insert(conn, state)
        .values(key=key, value=default, updated_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    return str(
        conn.execute(select(state.c.value).where(state.c.key == key).with_for_update()).scalar_one()
    )


def get_time(conn: Connection, key: str) -> datetime | None:
    raw = get_state(conn, key)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
