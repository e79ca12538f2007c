"""The web app's guards: CSRF tokens, security headers, and plain error pages.

Every POST carries the session's CSRF token (one random value per session, compared in
constant time); a POST without it gets a 400 page before any view runs, so nothing
changes. Every response carries a strict Content-Security-Policy (no scripts at all, styles
and images from this origin only, forms only to this origin and X's authorize page), and
`Referrer-Policy: no-referrer`, so the OAuth state and code in the callback URL never leak
to another site. Errors render a plain page: never a traceback, never a secret; the
exception is logged server-side by its type, message and code lines (no local values, no
SQL parameters).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import traceback

from flask import Flask, Response, render_template, request, session
from sqlalchemy.exc import StatementError
from werkzeug.exceptions import HTTPException

from bot.web.oauth import origin

log = logging.getLogger("bot.web")

CSRF_FIELD = "csrf_token"
# Provider webhooks are not forms: they carry no cookie and prove themselves by signature.
CSRF_EXEMPT = frozenset(["/stripe/webhook", "/stripe/webhook/connect"])
_CSRF_KEY = "csrf"
_UNSAFE = frozenset(["POST", "PUT", "PATCH", "DELETE"])

TITLES = {
    400: "This request could not be accepted",
    403: "This is not allowed",
    404: "There is no such page",
    405: "This page does not take that kind of request",
    413: "That was too much to send",
    500: "Something went wrong on our side",
    503: "This is not available right now",
}
MESSAGES = {
    400: "Nothing was changed. Please go back and try again.",
    403: "Nothing was changed.",
    404: "Check the address, or start from the claim page.",
    405: "Nothing was changed. Please use the buttons on the page.",
    413: "Nothing was changed.",
    500: "Nothing was lost: money only moves when a whole step succeeds. Please try again.",
    503: "Please try again in a little while.",
}


def csrf_token() -> str:
    """This session's CSRF token, created on first use (templates call it in every form)."""
    token = session.get(_CSRF_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[_CSRF_KEY] = token
    return token


def csrf_ok() -> bool:
    sent = request.form.get(CSRF_FIELD, "")
    expected = session.get(_CSRF_KEY, "")
    if not sent or not isinstance(expected, str) or not expected:
        return False
    return hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8"))


def error_page(status: int, title: str | None = None, message: str | None = None) -> Response:
    """A plain page for a refused or failed request."""
    html = render_template(
        "error.html",
        status=status,
        title=title or TITLES.get(status, "This request could not be completed"),
        message=message or MESSAGES.get(status, "Nothing was changed."),
    )
    return Response(html, status=status, content_type="text/html; charset=utf-8")


def describe(exc: BaseException) -> str:
    """An exception as one log line without secrets (SQL parameters are left out)."""
    if isinstance(exc, StatementError) and exc.orig is not None:
        first = (str(exc.orig).strip().splitlines() or [""])[0]
        return f"{type(exc).__name__} ({type(exc.orig).__name__}): {first}"
    return f"{type(exc).__name__}: {exc}"


def content_security_policy(authorize_url: str, *form_targets: str) -> str:
    targets = " ".join(dict.fromkeys([origin(authorize_url), *map(origin, form_targets)]))
    return "; ".join(
        [
            "default-src 'none'",
            "style-src 'self'",
            "img-src 'self'",
            # X's origin: the "Sign in with X" form redirects there, and browsers apply
            # form-action to a form's redirects too (so do "Add money" forms, to Stripe).
            f"form-action 'self' {targets}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


def install(app: Flask, authorize_url: str, *form_targets: str) -> None:
    """Wire the CSRF check, the headers and the error pages into `app`; forms may lead to
    `authorize_url`'s origin and to those of `form_targets`."""
    csp = content_security_policy(authorize_url, *form_targets)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["CSRF_FIELD"] = CSRF_FIELD

    @app.before_request
    def check_csrf() -> Response | None:
        if request.method in _UNSAFE and request.path not in CSRF_EXEMPT and not csrf_ok():
            log.info("refused %s %s: missing or wrong CSRF token", request.method, request.path)
            return error_page(
                400,
                "This form has expired",
                "Nothing was changed. Please reload the page and try again.",
            )
        return None

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers["Content-Security-Policy"] = csp
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
        if not request.path.startswith("/static/"):
            # Pages show balances and carry one-time OAuth values: no cache may keep them.
            headers["Cache-Control"] = "no-store"
        return response

    def http_error(error: HTTPException) -> Response:
        return error_page(error.code or 500)

    for code in (400, 403, 404, 405, 413, 500):
        app.register_error_handler(code, http_error)
    app.register_error_handler(HTTPException, http_error)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        code_lines = "".join(traceback.format_tb(error.__traceback__))
        log.error(
            "unexpected error on %s %s: %s\n%s",
            request.method,
            request.path,
            describe(error),
            code_lines,
        )
        return error_page(500)
