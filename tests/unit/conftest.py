"""Fixtures shared by the sandbox's tests: the bot's two kinds of session against it.

Each test module provides its own `sandbox` (the running fake X, peopled as it needs).
"""

from __future__ import annotations

import pytest
import requests

from bot.platforms.x.sandbox import Sandbox


@pytest.fixture
def api(sandbox: Sandbox) -> requests.Session:
    """The bot's app-only session (Bearer app token)."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {sandbox.bearer_token}"
    return session


@pytest.fixture
def as_bot() -> requests.Session:
    """The bot's user-context session (OAuth 1.0a; the sandbox does not check signatures)."""
    session = requests.Session()
    session.headers["Authorization"] = 'OAuth oauth_consumer_key="k", oauth_signature="s"'
    return session
