"""Durable key-value state: the small facts the workers keep between runs, and their lock.

A row of the `state` table per key: the listener's cursor per platform
(`<platform>.mentions.since_id`), a platform's "rate limited until" instants, and keys
that exist only to be locked (`lock_state`) so two pollers or planners never work on the
same thing at once. Values are strings; `get_time` reads an ISO instant.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, select

from escrow.db import for_update, insert_ignore, upsert
from escrow.schema import state


def get_state(conn: Connection, key: str) -> str | None:
    value = conn.execute(select(state.c.value).where(state.c.key == key)).scalar_one_or_none()
    return None if value is None else str(value)


def put_state(conn: Connection, key: str, value: str, now: datetime) -> None:
    conn.execute(upsert(conn, state, ["key"], {"key": key, "value": value, "updated_at": now}))


def lock_state(conn: Connection, key: str, now: datetime, default: str = "") -> str:
    """Lock the `state` row `key` for this transaction (created if missing); its value.

    Serializes the writers of one piece of state on PostgreSQL (SQLite's BEGIN IMMEDIATE
    already does), so two pollers or planners never work on the same thing at once.
    """
    locked = for_update(select(state.c.value).where(state.c.key == key))
    value = conn.execute(locked).scalar_one_or_none()
    if value is None:  # first use: create it (or find a racer's row), then lock it
        conn.execute(
            insert_ignore(conn, state, "key").values(key=key, value=default, updated_at=now)
        )
        value = conn.execute(locked).scalar_one()
    return str(value)


def get_time(conn: Connection, key: str) -> datetime | None:
    raw = get_state(conn, key)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
