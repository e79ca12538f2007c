"""Ingest and settlement, this tree against another commit, in one run: before and after.

    .venv/bin/python benchmarks/compare.py --base 03397ed                # SQLite only
    .venv/bin/python benchmarks/compare.py --base 03397ed --rounds 9 \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres

The base commit is checked out into a temporary git worktree (removed afterwards) and both
trees run the benchmark code each has, with this project's virtualenv: the same listener
path (`benchmarks/ingest.py`) and the same month's settlement (`benchmarks/settlement.py`)
on each tree's own schema. Runs alternate base / this tree, so a machine that slows down
for a while slows both; each figure is the median of the rounds, with the spread printed
beside it. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Run inside the tree under test (cwd and PYTHONPATH): one measurement, one JSON line.
_CHILD = """
import json, sys
kind, url, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "ingest":
    from benchmarks.ingest import run_ingest_benchmark
    r = run_ingest_benchmark(url, size)
    print(json.dumps({"per_s": r["tips_per_s"]}))
else:
    from benchmarks.settlement import run_settlement_benchmark
    r = run_settlement_benchmark(url, size, 20)
    print(json.dumps({"per_s": r["shares_per_second"]}))
"""


def measure(tree: Path, kind: str, url: str, size: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, url, str(size)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} on {tree} failed:\n{out.stderr[-2000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["per_s"])


def compare(base: Path, urls: dict[str, str], rounds: int, sizes: dict[str, int]) -> list[Any]:
    figures: dict[tuple[str, str, str], list[float]] = {}
    for n in range(rounds):
        for kind, size in sizes.items():
            for db, url in urls.items():
                for label, tree in (("base", base), ("this", ROOT)):
                    value = measure(tree, kind, url, size)
                    figures.setdefault((kind, db, label), []).append(value)
        print(f"round {n + 1} of {rounds} done", file=sys.stderr, flush=True)
    rows = []
    for kind in sizes:
        for db in urls:
            before, after = figures[(kind, db, "base")], figures[(kind, db, "this")]
            b, a = statistics.median(before), statistics.median(after)
            rows.append(
                {
                    "benchmark": kind,
                    "database": db,
                    "base_median": b,
                    "this_median": a,
                    "change_pct": round((a - b) / b * 100, 1),
                    "base_runs": sorted(before),
                    "this_runs": sorted(after),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmarks: this tree against --base.")
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tips", type=int, default=5000, help="ingest size")
    parser.add_argument("--supporters", type=int, default=500, help="settlement size (x20)")
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL", ""))
    parser.add_argument("--only", choices=["ingest", "settlement"], help="one benchmark")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()
    urls = {} if args.no_sqlite else {"sqlite": "sqlite:///unused.db"}
    if args.database_url:
        urls["postgres"] = args.database_url
    sizes = {"ingest": args.tips, "settlement": args.supporters}
    if args.only:
        sizes = {args.only: sizes[args.only]}
    with tempfile.TemporaryDirectory(prefix="tipjar-base-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base],
            check=True,
            capture_output=True,
        )
        try:
            rows = compare(base, urls, args.rounds, sizes)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                check=False,
                capture_output=True,
            )
    unit = {"ingest": "tips/s", "settlement": "shares/s"}
    for r in rows:
        print(
            f"{r['benchmark']:<10} {r['database']:<8} base {r['base_median']:>8.0f}"
            f"  this {r['this_median']:>8.0f} {unit[r['benchmark']]:<8} {r['change_pct']:+.1f} %",
            file=sys.stderr,
        )
    print(json.dumps({"base": args.base, "rounds": args.rounds, "results": rows}))


if __name__ == "__main__":
    main()
