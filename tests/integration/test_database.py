"""The database layer: migrations, connection settings, immutability, retries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from escrow.db import make_engine, normalize_url, transaction
from escrow.ledger import Identity, Policy
from escrow.migrate import is_current, upgrade
from escrow.money import Money
from escrow.schema import metadata
from escrow.service import Ledger


def test_the_migrated_schema_is_exactly_the_declared_one(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_upgrade_brings_an_empty_database_to_head_and_is_safe_to_repeat(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert not is_current(engine)
    upgrade(engine)
    upgrade(engine)
    assert is_current(engine)


def test_sqlite_runs_with_wal_foreign_keys_and_full_sync(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_in_memory_sqlite_is_refused_because_it_cannot_be_shared():
    with pytest.raises(ValueError):
        make_engine("sqlite://")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///tipjar.db", "sqlite:///tipjar.db"),
    ],
)
def test_hosting_platform_urls_are_accepted(given, expected):
    assert normalize_url(given) == expected


def test_transfers_cannot_be_changed_or_deleted(engine, clock):
    ledger = Ledger(engine, Policy(), clock)
    ledger.deposit(Identity.x("1", "alice"), Money(500), "ref-1")
    for statement in ("UPDATE transfers SET amount_minor = 1", "DELETE FROM transfers"):
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text(statement))
    assert ledger.account(Identity.x("1")).available_minor == 500


def test_a_transient_failure_is_retried_and_the_work_done_once(engine):
    calls = []

    def work(conn):
        calls.append(1)
        conn.execute(
            text("INSERT INTO state (key, value, updated_at) VALUES ('k', 'v', :t)"),
            {"t": datetime(2026, 1, 1)},
        )
        if len(calls) == 1:
            import sqlite3

            raise OperationalError("stmt", {}, sqlite3.OperationalError("database is locked"))
        return "done"

    assert transaction(engine, work, sleep=lambda s: None) == "done"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM state")).scalar() == 1
    assert len(calls) == 2


def test_a_permanent_failure_is_not_retried(engine):
    calls = []

    def work(conn):
        calls.append(1)
        conn.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(DBAPIError):
        transaction(engine, work, sleep=lambda s: None)
    assert len(calls) == 1


def test_naive_datetimes_are_refused_so_every_time_is_utc(engine):
    from escrow.schema import state

    with pytest.raises(Exception, match="naive"), engine.begin() as conn:
        conn.execute(state.insert().values(key="a", value="b", updated_at=datetime(2026, 1, 1)))
    with engine.begin() as conn:
        conn.execute(
            state.insert().values(key="a", value="b", updated_at=datetime(2026, 1, 1, tzinfo=UTC))
        )
        back = conn.execute(state.select()).one().updated_at
    assert back == datetime(2026, 1, 1, tzinfo=UTC) and back.tzinfo is not None
