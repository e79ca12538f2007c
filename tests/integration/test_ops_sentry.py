"""Errors to Sentry: off unless SENTRY_DSN is set; every event scrubbed before it leaves."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from bot.errors import init_sentry, scrub_event
from bot.web import create_app
from tests.integration.test_web_support import CLIENT_SECRET, SECRET_KEY, web_settings

DSN = "https://publickey@sentry.example/42"
BEARER = "AAAAbearer-token-that-must-never-show"


class Captured(Transport):
    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(event)


@pytest.fixture
def transport() -> Any:
    captured = Captured()
    yield captured
    sentry_sdk.init(dsn=None)  # off again for the tests after this one


def test_without_a_dsn_sentry_is_not_even_imported():
    code = (
        "import sys; from bot.config import Settings; from bot.errors import init_sentry;"
        "assert init_sentry(Settings()) is False; assert 'sentry_sdk' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_failing_page_reaches_sentry_without_secrets_codes_or_cookies(engine, clock, transport):
    settings = web_settings(sentry_dsn=DSN, x_bearer_token=BEARER)
    app = create_app(settings, engine=engine, clock=clock)
    assert init_sentry(settings, transport=transport)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError(f"failed with {BEARER} and {CLIENT_SECRET}")

    client = app.test_client()
    client.set_cookie("tipjar_session", "a-session-cookie-value")
    response = client.get(
        "/boom?code=one-time-oauth-code&state=the-state",
        headers={"Authorization": f"Bearer {BEARER}"},
    )
    sentry_sdk.flush()

    assert response.status_code == 500
    assert transport.events, "the error was not reported"
    sent = repr(transport.events)
    for leaked in (
        BEARER,
        CLIENT_SECRET,
        SECRET_KEY,
        "one-time-oauth-code",
        "the-state",
        "a-session-cookie-value",
    ):
        assert leaked not in sent, leaked
    assert "RuntimeError" in sent and "[redacted]" in sent


def test_the_scrubber_replaces_secret_fields_and_values_anywhere_in_an_event():
    event = {
        "request": {
            "url": "https://tipjar.example/oauth/callback?state=s1&code=c1",
            "headers": [["Authorization", "Bearer t1"], ["Accept", "text/html"]],
            "data": {"csrf_token": "x"},
            "cookies": {"tipjar_session": "y"},
        },
        "extra": {"note": f"token {BEARER}", "code_verifier": "v1"},
    }

    scrubbed = scrub_event(event, [BEARER])

    assert scrubbed["request"]["url"].endswith("state=[redacted]&code=[redacted]")
    assert scrubbed["request"]["headers"] == [
        ["Authorization", "[redacted]"],
        ["Accept", "text/html"],
    ]
    assert "data" not in scrubbed["request"] and "cookies" not in scrubbed["request"]
    assert scrubbed["extra"] == {"note": "token [redacted]", "code_verifier": "[redacted]"}
