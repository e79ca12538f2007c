"""Shared pieces of the web tests (no tests here): a fake X at the HTTP boundary, a site.

`FakeX` plays X's side of "Sign in with X" with `responses`: `approve` does what the
consent page does (checks what tipjar asked for, issues a code bound to the PKCE
challenge); the token endpoint checks the client's Basic credentials, the redirect URI and
the verifier against the challenge, as X does; `GET /2/users/me` answers for the token.
`Site` is the app under test with its Flask test client and a ledger on the same database.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import responses
from sqlalchemy import Engine, func, select

from bot.app import policy
from bot.config import Settings
from bot.web import create_app
from escrow.ledger import Identity
from escrow.money import Money
from escrow.schema import accounts, tips, transfers
from escrow.service import Ledger

CLIENT_ID = "tipjar-test-client"
CLIENT_SECRET = "client-secret-that-must-never-show"
SECRET_KEY = "session-secret-that-must-never-show-0123456789"


def web_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "x_client_id": CLIENT_ID,
        "x_client_secret": CLIENT_SECRET,
        "secret_key": SECRET_KEY,
        "public_base_url": "http://localhost:8000",
    }
    values.update(overrides)
    return Settings(**values)


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class FakeX:
    settings: Settings
    codes: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    token_requests: list[Any] = field(default_factory=list)
    me_requests: list[Any] = field(default_factory=list)
    token_failure: tuple[int, dict[str, Any]] | None = None
    me_failure: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, rsps: responses.RequestsMock) -> FakeX:
        rsps.add_callback(responses.POST, self.settings.x_oauth_token_url, callback=self._token)
        me = self.settings.x_api_base_url.rstrip("/") + "/2/users/me"
        rsps.add_callback(responses.GET, me, callback=self._me)
        return self

    @property
    def issued_tokens(self) -> list[str]:
        return list(self.tokens)

    def approve(self, authorize_url: str, user_id: str, username: str) -> str:
        """The consent page's Authorize: the callback path tipjar is sent back to."""
        parts = urlsplit(authorize_url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == self.settings.x_oauth_authorize_url
        asked = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert asked["response_type"] == "code"
        assert asked["client_id"] == CLIENT_ID
        assert asked["scope"] == "users.read tweet.read"
        assert asked["code_challenge_method"] == "S256"
        assert asked["redirect_uri"] == self.settings.callback_url
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = (asked["code_challenge"], asked["redirect_uri"], user_id, username)
        return "/oauth/callback?" + urlencode({"state": asked["state"], "code": code})

    def deny(self, authorize_url: str) -> str:
        asked = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        return "/oauth/callback?" + urlencode({"error": "access_denied", "state": asked["state"]})

    def _token(self, request: Any) -> tuple[int, dict[str, str], str]:
        import json

        with self.lock:
            self.token_requests.append(request)
            if self.token_failure is not None:
                status, body = self.token_failure
                return status, {"Content-Type": "application/json"}, json.dumps(body)
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if request.headers.get("Authorization") != f"Basic {expected}":
                return 401, {}, json.dumps({"error": "unauthorized_client"})
            form = {k: v[0] for k, v in parse_qs(request.body).items()}
            grant = self.codes.pop(form.get("code", ""), None)
            if (
                grant is None
                or form.get("grant_type") != "authorization_code"
                or form.get("redirect_uri") != grant[1]
                or form.get("client_id") != CLIENT_ID
                or _challenge(form.get("code_verifier", "")) != grant[0]
            ):
                return 400, {}, json.dumps({"error": "invalid_request"})
            token = "user-access-token-" + secrets.token_urlsafe(24)
            self.tokens[token] = (grant[2], grant[3])
            body = {"token_type": "bearer", "expires_in": 7200, "access_token": token}
            body["scope"] = "users.read tweet.read"
            return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def _me(self, request: Any) -> tuple[int, dict[str, str], str]:
        import json

        with self.lock:
            self.me_requests.append(request)
            if self.me_failure is not None:
                title = "Unauthorized" if self.me_failure == 401 else "Internal Server Error"
                body = {"title": title, "status": self.me_failure, "type": "about:blank"}
                return (
                    self.me_failure,
                    {"Content-Type": "application/problem+json"},
                    json.dumps(body),
                )
            auth = request.headers.get("Authorization", "")
            user = self.tokens.get(auth.removeprefix("Bearer "))
            if user is None:
                return 401, {}, json.dumps({"title": "Unauthorized", "status": 401})
            data = {"id": user[0], "name": user[1].title(), "username": user[1]}
            return 200, {"Content-Type": "application/json"}, json.dumps({"data": data})


class Site:
    """The app under test, its browser (a Flask test client), X, and the ledger."""

    def __init__(self, engine: Engine, clock: Any, rsps: responses.RequestsMock, **overrides: Any):
        self.engine = engine
        self.clock = clock
        self.settings = web_settings(**overrides)
        self.app = create_app(self.settings, engine=engine, clock=clock)
        self.client = self.app.test_client()
        self.x = FakeX(self.settings).install(rsps)
        self.ledger = Ledger(engine, policy(self.settings), clock)

    def browser(self) -> Any:
        return self.app.test_client()

    def start(self, client: Any = None) -> str:
        response = (client or self.client).get("/claim/start")
        assert response.status_code == 302, response.status_code
        return str(response.headers["Location"])

    def sign_in(self, user_id: str, username: str, client: Any = None) -> Any:
        client = client or self.client
        callback = self.x.approve(self.start(client), user_id, username)
        return client.get(callback, follow_redirects=True)

    def csrf(self, client: Any = None, path: str = "/me") -> str:
        page = (client or self.client).get(path).get_data(as_text=True)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, "no CSRF token on " + path
        return html.unescape(found.group(1))

    def post(self, path: str, client: Any = None, **form: str) -> Any:
        client = client or self.client
        form.setdefault("csrf_token", self.csrf(client))
        return client.post(path, data=form)

    def session(self, client: Any = None) -> dict[str, Any]:
        cookie = (client or self.client).get_cookie("tipjar_session")
        if cookie is None:
            return {}
        loaded: dict[str, Any] = self.app.session_interface.get_signing_serializer(  # type: ignore[attr-defined]
            self.app
        ).loads(cookie.value)
        return loaded

    # -- money -----------------------------------------------------------------------------

    def fund(self, who: Identity, amount: str, ref: str | None = None) -> None:
        self.ledger.deposit(who, Money.parse(amount, "EUR"), ref or f"dep-{who.user_id}-{amount}")

    def tip(self, supporter: Identity, creator: Identity, amount: str, source: str) -> Any:
        return self.ledger.tip(supporter, creator, Money.parse(amount, "EUR"), source)

    def available(self, who: Identity) -> int:
        view = self.ledger.account(who)
        return view.available_minor if view else 0


def text_of(page: str) -> str:
    """A page's visible text, tags dropped and whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def money_state(engine: Engine) -> dict[str, Any]:
    """Everything that money is made of: accounts' counters and status, tips, transfers."""
    with engine.connect() as conn:
        return {
            "accounts": sorted(
                tuple(r)
                for r in conn.execute(
                    select(
                        accounts.c.id,
                        accounts.c.status,
                        accounts.c.debits_posted,
                        accounts.c.credits_posted,
                        accounts.c.debits_pending,
                        accounts.c.credits_pending,
                    )
                )
            ),
            "tips": sorted(tuple(r) for r in conn.execute(select(tips.c.id, tips.c.state))),
            "transfers": conn.execute(select(func.count()).select_from(transfers)).scalar_one(),
        }


def person_totals(engine: Engine) -> tuple[int, int]:
    """(money people and fees hold, money deposited): equal when nothing is lost or doubled."""
    with engine.connect() as conn:
        people = conn.execute(
            select(
                func.coalesce(func.sum(accounts.c.credits_posted - accounts.c.debits_posted), 0)
            ).where(accounts.c.platform != "system")
        ).scalar_one()
        fees = conn.execute(
            select(accounts.c.credits_posted - accounts.c.debits_posted).where(
                accounts.c.platform == "system", accounts.c.platform_user_id == "fees"
            )
        ).scalar_one_or_none()
        funding = conn.execute(
            select(accounts.c.debits_posted - accounts.c.credits_posted).where(
                accounts.c.platform == "system", accounts.c.platform_user_id == "funding"
            )
        ).scalar_one_or_none()
    return int(people) + int(fees or 0), int(funding or 0)


def assert_refused(response: Any, *secret_values: str) -> str:
    """A plain 4xx page: no traceback, no secret. Returns the page's text."""
    assert 400 <= response.status_code < 500, response.status_code
    body = response.get_data(as_text=True)
    assert response.content_type.startswith("text/html")
    assert "Traceback" not in body and 'File "' not in body
    for value in (CLIENT_SECRET, SECRET_KEY, *secret_values):
        if value:
            assert value not in body
    return text_of(body)
