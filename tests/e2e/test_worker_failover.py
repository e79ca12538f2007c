"""Two `tipjar worker` processes on one PostgreSQL database, against the loopback X sandbox.

Only one of them runs the scheduler; the other waits as a standby. The active one is
killed with SIGKILL (no chance to clean up); the standby takes over within seconds, and
no notice is ever posted twice (the sandbox records every post). SIGTERM ends the last
one cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import Engine, select, update

from bot.platforms.x.sandbox import Sandbox
from escrow.db import make_engine
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.schema import mentions, outbox, tips
from escrow.service import Ledger

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TIPJAR = Path(sys.executable).with_name("tipjar")


def sent_notices(engine: Engine) -> int:
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.id).where(outbox.c.state == "sent")).all()
    return len(rows)


def eventually(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Wait for `condition`; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            pytest.fail(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def polled(engine: Engine, count: int) -> Callable[[], bool]:
    def check() -> bool:
        with engine.connect() as conn:
            return len(conn.execute(select(mentions.c.tweet_id)).all()) >= count

    return check


def tips_stand_a_day(engine: Engine) -> None:
    """A tip counts for a notice once it has stood a day: move every tip a day back."""
    with engine.begin() as conn:
        for tip_id, created_at in list(conn.execute(select(tips.c.id, tips.c.created_at))):
            earlier = created_at - timedelta(days=1)
            conn.execute(update(tips).where(tips.c.id == tip_id).values(created_at=earlier))


class WorkerProcess:
    def __init__(self, name: str, env: dict[str, str], cwd: Path) -> None:
        self.log_path = cwd / f"{name}.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [str(TIPJAR), "worker"], env=env, cwd=cwd, stdout=self._log, stderr=self._log
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()


def test_one_worker_is_active_and_a_standby_takes_over_when_it_is_killed(pg_url, tmp_path):
    engine = make_engine(pg_url)
    with Sandbox(bot_username="flattr") as sandbox:
        world = sandbox.world
        alice = world.add_user("alice")
        world.add_user("bob")
        world.add_user("carol")
        Ledger(engine, Policy()).deposit(Identity.x(alice.id, "alice"), Money(1000), "ref-1")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("X_", "DATABASE_URL"))}
        env |= sandbox.env() | {
            "DATABASE_URL": pg_url,
            "POLL_INTERVAL": "1s",
            "LOG_LEVEL": "INFO",
            "PUBLIC_BASE_URL": "https://tipjar.example",
        }
        workers: list[WorkerProcess] = []
        try:
            first = WorkerProcess("first", env, tmp_path)
            workers.append(first)
            eventually(lambda: "scheduler active" in first.log, 15, "the first worker")
            second = WorkerProcess("second", env, tmp_path)
            workers.append(second)
            eventually(lambda: "standby" in second.log, 15, "the standby")

            to_bob = world.mention(alice, "@flattr @bob €1")
            eventually(polled(engine, 1), 10, "the tip to bob")
            tips_stand_a_day(engine)
            world.mention(alice, "@flattr @bob €0.50")  # a new tip: the worker plans now
            eventually(lambda: len(world.posted) == 1, 10, "the notice to bob")
            # Kill the active worker only once the relay has recorded the post: a kill
            # between X's answer and that commit leaves the row 'sending' until its lease
            # runs out (then X's duplicate-content answer closes it; tests/integration
            # covers that), which is not what this test is about.
            eventually(lambda: sent_notices(engine) == 1, 10, "the notice marked sent")
            assert "scheduler active" not in second.log

            first.stop(signal.SIGKILL)
            took = eventually(lambda: "scheduler active" in second.log, 10, "the take-over")
            assert took < 6

            to_carol = world.mention(alice, "@flattr @carol €2")
            eventually(polled(engine, 3), 10, "the tip to carol")
            tips_stand_a_day(engine)
            world.mention(alice, "@flattr @bob €0.50")
            eventually(lambda: len(world.posted) == 2, 10, "the notice to carol")
            time.sleep(1.5)  # more poll and notice rounds: nothing may be posted again
            assert second.stop(signal.SIGTERM) == 0
            assert "worker stopped" in second.log
        finally:
            for w in workers:
                if w.proc.poll() is None:
                    w.stop(signal.SIGKILL)

        posts = world.posted
        assert len(posts) == 2
        assert [p.in_reply_to for p in posts] == [to_bob.id, to_carol.id]
        assert "€1.00" in posts[0].text and "€2.00" in posts[1].text
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.kind, outbox.c.state, outbox.c.sent_tweet_id)).all()
    assert sorted(rows) == sorted(
        [("creator_notice", "sent", posts[0].id), ("creator_notice", "sent", posts[1].id)]
    )
    engine.dispose()
