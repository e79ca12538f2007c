"""Settlement benchmark: settle a month of flattrs, measuring shares per second and memory.

Each size runs on a scratch database of its own (created on the server of --database-url
and dropped afterwards; a temporary file for SQLite). Supporters, creators, deposits,
budgets and shares are generated inside the database (generate_series on PostgreSQL, a
recursive CTE on SQLite), so seeding a million shares takes seconds. The mix is realistic:
creators claimed (posted with the fee), unclaimed (held) and refusing; supporters with
budgets above and below what they have, some with nothing (unfunded), some without a
budget (the minimum applies). `escrow.settlement.settle` then runs in a child process, so
its peak RSS (`resource.getrusage`) is the settlement's own and nothing else's.

    python benchmarks/settlement.py --database-url postgresql://postgres@127.0.0.1/test
    python benchmarks/settlement.py --quick --json          # 1/100 and 1/10 of full size
    python benchmarks/settlement.py --sizes 50000x20,5000x20 --check

Goal at full size (50,000 supporters x 20 shares = 1,000,000 shares, PostgreSQL):
at least 20,000 shares/s and a peak RSS of at most 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, text
from sqlalchemy.engine import make_url

from escrow.audit import check_ledger
from escrow.db import is_sqlite, make_engine, normalize_url
from escrow.ledger import FEES, FUNDING, Policy, system_account
from escrow.migrate import upgrade
from escrow.schema import UTCDateTime
from escrow.settlement import DEFAULT_WORKERS

PERIOD = "2026-02"
FLATTRED_AT = datetime(2026, 2, 14, 12, tzinfo=UTC)
SETTLED_AT = datetime(2026, 3, 1, 0, 15, tzinfo=UTC)
POLICY = Policy(currency="EUR", fee_percent=10, hold_period=timedelta(days=90))
CREATORS = 1009  # prime: supporter n flattrs creators (7n + 13k) mod CREATORS, all distinct
FULL = (50_000, 20)
GOAL = {"shares_per_second": 20_000, "peak_rss_mb": 300}


# --- scratch databases ---------------------------------------------------------------------


class Scratch:
    """A fresh, migrated database for one run; dropped (or deleted) on exit."""

    def __init__(self, url: str):
        self.base = normalize_url(url)
        self.url = ""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> str:
        parsed = make_url(self.base)
        if parsed.get_backend_name() == "sqlite":
            self._tmp = tempfile.TemporaryDirectory(prefix="tipjar-bench-")
            self.url = f"sqlite:///{Path(self._tmp.name) / 'bench.db'}"
        else:
            name = f"tipjar_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            admin = create_engine(parsed, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
            self.url = parsed.set(database=name).render_as_string(hide_password=False)
        engine = make_engine(self.url)
        upgrade(engine)
        engine.dispose()
        return self.url

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            return
        parsed = make_url(self.base)
        name = make_url(self.url).database
        admin = create_engine(parsed, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- seeding, set-based ----------------------------------------------------------------------


def _series(engine: Engine, n: int, alias: str = "g") -> str:
    """A FROM-clause item yielding the integers 1..n as column `n`."""
    if is_sqlite(engine):
        return (
            "(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s"  # noqa: S608
            f" WHERE n < {int(n)}) SELECT n FROM s) AS {alias}"
        )
    return f"generate_series(1, {int(n)}) AS {alias}(n)"


def _run(engine: Engine, conn: Any, sql: str, **params: Any) -> None:
    stmt = text(sql)
    if "at" in params:
        stmt = stmt.bindparams(bindparam("at", type_=UTCDateTime))
    conn.execute(stmt, params)


def seed(engine: Engine, supporters: int, shares_per_supporter: int) -> dict[str, int]:
    """Creators, funded supporters with budgets, and `supporters x shares` open shares."""
    if shares_per_supporter > CREATORS:
        raise ValueError(f"at most {CREATORS} shares per supporter")
    at = FLATTRED_AT
    with engine.begin() as conn:
        funding = system_account(conn, FUNDING)
        system_account(conn, FEES)
        # Creators: 60% claimed, 35% unclaimed, 5% refusing.
        _run(
            engine,
            conn,
            "INSERT INTO accounts (platform, platform_user_id, handle, handle_key, status,"  # noqa: S608
            " no_overdraft, created_at, updated_at, claimed_at)"
            " SELECT 'x', 'c' || n, 'creator' || n, 'creator' || n,"
            " CASE WHEN n % 20 = 0 THEN 'refusing' WHEN n % 20 < 12 THEN 'claimed'"
            " ELSE 'unclaimed' END, true, :at, :at, :at"
            f" FROM {_series(engine, CREATORS)} ORDER BY n",
            at=at,
        )
        c0 = int(
            conn.execute(
                text("SELECT min(id) FROM accounts WHERE platform_user_id LIKE 'c%'")
            ).scalar_one()
        )
        # Supporters: one in ten has nothing; the others between 1.00 and 10.99.
        _run(
            engine,
            conn,
            "INSERT INTO accounts (platform, platform_user_id, handle, handle_key, status,"  # noqa: S608
            " no_overdraft, credits_posted, created_at, updated_at)"
            " SELECT 'x', 's' || n, 'supporter' || n, 'supporter' || n, 'unclaimed', true,"
            " CASE WHEN n % 10 = 0 THEN 0 ELSE 100 + (n * 37) % 1000 END, :at, :at"
            f" FROM {_series(engine, supporters)} ORDER BY n",
            at=at,
        )
        s0, s1 = conn.execute(
            text("SELECT min(id), max(id) FROM accounts WHERE platform_user_id LIKE 's%'")
        ).one()
        assert s1 - s0 + 1 == supporters, "supporter ids must be contiguous"
        # Their deposits, as real transfers from funding, so the audit stays clean.
        _run(
            engine,
            conn,
            "INSERT INTO transfers (debit_account_id, credit_account_id, amount_minor, kind,"  # noqa: S608
            f" created_at) SELECT {funding}, id, credits_posted, 'deposit', :at FROM accounts"
            f" WHERE id BETWEEN {s0} AND {s1} AND credits_posted > 0 ORDER BY id",
            at=at,
        )
        _run(
            engine,
            conn,
            "UPDATE accounts SET debits_posted = (SELECT sum(credits_posted) FROM accounts"  # noqa: S608
            f" WHERE id BETWEEN {s0} AND {s1}) WHERE id = {funding}",
        )
        # Half set a budget (2.00-9.99); the other half get the minimum.
        _run(
            engine,
            conn,
            "INSERT INTO budgets (account_id, monthly_budget_minor, updated_at)"  # noqa: S608
            f" SELECT id, 200 + (id * 53) % 800, :at FROM accounts"
            f" WHERE id BETWEEN {s0} AND {s1} AND id % 2 = 0",
            at=at,
        )
        _run(
            engine,
            conn,
            "INSERT INTO shares (period, supporter_account_id, recipient_account_id,"  # noqa: S608
            " source_id, state, flattred_at, created_at)"
            f" SELECT '{PERIOD}', s.id, {c0} + ((s.id * 7 + k.n * 13) % {CREATORS}),"
            " 't' || s.id || '-' || k.n, 'open', :at, :at"
            f" FROM accounts s CROSS JOIN {_series(engine, shares_per_supporter, 'k')}"
            f" WHERE s.id BETWEEN {s0} AND {s1} ORDER BY s.id, k.n",
            at=at,
        )
    if not is_sqlite(engine):
        # As autovacuum would have by the month's end; SQLite keeps no statistics unless
        # asked, and stale ones (taken before any tip existed) would mislead its planner.
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    return {"supporters": supporters, "shares": supporters * shares_per_supporter}


# --- the measured run, in a child process ---------------------------------------------------


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _child(url: str, batch: int, workers: int | None) -> dict[str, Any]:
    from escrow.settlement import settle

    engine = make_engine(url)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    baseline = _rss_mb()
    started = time.perf_counter()
    summary = settle(engine, POLICY, PERIOD, SETTLED_AT, batch=batch, workers=workers)
    seconds = time.perf_counter() - started
    engine.dispose()
    return {
        "settle_seconds": round(seconds, 3),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": _rss_mb(),
        "summary": summary.as_json() | {"refused_shares": summary.refused_shares},
    }


def run_settlement_benchmark(
    url: str,
    supporters: int,
    shares_per_supporter: int,
    *,
    batch: int = 1000,
    workers: int | None = None,
    check: bool = False,
) -> dict[str, Any]:
    """Seed a scratch database from `url`'s server and settle one month on it; figures."""
    with Scratch(url) as scratch:
        engine = make_engine(scratch)
        started = time.perf_counter()
        seed(engine, supporters, shares_per_supporter)
        setup = time.perf_counter() - started
        engine.dispose()
        child = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                scratch,
                str(batch),
                str(workers or 0),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise RuntimeError(f"settlement failed:\n{child.stderr}")
        measured = json.loads(child.stdout)
        shares = supporters * shares_per_supporter
        result: dict[str, Any] = {
            "database": make_url(normalize_url(url)).get_backend_name(),
            "supporters": supporters,
            "shares_per_supporter": shares_per_supporter,
            "shares": shares,
            "batch": batch,
            "workers": (
                1
                if make_url(scratch).get_backend_name() == "sqlite"
                else workers or DEFAULT_WORKERS
            ),
            "setup_seconds": round(setup, 3),
            "settle_seconds": measured["settle_seconds"],
            "shares_per_second": round(shares / measured["settle_seconds"]),
            "baseline_rss_mb": measured["baseline_rss_mb"],
            "peak_rss_mb": measured["peak_rss_mb"],
            "summary": measured["summary"],
        }
        if check:
            engine = make_engine(scratch)
            with engine.connect() as conn:
                result["ledger_problems"] = [p.message for p in check_ledger(conn)]
            engine.dispose()
        return result


def _sizes(text_: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text_.split(","):
        supporters, _, per = part.strip().partition("x")
        sizes.append((int(supporters), int(per or FULL[1])))
    return sizes


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) or None)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TEST_DATABASE_URL"),
        help="server to create scratch databases on (default: $TEST_DATABASE_URL)",
    )
    parser.add_argument(
        "--sizes",
        help="SUPPORTERSxSHARES,... (default: full, 1/10 and 1/100: 50000x20,5000x20,500x20)",
    )
    parser.add_argument("--quick", action="store_true", help="only 1/100 and 1/10 of full size")
    parser.add_argument("--batch", type=int, default=1000, help="supporters per transaction")
    parser.add_argument(
        "--workers",
        type=int,
        help=f"batches at once on PostgreSQL (default {DEFAULT_WORKERS}, as `tipjar settle`)",
    )
    parser.add_argument("--check", action="store_true", help="audit the ledger afterwards")
    parser.add_argument("--json", action="store_true", help="print the JSON document only")
    args = parser.parse_args()
    if not args.database_url:
        parser.error("give --database-url or set TEST_DATABASE_URL")
    supporters, per = FULL
    if args.sizes:
        sizes = _sizes(args.sizes)
    elif args.quick:
        sizes = [(supporters // 100, per), (supporters // 10, per)]
    else:
        sizes = [(supporters // 100, per), (supporters // 10, per), (supporters, per)]
    results = []
    for s, k in sizes:
        result = run_settlement_benchmark(
            args.database_url, s, k, batch=args.batch, workers=args.workers, check=args.check
        )
        results.append(result)
        if not args.json:
            print(
                f"{result['shares']:>9} shares ({s} x {k}) on {result['database']}:"
                f" {result['settle_seconds']:8.2f} s, {result['shares_per_second']:>7} shares/s,"
                f" peak RSS {result['peak_rss_mb']} MB (baseline {result['baseline_rss_mb']} MB)"
                f", {result['workers']} workers"
                f", setup {result['setup_seconds']} s",
                file=sys.stderr,
            )
    print(json.dumps({"benchmark": "settlement", "goal": GOAL, "results": results}, indent=2))


if __name__ == "__main__":
    main()
