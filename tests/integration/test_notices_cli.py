"""The X commands of the `tipjar` CLI, in-process, against the loopback X sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, update

from bot.cli import main
from bot.platforms.x.sandbox import Sandbox
from escrow.db import make_engine
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.schema import tips
from escrow.service import Ledger


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(bot_username="flattr") as running:
        yield running


@pytest.fixture
def env(sandbox: Sandbox, db_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(tmp_path)  # no developer's .env
    return sandbox.env() | {
        "DATABASE_URL": db_url,
        "PUBLIC_BASE_URL": "https://tipjar.example",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    engine = make_engine(db_url)
    yield Ledger(engine, Policy())
    engine.dispose()


def a_day_passes(ledger: Ledger) -> None:
    """The CLI runs on the real clock: move the tips a day into the past instead."""
    with ledger.engine.begin() as conn:
        for tip_id, created_at in list(conn.execute(select(tips.c.id, tips.c.created_at))):
            earlier = created_at - timedelta(days=1)
            conn.execute(update(tips).where(tips.c.id == tip_id).values(created_at=earlier))


def tipjar(env: dict, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_poll_then_notices_send_post_the_notice_and_the_error_reply(sandbox, env, ledger):
    world = sandbox.world
    alice = world.add_user("alice")
    world.add_user("bob")
    ledger.deposit(Identity.x(alice.id, "alice"), Money(500), "ref-1")
    tip = world.mention(alice, "@flattr @bob €1")
    typo = world.mention(alice, "@flattr @nobody_here €1")

    polled = tipjar(env, "poll", "--once", "--json")

    assert polled.exit_code == 0, polled.stderr
    report = json.loads(polled.stdout)
    assert report["processed"] == 2 and report["tips_applied"] == 1
    assert report["outcomes"] == {"held": 1, "unknown_recipient": 1}
    a_day_passes(ledger)  # a tip counts for a notice once it has stood a day

    sent = tipjar(env, "notices", "send", "--once", "--json")

    assert sent.exit_code == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"]["sent"] == 2
    assert sorted(p.in_reply_to for p in world.posted) == sorted([tip.id, typo.id])
    listed = json.loads(tipjar(env, "notices", "list", "--state", "sent", "--json").stdout)
    assert {(r["kind"], r["topic"]) for r in listed} == {
        ("creator_notice", "first"),
        ("supporter_reply", "unknown_recipient"),
    }
    assert all(r["sent_tweet_id"] for r in listed)
    assert ledger.check_ledger() == []


def test_the_outbox_listing_reads_for_people_too(sandbox, env, ledger):
    world = sandbox.world
    world.mention(world.add_user("dave"), "@flattr help")
    tipjar(env, "poll", "--once")

    listed = tipjar(env, "notices", "list")

    assert listed.exit_code == 0
    assert "supporter_reply" in listed.stdout and "pending" in listed.stdout


def test_poll_exits_1_and_loses_nothing_when_x_answers_nonsense(sandbox, env, ledger):
    world = sandbox.world
    alice = world.add_user("alice")
    world.add_user("bob")
    ledger.deposit(Identity.x(alice.id, "alice"), Money(500), "ref-1")
    world.mention(alice, "@flattr @bob €1")
    world.fail_next("/2/users/", 200, malformed=True)  # (a 5xx is retried with real sleeps)

    failed = tipjar(env, "poll", "--once")

    assert failed.exit_code == 1 and "nothing lost" in failed.stderr
    world.clear_faults()
    assert json.loads(tipjar(env, "poll", "--once", "--json").stdout)["tips_applied"] == 1
    assert ledger.check_ledger() == []


def test_poll_without_x_credentials_says_which_keys_are_missing(env):
    broken = {**env, "X_BEARER_TOKEN": ""}

    result = tipjar(broken, "poll", "--once")

    assert result.exit_code == 2 and "X_BEARER_TOKEN" in result.stderr


def test_a_handle_unknown_here_is_looked_up_on_x_by_maintainer_commands(sandbox, env, ledger):
    erin = sandbox.world.add_user("erin")

    result = tipjar(env, "funds", "deposit", "@erin", "5.00", "--reference", "bank-1")

    assert result.exit_code == 0, result.stderr
    view = ledger.account(Identity.x(erin.id))
    assert view is not None and view.available_minor == 500 and view.handle == "erin"
    missing = tipjar(env, "funds", "deposit", "@nobody_at_all", "5.00", "--reference", "bank-2")
    assert missing.exit_code == 2 and "not known" in missing.stderr


def test_a_renamed_handle_is_resolved_on_x_not_from_the_stale_local_snapshot(sandbox, env, ledger):
    world = sandbox.world
    bob = world.add_user("bob")
    ledger.deposit(Identity.x(bob.id, "bob"), Money(100), "old")  # snapshot: @bob = bob.id
    world.rename(bob, "bob_renamed")
    stranger = world.add_user("bob")  # someone else takes the free handle

    result = tipjar(env, "funds", "deposit", "@bob", "5.00", "--reference", "bank-1")

    assert result.exit_code == 0, result.stderr
    assert ledger.account(Identity.x(stranger.id)).available_minor == 500
    assert ledger.account(Identity.x(bob.id)).available_minor == 100


def test_a_handle_gone_from_x_is_refused_even_if_a_stale_snapshot_has_it(sandbox, env, ledger):
    world = sandbox.world
    carol = world.add_user("carol")
    ledger.deposit(Identity.x(carol.id, "carol"), Money(100), "old")
    world.remove_user(carol)

    result = tipjar(env, "funds", "deposit", "@carol", "5.00", "--reference", "bank-1")

    assert result.exit_code == 2 and "not known on X" in result.stderr
    assert ledger.account(Identity.x(carol.id)).available_minor == 100


def test_with_x_unreachable_the_snapshot_is_used_with_a_warning_naming_its_id(sandbox, env, ledger):
    world = sandbox.world
    dana = world.add_user("dana")
    ledger.deposit(Identity.x(dana.id, "dana"), Money(100), "old")
    world.fail_next("/2/users/by", 503, count=10)

    result = tipjar(env, "funds", "deposit", "@dana", "5.00", "--reference", "bank-1")

    assert result.exit_code == 0, result.stderr
    assert "warning" in result.stderr and f"x:{dana.id}" in result.stderr
    assert ledger.account(Identity.x(dana.id)).available_minor == 600
    by_id = tipjar(env, "funds", "deposit", f"x:{dana.id}", "1.00", "--reference", "bank-2")
    assert by_id.exit_code == 0, by_id.stderr


def test_notices_send_addresses_a_renamed_creator_by_the_handle_x_gives_now(sandbox, env, ledger):
    world = sandbox.world
    alice = world.add_user("alice")
    bob = world.add_user("bob")
    ledger.deposit(Identity.x(alice.id, "alice"), Money(500), "ref-1")
    world.mention(alice, "@flattr @bob €2")
    assert tipjar(env, "poll", "--once").exit_code == 0
    a_day_passes(ledger)
    world.rename(bob, "bob_elsewhere")
    stranger = world.add_user("bob")

    sent = tipjar(env, "notices", "send", "--once", "--json")

    assert sent.exit_code == 0, sent.stderr
    (post,) = world.posted
    assert post.text.startswith("@bob_elsewhere ")
    assert stranger.id not in {m.user_id for m in post.mentions}
    assert world.requests_to("/2/users", method="GET")
