"""The ledger's self-check: recorded, run around settlement, and obeyed until a person looks."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select, update

from bot.cli import main
from bot.config import Settings
from bot.scheduler import Jobs
from escrow import selfcheck
from escrow.db import transaction
from escrow.flattrs import record_flattr
from escrow.ledger import Identity, Policy, find_account
from escrow.money import Money
from escrow.schema import accounts, audit_runs, shares
from escrow.selfcheck import LedgerUnsound
from escrow.service import Ledger
from escrow.settlement import settle

MARCH_10 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
IN_FEBRUARY = datetime(2026, 2, 14, 9, 0, tzinfo=UTC)
ALICE = Identity.x("101", "alice")
BOB = Identity.x("202", "bob")


def clock() -> datetime:
    return MARCH_10


@pytest.fixture
def ledger(engine: Engine) -> Ledger:
    book = Ledger(engine, Policy(), clock)
    book.deposit(ALICE, Money(1000, "EUR"), "ref-alice")
    transaction(
        engine,
        lambda conn: record_flattr(conn, Policy(), ALICE, BOB, IN_FEBRUARY, "t-1", MARCH_10),
    )
    return book


def _nudge(engine: Engine, by: int) -> None:
    """Make alice's cached counter disagree with her transfers (or agree again)."""
    with engine.begin() as conn:
        conn.execute(
            update(accounts)
            .where(accounts.c.platform_user_id == ALICE.user_id)
            .values(credits_posted=accounts.c.credits_posted + by)
        )


def _open_shares(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(shares.c.id).where(shares.c.state == "open")).all())


def _triggers(engine: Engine) -> list[tuple[str, bool]]:
    with engine.connect() as conn:
        rows = conn.execute(select(audit_runs.c.trigger, audit_runs.c.ok).order_by(audit_runs.c.id))
        return [(t, bool(ok)) for t, ok in rows]


def test_a_settlement_is_refused_while_the_last_self_check_failed(engine, ledger, db_url):
    _nudge(engine, +1)
    failed = selfcheck.run_check(engine, selfcheck.DAILY, clock)
    assert not failed.ok and failed.problems >= 1

    with pytest.raises(LedgerUnsound, match="tipjar audit"):
        settle(engine, Policy(), "2026-02", MARCH_10)
    assert _open_shares(engine) == 1
    assert ledger.account(ALICE).available_minor == 1001  # type: ignore[union-attr]  # nudged, untouched

    # Repaired, a clean check by the worker is not enough: a maintainer has to look.
    _nudge(engine, -1)
    assert selfcheck.run_check(engine, selfcheck.DAILY, clock).ok
    with pytest.raises(LedgerUnsound):
        settle(engine, Policy(), "2026-02", MARCH_10)

    audited = CliRunner().invoke(main, ["audit", "--json"], env={"DATABASE_URL": db_url})
    assert audited.exit_code == 0 and json.loads(audited.stdout)["ok"] is True

    summary = settle(engine, Policy(), "2026-02", MARCH_10)
    assert summary.shares == 1 and _open_shares(engine) == 0
    assert _triggers(engine)[-1] == ("maintainer", True)


def test_a_failed_maintainer_audit_is_recorded_and_stops_settlement_too(engine, ledger, db_url):
    _nudge(engine, +1)

    audited = CliRunner().invoke(main, ["audit"], env={"DATABASE_URL": db_url})
    settled = CliRunner().invoke(
        main, ["settle", "--period", "2026-02"], env={"DATABASE_URL": db_url}
    )

    assert audited.exit_code == 1 and "problem:" in audited.stdout
    assert settled.exit_code == 1 and "settlement is stopped" in settled.stderr
    assert _open_shares(engine) == 1
    assert ("maintainer", False) in _triggers(engine)


def _jobs(engine: Engine) -> Jobs:
    return Jobs(Settings(), engine, None, clock, threading.Event())  # type: ignore[arg-type]


def test_the_worker_checks_the_ledger_before_and_after_it_settles(engine, ledger):
    _jobs(engine).checked_settlement()

    assert _open_shares(engine) == 0
    assert _triggers(engine) == [("before_settlement", True), ("after_settlement", True)]


def test_the_worker_does_not_settle_when_the_check_before_fails(engine, ledger, caplog):
    _nudge(engine, +1)

    _jobs(engine).checked_settlement()

    assert _open_shares(engine) == 1
    assert _triggers(engine) == [("before_settlement", False)]
    assert "settlement is stopped" in caplog.text


def test_the_daily_self_check_is_recorded_with_its_problems(engine, ledger):
    _nudge(engine, +1)

    _jobs(engine).self_check()

    with engine.connect() as conn:
        run = selfcheck.last_run(conn)
        alice = find_account(conn, ALICE)
    assert run is not None and run.trigger == "daily" and not run.ok
    assert alice is not None and any(f"account {alice.id}" in p.message for p in run.details)
