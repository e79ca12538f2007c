"""Set-based seeding of large, audit-clean ledgers for the benchmarks.

Rows are generated inside the database (generate_series on PostgreSQL, a recursive CTE on
SQLite), so seeding a million holds takes seconds and no Python memory. The result is a
real ledger: deposits from `funding`, holds as pending transfers, counters that match,
so `check_ledger()` is clean and every benchmark measures the production code paths.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from escrow.db import is_sqlite
from escrow.ledger import FEES, FUNDING, system_account

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _series(engine: Engine, n: int, name: str = "n") -> str:
    """A FROM-clause fragment yielding integers 1..n in column `name`."""
    if is_sqlite(engine):
        return (
            f"(WITH RECURSIVE s({name}) AS (SELECT 1 UNION ALL SELECT {name} + 1 FROM s"  # noqa: S608
            f" WHERE {name} < {int(n)}) SELECT {name} FROM s) AS g"
        )
    return f"generate_series(1, {int(n)}) AS g({name})"


def _ts(engine: Engine, value: datetime) -> str:
    if is_sqlite(engine):
        return f"'{value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=' ')}'"
    return f"TIMESTAMPTZ '{value.isoformat()}'"


def seed_supporters(engine: Engine, supporters: int, deposit_minor: int, first_id: int = 1) -> None:
    """Accounts x:first_id.. funded with `deposit_minor` each, through real deposit transfers."""
    now = _ts(engine, EPOCH)
    with engine.begin() as conn:
        funding = system_account(conn, FUNDING)
        system_account(conn, FEES)
        conn.execute(
            text(
                "INSERT INTO accounts (id, platform, platform_user_id, handle, handle_key, status,"  # noqa: S608
                " no_overdraft, debits_posted, credits_posted, debits_pending, credits_pending,"
                " created_at, updated_at)"
                f" SELECT n + {first_id - 1} + 1000, 'x', CAST(n + {first_id - 1} AS TEXT),"
                f" 'supporter' || (n + {first_id - 1}), 'supporter' || (n + {first_id - 1}),"
                f" 'unclaimed', true, 0, {deposit_minor}, 0, 0, {now}, {now}"
                f" FROM {_series(engine, supporters)}"
            )
        )
        conn.execute(
            text(
                "INSERT INTO transfers (debit_account_id, credit_account_id, amount_minor, kind,"  # noqa: S608
                " created_at)"
                f" SELECT {funding}, n + {first_id - 1} + 1000, {deposit_minor}, 'deposit', {now}"
                f" FROM {_series(engine, supporters)}"
            )
        )
        conn.execute(
            text("UPDATE accounts SET debits_posted = debits_posted + :total WHERE id = :funding"),
            {"total": supporters * deposit_minor, "funding": funding},
        )
    _reset_sequences(engine)


def seed_creators(
    engine: Engine, creators: int, first_user_id: int, status: str = "unclaimed"
) -> None:
    now = _ts(engine, EPOCH)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (platform, platform_user_id, handle, handle_key, status,"  # noqa: S608
                " no_overdraft, debits_posted, credits_posted, debits_pending, credits_pending,"
                " created_at, updated_at)"
                f" SELECT 'x', CAST(n + {first_user_id - 1} AS TEXT), 'creator' || n,"
                f" 'creator' || n, '{status}', true, 0, 0, 0, 0, {now}, {now}"
                f" FROM {_series(engine, creators)}"
            )
        )
    _reset_sequences(engine)


def account_ids(engine: Engine, first_user_id: int, count: int) -> tuple[int, int]:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT min(id), max(id) FROM accounts WHERE platform = 'x'"
                " AND CAST(platform_user_id AS BIGINT) BETWEEN :a AND :b"
            ),
            {"a": first_user_id, "b": first_user_id + count - 1},
        ).one()
    return int(row[0]), int(row[1])


def seed_holds(
    engine: Engine,
    holds: int,
    supporter_ids: tuple[int, int],
    creator_ids: tuple[int, int],
    amount_minor: int = 100,
    hold_period: timedelta = timedelta(days=90),
) -> None:
    """`holds` open holds spread round-robin over the given supporter and creator id ranges."""
    s0, s1 = supporter_ids
    c0, c1 = creator_ids
    ns, nc = s1 - s0 + 1, c1 - c0 + 1
    created = _ts(engine, EPOCH)
    with engine.begin() as conn:
        base_t = int(conn.execute(text("SELECT coalesce(max(id), 0) FROM transfers")).scalar_one())
        base_tip = int(conn.execute(text("SELECT coalesce(max(id), 0) FROM tips")).scalar_one())
        # Expiries spread over a month so "next expiry" and expiry batches are realistic.
        if is_sqlite(engine):
            expires = (
                f"datetime('{(EPOCH + hold_period).replace(tzinfo=None).isoformat(sep=' ')}',"
                " '+' || (n % 43200) || ' minutes')"
            )
        else:
            expires = f"{_ts(engine, EPOCH + hold_period)} + (n % 43200) * INTERVAL '1 minute'"
        conn.execute(
            text(
                "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount_minor,"  # noqa: S608
                " kind, expires_at, tip_id, created_at)"
                f" SELECT {base_t} + n, {s0} + (n % {ns}), {c0} + (n % {nc}), {amount_minor},"
                f" 'hold', {expires}, {base_tip} + n, {created}"
                f" FROM {_series(engine, holds)}"
            )
        )
        conn.execute(
            text(
                "INSERT INTO tips (id, source_id, supporter_account_id, recipient_account_id,"  # noqa: S608
                " kind, amount_minor, fee_minor, state, hold_transfer_id, expires_at, created_at)"
                f" SELECT {base_tip} + n, 'seed:' || ({base_tip} + n), {s0} + (n % {ns}),"
                f" {c0} + (n % {nc}), 'tip', {amount_minor}, 0, 'held', {base_t} + n,"
                f" {expires}, {created}"
                f" FROM {_series(engine, holds)}"
            )
        )
        for column, side in (("debits_pending", "supporter"), ("credits_pending", "recipient")):
            conn.execute(
                text(
                    f"UPDATE accounts SET {column} = {column} + agg.total FROM"  # noqa: S608
                    f" (SELECT {side}_account_id AS aid, sum(amount_minor) AS total FROM tips"
                    f" WHERE id > {base_tip} GROUP BY {side}_account_id) AS agg"
                    " WHERE accounts.id = agg.aid"
                )
            )
    _reset_sequences(engine)


def _reset_sequences(engine: Engine) -> None:
    if is_sqlite(engine):
        return
    with engine.begin() as conn:
        for table in ("accounts", "transfers", "tips"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"  # noqa: S608
                    f" (SELECT coalesce(max(id), 1) FROM {table}))"
                )
            )
