"""Sign in with Mastodon on /claim: the routes, the app per instance, the state in flight.

`POST /claim/mastodon` takes the address (or instance) a creator types, registers tipjar
on that instance once (`mastodon_apps`), stores a new sign-in under the SHA-256 of a fresh
state (with a PKCE verifier where the instance takes S256) and shows a page that leads
to the instance's authorize page (a link, not a redirect: the claim page's CSP allows
forms to go only to this site and X). `GET /oauth/mastodon/callback` takes the state back
once, within ten minutes, in the browser that started it, exchanges the code, learns the
verified address (`bot.platforms.mastodon.signin`) and claims as the X sign-in does
(`bot.web.views.claim_for`: every hold for that address posted in one transaction). A
refused sign-in changes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask, render_template, request, session
from sqlalchemy import Connection, delete, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response as BaseResponse

from bot.platforms.mastodon import signin
from bot.platforms.mastodon.guard import GuardedSession, Instance, InstanceRefused, instance_of
from bot.platforms.port import PlatformUser
from bot.web import oauth
from bot.web.context import Web
from bot.web.security import error_page, log
from bot.web.views import claim_for
from escrow.db import transaction
from escrow.schema import mastodon_apps, mastodon_sign_ins

__all__ = ["SessionFactory", "begin", "register", "take"]

PENDING_STATES = 3
SessionFactory = Callable[[bool], GuardedSession]


def default_session(allow_loopback: bool) -> GuardedSession:
    return GuardedSession(allow_loopback=allow_loopback)


def callback_url(public_base_url: str) -> str:
    return public_base_url.rstrip("/") + "/oauth/mastodon/callback"


@dataclass(frozen=True)
class InFlight:
    """A sign-in taken back from its state: where it was started, and its verifier."""

    instance: Instance
    app: signin.AppCredentials
    verifier: str | None


def _stored_app(conn: Connection, instance: Instance, redirect_uri: str) -> Any | None:
    row = conn.execute(
        select(mastodon_apps).where(mastodon_apps.c.domain == instance.domain)
    ).one_or_none()
    if row is None or row.redirect_uri != redirect_uri or row.base_url != instance.base_url:
        return None  # none yet, or registered for another address of this site
    return row


def app_for(web: Web, instance: Instance, http: GuardedSession) -> signin.AppCredentials:
    """tipjar's app on `instance`: the stored one, else registered now and stored."""
    redirect_uri = callback_url(web.settings.public_base_url)
    row = transaction(web.engine, lambda conn: _stored_app(conn, instance, redirect_uri))
    if row is not None:
        return signin.AppCredentials(row.client_id, row.client_secret)
    creds = signin.register_app(instance, redirect_uri, web.settings.public_base_url, http)
    values = {
        "base_url": instance.base_url,
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "redirect_uri": redirect_uri,
        "scopes": " ".join(signin.SCOPES),
        "created_at": web.now(),
    }

    def store(conn: Connection) -> None:
        done = conn.execute(
            update(mastodon_apps).where(mastodon_apps.c.domain == instance.domain).values(values)
        )
        if done.rowcount == 0:
            conn.execute(mastodon_apps.insert().values(domain=instance.domain, **values))

    try:
        transaction(web.engine, store)
    except IntegrityError:  # another sign-in registered at the same moment: use theirs
        row = transaction(web.engine, lambda conn: _stored_app(conn, instance, redirect_uri))
        if row is not None:
            return signin.AppCredentials(row.client_id, row.client_secret)
        raise
    return creds


def begin(conn: Connection, domain: str, verifier: str | None, now: datetime) -> str:
    """Store a new sign-in on `domain`; its state (only the hash is stored)."""
    state = secrets.token_urlsafe(32)
    conn.execute(
        delete(mastodon_sign_ins).where(mastodon_sign_ins.c.created_at < now - oauth.KEEP_STATES)
    )
    conn.execute(
        mastodon_sign_ins.insert().values(
            state_hash=oauth.state_key(state), domain=domain, code_verifier=verifier, created_at=now
        )
    )
    return state


def take(conn: Connection, state: str, now: datetime) -> InFlight | oauth.StateProblem:
    """Consume `state` once: the sign-in it started, or why it cannot be used."""
    key = oauth.state_key(state)
    row = conn.execute(
        select(mastodon_sign_ins, mastodon_apps)
        .join(mastodon_apps, mastodon_apps.c.domain == mastodon_sign_ins.c.domain)
        .where(mastodon_sign_ins.c.state_hash == key)
        .with_for_update(of=mastodon_sign_ins)
    ).one_or_none()
    if row is None:
        return oauth.StateProblem.UNKNOWN
    if row.used_at is not None:
        return oauth.StateProblem.USED
    if now - row.created_at > oauth.STATE_LIFETIME:
        return oauth.StateProblem.EXPIRED
    won = conn.execute(
        update(mastodon_sign_ins)
        .where(mastodon_sign_ins.c.state_hash == key, mastodon_sign_ins.c.used_at.is_(None))
        .values(used_at=now)
    )
    if won.rowcount != 1:
        return oauth.StateProblem.USED
    return InFlight(
        Instance(row.domain, row.base_url),
        signin.AppCredentials(row.client_id, row.client_secret),
        row.code_verifier,
    )


def _sign_in(web: Web, instance: Instance, http: GuardedSession) -> signin.MastodonSignIn:
    """The port's sign-in on `instance`: tipjar's app there (registered once), its endpoints."""
    return signin.MastodonSignIn(
        instance,
        app_for(web, instance, http),
        signin.server_info(instance, http),
        callback_url(web.settings.public_base_url),
        http,
        allow_loopback=web.settings.allow_loopback_instances,
    )


def _start(web: Web, typed: str, http: GuardedSession) -> tuple[Instance, str]:
    """Everything before the browser leaves: (instance, authorize URL)."""
    instance = instance_of(typed, allow_loopback=web.settings.allow_loopback_instances)
    sign_in = _sign_in(web, instance, http)
    verifier = secrets.token_urlsafe(64) if sign_in.info.pkce else None
    state = transaction(web.engine, lambda conn: begin(conn, instance.domain, verifier, web.now()))
    pending = [k for k in session.get("mastodon_states", []) if isinstance(k, str)]
    session["mastodon_states"] = [*pending, oauth.state_key(state)][-PENDING_STATES:]
    challenge = oauth.pkce_challenge(verifier) if verifier else ""
    return instance, sign_in.authorize_url(state, challenge)


def _state_refusal(state: str) -> BaseResponse | None:
    """Why this browser may not finish a sign-in with `state` (None: it may)."""
    pending = [k for k in session.get("mastodon_states", []) if isinstance(k, str)]
    key = oauth.state_key(state) if state else ""
    if key and key in pending:
        session["mastodon_states"] = [k for k in pending if k != key]  # spent, whatever next
        return None
    if not state:
        return error_page(400, "This sign-in link is incomplete", "Please start again.")
    return error_page(
        400,
        "This sign-in was not started in this browser",
        "For your safety a sign-in must finish in the browser that started it,"
        " with cookies allowed for this site. Please start again.",
    )


def _verify(web: Web, flight: InFlight, code: str, http: GuardedSession) -> PlatformUser:
    """The address the instance vouches for; the token lives only inside this call."""
    sign_in = signin.MastodonSignIn(
        flight.instance,
        flight.app,
        signin.server_info(flight.instance, http),
        callback_url(web.settings.public_base_url),
        http,
        allow_loopback=web.settings.allow_loopback_instances,
    )
    token = sign_in.exchange_code(code, flight.verifier or "")
    try:
        return sign_in.current_user(token)
    finally:
        token = ""  # not kept a moment longer than needed


def register(app: Flask, web: Web) -> None:
    """Add the Mastodon sign-in routes to `app` (they answer when PLATFORMS has mastodon).

    Instances are reached through `app.extensions["mastodon_sessions"]`, a factory of
    guarded sessions (tests put their own there: a resolver, shorter timeouts).
    """
    app.extensions.setdefault("mastodon_sessions", default_session)

    def guarded() -> GuardedSession:
        factory: SessionFactory = app.extensions["mastodon_sessions"]
        return factory(web.settings.allow_loopback_instances)

    @app.context_processor
    def mastodon_globals() -> dict[str, Any]:
        return {"mastodon_on": web.settings.serves("mastodon")}

    @app.post("/claim/mastodon")
    def mastodon_claim_start() -> BaseResponse | str:
        if not web.settings.serves("mastodon"):
            return error_page(404)
        typed = request.form.get("address", "")[:300]
        try:
            instance, target = _start(web, typed, guarded())
        except InstanceRefused as e:
            log.info("mastodon sign-in refused before it began: %s", e.detail)
            return error_page(400, "tipjar cannot sign you in there", e.reason)
        except signin.SignInRefused as e:
            log.warning("mastodon sign-in could not begin: %s", e.detail)
            return error_page(400, "tipjar cannot sign you in there", e.reason)
        return render_template("claim_mastodon.html", instance=instance.domain, target=target)

    @app.get("/oauth/mastodon/callback")
    def mastodon_callback() -> BaseResponse:
        args = request.args
        state = args.get("state", "")
        refused = _state_refusal(state)
        if refused is not None:
            return refused
        flight = transaction(web.engine, lambda conn: take(conn, state, web.now()))
        if isinstance(flight, oauth.StateProblem):
            log.info("mastodon sign-in refused: state %s", flight.value)
            return error_page(400, "This sign-in cannot be used", _STATE_PROBLEMS[flight])
        if "error" in args or not args.get("code"):
            return BaseResponse(
                render_template("message.html", kind="denied"),
                content_type="text/html; charset=utf-8",
            )
        try:
            person = _verify(web, flight, args["code"], guarded())
        except signin.SignInRefused as e:
            log.warning("mastodon sign-in failed: %s", e.detail)
            return error_page(400, "Sign-in did not complete", e.reason)
        return claim_for(web, person)


_STATE_PROBLEMS = {
    oauth.StateProblem.UNKNOWN: "This sign-in is not one we started. Please start again.",
    oauth.StateProblem.USED: "This sign-in link was already used. Please start again.",
    oauth.StateProblem.EXPIRED: "This sign-in took longer than 10 minutes. Please start again.",
}
