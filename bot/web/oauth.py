"""Sign in with X: OAuth 2.0 Authorization Code with PKCE (S256), as a confidential client.

tipjar keeps the state and the PKCE verifier itself (tweepy's OAuth2UserHandler loses them
between requests). `begin` stores the verifier in `oauth_states` under a SHA-256 hash of a
fresh random state and returns the authorize URL; `take` consumes that row once, within
`STATE_LIFETIME`. `exchange_code` and `fetch_me` are the two calls to X. The access token
they pass between them lives in a local variable only: it is never stored, put in the
session or logged, and nothing here puts a response body into an error message.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from sqlalchemy import Connection, delete, select, update

from bot.config import Settings
from escrow.schema import oauth_states

SCOPES = "users.read tweet.read"
STATE_LIFETIME = timedelta(minutes=10)
# Used and expired rows linger a day so a replayed state is told apart from a forged one.
KEEP_STATES = timedelta(days=1)
TIMEOUT = 10.0

_USER_ID = re.compile(r"\d{1,20}")
_USERNAME = re.compile(r"[A-Za-z0-9_]{1,15}")
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")


class SignInError(Exception):
    """The sign-in cannot go on. `reason` is for the person, `detail` for the log.

    Neither ever holds a code, a verifier, a token or a response body.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


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


def begin(conn: Connection, settings: Settings, now: datetime) -> Started:
    """Start a sign-in: store a new verifier under a new state; return X's authorize URL."""
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43..128
    conn.execute(delete(oauth_states).where(oauth_states.c.created_at < now - KEEP_STATES))
    conn.execute(
        oauth_states.insert().values(
            state_hash=state_key(state), code_verifier=verifier, created_at=now
        )
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.x_client_id,
            "redirect_uri": settings.callback_url,
            "scope": SCOPES,
            "state": state,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    base = settings.x_oauth_authorize_url
    return Started(state_key(state), f"{base}{'&' if '?' in base else '?'}{query}")


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


def _error_code(response: requests.Response) -> str:
    """The OAuth `error` code of a failed response, if it looks like one; never the body."""
    try:
        body: Any = response.json()
    except ValueError:
        return "-"
    code = body.get("error") if isinstance(body, dict) else None
    if isinstance(code, str) and _ERROR_CODE.fullmatch(code):
        return code
    return "-"


def exchange_code(http: requests.Session, settings: Settings, code: str, verifier: str) -> str:
    """Trade the authorization code for a user access token (HTTP Basic client auth)."""
    try:
        response = http.post(
            settings.x_oauth_token_url,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": settings.callback_url,
                "code_verifier": verifier,
                "client_id": settings.x_client_id,
            },
            auth=(settings.x_client_id, settings.x_client_secret),
            headers={"Accept": "application/json"},
            timeout=TIMEOUT,
        )
    except requests.RequestException as e:
        raise SignInError(
            "We could not reach X to finish signing you in.",
            f"token endpoint unreachable ({type(e).__name__})",
        ) from None
    if response.status_code != 200:
        raise SignInError(
            "X did not accept this sign-in. It may have taken too long; please start again.",
            f"token endpoint answered {response.status_code} error={_error_code(response)}",
        )
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    token = body.get("access_token") if isinstance(body, dict) else None
    token_type = body.get("token_type", "bearer") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token or str(token_type).lower() != "bearer":
        raise SignInError(
            "X sent an answer we could not read. Please start again.",
            "token endpoint answered 200 without a bearer access_token",
        )
    return token


@dataclass(frozen=True)
class XAccount:
    user_id: str
    username: str | None


def fetch_me(http: requests.Session, settings: Settings, access_token: str) -> XAccount:
    """Who signed in: `GET /2/users/me` with the user's token as Bearer."""
    try:
        response = http.get(
            settings.x_api_base_url.rstrip("/") + "/2/users/me",
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=TIMEOUT,
        )
    except requests.RequestException as e:
        raise SignInError(
            "We could not reach X to learn who you are. Please start again.",
            f"users/me unreachable ({type(e).__name__})",
        ) from None
    if response.status_code != 200:
        raise SignInError(
            "X would not tell us who you are. Please start again.",
            f"users/me answered {response.status_code}",
        )
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    data = body.get("data") if isinstance(body, dict) else None
    user_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
        raise SignInError(
            "X sent an answer we could not read. Please start again.",
            "users/me answered 200 without a numeric data.id",
        )
    assert isinstance(data, dict)
    username = data.get("username")
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        username = None
    return XAccount(user_id, username)
