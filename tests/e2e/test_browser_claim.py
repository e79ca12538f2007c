"""A real browser claims: /claim -> X's consent page -> back to tipjar -> the result page.

Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) walks the whole
sign-in against the loopback X sandbox, which checks the PKCE verifier and the client's
credentials like X does. tipjar is served by werkzeug on 127.0.0.1 in a thread. The
result page is saved as artifacts/claim-result.png (phone-sized) for a person to look at.
Skipped, with the reason, when Chromium or Playwright is missing; `.ci/browser-deps`
installs both on CI.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from bot.app import policy
from bot.config import Settings
from bot.platforms.x.sandbox import Sandbox
from bot.web import create_app
from escrow.db import make_engine
from escrow.ledger import Identity
from escrow.migrate import upgrade
from escrow.money import Money
from escrow.service import Ledger

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser test skipped: the playwright package is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"browser test skipped: {CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as running:
        yield running


@pytest.fixture
def tipjar(tmp_path, sandbox, clock) -> Iterator[tuple[str, Ledger]]:
    """tipjar on 127.0.0.1:<free port>, signing in against the sandbox."""
    engine = make_engine(f"sqlite:///{tmp_path / 'tipjar.db'}")
    upgrade(engine)
    holder: dict[str, Any] = {}
    server = make_server(
        "127.0.0.1", 0, lambda env, start: holder["app"](env, start), threaded=True
    )
    base_url = f"http://127.0.0.1:{server.server_port}"
    settings = Settings(
        public_base_url=base_url,
        secret_key="browser-test-secret-key-0123456789abcdef",
        x_client_id=sandbox.client_id,
        x_client_secret=sandbox.client_secret,
        x_api_base_url=sandbox.base_url,
        x_oauth_authorize_url=sandbox.authorize_url,
        x_oauth_token_url=sandbox.token_url,
    )
    holder["app"] = create_app(settings, engine=engine, clock=clock)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield base_url, Ledger(engine, policy(settings), clock)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        engine.dispose()


def test_a_creator_claims_in_a_real_browser(chromium, sandbox, tipjar):
    base_url, ledger = tipjar
    carol = sandbox.world.add_user("carol", name="Carol Creator")
    sandbox.world.sign_in(carol)  # "signed in to X": the consent page offers her account
    creator = Identity.x(carol.id, "carol")
    for n, fan in enumerate(["al", "bo", "di", "ed"]):
        supporter = Identity.x(str(900 + n), fan)
        ledger.deposit(supporter, Money(1000, "EUR"), f"dep-{fan}")
        ledger.tip(supporter, creator, Money(100, "EUR"), f"tweet-{n}")
    context = chromium.new_context(
        viewport={"width": 390, "height": 844}, java_script_enabled=False
    )
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: Any) -> None:
        # Only tipjar's pages count: the sandbox's consent page is not ours to judge.
        if message.type == "error" and page.url.startswith(base_url):
            problems.append(message.text)

    page.on("console", on_console)

    page.goto(base_url + "/claim")
    assert page.get_by_role("heading", level=1).inner_text() == "Someone may have tipped you"
    page.get_by_role("button", name="Sign in with X").click()

    page.wait_for_url(sandbox.authorize_url + "?*")
    assert "Authorize tipjar" in page.get_by_role("heading", level=1).inner_text()
    page.get_by_role("button", name="Authorize app").click()

    page.wait_for_url(base_url + "/claim/done")
    said = " ".join(page.locator("main").inner_text().split())
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "claim-result.png"), full_page=True)
    assert "€3.60 from 4 supporters" in said
    assert "tipjar's 10% fee of €0.40" in said

    page.get_by_role("link", name="See your account").click()
    page.wait_for_url(base_url + "/me")
    account = " ".join(page.locator("main").inner_text().split())
    page.screenshot(path=str(ARTIFACTS / "account-page.png"), full_page=True)
    assert "Available €3.60" in account
    assert problems == []  # no CSP violation, no missing stylesheet or icon
    assert ledger.account(creator).available_minor == 360
    assert ledger.check_ledger() == []
    assert sandbox.world.requests_to("/2/users/me")  # tipjar asked X who signed in
    context.close()


def test_the_page_is_styled_and_fits_a_phone(chromium, tipjar):
    base_url, _ledger = tipjar
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()

    page.goto(base_url + "/claim")

    width = page.evaluate("document.documentElement.scrollWidth")
    button = page.get_by_role("button", name="Sign in with X")
    colour = button.evaluate("e => getComputedStyle(e).backgroundColor")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "claim-page.png"), full_page=True)
    assert width <= 390  # nothing overflows sideways
    assert colour == "rgb(11, 93, 59)"  # the stylesheet loaded under the CSP
    context.close()
