"""`tipjar settle` and `tipjar accounts set-budget`, run as the maintainer runs them.

Each test spawns the installed `tipjar` console script against a migrated database (SQLite,
and PostgreSQL when TEST_DATABASE_URL is set) and reads its exit code, stdout and stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from escrow.db import make_engine
from escrow.flattrs import get_budget, record_flattr, set_budget
from escrow.ledger import Identity, Policy, find_account
from escrow.money import Money
from escrow.schema import settlement_runs
from escrow.service import Ledger

TIPJAR = str(Path(sys.executable).with_name("tipjar"))
SUMMARY_KEYS = {
    "period",
    "supporters_settled",
    "shares",
    "total_posted_minor",
    "total_held_minor",
    "total_fees_minor",
    "unfunded_shares",
    "already_settled",
}

pytestmark = pytest.mark.slow


@pytest.fixture
def tipjar(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "DATABASE_URL": db_url,
            **env,
        }
        return subprocess.run(
            [TIPJAR, *args],
            cwd=tmp_path,  # no stray .env
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def one_line_reason(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def ledger(db_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(db_url)
    try:
        yield Ledger(engine, Policy(), lambda: datetime(2026, 3, 15, tzinfo=UTC))
    finally:
        engine.dispose()


def test_set_budget_keeps_a_supporters_monthly_budget(tipjar, ledger):
    ledger.deposit(Identity.x("1"), Money(1000), "r-1")
    result = tipjar("accounts", "set-budget", "x:1", "5.00", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "platform": "x",
        "user_id": "1",
        "handle": None,
        "monthly_budget_minor": 500,
    }
    assert (
        ledger.run(lambda conn, now: get_budget(conn, find_account(conn, Identity.x("1")).id))
        == 500
    )


def test_a_budget_below_the_minimum_exits_2_with_a_one_line_reason(tipjar):
    result = tipjar("accounts", "set-budget", "x:1", "1.50")
    assert result.returncode == 2
    assert "at least €2.00" in one_line_reason(result)
    raised = tipjar("accounts", "set-budget", "x:1", "2.50", MIN_MONTHLY_BUDGET="3.00")
    assert raised.returncode == 2 and "at least €3.00" in one_line_reason(raised)


def test_settle_prints_the_months_summary_and_a_rerun_changes_nothing(tipjar, ledger):
    alice = Identity.x("1")
    ledger.deposit(alice, Money(1000), "r-1")

    def flattrs(conn, now):  # type: ignore[no-untyped-def]
        set_budget(conn, ledger.policy, alice, Money(300), Money(200), now)
        for creator in ("2", "3"):
            record_flattr(conn, ledger.policy, alice, Identity.x(creator), now, f"t-{creator}", now)

    ledger.run(flattrs)

    nobody = tipjar("settle", "--period", "2026-03", "--workers", "0")
    assert nobody.returncode == 2 and "--workers" in one_line_reason(nobody)
    first = tipjar("settle", "--period", "2026-03", "--workers", "2", "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert set(summary) == SUMMARY_KEYS
    assert summary == {
        "period": "2026-03",
        "supporters_settled": 1,
        "shares": 2,
        "total_posted_minor": 0,
        "total_held_minor": 300,
        "total_fees_minor": 0,
        "unfunded_shares": 0,
        "already_settled": False,
    }
    again = tipjar("settle", "--period", "2026-03")
    assert again.returncode == 0
    assert again.stdout.splitlines() == [
        "2026-03 was already settled; nothing changed",
        "2026-03: 1 supporters, 2 shares; €0.00 posted (fees €0.00), €3.00 held;"
        " 0 shares unfunded, 0 refused",
    ]
    shown = ledger.account(alice)
    assert (shown.available_minor, shown.reserved_minor) == (700, 300)
    assert ledger.check_ledger() == []


def test_a_month_that_has_not_ended_exits_2_with_a_one_line_reason(tipjar, ledger):
    this_month = datetime.now(UTC).strftime("%Y-%m")
    result = tipjar("settle", "--period", this_month, "--json")
    assert result.returncode == 2
    assert "has not ended" in one_line_reason(result)
    assert result.stdout == ""
    malformed = tipjar("settle", "--period", "2026-3")
    assert malformed.returncode == 2 and "not a month" in one_line_reason(malformed)
    with ledger.engine.connect() as conn:
        assert conn.execute(select(settlement_runs)).all() == []
