"""Sign in with X: the X side of the web claim's OAuth 2.0 PKCE sign-in (`SignIn` port).

`XSignIn` builds X's authorize URL, trades the code for a user access token (HTTP Basic
client auth, as a confidential client) and asks `GET /2/users/me` who that is. The token
lives in a local variable of the caller only, and nothing here puts a code, a verifier, a
token or a response body into an error message.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import requests

from bot.config import Settings
from bot.platforms.port import PlatformUser, SignInError
from bot.platforms.x.api import PLATFORM

SCOPES = "users.read tweet.read"
TIMEOUT = 10.0

_USER_ID = re.compile(r"\d{1,20}")
_USERNAME = re.compile(r"[A-Za-z0-9_]{1,15}")
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")


class XSignIn:
    """The `SignIn` port for X, over one HTTP session (tests mount fakes on it)."""

    platform = PLATFORM
    label = "X"

    def __init__(self, settings: Settings, http: requests.Session) -> None:
        self.settings = settings
        self.http = http

    @property
    def configured(self) -> bool:
        return bool(self.settings.x_client_id and self.settings.x_client_secret)

    def authorize_url(self, state: str, code_challenge: str) -> str:
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.x_client_id,
                "redirect_uri": self.settings.callback_url,
                "scope": SCOPES,
                "state": state,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        base = self.settings.x_oauth_authorize_url
        return f"{base}{'&' if '?' in base else '?'}{query}"

    def exchange_code(self, code: str, verifier: str) -> str:
        return exchange_code(self.http, self.settings, code, verifier)

    def current_user(self, access_token: str) -> PlatformUser:
        return fetch_me(self.http, self.settings, access_token)


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


def fetch_me(http: requests.Session, settings: Settings, access_token: str) -> PlatformUser:
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
        username = ""
    return PlatformUser(PLATFORM, user_id, username)
