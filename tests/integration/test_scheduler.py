"""The worker: its jobs, the one-active-scheduler lock, standby take-over and clean stops.

Workers run in threads here against the in-memory X; tests/e2e/test_worker_failover.py
runs real `tipjar worker` processes against PostgreSQL and kills one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, func, select

from bot import scheduler as worker
from bot.config import Settings
from bot.listener import CURSOR_KEY, poll_once
from bot.scheduler import (
    FileLock,
    Jobs,
    PostgresAdvisoryLock,
    build_scheduler,
    run_worker,
    worker_lock,
)
from bot.state import get_state
from escrow.db import make_engine
from escrow.ledger import Identity, Policy, utcnow
from escrow.money import Money
from escrow.schema import mentions, outbox
from escrow.service import Ledger
from tests.support.fake_x import FakeXApi

BOT_ID = "999"
SETTINGS = Settings(
    x_bot_username="flattr",
    x_bot_user_id=BOT_ID,
    public_base_url="https://tipjar.example",
    poll_interval=timedelta(seconds=1),
)


def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def x_with_a_tip(engine: Engine, creator: str = "bob") -> FakeXApi:
    x = FakeXApi(bot_username="flattr", bot_user_id=BOT_ID)
    alice = x.add_user("alice")
    x.add_user(creator)
    Ledger(engine, Policy()).deposit(Identity.x(alice.user_id, "alice"), Money(500), "ref-alice")
    x.add_mention("alice", f"@flattr @{creator} €1")
    # Polled a day ago: a tip counts for a notice once it has stood a day.
    poll_once(engine, x, SETTINGS, clock=lambda: utcnow() - timedelta(days=1))
    return x


class LaterClock:
    """The real clock, plus however many days the test has let pass."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> Any:
        return utcnow() + self.offset

    def a_day_passes(self) -> None:
        self.offset += timedelta(days=1)


def polled(engine: Engine, count: int) -> Callable[[], bool]:
    def check() -> bool:
        with engine.connect() as conn:
            return (
                int(conn.execute(select(func.count()).select_from(mentions)).scalar_one()) >= count
            )

    return check


class Worker:
    """`run_worker` in a thread, stopped by its event."""

    def __init__(self, engine: Engine, x: FakeXApi, **kw: Any) -> None:
        self.stop = threading.Event()
        self.code: int | None = None
        kw.setdefault("standby_retry", 0.05)

        def run() -> None:
            self.code = run_worker(
                SETTINGS, engine=engine, platform=x, stop=self.stop, handle_signals=False, **kw
            )

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self, timeout: float = 10.0) -> int | None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"
        return self.code


def sent_notices(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(outbox)
                .where(outbox.c.kind == "creator_notice", outbox.c.state == "sent")
            ).scalar_one()
        )


# --------------------------------------------------------------------------- configuration


def test_the_scheduler_runs_every_job_in_utc_coalesced_and_never_beside_itself(engine):
    jobs = Jobs(SETTINGS, engine, FakeXApi(), utcnow, threading.Event())
    scheduler = build_scheduler(jobs, SETTINGS)

    assert str(scheduler.timezone) == "UTC"
    by_id = {job.id: job for job in scheduler.get_jobs()}
    assert set(by_id) == {
        "poll",
        "notices",
        "release_sweep",
        "expiry",
        "self_check",
        "settlement",
    }
    assert all(job.coalesce and job.max_instances == 1 for job in by_id.values())
    intervals = {
        name: by_id[name].trigger.interval
        for name in ("poll", "notices", "release_sweep", "expiry", "self_check")
        if isinstance(by_id[name].trigger, IntervalTrigger)
    }
    assert intervals == {
        "poll": timedelta(seconds=1),
        "notices": timedelta(minutes=1),
        "release_sweep": timedelta(minutes=5),
        "expiry": timedelta(hours=1),
        "self_check": timedelta(days=1),
    }
    monthly = by_id["settlement"].trigger
    assert isinstance(monthly, CronTrigger)
    fields = {f.name: str(f) for f in monthly.fields}
    assert (fields["day"], fields["hour"], fields["minute"]) == ("1", "0", "15")


def test_the_settlement_job_settles_ended_months_or_says_it_cannot(engine, monkeypatch, caplog):
    jobs = Jobs(SETTINGS, engine, FakeXApi(), utcnow, threading.Event())
    calls: list[dict[str, Any]] = []

    def settle_due(engine: Engine, policy: Policy, now: Any, *, default_budget_minor: int) -> list:
        calls.append({"budget": default_budget_minor})
        return []

    monkeypatch.setattr(worker, "settlement_entry_point", lambda: settle_due)
    jobs.settlement()
    assert calls == [{"budget": SETTINGS.min_monthly_budget_minor}]

    monkeypatch.setattr(worker, "settlement_entry_point", lambda: None)
    with caplog.at_level(logging.WARNING, logger="bot.scheduler"):
        jobs.settlement()
    assert "not available" in caplog.text


# --------------------------------------------------------------------------- the lock


def test_a_second_sqlite_worker_cannot_take_the_file_lock_until_the_first_lets_go(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'tipjar.db'}")
    first, second = worker_lock(engine), worker_lock(engine)
    assert isinstance(first, FileLock) and first.path.name.endswith(".db.worker.lock")

    assert first.acquire() and first.still_held()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


def test_a_second_postgres_worker_cannot_take_the_advisory_lock_until_the_first_lets_go(
    pg_engine,
):
    first, second = worker_lock(pg_engine), worker_lock(pg_engine)
    assert isinstance(first, PostgresAdvisoryLock)

    assert first.acquire() and first.still_held()
    assert not second.acquire() and not second.still_held()
    first.release()
    assert second.acquire() and second.still_held()
    second.release()


# --------------------------------------------------------------------------- running


def test_a_worker_polls_posts_the_notice_and_stops_when_asked(engine):
    x = x_with_a_tip(engine)

    running = Worker(engine, x)
    eventually(lambda: len(x.posted) == 1)
    assert running.finish() == 0

    ((text, thread),) = x.posted
    assert "€1.00" in text and thread == x.calls_to("reply")[0][1]
    assert sent_notices(engine) == 1
    assert worker_lock(engine).acquire()  # released on the way out


def test_a_standby_worker_takes_over_when_the_active_one_stops(engine, caplog):
    x = x_with_a_tip(engine)
    clock = LaterClock()
    caplog.set_level(logging.INFO, logger="bot.scheduler")
    first = Worker(engine, x, clock=clock)
    eventually(lambda: len(x.posted) == 1)
    second = Worker(engine, x, clock=clock)
    eventually(lambda: "standby" in caplog.text)

    assert first.finish() == 0
    eventually(lambda: caplog.text.count("scheduler active") == 2)
    x.add_user("carol")
    x.add_mention("alice", "@flattr @carol €2")
    eventually(polled(engine, 2))
    clock.a_day_passes()  # carol's tip has stood a day; a new tip makes the worker plan now
    x.add_user("dave")
    x.add_mention("alice", "@flattr @dave €1")
    eventually(lambda: len(x.posted) == 2)
    assert second.finish() == 0
    assert len({text for text, _thread in x.posted}) == 2 and sent_notices(engine) == 2


class LosableLock:
    """A lock that is taken away (as when the database drops the session)."""

    def __init__(self) -> None:
        self.held = False

    def acquire(self) -> bool:
        self.held = True
        return True

    def still_held(self) -> bool:
        return self.held

    def release(self) -> None:
        self.held = False


def test_a_worker_that_loses_its_lock_stops_with_an_error(engine):
    lock = LosableLock()
    running = Worker(engine, FakeXApi(), lock=lock, lock_check_seconds=0.1)
    eventually(lambda: lock.held)

    lock.held = False

    running.thread.join(10)
    assert not running.thread.is_alive() and running.code == 1


def test_a_poll_asked_to_stop_finishes_its_transaction_and_keeps_its_place(engine):
    x = FakeXApi(bot_username="flattr", bot_user_id=BOT_ID)
    x.add_user("bob")
    for _ in range(12):
        x.add_mention("alice", "@flattr @bob thanks")
    asked: list[int] = []

    def stop_after_the_first_chunk() -> bool:
        asked.append(1)
        return len(asked) > 1

    first = poll_once(engine, x, SETTINGS, page_size=5, should_stop=stop_after_the_first_chunk)

    assert first.interrupted and first.processed == 5
    with engine.connect() as conn:
        assert get_state(conn, CURSOR_KEY) == first.cursor
    rest = poll_once(engine, x, SETTINGS, page_size=5)
    assert rest.processed == 7 and not rest.interrupted
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mentions)).scalar_one() == 12
