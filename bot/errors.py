"""Error reports to Sentry, when SENTRY_DSN is set; nothing at all otherwise.

`init_sentry(settings)` imports sentry-sdk only when a DSN is configured (it is an
optional dependency: `pip install 'tipjar[sentry]'`), turns on its Flask integration, and
scrubs every event before it leaves the process (`scrub_event`): configured secret values,
bearer tokens, OAuth codes, states and verifiers, cookies, the CSRF field and
Authorization headers are replaced, and local variables are never sent. Personal data
stays at sentry-sdk's default: not sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from bot.config import Settings
from bot.logs import REDACTED, Redactor, secret_values

log = logging.getLogger(__name__)

# Fields whose value is a secret whatever it looks like (headers, query and form fields).
SECRET_FIELDS = re.compile(
    r"authorization|cookie|set-cookie|csrf_token|code|code_verifier|state|access_token"
    r"|refresh_token|client_secret|password|secret|token|stripe-signature",
    re.IGNORECASE,
)
_QUERY_SECRET = re.compile(
    r"((?:^|[?&])(?:code|state|code_verifier|access_token|refresh_token|token)=)[^&#\s]*",
    re.IGNORECASE,
)


def _scrub(value: Any, redactor: Redactor, key: str = "") -> Any:
    if key and SECRET_FIELDS.fullmatch(key):
        return REDACTED
    if isinstance(value, str):
        return _QUERY_SECRET.sub(r"\1" + REDACTED, redactor.redact(value))
    if isinstance(value, dict):
        return {k: _scrub(v, redactor, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        # Header lists come as [name, value] pairs.
        if len(value) == 2 and isinstance(value[0], str) and SECRET_FIELDS.fullmatch(value[0]):
            return [value[0], REDACTED]
        return [_scrub(v, redactor) for v in value]
    return value


def scrub_event(event: dict[str, Any], secrets: Iterable[str]) -> dict[str, Any]:
    """`event` with every secret replaced; cookies and request bodies dropped."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("cookies", None)
        request.pop("data", None)  # form posts: CSRF tokens, budgets; never needed to debug
    scrubbed: dict[str, Any] = _scrub(event, Redactor(secrets))
    return scrubbed


def init_sentry(settings: Settings, **options: Any) -> bool:
    """Start reporting errors to Sentry when SENTRY_DSN is set; True when it did."""
    if not settings.sentry_dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.flask import FlaskIntegration
    except ImportError:
        log.warning("SENTRY_DSN is set but sentry-sdk is not installed: errors are not reported")
        return False
    secrets = [s for s in secret_values(settings) if s]

    def before_send(event: Any, _hint: dict[str, Any]) -> Any:
        return scrub_event(event, secrets)

    def before_breadcrumb(crumb: Any, _hint: dict[str, Any]) -> Any:
        return scrub_event(crumb, secrets)

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        integrations=[FlaskIntegration()],
        include_local_variables=False,
        before_send=before_send,
        before_breadcrumb=before_breadcrumb,
        **options,
    )
    log.info("errors are reported to Sentry")
    return True
