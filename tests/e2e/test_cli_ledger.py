"""The `tipjar` console script, run as a maintainer runs it, on a SQLite file.

Each test starts the real installed script in a subprocess, in an empty directory (so no
stray `.env` is read) with only DATABASE_URL set, and reads what a maintainer or a script
would: the exit code, the JSON on stdout, the one-line reason on stderr. Where a test
needs money in the ledger first, it puts it there through the Python `Ledger` on the same
file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.config import KEYS
from escrow.db import make_engine
from escrow.ledger import Identity, Policy
from escrow.money import Money
from escrow.service import Ledger

pytestmark = pytest.mark.slow

TIPJAR = Path(sys.executable).with_name("tipjar")
ACCOUNT_KEYS = {
    "platform",
    "user_id",
    "handle",
    "status",
    "available_minor",
    "reserved_minor",
    "held_for_minor",
    "pending_flattrs",
    "paid_out_minor",
    "in_payout_minor",
}
RECIPIENT_KEYS = {
    "platform",
    "user_id",
    "handle",
    "held_minor",
    "tips",
    "supporters",
    "oldest_at",
    "next_expiry_at",
    "notices_sent",
}


class Tipjar:
    """Runs `tipjar ...` in `workdir` against the SQLite file `db`."""

    def __init__(self, workdir: Path, db: Path):
        self.workdir, self.db = workdir, db
        self.url = f"sqlite:///{db}"

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in KEYS}
        env["DATABASE_URL"] = self.url
        return subprocess.run(
            [str(TIPJAR), *args],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def ledger(self, now: datetime | None = None) -> Ledger:
        clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
        return Ledger(make_engine(self.url), Policy(), clock)


@pytest.fixture
def tipjar(tmp_path: Path) -> Tipjar:
    """A fresh, empty directory and a database file that does not exist yet."""
    return Tipjar(tmp_path, tmp_path / "tipjar.db")


@pytest.fixture
def upgraded(tipjar: Tipjar, sqlite_template: Path) -> Tipjar:
    """The same, with the database already at the newest schema."""
    shutil.copyfile(sqlite_template, tipjar.db)
    return tipjar


def test_a_maintainer_upgrades_the_database_deposits_once_and_reads_the_account(tipjar):
    first = tipjar("db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert "upgraded" in first.stdout

    deposit = tipjar.json("funds", "deposit", "x:1", "10.00", "--reference", "r1")
    again = tipjar.json("funds", "deposit", "x:1", "10.00", "--reference", "r1")
    account = tipjar.json("accounts", "show", "x:1")

    assert deposit == {
        "reference": "r1",
        "amount_minor": 1000,
        "available_minor": 1000,
        "replayed": False,
    }
    assert again == deposit | {"replayed": True}
    assert set(account) == ACCOUNT_KEYS
    assert account == {
        "platform": "x",
        "user_id": "1",
        "handle": None,
        "status": "unclaimed",
        "available_minor": 1000,
        "reserved_minor": 0,
        "held_for_minor": 0,
        "pending_flattrs": 0,
        "paid_out_minor": 0,
        "in_payout_minor": 0,
    }


def test_escrow_balances_show_and_expiry_report_what_waits_and_what_went_back(upgraded):
    long_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=100)
    alice, bob, carol = Identity.x("1", "alice"), Identity.x("2", "bob"), Identity.x("3", "carol")
    old = upgraded.ledger(now=long_ago)
    old.deposit(alice, Money(1000), "r1")
    old.tip(alice, carol, Money(300), "tweet-1")  # expired 10 days ago
    old.engine.dispose()
    recent = upgraded.ledger()
    recent.tip(alice, bob, Money(150), "tweet-2")
    recent.tip(alice, bob, Money(50), "tweet-3")
    recent.engine.dispose()

    balances = upgraded.json("escrow", "balances")
    held_for_bob = upgraded.json("escrow", "show", "x:2")
    expired = upgraded.json("expire", "--once")
    bob_shown_by_handle = upgraded.json("accounts", "show", "@bob")

    assert set(balances) == {"currency", "total_held_minor", "holds", "recipients"}
    assert (balances["currency"], balances["total_held_minor"], balances["holds"]) == (
        "EUR",
        500,
        3,
    )
    assert all(set(r) == RECIPIENT_KEYS for r in balances["recipients"])
    carol_row, bob_row = balances["recipients"]
    assert carol_row == {
        "platform": "x",
        "user_id": "3",
        "handle": "carol",
        "held_minor": 300,
        "tips": 1,
        "supporters": 1,
        "oldest_at": long_ago.isoformat().replace("+00:00", "Z"),
        "next_expiry_at": (long_ago + timedelta(days=90)).isoformat().replace("+00:00", "Z"),
        "notices_sent": 0,
    }
    assert (bob_row["handle"], bob_row["held_minor"], bob_row["tips"]) == ("bob", 200, 2)
    assert held_for_bob["currency"] == "EUR"
    assert [(h["amount_minor"], h["source_id"]) for h in held_for_bob["holds"]] == [
        (150, "tweet-2"),
        (50, "tweet-3"),
    ]
    assert expired == {"voided": 1, "returned_minor": 300}
    assert (bob_shown_by_handle["user_id"], bob_shown_by_handle["held_for_minor"]) == ("2", 200)
    assert upgraded.ledger().account(alice).available_minor == 800


def test_the_audit_passes_on_a_sound_ledger_and_fails_on_a_tampered_one(upgraded):
    ledger = upgraded.ledger()
    ledger.deposit(Identity.x("1"), Money(1000), "r1")

    sound = upgraded("audit", "--json")
    with ledger.engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET debits_pending = debits_pending + 5"))
    ledger.engine.dispose()
    tampered = upgraded("audit", "--json")

    assert sound.returncode == 0
    assert json.loads(sound.stdout) == {"ok": True, "problems": [], "details": []}
    assert tampered.returncode == 1
    report = json.loads(tampered.stdout)
    assert report["ok"] is False
    assert any("differ from its transfers" in p for p in report["problems"])
    # The same problems as data, in the same order: the kind and the account concerned.
    assert [d["message"] for d in report["details"]] == report["problems"]
    assert any(d["kind"] == "counters" and d["account_id"] for d in report["details"])


def test_check_config_names_every_broken_key_at_once(tipjar):
    (tipjar.workdir / ".env").write_text("HOLD_PERIOD=soon\nFEE_PERCENT=abc\nCURRENCY=XYZ\n")

    done = tipjar("check-config")

    assert done.returncode == 2
    for key in ("HOLD_PERIOD", "FEE_PERCENT", "CURRENCY"):
        assert key in done.stderr


def test_help_needs_no_configuration_and_no_database(tipjar):
    done = tipjar("--help")

    assert done.returncode == 0
    assert "funds" in done.stdout and "escrow" in done.stdout


def test_a_database_that_was_never_upgraded_is_named_with_the_command_that_fixes_it(tipjar):
    done = tipjar("accounts", "show", "x:1", "--json")

    assert done.returncode == 2
    assert "tipjar db upgrade" in done.stderr
    assert done.stdout == ""
    assert not tipjar.db.exists()  # asking created no empty database file


def test_a_malformed_amount_is_refused_in_one_line_and_changes_nothing(upgraded):
    amount = "1.234"
    ledger = upgraded.ledger()
    ledger.deposit(Identity.x("1"), Money(1000), "r1")
    ledger.engine.dispose()

    done = upgraded("funds", "deposit", "x:1", amount, "--reference", "r2")

    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert amount in done.stderr
    assert upgraded.ledger().account(Identity.x("1")).available_minor == 1000
