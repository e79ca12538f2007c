"""The web sign-in's own half: OAuth 2.0 Authorization Code with PKCE (S256) state.

tipjar keeps the state and the PKCE verifier itself (client libraries lose them between
requests), without writing anything when a sign-in starts: `begin` makes a fresh random
state and derives its verifier from it with an HMAC under the app's secret key, so the
verifier never leaves the server and needs no row; the browser's signed session remembers
the state's hash and when it started (bot.web.sessions). `take` accepts a state once,
within `STATE_LIFETIME`, by recording its hash in `oauth_states` at the callback: a
replayed state finds its row. The port's `exchange_code` and `current_user` are the two
calls to the platform; the access token they pass between them lives in a local variable
only: never stored, put in the session or logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from sqlalchemy import Connection, delete

from bot.platforms.port import SignIn, SignInError
from escrow.db import dialect_insert
from escrow.schema import oauth_states

__all__ = ["SignInError", "Started", "StateProblem", "begin", "origin", "state_key", "take"]

STATE_LIFETIME = timedelta(minutes=10)
# Used states are kept a day, far longer than a state lives, so a replay always finds its row.
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


def code_verifier(secret: str, state: str) -> str:
    """The PKCE verifier of `state`: 43 characters only a holder of the secret key can make."""
    digest = hmac.new(secret.encode("utf-8"), b"pkce-verifier:" + state.encode(), "sha256")
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")


def begin(sign_in: SignIn, secret: str) -> Started:
    """Start a sign-in: a new state and the platform's authorize URL. Writes nothing."""
    state = secrets.token_urlsafe(32)
    url = sign_in.authorize_url(state, pkce_challenge(code_verifier(secret, state)))
    return Started(state_key(state), url)


class StateProblem(StrEnum):
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


def take(
    conn: Connection, state: str, secret: str, started_at: datetime, now: datetime
) -> str | StateProblem:
    """Accept `state` (started at `started_at`, per the signed session) once: its verifier."""
    if now - started_at > STATE_LIFETIME or started_at > now + STATE_LIFETIME:
        return StateProblem.EXPIRED
    conn.execute(delete(oauth_states).where(oauth_states.c.created_at < now - KEEP_STATES))
    verifier = code_verifier(secret, state)
    won = conn.execute(
        dialect_insert(conn, oauth_states)
        .values(state_hash=state_key(state), code_verifier=verifier, created_at=now, used_at=now)
        .on_conflict_do_nothing(index_elements=["state_hash"])
        .returning(oauth_states.c.state_hash)
    ).first()
    if won is None:
        return StateProblem.USED
    return verifier
