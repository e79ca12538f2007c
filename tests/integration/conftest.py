"""Fixtures shared by the integration tests of the claim web app."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from sqlalchemy import Engine

from tests.integration.test_web_support import Site


@pytest.fixture
def site(engine: Engine, clock: Any, rsps: responses.RequestsMock) -> Site:
    """The web app on `engine`, X faked by `rsps`, the test client ready."""
    return Site(engine, clock, rsps)
