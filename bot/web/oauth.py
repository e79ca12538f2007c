"""The web sign-in's own half: OAuth 2.0 Authorization Code with PKCE (S256) state.

tipjar keeps the state and the PKCE verifier itself (client libraries lose them between
requests). `begin` stores the verifier in `oauth_states` under a SHA-256 hash of a fresh
random state and returns the platform's authorize URL (from the `SignIn` port, e.g.
`bot.platforms.x.signin.XSignIn`); `take` consumes that row once, within `STATE_LIFETIME`.
The port's `exchange_code` and `current_user` are the two calls to the platform; the access
token they pass between them lives in a local variable only: never stored, put in the
session or logged.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from sqlalchemy import Connection, delete, select, update

from bot.platforms.port import SignIn, SignInError
from escrow.schema import oauth_states

__all__ = ["SignInError", "Started", "StateProblem", "begin", "origin", "state_key", "take"]

STATE_LIFETIME = timedelta(minutes=10)
# Used and expired rows linger a day so a replayed state is told apart from a forged one.
KEEP_STATES = timedelta(days=1)


def state_key(state: str) -> str:
    """The database key of a state: its SHA-256, so the table holds nothing replayable."""
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def origin(url: str) -> str:
    """``https://x.com/i/oauth2/authorize`` -> ``https://x.com`` (for the CSP)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class Started:
    state_key: str  # bound to the browser's session
    authorize_url: str  # where the browser goes next


def begin(conn: Connection, sign_in: SignIn, now: datetime) -> Started:
    """Start a sign-in: store a new verifier under a new state; the platform's authorize URL."""
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43..128
    conn.execute(delete(oauth_states).where(oauth_states.c.created_at < now - KEEP_STATES))
    conn.execute(
        oauth_states.insert().values(
            state_hash=state_key(state), code_verifier=verifier, created_at=now
        )
    )
    url = sign_in.authorize_url(state, pkce_challenge(verifier))
    return Started(state_key(state), url)


class StateProblem(StrEnum):
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


def take(conn: Connection, state: str, now: datetime) -> str | StateProblem:
    """Consume `state` once: its verifier, or why it cannot be used."""
    key = state_key(state)
    row = conn.execute(
        select(oauth_states).where(oauth_states.c.state_hash == key).with_for_update()
    ).one_or_none()
    if row is None:
        return StateProblem.UNKNOWN
    if row.used_at is not None:
        return StateProblem.USED
    if now - row.created_at > STATE_LIFETIME:
        return StateProblem.EXPIRED
    won = conn.execute(
        update(oauth_states)
        .where(oauth_states.c.state_hash == key, oauth_states.c.used_at.is_(None))
        .values(used_at=now)
    )
    if won.rowcount != 1:
        return StateProblem.USED
    return str(row.code_verifier)
