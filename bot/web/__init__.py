"""The claim web app: creators sign in with X to receive what waits for them.

`create_app` is the factory gunicorn calls (`bot.web:create_app()`, see the Procfile) and
`tipjar web` serves locally. It builds nothing at import time; it takes the settings, the
engine, the clock and the HTTP session from its caller (tests pass their own), falling
back to the environment and the composition root in `bot.app`.

Sessions are Flask's signed cookies (HttpOnly, SameSite=Lax, Secure when PUBLIC_BASE_URL
is https). They hold the account id, the CSRF token and the hashes of sign-ins in flight;
never an access token. Without SECRET_KEY the app refuses to start, except on a loopback
PUBLIC_BASE_URL (local use, the demo, tests): there it makes a random key for the process
and says so in the log.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from flask import Flask
from sqlalchemy import Engine

from bot import app as composition
from bot.config import ConfigError, Settings, load_settings
from bot.errors import init_sentry
from bot.hosts import is_loopback
from bot.logs import configure_logging
from bot.payments.gateway import StripeGateway
from bot.payments.payouts import ConnectGateway
from bot.platforms.x.signin import XSignIn
from bot.web import admin, mastodon, payments, payouts, security, views
from bot.web.context import Web
from escrow.ledger import Clock, utcnow

__all__ = ["create_app"]

log = logging.getLogger("bot.web")

SESSION_LIFETIME = timedelta(days=7)
MIN_SECRET_LENGTH = 32


def is_local(url: str) -> bool:
    """True when `url` points at this machine only (no one else can reach the cookies)."""
    host = (urlsplit(url).hostname or "").lower()
    return host.endswith(".localhost") or is_loopback(host)


def session_secret(settings: Settings) -> str:
    """SECRET_KEY, or a random one for a local run; raises ConfigError for a public site."""
    local = is_local(settings.public_base_url)
    if settings.secret_key:
        if len(settings.secret_key) < MIN_SECRET_LENGTH and not local:
            raise ConfigError(["SECRET_KEY is too short: use at least 32 random characters"])
        return settings.secret_key
    if not local:
        raise ConfigError(
            [
                "SECRET_KEY is missing: the web app signs its session cookies with it;"
                " set 32 or more random characters"
            ]
        )
    log.warning(
        "SECRET_KEY is not set: using a random key for this process (fine for local use;"
        " sessions end when it stops, and several processes would not share them)"
    )
    return secrets.token_urlsafe(32)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    clock: Clock | None = None,
    http: requests.Session | None = None,
    gateway: StripeGateway | None = None,
    connect_gateway: ConnectGateway | None = None,
) -> Flask:
    """The Flask app for `settings` (default: read from the environment and `.env`)."""
    settings = settings or load_settings()
    if not logging.getLogger().handlers:
        # Under gunicorn nothing else sets up logging; the app's own lines must go somewhere.
        configure_logging(settings)
    init_sentry(settings)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=session_secret(settings),
        SESSION_COOKIE_NAME="tipjar_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_base_url.lower().startswith("https://"),
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    if not (settings.x_client_id and settings.x_client_secret):
        log.warning("X_CLIENT_ID or X_CLIENT_SECRET is not set: 'Sign in with X' is off")
    session_http = http or requests.Session()
    web = Web(
        settings=settings,
        engine=engine if engine is not None else composition.engine(settings),
        policy=composition.policy(settings),
        clock=clock or utcnow,
        http=session_http,
        sign_in=XSignIn(settings, session_http),
    )
    app.extensions["tipjar"] = web
    targets = [*payments.form_targets(settings), *payouts.form_targets(settings)]
    security.install(app, settings.x_oauth_authorize_url, *targets)
    views.register(app, web)
    mastodon.register(app, web)
    payments.register(app, web, gateway)
    payouts.register(app, web, connect_gateway)
    admin.register(app, web)
    return app
