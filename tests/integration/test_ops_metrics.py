"""`/metrics` after a scripted day of the bot: poll, notices, a claim, an expiry.

The counters are the process's own (they only grow), so each test reads them before and
after and compares the difference; the gauges are read from the database at scrape time
and compared with what the script left there, and with `tipjar escrow balances`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from bot.cli import main
from bot.config import Settings, load_settings
from bot.metrics_state import serve_worker_metrics
from bot.platforms.x.sandbox import Sandbox
from bot.platforms.x.wiring import build_x_api
from bot.scheduler import Jobs, instrumented
from bot.web import create_app
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.service import Ledger
from tests.integration.test_web_cli import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def sandbox(clock: Any) -> Iterator[Sandbox]:
    with Sandbox(bot_username="flattr", clock=clock) as running:
        yield running


@pytest.fixture
def settings(sandbox: Sandbox, db_url: str) -> Settings:
    env = sandbox.env() | {
        "DATABASE_URL": db_url,
        "PUBLIC_BASE_URL": "http://localhost:8000",
        "SECRET_KEY": "s" * 40,
    }
    return load_settings(env, env_file=None)


def scrape(settings: Settings, engine: Engine, clock: Any) -> Samples:
    app = create_app(settings, engine=engine, clock=clock)
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return parse(response.get_data(as_text=True))


def test_metrics_after_a_poll_notices_a_claim_and_an_expiry(
    sandbox, settings, engine, clock, db_url
):
    world = sandbox.world
    alice, bob, _carol = (world.add_user(n) for n in ("alice", "bob", "carol"))
    ledger = Ledger(engine, Policy(), clock)
    ledger.deposit(Identity.x(alice.id, "alice"), Money(1000, "EUR"), "ref-1")
    world.mention(alice, "@flattr @bob €2")
    world.mention(alice, "@flattr @carol €1")
    world.mention(alice, "@flattr @nobody_here €1")
    jobs = Jobs(settings, engine, build_x_api(settings, clock=clock), clock, threading.Event())
    before = scrape(settings, engine, clock)

    instrumented("poll", jobs.poll)()
    clock.advance(days=1)  # a creator's first notice waits until the tip has stood a day
    instrumented("notices", jobs.notices)()
    ledger.claim(Identity.x(bob.id, "bob"))
    clock.advance(days=91)
    instrumented("expiry", jobs.expiry)()
    instrumented("self_check", jobs.self_check)()
    ledger.tip(Identity.x(alice.id), Identity.x("999", "dave"), Money(50, "EUR"), "t-dave")
    after = scrape(settings, engine, clock)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("tipjar_mentions_read_total", platform="x") == 3
    assert grew("tipjar_tips_total", platform="x", outcome="held") == 2
    assert grew("tipjar_tips_total", platform="x", outcome="unknown_recipient") == 1
    mentions = "GET /2/users/:id/mentions"
    assert (
        grew("tipjar_platform_api_calls_total", platform="x", endpoint=mentions, status="200") == 1
    )
    assert (
        grew(
            "tipjar_platform_api_calls_total", platform="x", endpoint="POST /2/tweets", status="201"
        )
        == 3
    )
    assert value(after, "tipjar_platform_rate_limit_remaining", platform="x", endpoint=mentions) > 0
    for job in ("poll", "notices", "expiry", "self_check"):
        assert grew("tipjar_job_runs_total", job=job) == 1, job
        assert grew("tipjar_job_failures_total", job=job) == 0, job
        assert grew("tipjar_job_duration_seconds_count", job=job) == 1, job

    # State, from the database: two notices and one error reply sent; bob's money claimed,
    # carol's returned after 91 days, dave's 0.50 waiting; the poll 91 days old.
    assert value(after, "tipjar_outbox_rows", state="sent", kind="creator_notice") == 2
    assert value(after, "tipjar_outbox_rows", state="sent", kind="supporter_reply") == 1
    assert value(after, "tipjar_escrow_held_minor", currency="EUR") == 50
    assert value(after, "tipjar_escrow_holds") == 1
    assert value(after, "tipjar_escrow_expiring_minor", currency="EUR", within="7d") == 0
    assert value(after, "tipjar_audit_problems") == 0
    assert value(after, "tipjar_settlement_stopped") == 0
    assert value(after, "tipjar_database_up") == 1
    assert value(after, "tipjar_last_poll_age_seconds", platform="x") == 92 * 86400

    balances = CliRunner().invoke(
        main, ["escrow", "balances", "--json"], env={"DATABASE_URL": db_url}
    )
    report = json.loads(balances.stdout)
    assert value(after, "tipjar_escrow_held_minor", currency="EUR") == report["total_held_minor"]
    assert value(after, "tipjar_escrow_holds") == report["holds"]


def test_the_worker_serves_the_same_gauges_on_loopback(settings, engine, clock):
    local = replace(settings, metrics_port=str(free_port()))
    served = serve_worker_metrics(local, engine, clock)
    assert served is not None
    try:
        host, port = served.address
        response = requests.get(f"http://{host}:{port}/metrics", timeout=5)
    finally:
        served.stop()

    assert host == "127.0.0.1"
    samples = parse(response.text)
    assert value(samples, "tipjar_database_up") == 1
    assert ("tipjar_escrow_held_minor", frozenset({("currency", "EUR")})) in samples


def test_the_worker_serves_no_metrics_unless_asked(settings, engine):
    assert serve_worker_metrics(settings, engine) is None
