"""Payouts below the web pages: the real `stripe` client against the loopback Stripe sandbox,
Connect events through the real webhook receiver, the ledger on SQLite and PostgreSQL.

Each payout must leave the ledger exactly once: one Stripe transfer per payout, whatever
fails, is retried or is killed between Stripe's answer and our commit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from bot.config import Settings, load_settings
from bot.payments import payouts as relay
from bot.payments.sandbox import (
    CONNECT_WEBHOOK_SECRET,
    SECRET_KEY,
    WEBHOOK_SECRET,
    StripeSandbox,
)
from bot.payments.webhooks import receive_webhook
from escrow import claims, payouts, selfcheck
from escrow.audit import check_ledger
from escrow.db import transaction
from escrow.ledger import Identity, Policy, deposit, find_account, utcnow
from escrow.money import Money
from escrow.schema import accounts, payout_accounts, stripe_events
from escrow.schema import payouts as payouts_table
from tests.conftest import Clock

POLICY = Policy(currency="EUR", fee_percent=10, hold_period=timedelta(days=90))
BOB = Identity.x("2", "bob")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox() -> Iterator[StripeSandbox]:
    box = StripeSandbox()
    box.start()
    yield box
    box.stop()


def settings_for(base: str, **extra: str) -> Settings:
    return load_settings(
        {
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_CONNECT_WEBHOOK_SECRET": CONNECT_WEBHOOK_SECRET,
            "STRIPE_API_BASE": base,
            "PUBLIC_BASE_URL": "http://127.0.0.1:8000",
            "PAYOUT_MIN": "1.00",
            **extra,
        },
        env_file=None,
    )


@pytest.fixture
def wired(engine: Engine, sandbox: StripeSandbox, clock: Clock) -> StripeSandbox:
    """The sandbox delivering platform and Connect events straight into the receiver."""

    def deliver(body: bytes, header: str) -> int:
        return receive_webhook(engine, POLICY, clock, body, header, WEBHOOK_SECRET).status

    def deliver_connect(body: bytes, header: str) -> int:
        return receive_webhook(
            engine, POLICY, clock, body, header, CONNECT_WEBHOOK_SECRET, endpoint="connect"
        ).status

    sandbox.deliver, sandbox.deliver_connect = deliver, deliver_connect
    return sandbox


@pytest.fixture
def gateway(sandbox: StripeSandbox) -> relay.ConnectGateway:
    return relay.ConnectGateway(settings_for(sandbox.base_url))


def creator(engine: Engine, clock: Clock, who: Identity = BOB, minor: int = 1800) -> int:
    """A creator who signed in and received `minor`; their account id."""

    def work(conn: object) -> int:
        result = claims.claim(conn, POLICY, who, clock())  # type: ignore[arg-type]
        deposit(conn, POLICY, who, Money(minor, "EUR"), f"tips-{who.user_id}", clock())  # type: ignore[arg-type]
        return result.account_id

    return transaction(engine, work)


def connect(
    engine: Engine, gateway: relay.ConnectGateway, sandbox: StripeSandbox, clock: Clock, aid: int
) -> str:
    """The creator connects and finishes Stripe's onboarding; their connected account id."""
    url = relay.start_connect(engine, gateway, clock, aid)
    assert url.startswith(sandbox.base_url + "/onboard/acct_")
    account = url.split("/")[-2]
    sandbox.complete_onboarding(account)
    return account


def available(engine: Engine, who: Identity = BOB) -> int:
    with engine.connect() as conn:
        row = find_account(conn, who)
    assert row is not None
    return int(row.credits_posted - row.debits_posted - row.debits_pending)


def request(engine: Engine, clock: Clock, aid: int, minor: int) -> int:
    return transaction(
        engine,
        lambda conn: payouts.request_payout(
            conn, POLICY, aid, minor, provider="stripe", minimum_minor=100, now=clock()
        ),
    )


def payout(engine: Engine, payout_id: int) -> object:
    with engine.connect() as conn:
        return conn.execute(select(payouts_table).where(payouts_table.c.id == payout_id)).one()


def transfer_keys(sandbox: StripeSandbox) -> list[str | None]:
    return [key for _, path, _, key in sandbox.requests_seen if path == "/v1/transfers"]


def audit_clean(engine: Engine) -> None:
    with engine.connect() as conn:
        assert check_ledger(conn) == []


def test_a_connected_creator_is_paid_once_through_a_stripe_transfer(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    aid = creator(engine, clock)
    account = connect(engine, gateway, wired, clock, aid)
    with engine.connect() as conn:
        where = payouts.payout_account(conn, aid)
    assert where is not None and where.stripe_account_id == account and where.payouts_enabled
    created = wired.objects[account]
    assert created["metadata"] == {"tipjar_account": str(aid)}
    assert created["controller"]["stripe_dashboard"] == {"type": "express"}

    payout_id = request(engine, clock, aid, 1800)
    assert available(engine) == 0
    run = relay.run_relay(engine, gateway, clock)
    assert (run.sent, run.refused, run.retry) == (1, 0, 0)

    (made,) = wired.transfers()
    assert made["destination"] == account and made["amount"] == 1800
    assert made["metadata"] == {"tipjar_payout_id": str(payout_id)}
    assert transfer_keys(wired) == [f"payout-{payout_id}"]
    row = payout(engine, payout_id)
    assert (row.state, row.reference, row.attempts) == ("posted", made["id"], 1)  # type: ignore[attr-defined]
    assert relay.run_relay(engine, gateway, clock).sent == 0
    with engine.connect() as conn:
        assert payouts.totals(conn, aid) == payouts.PayoutTotals(1800, 0)
    audit_clean(engine)


def test_stripe_down_is_retried_later_with_the_same_key_and_pays_once(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    aid = creator(engine, clock)
    connect(engine, gateway, wired, clock, aid)
    payout_id = request(engine, clock, aid, 1500)
    wired.faults = [500]
    assert relay.run_relay(engine, gateway, clock).retry == 1
    row = payout(engine, payout_id)
    assert row.state == "pending" and row.attempts == 1 and "Stripe unavailable" in row.last_error  # type: ignore[attr-defined]
    assert row.next_attempt_at == clock() + timedelta(seconds=30)  # type: ignore[attr-defined]
    assert relay.run_relay(engine, gateway, clock).sent == 0  # not due yet
    clock.advance(seconds=31)
    assert relay.run_relay(engine, gateway, clock).sent == 1
    assert transfer_keys(wired) == [f"payout-{payout_id}"] * 2
    assert len(wired.transfers()) == 1
    assert payout(engine, payout_id).state == "posted"  # type: ignore[attr-defined]
    assert available(engine) == 300
    audit_clean(engine)


def test_the_backoff_doubles_from_30_seconds_up_to_an_hour() -> None:
    waits = [payouts.backoff(n).total_seconds() for n in range(1, 10)]
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_a_permanent_refusal_voids_the_payout_and_gives_the_money_back(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    aid = creator(engine, clock)
    account = connect(engine, gateway, wired, clock, aid)
    wired.objects[account]["capabilities"]["transfers"] = "inactive"  # Stripe says no
    payout_id = request(engine, clock, aid, 1800)
    assert relay.run_relay(engine, gateway, clock).refused == 1
    row = payout(engine, payout_id)
    assert row.state == "voided" and "Stripe refused" in row.last_error  # type: ignore[attr-defined]
    assert wired.transfers() == []
    assert available(engine) == 1800
    audit_clean(engine)


def test_a_reversed_transfer_gives_the_money_back_once(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    aid = creator(engine, clock)
    connect(engine, gateway, wired, clock, aid)
    payout_id = request(engine, clock, aid, 1800)
    relay.run_relay(engine, gateway, clock)
    (made,) = wired.transfers()
    wired.reverse_transfer(made["id"], 800)
    assert available(engine) == 800
    event = wired.events[-1]
    assert event["type"] == "transfer.reversed"
    wired.send(event)  # Stripe may deliver it again
    assert available(engine) == 800
    wired.reverse_transfer(made["id"])  # the rest
    assert available(engine) == 1800
    row = payout(engine, payout_id)
    assert (row.state, row.reversed_minor) == ("posted", 1800)  # type: ignore[attr-defined]
    with engine.connect() as conn:
        assert payouts.totals(conn, aid) == payouts.PayoutTotals(0, 0)
    audit_clean(engine)


def test_deauthorizing_disconnects_and_a_creator_without_payouts_enabled_is_refused(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    aid = creator(engine, clock)
    url = relay.start_connect(engine, gateway, clock, aid)
    account = url.split("/")[-2]
    with pytest.raises(payouts.PayoutError, match="does not let your account receive payouts"):
        request(engine, clock, aid, 1000)
    # Asking again (a second tab, an expired link) reuses the same connected account.
    assert relay.start_connect(engine, gateway, clock, aid).split("/")[-2] == account
    wired.complete_onboarding(account)
    wired.deauthorize(account)
    with engine.connect() as conn:
        where = conn.execute(select(payout_accounts)).one()
        results = dict(conn.execute(select(stripe_events.c.type, stripe_events.c.result)).all())
    assert where.stripe_account_id is None and not where.payouts_enabled
    assert results["account.application.deauthorized"] == f"{account}: disconnected"
    with pytest.raises(payouts.PayoutError, match="connect a Stripe account first"):
        request(engine, clock, aid, 1000)
    assert available(engine) == 1800
    audit_clean(engine)


def test_amounts_outside_the_rules_are_refused_with_nothing_moved(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    aid = creator(engine, clock)
    connect(engine, gateway, wired, clock, aid)
    with pytest.raises(payouts.PayoutError, match=r"you have only €18\.00 available"):
        request(engine, clock, aid, 1801)
    with pytest.raises(payouts.PayoutError, match=r"the smallest withdrawal is €1\.00"):
        request(engine, clock, aid, 99)
    with pytest.raises(payouts.PayoutError, match="payouts are off"):
        transaction(
            engine,
            lambda conn: payouts.request_payout(
                conn, POLICY, aid, 500, provider="off", minimum_minor=100, now=clock()
            ),
        )
    with engine.connect() as conn:
        assert payouts.list_payouts(conn) == []
    assert available(engine) == 1800


def test_two_requests_at_once_make_one_payout_and_one_refusal(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    aid = creator(engine, clock)
    connect(engine, gateway, wired, clock, aid)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def ask() -> None:
        barrier.wait()
        try:
            request(engine, clock, aid, 1000)
            outcomes.append("paid")
        except payouts.PayoutError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes)[1] == "paid"
    assert "already on its way" in sorted(outcomes)[0]
    assert available(engine) == 800
    audit_clean(engine)


def test_a_payout_racing_a_tip_and_a_refund_never_overdraws(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    from escrow import funding
    from escrow.tips import tip

    alice = Identity.x("1", "alice")
    aid = creator(engine, clock)
    connect(engine, gateway, wired, clock, aid)
    transaction(
        engine,
        lambda conn: funding.deposit(
            conn, POLICY, alice, Money(500, "EUR"), "stripe:pi_a", clock()
        ),
    )
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def run(work: object) -> None:
        barrier.wait()
        try:
            transaction(engine, work)  # type: ignore[arg-type]
        except payouts.PayoutError:
            pass
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    jobs = [
        lambda conn: payouts.request_payout(
            conn, POLICY, aid, 1800, provider="stripe", minimum_minor=100, now=clock()
        ),
        lambda conn: tip(conn, POLICY, alice, BOB, Money(400, "EUR"), "tweet-1", clock()),
        lambda conn: funding.take_back(
            conn,
            POLICY,
            funding.Reversal("refund", "re_1", "pi_a", "ch_1", 500, "eur"),
            clock(),
        ),
    ]
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    relay.run_relay(engine, gateway, clock)
    for who in (alice, BOB):
        assert available(engine, who) >= 0
    audit_clean(engine)


def test_a_weekly_schedule_pays_every_payable_balance_once(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    settings = settings_for(wired.base_url, PAYOUT_SCHEDULE="weekly", PAYOUT_MIN="10.00")
    bob = creator(engine, clock)
    carol = creator(engine, clock, Identity.x("3", "carol"), 900)  # below the minimum
    creator(engine, clock, Identity.x("4", "dave"), 5000)  # never connected
    connect(engine, gateway, wired, clock, bob)
    connect(engine, gateway, wired, clock, carol)
    made = relay.schedule_payouts(engine, settings, POLICY, clock)
    assert len(made) == 1 and relay.schedule_payouts(engine, settings, POLICY, clock) == []
    relay.run_relay(engine, gateway, clock)
    assert [t["amount"] for t in wired.transfers()] == [1800]
    assert payout(engine, made[0]).origin == "schedule"  # type: ignore[attr-defined]
    audit_clean(engine)


def test_cancel_voids_a_payout_not_yet_sent_but_not_one_that_may_have_reached_stripe(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    aid = creator(engine, clock)
    connect(engine, gateway, wired, clock, aid)
    first = request(engine, clock, aid, 1000)
    assert "cancelled" in transaction(engine, lambda c: payouts.cancel(c, first, clock()))
    assert available(engine) == 1800
    second = request(engine, clock, aid, 1000)
    wired.faults = [504]
    relay.run_relay(engine, gateway, clock)
    with pytest.raises(payouts.PayoutError, match="already sent to Stripe"):
        transaction(engine, lambda c: payouts.cancel(c, second, clock()))
    audit_clean(engine)


KILLED_RELAY = """
import os, signal, sys
from bot.config import load_settings
from bot.payments import payouts as relay
from escrow import payouts
from escrow.db import make_engine
from escrow.ledger import utcnow

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # Stripe answered; our commit never happens

payouts.post_payout = die
settings = load_settings(env_file=None)
relay.run_relay(make_engine(sys.argv[1]), relay.ConnectGateway(settings), utcnow)
"""


@pytest.mark.slow
def test_a_relay_killed_between_stripes_answer_and_the_commit_pays_once_on_rerun(
    engine: Engine, db_url: str, wired: StripeSandbox, gateway: relay.ConnectGateway
) -> None:
    clock = Clock(utcnow())
    aid = creator(engine, clock)
    connect(engine, gateway, wired, clock, aid)
    payout_id = request(engine, clock, aid, 1800)
    env = {**os.environ, **settings_env(wired.base_url)}
    done = subprocess.run(
        [sys.executable, "-c", KILLED_RELAY, db_url],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -9, done.stderr
    assert len(wired.transfers()) == 1
    row = payout(engine, payout_id)
    assert (row.state, row.attempts) == ("pending", 1)  # type: ignore[attr-defined]

    later = Clock(utcnow() + timedelta(seconds=31))
    assert relay.run_relay(engine, gateway, later).sent == 1
    assert len(wired.transfers()) == 1
    assert transfer_keys(wired) == [f"payout-{payout_id}"] * 2
    assert payout(engine, payout_id).reference == wired.transfers()[0]["id"]  # type: ignore[attr-defined]
    assert available(engine) == 0
    audit_clean(engine)


def settings_env(base: str) -> dict[str, str]:
    return {
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_CONNECT_WEBHOOK_SECRET": CONNECT_WEBHOOK_SECRET,
        "STRIPE_API_BASE": base,
        "PUBLIC_BASE_URL": "http://127.0.0.1:8000",
    }


def test_two_relays_on_postgresql_send_each_payout_once(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED between two relays is a PostgreSQL matter")
    ids = []
    for n in range(8):
        who = Identity.x(str(100 + n), f"creator{n}")
        aid = creator(engine, clock, who, 1000 + n)
        connect(engine, gateway, wired, clock, aid)
        ids.append(request(engine, clock, aid, 1000 + n))
    other = relay.ConnectGateway(settings_for(wired.base_url))
    barrier = threading.Barrier(2)
    runs: list[relay.RelayRun] = []

    def go(g: relay.ConnectGateway) -> None:
        barrier.wait()
        runs.append(relay.run_relay(engine, g, clock, limit=1))

    threads = [threading.Thread(target=go, args=(g,)) for g in (gateway, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.sent for r in runs) == 8
    assert sorted(transfer_keys(wired)) == sorted(f"payout-{i}" for i in ids)
    assert len(wired.transfers()) == 8
    audit_clean(engine)


def test_the_worker_sends_payouts_every_minute_and_pays_balances_on_schedule(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    from apscheduler.triggers.cron import CronTrigger

    from bot.scheduler import Jobs, build_scheduler
    from tests.support.fake_x import FakeXApi

    settings = settings_for(wired.base_url, PAYOUT_SCHEDULE="monthly")
    jobs = Jobs(settings, engine, FakeXApi(), clock, threading.Event())
    by_id = {job.id: job for job in build_scheduler(jobs, settings).get_jobs()}
    assert by_id["payouts"].trigger.interval == timedelta(minutes=1)
    monthly = by_id["payout_schedule"].trigger
    assert isinstance(monthly, CronTrigger)
    fields = {f.name: str(f) for f in monthly.fields}
    assert (fields["day"], fields["hour"], fields["minute"]) == ("1", "6", "0")

    aid = creator(engine, clock)
    connect(engine, gateway, wired, clock, aid)
    jobs.payout_schedule()
    assert [t["amount"] for t in wired.transfers()] == [1800]
    jobs.payouts()
    assert len(wired.transfers()) == 1
    audit_clean(engine)


def test_the_audit_names_a_payout_that_disagrees_with_its_transfers(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    from sqlalchemy import text, update

    from escrow.ledger import PAYOUTS, Transfer, apply_transfers, system_account

    aid = creator(engine, clock)
    connect(engine, gateway, wired, clock, aid)
    payout_id = request(engine, clock, aid, 1000)
    relay.run_relay(engine, gateway, clock)
    audit_clean(engine)

    def tamper(conn: object) -> None:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # type: ignore[attr-defined]
        conn.execute(  # type: ignore[attr-defined]
            update(payouts_table).where(payouts_table.c.id == payout_id).values(reversed_minor=300)
        )
        sink = system_account(conn, PAYOUTS)  # type: ignore[arg-type]
        apply_transfers(  # a hold into `payouts` that no payout owns
            conn,  # type: ignore[arg-type]
            [Transfer(aid, sink, 100, "hold", expires_at=clock() + timedelta(days=1))],
            clock(),
        )

    transaction(engine, tamper)
    with engine.connect() as conn:
        problems = [str(p) for p in check_ledger(conn)]
    assert f"payout {payout_id}: what was reversed does not add up to its reversals" in problems
    assert any("into payouts belongs to no payout" in p for p in problems)


def test_no_payout_leaves_while_the_last_self_check_failed(
    engine: Engine, wired: StripeSandbox, gateway: relay.ConnectGateway, clock: Clock
) -> None:
    aid = creator(engine, clock)
    connect(engine, gateway, wired, clock, aid)
    payout_id = request(engine, clock, aid, 1800)
    with engine.begin() as conn:  # a cached counter that disagrees with its transfers
        conn.execute(
            update(accounts)
            .where(accounts.c.id == aid)
            .values(credits_posted=accounts.c.credits_posted + 1)
        )
    assert not selfcheck.run_check(engine, selfcheck.DAILY, clock).ok

    with pytest.raises(selfcheck.LedgerUnsound, match="payouts is stopped"):
        relay.run_relay(engine, gateway, clock)
    assert wired.transfers() == []
    assert payout(engine, payout_id).state == "pending"  # type: ignore[attr-defined]

    # Repaired and audited clean by a maintainer: the payout goes out, once.
    with engine.begin() as conn:
        conn.execute(
            update(accounts)
            .where(accounts.c.id == aid)
            .values(credits_posted=accounts.c.credits_posted - 1)
        )
    assert selfcheck.run_check(engine, selfcheck.MAINTAINER, clock).ok
    assert relay.run_relay(engine, gateway, clock).sent == 1
    assert len(wired.transfers()) == 1
    audit_clean(engine)
