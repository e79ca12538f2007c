"""Database access: engines for SQLite and PostgreSQL, transactions, bounded retries.

SQLite is the embedded default: WAL, foreign keys on, `synchronous=FULL`, and every
transaction opened with `BEGIN IMMEDIATE`, so writers are serialized up front instead of
failing half-way with "database is locked". PostgreSQL is reached through psycopg 3; the
URL forms hosting platforms hand out (`postgres://`, `postgresql://`) are accepted.

Money operations run inside `transaction(engine, fn)`, which retries the whole unit of
work a bounded number of times on transient failures (serialization failure, deadlock,
SQLite busy). A retried unit of work must therefore be a pure function of the database.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available


def normalize_url(url: str) -> str:
    """Map the URL spellings of hosting platforms onto SQLAlchemy's psycopg 3 dialect."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url` with tipjar's connection settings applied on every connection."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ValueError("tipjar needs a SQLite file, not an in-memory database")
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"unsupported database {parsed.get_backend_name()!r}")
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN IMMEDIATE is ours to emit.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_transient(exc: BaseException) -> bool:
    """True for failures that a retry of the whole transaction can cure."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in TRANSIENT_SQLSTATES:
        return True
    if isinstance(exc, OperationalError) and isinstance(orig, sqlite3.OperationalError):
        text = str(orig).lower()
        return "locked" in text or "busy" in text
    return False


def transaction(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `work(conn)` in one transaction, retried on transient failures up to `attempts`."""
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                return work(conn)
        except DBAPIError as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            delay = random.uniform(0, 0.05 * 2**attempt)
            log.info("transient database error, retry %d/%d: %s", attempt, attempts, exc.orig)
            sleep(delay)
    raise AssertionError("unreachable")


@contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction, committed on success (no retry: for reads and tests)."""
    with engine.begin() as conn:
        yield conn
