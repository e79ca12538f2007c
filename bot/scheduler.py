"""The worker: one APScheduler 3 `BlockingScheduler` (UTC) running every recurring job.

Jobs (each idempotent, each safe to rerun, none sleeps: a 429 skips work until the reset):

- poll: `bot.listener.poll_once`, every `POLL_INTERVAL`; a poll that applied something
  runs the notices job at once, so the creator notice (the tip's confirmation) is not
  a minute late;
- notices: `bot.notices.plan_notices` then `bot.outbox.send_pending`, every minute;
- release sweep: `escrow.claims.release_sweep`, every 5 minutes;
- expiry: `escrow.expiry.expire_due`, hourly;
- settlement: `escrow.settlement.settle_due` for every ended, unsettled month, on the 1st
  of the month at 00:15 UTC (and once at start, to catch up a month the worker missed),
  with a ledger check before and after (`escrow.selfcheck`); a failed check stops it
  until a maintainer's `tipjar audit` is clean.
- payouts (when PAYOUT_PROVIDER is stripe): `bot.payments.payouts.run_relay` sends the due
  Stripe payouts, every minute;
- payout schedule (PAYOUT_SCHEDULE weekly: Mondays, monthly: the 1st, at 06:00 UTC, never
  at start): `schedule_payouts` asks for a payout of every payable creator's balance.
- self-check: `escrow.selfcheck.run_check`, daily: the ledger audited and the result
  recorded.

Each run is counted in the metrics (`bot.metrics.job_run`) and logs under its job's name
(`bot.logs.log_context`).

Every job also runs once when the scheduler becomes active. `coalesce=True` and
`max_instances=1`: a late job runs once, never beside itself.

Exactly one scheduler is active: it holds a PostgreSQL session-level advisory lock on a
dedicated connection for its whole life (on SQLite, an `fcntl.flock` on
`<database file>.worker.lock`). A second worker is a standby: it retries the lock every
few seconds and takes over when the first one dies (the database drops a dead session's
lock; the kernel drops a dead process's file lock). The active worker checks every few
seconds that it still holds the lock, and stops if it lost it (its connection dropped).
SIGTERM or SIGINT lets the running job finish its current transaction, then exits.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

from apscheduler.events import EVENT_SCHEDULER_STARTED
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from bot import app
from bot.config import Settings
from bot.listener import poll_once
from bot.logs import log_context
from bot.metrics import job_run
from bot.notices import NoticePlan, plan_notices
from bot.outbox import send_pending
from bot.platforms import Platform
from bot.status import record_poll
from escrow import selfcheck
from escrow.claims import release_sweep
from escrow.db import is_sqlite, transaction
from escrow.expiry import expire_due
from escrow.ledger import Clock, Policy, utcnow
from escrow.settlement import settle_due

log = logging.getLogger(__name__)

LOCK_KEY = 0x7469706A  # "tipj": the advisory lock every tipjar worker competes for
STANDBY_RETRY_SECONDS = 2.0
LOCK_CHECK_SECONDS = 5.0
NOTICES_EVERY = timedelta(minutes=1)
RELEASE_EVERY = timedelta(minutes=5)
EXPIRY_EVERY = timedelta(hours=1)
SELF_CHECK_EVERY = timedelta(days=1)
SEND_LIMIT = 50

JOB_POLL = "poll"
JOB_NOTICES = "notices"
JOB_RELEASE = "release_sweep"
JOB_EXPIRY = "expiry"
JOB_SETTLEMENT = "settlement"
JOB_SELF_CHECK = "self_check"
JOB_LOCK_CHECK = "lock_check"
JOB_PAYOUTS = "payouts"
JOB_PAYOUT_SCHEDULE = "payout_schedule"
PAYOUTS_EVERY = timedelta(minutes=1)
PAYOUT_CRON: dict[str, dict[str, Any]] = {"weekly": {"day_of_week": "mon"}, "monthly": {"day": 1}}


# --------------------------------------------------------------------------- the lock


class WorkerLock(Protocol):
    def acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...


class PostgresAdvisoryLock:
    """A session-level advisory lock on a connection kept for the worker's life."""

    def __init__(self, engine: Engine, key: int = LOCK_KEY) -> None:
        self._engine = engine
        self._key = key
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
            got = bool(
                self._conn.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
                ).scalar_one()
            )
            self._conn.commit()  # the lock is the session's; no transaction stays open
        except Exception:
            log.warning("could not ask the database for the worker lock", exc_info=True)
            self._drop()
            return False
        if not got:
            self._drop()  # a standby holds no connection while it waits
        return got

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            held = self._conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                    " AND pid = pg_backend_pid() AND granted"
                    " AND classid = 0 AND objid = :key AND objsubid = 1"
                ),
                {"key": self._key},
            ).scalar_one()
            self._conn.commit()
        except Exception:
            log.error("the worker lock's connection failed", exc_info=True)
            return False
        return bool(held)

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
                self._conn.commit()
            except Exception:  # the session is gone, and its lock with it
                log.debug("unlock failed", exc_info=True)
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                log.debug("closing the lock connection failed", exc_info=True)
            self._conn = None


class FileLock:
    """An exclusive `flock` on a file beside the SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        handle = open(self.path, "a+b")  # held open for the worker's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        self._file = handle
        return True

    def still_held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def worker_lock(engine: Engine) -> WorkerLock:
    if is_sqlite(engine):
        database = make_url(str(engine.url)).database or "tipjar.db"
        return FileLock(Path(database).resolve().with_name(Path(database).name + ".worker.lock"))
    return PostgresAdvisoryLock(engine)


# --------------------------------------------------------------------------- the jobs


@dataclass
class Jobs:
    """The recurring work, bound to one engine, platform and clock."""

    settings: Settings
    engine: Engine
    platform: Platform
    clock: Clock
    stop: threading.Event
    # More platforms served by this one worker (PLATFORMS=x,mastodon): each is polled and
    # relayed in turn, with its own cursor and its own rate limits.
    others: tuple[Platform, ...] = ()
    after_poll: Callable[[], None] | None = None
    lock_lost: bool = False
    stopper: threading.Thread | None = None  # shuts the scheduler down once `stop` is set
    _notices_guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _notices_running: bool = False
    _notices_again: bool = False
    _connect: Any = None  # the Stripe Connect gateway, built on first use

    @property
    def policy(self) -> Policy:
        return app.policy(self.settings)

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return (self.platform, *self.others)

    def poll(self) -> None:
        wants_notices = False
        for platform in self.platforms:
            if self.stop.is_set():
                break
            with log_context(platform=platform.name):
                result = poll_once(
                    self.engine, platform, self.settings, clock=self.clock, should_stop=self.stop
                )
            record_poll(
                self.engine,
                platform.name,
                result.mentions_seen,
                result.outcomes,
                ok=result.ok and result.rate_limited_until is None,
                now=self.clock(),
                missed_window=result.missed_window,
            )
            if result.error:
                log.warning("poll %s: %s", platform.name, result.error)
            elif result.processed:
                log.info(
                    "poll %s: %d new mention(s), %d tip(s) applied",
                    platform.name,
                    result.processed,
                    result.tips_applied,
                )
            wants_notices = wants_notices or bool(result.tips_applied or result.replies_queued)
        if wants_notices and self.after_poll is not None:
            self.after_poll()

    def notices(self) -> None:
        """Plan and send; once more if a poll asked for notices while this was running."""
        with self._notices_guard:
            self._notices_running, self._notices_again = True, False
        try:
            while True:
                self._notices_once()
                with self._notices_guard:
                    if not self._notices_again or self.stop.is_set():
                        return
                    self._notices_again = False
        finally:
            with self._notices_guard:
                self._notices_running = False

    def want_notices(self) -> bool:
        """Ask for a notices run now; True when the caller must schedule it (none running)."""
        with self._notices_guard:
            if self._notices_running:
                self._notices_again = True
                return False
            return True

    def _notices_once(self) -> None:
        now = self.clock()
        try:
            plan = transaction(self.engine, lambda conn: plan_notices(conn, self.settings, now))
        except Exception:
            # Planning is a pure function of the database: the next run tries again, and
            # what is already in the outbox (replies, older notices) still goes out.
            log.exception("notices: planning failed")
            plan = NoticePlan()
        for platform in self.platforms:
            sent = send_pending(
                self.engine,
                platform,
                self.clock(),
                SEND_LIMIT,
                should_stop=self.stop,
                settings=self.settings,
            )
            if plan.planned or sent.sent or sent.failed:
                log.info(
                    "notices %s: %d planned, %d sent, %d failed, %d skipped",
                    platform.name,
                    plan.planned,
                    sent.sent,
                    sent.failed,
                    sent.skipped,
                )

    def release_sweep(self) -> None:
        posted = transaction(
            self.engine, lambda conn: release_sweep(conn, self.policy, self.clock())
        )
        if posted:
            log.info("release sweep: %d hold(s) posted to claimed creators", posted)

    def expiry(self) -> None:
        run = expire_due(self.engine, self.policy, self.clock())
        if run.voided:
            log.info("expiry: %d hold(s) returned to supporters", run.voided)

    def settlement(self) -> None:
        settle = settlement_entry_point()
        if settle is None:
            log.warning("settlement: escrow.settlement.settle_due is not available; skipped")
            return
        settled = settle(
            self.engine,
            self.policy,
            self.clock(),
            default_budget_minor=self.settings.min_monthly_budget_minor,
        )
        for summary in settled or ():
            log.info("settlement: %s", summary)

    def payouts(self) -> None:
        """Send the Stripe payouts that are due (each with its own idempotency key)."""
        if self.settings.payout_method != "stripe":
            return
        from bot.payments.payouts import ConnectGateway, run_relay

        if self._connect is None:
            self._connect = ConnectGateway(self.settings)
        try:
            run = run_relay(self.engine, self._connect, self.clock)
        except selfcheck.LedgerUnsound as e:
            log.error("payouts: %s", e)
            return
        if run.sent or run.refused or run.retry:
            log.info("payouts: %s", run)

    def payout_schedule(self) -> None:
        """Pay every payable creator's balance (PAYOUT_SCHEDULE weekly or monthly)."""
        from bot.payments.payouts import schedule_payouts

        try:
            made = schedule_payouts(self.engine, self.settings, self.policy, self.clock)
        except selfcheck.LedgerUnsound as e:
            log.error("payout schedule: %s", e)
            return
        log.info("payout schedule: %d payout(s) requested", len(made))
        self.payouts()

    def self_check(self) -> None:
        run = selfcheck.run_check(self.engine, selfcheck.DAILY, self.clock)
        if not run.ok:
            log.error(
                "self-check: the ledger has %d problem(s); settlement stops until"
                " `tipjar audit` is clean",
                run.problems,
            )

    def checked_settlement(self) -> None:
        """The settlement between two ledger checks, as liberapay's payday does."""
        try:
            _, after = selfcheck.around_settlement(self.engine, self.clock, self.settlement)
        except selfcheck.LedgerUnsound as e:
            log.error("settlement: %s", e)
            return
        if not after.ok:
            log.error("settlement: the ledger check after it found %d problem(s)", after.problems)


def instrumented(job_id: str, func: Callable[[], None]) -> Callable[[], None]:
    """`func` counted in the metrics and logging under the job's name."""

    def run() -> None:
        with log_context(job=job_id), job_run(job_id):
            func()

    run.__name__ = run.__qualname__ = f"{job_id}_job"
    return run


def settlement_entry_point() -> Callable[..., Any] | None:
    """The settlement run the job calls (a seam: tests replace it, or remove it with None)."""
    return settle_due


def build_scheduler(
    jobs: Jobs,
    settings: Settings,
    lock: WorkerLock | None = None,
    *,
    lock_check_seconds: float = LOCK_CHECK_SECONDS,
) -> Any:
    """A UTC BlockingScheduler with every job, each also due at once."""
    once = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
    scheduler = BlockingScheduler(timezone="UTC", job_defaults=once)
    now = datetime.now(scheduler.timezone)
    every = {
        JOB_POLL: (jobs.poll, max(timedelta(seconds=1), settings.poll_interval)),
        JOB_NOTICES: (jobs.notices, NOTICES_EVERY),
        JOB_RELEASE: (jobs.release_sweep, RELEASE_EVERY),
        JOB_EXPIRY: (jobs.expiry, EXPIRY_EVERY),
        JOB_SELF_CHECK: (jobs.self_check, SELF_CHECK_EVERY),
    }
    for job_id, (func, interval) in every.items():
        scheduler.add_job(
            instrumented(job_id, func),
            IntervalTrigger(seconds=interval.total_seconds()),
            id=job_id,
            next_run_time=now,
            **once,
        )
    scheduler.add_job(
        instrumented(JOB_SETTLEMENT, jobs.checked_settlement),
        CronTrigger(day=1, hour=0, minute=15, timezone="UTC"),
        id=JOB_SETTLEMENT,
        next_run_time=now,
        **{**once, "misfire_grace_time": None},  # a missed month-end must still be settled
    )

    if settings.payout_method != "off":
        _add_payout_jobs(scheduler, jobs, settings, now, once)

    def run_notices_now() -> None:
        # A poll that applied tips wants their notices out now, not at the next minute.
        job = scheduler.get_job(JOB_NOTICES)
        if job is not None and jobs.want_notices():
            job.modify(next_run_time=datetime.now(scheduler.timezone))
            scheduler.wakeup()

    jobs.after_poll = run_notices_now
    if lock is not None:

        def check_lock() -> None:
            if not lock.still_held():
                log.error("the worker lock was lost: stopping so that a standby can take over")
                jobs.lock_lost = True
                jobs.stop.set()

        scheduler.add_job(
            check_lock, IntervalTrigger(seconds=lock_check_seconds), id=JOB_LOCK_CHECK
        )

    def stop_when_asked(_event: Any) -> None:
        def watch() -> None:
            jobs.stop.wait()
            # Waits for the running job; jobs check `stop` between their transactions.
            scheduler.shutdown(wait=True)

        jobs.stopper = threading.Thread(target=watch, name="tipjar-stop-watch", daemon=True)
        jobs.stopper.start()

    scheduler.add_listener(stop_when_asked, EVENT_SCHEDULER_STARTED)
    return scheduler


def _add_payout_jobs(
    scheduler: Any, jobs: Jobs, settings: Settings, now: datetime, once: dict[str, Any]
) -> None:
    if settings.payout_method == "stripe":
        scheduler.add_job(
            jobs.payouts,
            IntervalTrigger(seconds=PAYOUTS_EVERY.total_seconds()),
            id=JOB_PAYOUTS,
            next_run_time=now,
            **once,
        )
    if settings.payout_schedule in PAYOUT_CRON:
        # Not at start: a restart must not pay creators outside the schedule.
        scheduler.add_job(
            jobs.payout_schedule,
            CronTrigger(hour=6, minute=0, timezone="UTC", **PAYOUT_CRON[settings.payout_schedule]),
            id=JOB_PAYOUT_SCHEDULE,
            **once,
        )


# --------------------------------------------------------------------------- the process


def run_worker(
    settings: Settings,
    *,
    engine: Engine | None = None,
    platform: Platform,
    others: tuple[Platform, ...] = (),
    clock: Clock = utcnow,
    standby_retry: float = STANDBY_RETRY_SECONDS,
    stop: threading.Event | None = None,
    handle_signals: bool = True,
    lock: WorkerLock | None = None,
    lock_check_seconds: float = LOCK_CHECK_SECONDS,
) -> int:
    """Wait for the worker lock, then run the scheduler until stopped; the exit code.

    0 after SIGTERM/SIGINT (or `stop`), 1 when the lock was lost under a running scheduler.
    """
    eng = engine or app.engine(settings)
    stop = stop or threading.Event()
    lock = lock or worker_lock(eng)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Only a flag: the scheduler is shut down from a thread, never from a handler.
        log.info("signal %d: finishing the running job, then exiting", signum)
        stop.set()

    if handle_signals:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    said_standby = False
    while not lock.acquire():
        if not said_standby:
            log.info("standby: another worker holds the scheduler lock; retrying")
            said_standby = True
        if stop.wait(standby_retry):
            log.info("stopped while on standby")
            return 0
    jobs = Jobs(settings, eng, platform, clock, stop, others)
    try:
        log.info("scheduler active (pid %d)", os.getpid())
        scheduler = build_scheduler(jobs, settings, lock, lock_check_seconds=lock_check_seconds)
        if not stop.is_set():
            scheduler.start()
        if jobs.stopper is not None:
            # The main loop ends as soon as shutdown begins; the running job's transaction
            # ends a little later. Keep the lock until it has, so no standby overlaps it.
            jobs.stopper.join()
    finally:
        lock.release()
    log.info("worker stopped")
    return 1 if jobs.lock_lost else 0
