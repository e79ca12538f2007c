"""Secrets never in the logs: a poll and a notice run at DEBUG, in both log formats."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.platforms.x.sandbox import Sandbox
from escrow.db import make_engine
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.service import Ledger

SECRET_KEY = "session-secret-that-must-never-show-0123456789"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(bot_username="flattr") as running:
        yield running


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_poll_and_a_notice_run_log_no_secret(sandbox, db_url, tmp_path, monkeypatch, log_format):
    monkeypatch.chdir(tmp_path)  # no developer's .env
    env: dict[str, Any] = sandbox.env() | {
        "DATABASE_URL": db_url,
        "PUBLIC_BASE_URL": "https://tipjar.example",
        "SECRET_KEY": SECRET_KEY,
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": log_format,
    }
    world = sandbox.world
    alice = world.add_user("alice")
    world.add_user("bob")
    engine = make_engine(db_url)
    Ledger(engine, Policy()).deposit(Identity.x(alice.id, "alice"), Money(500), "ref-1")
    engine.dispose()
    world.mention(alice, "@flattr @bob €1")
    world.mention(alice, "@flattr @nobody_here €1")

    runner = CliRunner()
    polled = runner.invoke(main, ["poll", "--once"], env=env, catch_exceptions=False)
    sent = runner.invoke(main, ["notices", "send", "--once"], env=env, catch_exceptions=False)

    assert polled.exit_code == 0 and sent.exit_code == 0, polled.stderr + sent.stderr
    logs = polled.stderr + sent.stderr
    # The reply about the unknown handle is posted; bob's notice waits until his tip has
    # stood a day (a tip retracted sooner never triggers one).
    assert len(world.posted) == 1 and "/2/tweets" in logs  # DEBUG lines of the HTTP calls
    secrets = [v for k, v in env.items() if k.endswith(("TOKEN", "SECRET", "SECRET_KEY"))]
    secrets += [env["X_API_KEY"]]
    assert len(secrets) >= 6
    for secret in secrets:
        assert secret not in logs, f"a secret ({secret[:4]}...) was logged"
    if log_format == "json":
        lines = [json.loads(line) for line in polled.stderr.splitlines() if line.strip()]
        assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
        assert any(x.get("job") == "poll" and x.get("platform") == "x" for x in lines)
