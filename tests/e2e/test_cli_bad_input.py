"""Bad values at the command line: one clear line, exit 2, nothing changed, no secret shown."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from escrow.ledger import Identity
from tests.e2e.test_cli_ledger import Tipjar

pytestmark = pytest.mark.slow

PASSWORD = "hunter2-secret"
UNREACHABLE = f"postgresql://tipjar:{PASSWORD}@127.0.0.1:1/tipjar"


@pytest.fixture
def tipjar(tmp_path: Path) -> Tipjar:
    return Tipjar(tmp_path, tmp_path / "tipjar.db")


@pytest.fixture
def upgraded(tipjar: Tipjar, sqlite_template: Path) -> Tipjar:
    shutil.copyfile(sqlite_template, tipjar.db)
    return tipjar


def _one_line(done) -> str:
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("args", [(), ("--json",)])
def test_check_config_never_prints_the_database_password(tipjar: Tipjar, args):
    tipjar.url = UNREACHABLE

    done = tipjar("check-config", *args)

    assert PASSWORD not in done.stdout + done.stderr
    assert "postgresql://tipjar:***@127.0.0.1:1/tipjar" in done.stdout
    if args:
        shown = json.loads(done.stdout)["settings"]["DATABASE_URL"]
        assert shown.endswith("***@127.0.0.1:1/tipjar")


def test_a_hold_period_of_a_billion_days_is_a_config_error_not_a_crash(tipjar: Tipjar):
    (tipjar.workdir / ".env").write_text("HOLD_PERIOD=999999999999d\n")

    done = tipjar("check-config")

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "HOLD_PERIOD" in done.stderr and "3650d" in done.stderr


@pytest.mark.parametrize(
    "args",
    [("db", "upgrade"), ("audit",), ("escrow", "balances"), ("accounts", "show", "x:1")],
)
def test_an_unreachable_database_is_one_line_and_exit_2(tipjar: Tipjar, args):
    tipjar.url = UNREACHABLE

    done = tipjar(*args)

    assert done.returncode == 2
    line = _one_line(done)
    assert "cannot reach the database" in line
    assert PASSWORD not in done.stdout + done.stderr


def test_a_reference_of_200_characters_is_refused_in_one_line(upgraded: Tipjar):
    done = upgraded("funds", "deposit", "x:1", "5.00", "--reference", "r" * 200)

    assert done.returncode == 2
    assert "at most 128 characters" in _one_line(done)
    assert upgraded.ledger().account(Identity.x("1")) is None


def test_an_absurd_deposit_is_refused_in_one_line(upgraded: Tipjar):
    done = upgraded("funds", "deposit", "x:1", "999999999999999.99", "--reference", "r1")

    assert done.returncode == 2
    assert "largest amount allowed" in _one_line(done)
    assert upgraded.ledger().account(Identity.x("1")) is None
