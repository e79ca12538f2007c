"""Web sessions that end: who is signed in, and the sign-ins this browser has in flight.

The session is Flask's signed cookie. It names the account and carries the account's
`session_version` at the time of sign-in; the version lives in the database and is bumped
when the person signs out, claims (signs in through X) or refuses tips, so every copy of
an older cookie (another device, a copy taken before sign-out) stops working at once.

A sign-in in flight is remembered only in this browser's cookie (the hash of its OAuth
state and when it started): `/claim/start` writes nothing to the database, so a visitor
who never comes back leaves nothing behind. The callback records the state as used.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import session
from sqlalchemy import Connection, select, update

from escrow.schema import accounts

ACCOUNT = "account_id"
VERSION = "session_version"
PENDING = "oauth_pending"  # [[state_key, started_at_epoch], ...]
PENDING_STATES = 3  # sign-ins one browser may have in flight (several tabs)


def current_account(conn: Connection) -> Any | None:
    """The signed-in account's row, or None (signed out, ended elsewhere, not a person)."""
    account_id = session.get(ACCOUNT)
    version = session.get(VERSION)
    if not isinstance(account_id, int) or isinstance(account_id, bool):
        return None
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).one_or_none()
    if row is None or row.status not in ("claimed", "refusing"):
        return None
    if version != row.session_version:
        return None  # signed out, claimed again or refused since this cookie was issued
    return row


def end_every_session(conn: Connection, account_id: int) -> int:
    """Bump the account's session version: every cookie issued before stops working."""
    conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(session_version=accounts.c.session_version + 1)
    )
    return int(
        conn.execute(
            select(accounts.c.session_version).where(accounts.c.id == account_id)
        ).scalar_one()
    )


def sign_in(account_id: int, version: int) -> None:
    """A fresh session for `account_id`: nothing from before (a planted session) carries over."""
    session.clear()
    session.permanent = True
    session[ACCOUNT] = account_id
    session[VERSION] = version


def remember_pending(state_key: str, started_at: datetime) -> None:
    pending = [p for p in _pending() if p[0] != state_key]
    pending.append([state_key, int(started_at.timestamp())])
    session[PENDING] = pending[-PENDING_STATES:]


def take_pending(state_key: str) -> datetime | None:
    """When this browser started the sign-in `state_key`, forgetting it; None if it did not."""
    pending = _pending()
    found = [p for p in pending if p[0] == state_key]
    if not found:
        return None
    session[PENDING] = [p for p in pending if p[0] != state_key]
    return datetime.fromtimestamp(found[0][1], UTC)


def _pending() -> list[list[Any]]:
    raw = session.get(PENDING, [])
    if not isinstance(raw, list):
        return []
    return [
        [p[0], p[1]]
        for p in raw
        if isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], int)
    ]
