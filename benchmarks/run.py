"""All of tipjar's speed figures in one run, as one JSON object, against the goals.

    .venv/bin/python benchmarks/run.py --quick --json     # CI-sized, a few minutes
    .venv/bin/python benchmarks/run.py --json             # full sizes (docs/PERFORMANCE.md)

PostgreSQL figures use TEST_DATABASE_URL (or --database-url): every measurement runs on a
scratch database created on that server and dropped afterwards; SQLite figures use a
temporary file. pgbench's TPC-B-like run (1 client, 15 s) on the same server gives a yard
stick for what the machine's PostgreSQL does at all. Figures are printed, never asserted:
speed goals live here, not in the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ingest import run_ingest_benchmark
from benchmarks.seed import account_ids, seed_creators, seed_holds, seed_supporters
from benchmarks.settlement import Scratch, run_settlement_benchmark
from escrow.db import make_engine
from escrow.ledger import Identity, Policy
from escrow.reports import escrow_balances
from escrow.service import Ledger

GOALS = {
    "ingest.postgres.tips_per_s": ">= 2000",
    "ingest.sqlite.tips_per_s": ">= 3000",
    "ingest_ratio_vs_pgbench": ">= 1.5",
    "settlement.postgres.shares_per_s": ">= 20000 (1,000,000 shares)",
    "settlement.postgres.peak_rss_mb": "<= 300",
    "escrow_report.seconds": "<= 2 (1,000,000 holds)",
    "claim.seconds": "<= 2 (10,000 holds)",
    "parse.tweets_per_s": ">= 50000",
}


def pgbench_tps(url: str, seconds: int = 15) -> float | None:
    """pgbench -i then a 1-client TPC-B-like run on a scratch database; None without pgbench."""
    if shutil.which("pgbench") is None:
        return None
    with Scratch(url) as scratch:
        dsn = scratch.replace("postgresql+psycopg://", "postgresql://")
        subprocess.run(["pgbench", "-i", "-q", "-s", "1", dsn], check=True, capture_output=True)
        out = subprocess.run(
            ["pgbench", "-c", "1", "-T", str(seconds), dsn],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    m = re.search(r"tps = ([0-9.]+)", out)
    return round(float(m.group(1)), 1) if m else None


def escrow_report_benchmark(url: str, holds: int) -> dict[str, Any]:
    """The escrow balances report over `holds` open holds (10,000 creators)."""
    with Scratch(url) as scratch:
        engine = make_engine(scratch)
        supporters = max(1, holds // 20)
        seed_supporters(engine, supporters, deposit_minor=100 * 40)
        creators = min(10_000, max(1, holds // 10))
        seed_creators(engine, creators, 10_000_000)
        seed_holds(
            engine,
            holds,
            account_ids(engine, 1, supporters),
            account_ids(engine, 10_000_000, creators),
        )
        _analyze(engine)
        with engine.connect() as conn:
            escrow_balances(conn)  # warm the cache once, as a running system has it
            started = time.perf_counter()
            report = escrow_balances(conn)
            seconds = time.perf_counter() - started
        engine.dispose()
    assert report.holds == holds
    return {"holds": holds, "recipients": len(report.recipients), "seconds": round(seconds, 3)}


def claim_benchmark(url: str, holds: int) -> dict[str, Any]:
    """One creator signs in and claims `holds` holds from 1,000 supporters."""
    with Scratch(url) as scratch:
        engine = make_engine(scratch)
        seed_supporters(engine, 1000, deposit_minor=100 * holds)
        seed_creators(engine, 1, 20_000_000)
        seed_holds(engine, holds, account_ids(engine, 1, 1000), account_ids(engine, 20_000_000, 1))
        _analyze(engine)
        ledger = Ledger(engine, Policy(), lambda: datetime(2026, 1, 2, tzinfo=UTC))
        started = time.perf_counter()
        result = ledger.claim(Identity.x("20000000"))
        seconds = time.perf_counter() - started
        problems = ledger.check_ledger()
        engine.dispose()
    assert result.tips == holds and not problems, (result, problems[:3])
    return {"holds": holds, "seconds": round(seconds, 3)}


def parse_benchmark(tweets: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("parse.py")),
            "--tweets",
            str(tweets),
            "--rounds",
            "3",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    return {"tweets_per_s": report["tweets_per_s"], "tweets": tweets}


def _analyze(engine: Any) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def _settlement(url: str, supporters: int) -> dict[str, Any]:
    r = run_settlement_benchmark(url, supporters, 20)
    return {
        "shares": r["shares"],
        "seconds": r["settle_seconds"],
        "shares_per_s": r["shares_per_second"],
        "peak_rss_mb": r["peak_rss_mb"],
        "workers": r["workers"],
    }


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="tipjar's benchmarks, one JSON object.")
    parser.add_argument("--quick", action="store_true", help="CI-sized: under 10 minutes")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL", ""))
    args = parser.parse_args()
    pg = args.database_url or None
    sqlite = "sqlite:///unused.db"

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    if args.quick:
        ingest_sizes, settle_sizes, holds, claim_holds = (
            (500, 1000, 2000),
            (50, 250, 500),
            100_000,
            10_000,
        )
    else:
        ingest_sizes, settle_sizes, holds, claim_holds = (
            (2000, 5000, 20_000),
            (500, 5000, 50_000),
            1_000_000,
            10_000,
        )
    started = time.perf_counter()
    out: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "goals": GOALS,
    }
    say("parse ...")
    out["parse"] = parse_benchmark(20_000 if args.quick else 100_000)
    say("pgbench ...")
    out["pgbench_tpcb_1client_tps"] = pgbench_tps(pg) if pg else None

    scaling: dict[str, Any] = {"ingest": {}, "settlement": {}}
    for name, url in (("sqlite", sqlite), ("postgres", pg)):
        if url is None:
            out[f"ingest.{name}"] = None
            out[f"settlement.{name}"] = None
            continue
        say(f"ingest on {name} ...")
        runs = [run_ingest_benchmark(url, n) for n in ingest_sizes]
        scaling["ingest"][name] = runs
        out[f"ingest.{name}"] = runs[-1]
        say(f"settlement on {name} ...")
        sruns = [_settlement(url, s) for s in settle_sizes]
        scaling["settlement"][name] = sruns
        out[f"settlement.{name}"] = sruns[-1]
    tps = out["pgbench_tpcb_1client_tps"]
    pg_ingest = out.get("ingest.postgres")
    out["ingest_ratio_vs_pgbench"] = (
        round(pg_ingest["tips_per_s"] / tps, 2) if pg_ingest and tps else None
    )
    report_url = pg or sqlite
    say("escrow report ...")
    out["escrow_report"] = escrow_report_benchmark(report_url, holds) | {
        "database": "postgres" if pg else "sqlite"
    }
    say("claim ...")
    out["claim"] = claim_benchmark(report_url, claim_holds) | {
        "database": "postgres" if pg else "sqlite"
    }
    out["scaling"] = scaling
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=None if args.json else 2))
    return out


if __name__ == "__main__":
    main()
