"""Test fixtures shared by every layer.

`engine` runs a test once on SQLite and, when TEST_DATABASE_URL is set, once more on
PostgreSQL, each time on a clean, fully migrated schema. PostgreSQL runs get a database
of their own (created from TEST_DATABASE_URL's server and dropped at the end), so two
test runs on one machine never see each other's rows. When CI=true and PostgreSQL is not
available the run fails: CI must prove both databases.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import responses
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from escrow.db import make_engine, normalize_url
from escrow.migrate import upgrade
from escrow.schema import metadata

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PG_URL = os.environ.get("TEST_DATABASE_URL", "").strip()
BACKENDS = ["sqlite", "postgres"] if PG_URL else ["sqlite"]


class Clock:
    """A settable clock: tests move time on purpose, never by sleeping."""

    def __init__(self, now: datetime | None = None):
        self.now = now or datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "tipjar.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh database on TEST_DATABASE_URL's server for this run, migrated to head."""
    if not PG_URL:
        pytest.skip("PostgreSQL tests skipped: TEST_DATABASE_URL is not set")
    base = make_url(normalize_url(PG_URL))
    name = f"{base.database or 'tipjar'}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate_all(engine: Engine) -> None:
    """Empty every table and restart the ids: DELETE is far cheaper than TRUNCATE for the
    few rows a test writes. Replica mode skips the triggers that keep transfers immutable."""
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        for table in reversed(metadata.sorted_tables):
            conn.execute(text(f'DELETE FROM "{table.name}"'))  # noqa: S608
        sequences = conn.execute(
            text("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()")
        ).scalars()
        for name in list(sequences):
            conn.execute(text(f'ALTER SEQUENCE "{name}" RESTART'))


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("pg_server_url")
    engine = make_engine(url)
    _truncate_all(engine)
    engine.dispose()
    return url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean, migrated database URL: SQLite always, PostgreSQL when configured."""
    if request.param == "sqlite":
        path = tmp_path / "tipjar.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """PostgreSQL only (races, advisory locks); skipped without TEST_DATABASE_URL."""
    eng = make_engine(pg_url, pool_size=12, max_overflow=4)
    try:
        yield eng
    finally:
        eng.dispose()


def pytest_report_header(config: pytest.Config) -> str:
    if PG_URL:
        return "databases: SQLite and PostgreSQL (TEST_DATABASE_URL)"
    return "databases: SQLite only (TEST_DATABASE_URL not set: PostgreSQL tests skipped)"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not PG_URL:
        terminalreporter.write_line(
            "NOTE: PostgreSQL tests were skipped (set TEST_DATABASE_URL to run them)."
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") == "true" and not PG_URL and exitstatus == 0:
        session.exitstatus = 1
        print("\nCI=true but TEST_DATABASE_URL is not set: PostgreSQL tests would be skipped.")


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """X (or any HTTP peer) faked at the HTTP boundary; unused registrations are fine."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Commands set up logging for their process (`bot.logs.configure_logging`); in-process
    runs must not leave their handler and level to the tests after them."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
