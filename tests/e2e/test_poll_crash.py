"""A `tipjar poll --once` process killed with SIGKILL in the middle of a large backlog.

The X it reads is the loopback sandbox (bot.platforms.x.sandbox) holding 800 mentions, the most X
serves; the poll walks them 40 per page and applies them 40 per transaction. It is killed
once while still reading pages and once after its first transactions committed; a last
run then finishes the backlog. Every tip must be applied exactly once: the number of
tips, every balance and the audit say so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.pool import NullPool

from bot.config import load_settings
from bot.listener import poll_once
from bot.platforms.x.sandbox import Sandbox
from bot.platforms.x.wiring import build_x_api
from escrow.audit import check_ledger
from escrow.db import make_engine, normalize_url
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.schema import mentions, tips
from escrow.service import Ledger

pytestmark = pytest.mark.slow

TIPJAR = Path(sys.executable).with_name("tipjar")
BACKLOG = 800
SUPPORTERS = 8
CREATORS = 16
PAGE = "40"
FUNDS_MINOR = 250_00  # each supporter gives €200 in all


def amount_minor(n: int) -> int:
    return 100 * (1 + n % 3)  # €1, €2 or €3


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def watcher(db_url: str) -> Engine:
    """A plain read-only view of the database: tipjar's SQLite engine starts every
    transaction with BEGIN IMMEDIATE, which would queue behind the poll's writes."""
    return create_engine(normalize_url(db_url), poolclass=NullPool)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the poll ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_a_poll_killed_mid_backlog_applies_every_tip_exactly_once(db_url, tmp_path):
    engine = make_engine(db_url)
    watch = watcher(db_url)
    ledger = Ledger(engine, Policy())
    with Sandbox(bot_username="flattr") as sandbox:
        world = sandbox.world
        supporters = [world.add_user(f"supporter{i}") for i in range(SUPPORTERS)]
        creators = [world.add_user(f"creator{i}") for i in range(CREATORS)]
        for s in supporters:
            ledger.deposit(Identity.x(s.id, s.username), Money(FUNDS_MINOR, "EUR"), f"r-{s.id}")
        given: Counter[str] = Counter()
        received: Counter[str] = Counter()
        for n in range(BACKLOG):
            supporter, creator = supporters[n % SUPPORTERS], creators[n % CREATORS]
            world.mention(supporter, f"@flattr @{creator.username} €{amount_minor(n) // 100}")
            given[supporter.id] += amount_minor(n)
            received[creator.id] += amount_minor(n)

        env = {k: v for k, v in os.environ.items() if not k.startswith(("X_", "DATABASE_URL"))}
        env |= sandbox.env() | {"DATABASE_URL": db_url, "LOG_LEVEL": "WARNING"}

        def start_poll() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [str(TIPJAR), "poll", "--once", "--page-size", PAGE, "--json"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )

        def pages_read() -> int:
            return len(world.requests_to(f"/2/users/{sandbox.bot_user.id}/mentions"))

        # 1. Killed while still walking the pages (slowed down a little): nothing committed.
        world.fail_next("/2/users/", None, count=12, delay=0.05)
        proc = start_poll()
        wait_for(lambda: pages_read() >= 3, proc, "reading three pages")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        world.clear_faults()
        assert count(engine, mentions) == 0 and count(engine, tips) == 0

        # 2. Killed after its first transactions committed.
        proc = start_poll()
        wait_for(lambda: count(watch, mentions) > 0, proc, "the first commit")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        committed = count(engine, mentions)
        assert 0 < committed < BACKLOG, "the kill must land in the middle of the backlog"
        assert count(engine, tips) == committed

        # 3. Run again to the end, then once more: nothing is left, nothing doubles.
        finished = subprocess.run(
            [str(TIPJAR), "poll", "--once", "--page-size", PAGE, "--json"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
        )
        assert finished.returncode == 0, finished.stderr.decode()
        report = json.loads(finished.stdout)
        assert report["processed"] == BACKLOG - committed
        settings = load_settings(env, env_file=None)
        again = poll_once(engine, build_x_api(settings), settings)
        assert again.ok and again.processed == 0

    assert count(engine, tips) == BACKLOG
    for s in supporters:
        view = ledger.account(Identity.x(s.id))
        assert view is not None
        assert (view.available_minor, view.reserved_minor) == (
            FUNDS_MINOR - given[s.id],
            given[s.id],
        )
    for c in creators:
        view = ledger.account(Identity.x(c.id))
        assert view is not None and view.held_for_minor == received[c.id]
    with engine.connect() as conn:
        assert check_ledger(conn) == []
    engine.dispose()
    watch.dispose()
