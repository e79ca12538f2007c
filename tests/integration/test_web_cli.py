"""`tipjar web --host H --port P` serves the claim pages from a real process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from escrow.db import make_engine
from escrow.migrate import upgrade

TIPJAR = Path(sys.executable).parent / "tipjar"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[str], seconds: float = 20) -> requests.Response:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tipjar web exited: {proc.communicate()[1]}")
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {seconds}s")


@pytest.mark.slow
def test_tipjar_web_serves_the_claim_page_and_health(tmp_path):
    db = tmp_path / "tipjar.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    engine.dispose()
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": f"sqlite:///{db}",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    }
    proc = subprocess.Popen(
        [str(TIPJAR), "web", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = wait_for(f"http://127.0.0.1:{port}/healthz", proc)
        claim = requests.get(f"http://127.0.0.1:{port}/claim", timeout=5)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)

    assert health.status_code == 200 and health.json() == {"ok": True}
    assert claim.status_code == 200 and "Sign in with X" in claim.text
    assert f"http://127.0.0.1:{port}/claim" in out
    assert "SECRET_KEY is not set" in err  # a local run makes its own key, and says so


@pytest.mark.slow
def test_tipjar_web_refuses_a_public_site_without_a_secret_key(tmp_path):
    db = tmp_path / "tipjar.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    engine.dispose()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": f"sqlite:///{db}",
        "PUBLIC_BASE_URL": "https://tipjar.example",
    }

    done = subprocess.run(
        [str(TIPJAR), "web", "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 2
    assert "SECRET_KEY is missing" in done.stderr
