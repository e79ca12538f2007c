"""`tipjar demo` as a user runs it: a subprocess in an empty directory, loopback only.

The environment carries hostile X_* keys and the directory a hostile `.env`: the demo must
ignore both (it builds its own settings), or it would reach for the real X API or fail on
a broken configuration.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.slow

HOSTILE_DOTENV = """\
DATABASE_URL=postgresql://nobody@192.0.2.1:5432/nothing
CURRENCY=USD
X_API_BASE_URL=https://api.twitter.com
X_BEARER_TOKEN=not-a-real-token
PUBLIC_BASE_URL=https://tipjar.example.org
"""


def tipjar() -> list[str]:
    script = Path(sys.executable).with_name("tipjar")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())"]


def demo_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("X_")}
    env.update(
        {
            "X_API_BASE_URL": "not-a-url",  # the demo would fail on this if it read it
            "X_BEARER_TOKEN": "not-a-real-token",
            "TMPDIR": str(tmp),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / ".env").write_text(HOSTILE_DOTENV)
    (tmp_path / "tmp").mkdir()
    return tmp_path


def test_the_demo_tells_the_whole_story_and_exits_0(workdir: Path) -> None:
    began = time.monotonic()
    done = subprocess.run(
        [*tipjar(), "demo"],
        cwd=workdir,
        env=demo_env(workdir / "tmp"),
        capture_output=True,
        text=True,
        timeout=90,
    )
    took = time.monotonic() - began
    out = done.stdout

    assert done.returncode == 0, done.stderr + out
    assert took < 60
    # The tips: held for unclaimed creators, a flattr recorded, a malformed one refused.
    assert re.search(r"“@flattr @bob €2”\s+held", out)
    assert re.search(r"“@flattr @carol”\s+flattred", out)
    assert re.search(r"“@dave @flattr €0.50”\s+held", out)
    assert re.search(r"“@flattr @bob €2.505”\s+bad_amount", out)
    # The creator notice, in the tip's thread, says how much waits; the malformed tip's reply.
    assert "@bob you have €2.00 waiting from 1 supporter" in out
    assert "a reply to @alice's “@flattr @bob €2”, in its thread" in out
    assert "@alice I couldn't read “€2.505” as an amount" in out
    # Escrow balances, rendered like `tipjar escrow balances`.
    assert re.search(r"@bob\s+x:\d+\s+€2.00", out)
    assert "€2.50 held in 2 holds" in out
    # The claim through the real sign-in: the result page and the claimed account.
    assert "POST /i/oauth2/authorize" in out
    assert "Your tips have arrived, @bob: €1.80 from 1 supporter" in out
    assert "@bob's account is now claimed: €1.80 available" in out
    # Settlement, expiry, audit.
    assert "€3.00 now waits for @carol" in out
    assert "settling 2026-03 again changes nothing" in out
    assert "€0.50 returned" in out
    assert "@alice's available balance: €4.50 -> €5.00" in out
    assert "nothing lost, nothing doubled" in out
    assert "ledger OK" in out
    # Nothing of the demo is left behind: its database lived in a temporary directory.
    assert list((workdir / "tmp").iterdir()) == []
    assert sorted(p.name for p in workdir.iterdir()) == [".env", "tmp"]


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def _wait_for(lines: queue.Queue[str], pattern: str, seen: list[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found.group(1)
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(seen)}")


def test_the_demo_serves_the_claim_page_until_sigterm(workdir: Path) -> None:
    proc = subprocess.Popen(
        [*tipjar(), "demo", "--serve"],
        cwd=workdir,
        env=demo_env(workdir / "tmp"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        claim_url = _wait_for(lines, r"claim page\s+(http://127\.0\.0\.1:\d+/claim)\s*$", seen, 30)
        sandbox_url = _wait_for(lines, r"X sandbox control page\s+(http://\S+)", seen, 5)
        http = requests.Session()
        http.trust_env = False
        claim = http.get(claim_url, timeout=10)
        assert claim.status_code == 200
        assert "Sign in with X" in claim.text
        assert http.get(sandbox_url, timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 0, stderr
    while not lines.empty():
        seen.append(lines.get())
    assert "stopped" in "".join(seen)
    assert list((workdir / "tmp").iterdir()) == []
