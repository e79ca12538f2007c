"""The claim pages from a real process: `tipjar web`, and gunicorn as the Procfile runs it.

Both servers' access logs must name the path of a request and never its query string,
which on the OAuth callback carries X's one-time code and the state.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bot.web.serving import path_only
from escrow.db import make_engine
from escrow.migrate import upgrade

TIPJAR = Path(sys.executable).parent / "tipjar"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local_site(tmp_path: Path, public_base_url: str, **extra: str) -> dict[str, str]:
    """A migrated SQLite database in `tmp_path`, and the environment that points at it."""
    db = tmp_path / "tipjar.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    engine.dispose()
    return {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": f"sqlite:///{db}",
        "PUBLIC_BASE_URL": public_base_url,
        **extra,
    }


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
    port = free_port()
    env = local_site(tmp_path, f"http://127.0.0.1:{port}")
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
    env = local_site(tmp_path, "https://tipjar.example")

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


CODE, STATE = "c0deFromX9q8w7e6r5t4", "st4teF0rThisSignIn"
CALLBACK = f"/oauth/callback?code={CODE}&state={STATE}"


def serve_and_call_back(command: list[str], tmp_path: Path, port: int, **extra: str) -> str:
    """Start `command`, request the callback with a code and /healthz; all it logged."""
    env = local_site(tmp_path, f"http://127.0.0.1:{port}", **extra)
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", proc)
        answer = requests.get(f"http://127.0.0.1:{port}{CALLBACK}", timeout=5)
        assert answer.status_code == 400  # a state nobody started: refused
        time.sleep(0.3)  # let the access log line out
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    return out + err


def assert_logged_without_query(logged: str) -> None:
    assert "GET /oauth/callback HTTP/1.1" in logged and " 400 " in logged, logged
    assert CODE not in logged and STATE not in logged, logged


@pytest.mark.slow
def test_tipjar_web_logs_the_callback_without_its_code(tmp_path):
    port = free_port()
    logged = serve_and_call_back(
        [str(TIPJAR), "web", "--host", "127.0.0.1", "--port", str(port)], tmp_path, port
    )
    assert_logged_without_query(logged)


@pytest.mark.slow
def test_gunicorn_as_the_procfile_runs_it_logs_the_callback_without_its_code(tmp_path):
    procfile = (Path(__file__).parents[2] / "Procfile").read_text().splitlines()
    (web,) = [line.removeprefix("web:").strip() for line in procfile if line.startswith("web:")]
    port = free_port()
    logged = serve_and_call_back(
        ["bash", "-c", f"exec {web}"],
        tmp_path,
        port,
        PORT=str(port),
        WEB_CONCURRENCY="1",
        SECRET_KEY="a-test-key-of-enough-length-for-the-app-0123456789",
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    )
    assert_logged_without_query(logged)


@pytest.mark.parametrize(
    "target, path",
    [
        ("/oauth/callback?code=abc&state=def", "/oauth/callback"),
        ("/claim", "/claim"),
        ("/me?x=1#frag", "/me"),
        ("?only=query", "/"),
    ],
)
def test_a_logged_path_keeps_nothing_after_the_path(target, path):
    assert path_only(target) == path
