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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Connection,
    Engine,
    any_,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
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
        # 32 MiB of page cache a connection, not SQLite's 2 MiB: a settlement or a page
        # of tips works on more than 2 MiB of tables and indexes at once.
        cur.execute("PRAGMA cache_size=-32768")
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


# --- the SQLite/PostgreSQL differences, in one place -------------------------------------


def is_postgres(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "postgresql"


def serializes_writers(conn: Connection | Engine) -> bool:
    """True where a transaction is the only writer from its start (SQLite's BEGIN
    IMMEDIATE), so row locks are moot; PostgreSQL locks rows and runs writers side by side."""
    return is_sqlite(conn)


def utc_day(conn: Connection, column: Any) -> Any:
    """SQL for the UTC day (YYYY-MM-DD) of the instant in `column`, to group rows by day."""
    if is_postgres(conn):
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


def dialect_insert(conn: Connection, table: Any) -> Any:
    """An INSERT that can take ON CONFLICT DO NOTHING / DO UPDATE (insert-ignore, upsert)."""
    return (postgresql.insert if is_postgres(conn) else sqlite.insert)(table)


def insert_ignore(conn: Connection, table: Any, *key: str) -> Any:
    """INSERT ... ON CONFLICT (key) DO NOTHING."""
    return dialect_insert(conn, table).on_conflict_do_nothing(index_elements=list(key))


def upsert(conn: Connection, table: Any, key: Sequence[str], values: dict[str, Any]) -> Any:
    """INSERT `values` ... ON CONFLICT (key) DO UPDATE the other columns of `values`."""
    return (
        dialect_insert(conn, table)
        .values(**values)
        .on_conflict_do_update(
            index_elements=list(key), set_={k: v for k, v in values.items() if k not in key}
        )
    )


def for_update(query: Any) -> Any:
    """Lock the selected rows against every other writer and locker (FOR UPDATE)."""
    return query.with_for_update()


def for_no_key_update(query: Any, **of: Any) -> Any:
    """Lock the selected rows as an UPDATE of non-key columns would (FOR NO KEY UPDATE on
    PostgreSQL: foreign-key checks of rows that merely refer to them do not wait). SQLite
    renders no lock: its writer is alone already."""
    return query.with_for_update(key_share=True, **of)


def for_key_share(query: Any) -> Any:
    """The weakest row lock (FOR KEY SHARE): only a delete or a key change waits for it."""
    return query.with_for_update(read=True, key_share=True)


def skip_locked(query: Any, *, key_share: bool = False) -> Any:
    """Lock the selected rows, skipping those another transaction holds (work queues)."""
    return query.with_for_update(skip_locked=True, key_share=key_share)


def next_id_sql(conn: Connection, table: Any) -> Any:
    """PostgreSQL: an expression drawing the next id of `table` from its own sequence, for
    set-based inserts that must know their ids before writing (`allocate_ids` on SQLite)."""
    seq = conn.execute(
        text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name}
    ).scalar_one()
    quoted = str(seq).replace("'", "''")
    return literal_column(f"nextval('{quoted}')", BigInteger)


def temp_table_name(conn: Connection, name: str) -> str:
    """`name` qualified with the temporary schema, so no permanent table is ever meant."""
    return f"{'pg_temp' if is_postgres(conn) else 'temp'}.{name}"


def one_of(conn: Connection, column: Any, values: Sequence[Any]) -> Any:
    """`column IN values`; on PostgreSQL `column = ANY(array)`, one parameter instead of
    one per value, which psycopg otherwise spends longer sending than the query runs."""
    if is_postgres(conn):
        return column == any_(cast(list(values), ARRAY(column.type)))
    return column.in_(list(values))


def allocate_ids(conn: Connection, table: Any, count: int) -> list[int]:
    """Reserve `count` new ids of `table` before inserting, so rows can point at each other.

    PostgreSQL takes them from the table's sequence. SQLite has no sequence: the
    transaction holds its one write lock (BEGIN IMMEDIATE), so max(id) + 1 onwards are
    free until this transaction inserts them; allocate once per table per batch.
    """
    return allocate_ids_of(conn, {table: count})[table.name]


def allocate_ids_of(conn: Connection, counts: Mapping[Any, int]) -> dict[str, list[int]]:
    """`allocate_ids` for several tables in one statement: table name -> its new ids."""
    wanted = {table.name: (table, count) for table, count in counts.items() if count > 0}
    reserved: dict[str, list[int]] = {table.name: [] for table in counts}
    if not wanted:
        return reserved
    names = sorted(wanted)
    if is_postgres(conn):
        # Only the branch numbers are spelled into the SQL; table names and counts are bound.
        query = " UNION ALL ".join(
            f"SELECT {i} AS t, nextval(pg_get_serial_sequence(:t{i}, 'id')) AS id"  # noqa: S608
            f" FROM generate_series(1, :n{i})"
            for i in range(len(names))
        )
        params: dict[str, Any] = {}
        for i, name in enumerate(names):
            params |= {f"t{i}": name, f"n{i}": wanted[name][1]}
        for t, new_id in conn.execute(text(query), params):
            reserved[names[t]].append(int(new_id))
        for ids in reserved.values():
            ids.sort()
        return reserved
    tops = highest_ids(conn, [wanted[name][0] for name in names])
    for name in names:
        top, count = tops[name], wanted[name][1]
        reserved[name] = list(range(top + 1, top + count + 1))
    return reserved


def highest_ids(conn: Connection, tables: Sequence[Any]) -> dict[str, int]:
    """The highest id in each of `tables` (0 when empty), in one statement: on SQLite,
    where the one writer (BEGIN IMMEDIATE) numbers new rows on from there."""
    tops = conn.execute(
        select(*(select(func.coalesce(func.max(t.c.id), 0)).scalar_subquery() for t in tables))
    ).one()
    return {t.name: int(top) for t, top in zip(tables, tops, strict=True)}


def insert_returning_ids(conn: Connection, table: Any, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert `rows` and return their new ids, in the order of `rows`.

    PostgreSQL batches INSERT ... RETURNING and sorts the ids back into order. SQLite would
    insert row by row to keep that order, so there the ids are computed instead: the
    transaction holds SQLite's one write lock (BEGIN IMMEDIATE), and an INTEGER PRIMARY KEY
    without AUTOINCREMENT takes max(id) + 1, so one executemany takes consecutive ids.
    """
    if not rows:
        return []
    if not is_sqlite(conn):
        return [
            int(r.id)
            for r in conn.execute(
                table.insert().returning(table.c.id, sort_by_parameter_order=True), list(rows)
            )
        ]
    base = highest_ids(conn, [table])[table.name]
    conn.execute(table.insert(), list(rows))
    last = int(conn.execute(select(func.max(table.c.id))).scalar_one())
    if last - base != len(rows):
        raise RuntimeError(f"{table.name}: expected {len(rows)} consecutive ids after {base}")
    return list(range(base + 1, last + 1))


def bulk_add(
    conn: Connection,
    table: Any,
    columns: Sequence[str],
    deltas: Sequence[tuple[int, Sequence[int]]],
) -> None:
    """Add integers to `columns` of many rows of `table`, by id: (id, one delta a column).

    PostgreSQL: one UPDATE joined to one array a column, instead of one UPDATE a row (or a
    VALUES list whose placeholders cost more to send than to run). SQLite: the driver's own
    executemany, as plain integers need none of SQLAlchemy's per-row work.
    """
    if not deltas:
        return
    name = table.name
    if is_sqlite(conn):
        sets = ", ".join(f"{c} = {c} + ?" for c in columns)
        conn.exec_driver_sql(
            f"UPDATE {name} SET {sets} WHERE id = ?",  # noqa: S608 - our own names
            [(*d, row_id) for row_id, d in deltas],
        )
        return
    if len(deltas) < 8:
        conn.execute(
            table.update()
            .where(table.c.id == bindparam("row_id"))
            .values({c: table.c[c] + bindparam(f"d{i}") for i, c in enumerate(columns)}),
            [{"row_id": row_id, **{f"d{i}": v for i, v in enumerate(d)}} for row_id, d in deltas],
        )
        return
    sets = ", ".join(f"{c} = {name}.{c} + v.d{i}" for i, c in enumerate(columns))
    arrays = ", ".join(
        ["CAST(:ids AS BIGINT[])", *(f"CAST(:d{i} AS BIGINT[])" for i in range(len(columns)))]
    )
    names = ", ".join(["id", *(f"d{i}" for i in range(len(columns)))])
    params: dict[str, Any] = {"ids": [row_id for row_id, _ in deltas]}
    params |= {f"d{i}": [d[i] for _, d in deltas] for i in range(len(columns))}
    conn.execute(
        text(
            f"UPDATE {name} SET {sets} FROM unnest({arrays}) AS v({names})"  # noqa: S608
            f" WHERE {name}.id = v.id"
        ),
        params,
    )


def bulk_insert(conn: Connection, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many rows fast, in the caller's transaction: COPY on PostgreSQL, the driver's
    executemany on SQLite. Every row names the same columns, all of them with a value (no
    Python-side defaults apply), and each value goes through its column type's own bind
    processor, as SQLAlchemy would send it, without SQLAlchemy's per-row bookkeeping."""
    if not rows:
        return
    columns = list(rows[0])
    names = ", ".join(columns)
    if is_sqlite(conn):
        steps = [(c, table.c[c].type.bind_processor(conn.dialect)) for c in columns]
        marks = ", ".join("?" for _ in columns)
        conn.exec_driver_sql(
            f"INSERT INTO {table.name} ({names}) VALUES ({marks})",  # noqa: S608 - our own names
            [tuple(p(row[c]) if p else row[c] for c, p in steps) for row in rows],
        )
        return
    if len(rows) < 64:
        conn.execute(table.insert(), list(rows))
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])
