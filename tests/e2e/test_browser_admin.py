"""The maintainers' page in a real browser: sign in with X as an admin, read /admin.

Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright, as in
test_browser_claim.py) signs in against the loopback X sandbox as the identity in
ADMIN_IDS and opens /admin over a hundred days of tips, claims and expiries. The page,
chart included, is saved as artifacts/admin-page.png for a person to look at. Skipped,
with the reason, when Chromium or Playwright is missing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
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
from tests.e2e import test_browser_claim

ARTIFACTS = test_browser_claim.ARTIFACTS
chromium = test_browser_claim.chromium  # the same headless Chromium fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as running:
        yield running


@pytest.fixture
def site(tmp_path, sandbox, clock) -> Iterator[tuple[str, Ledger, Any]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'tipjar.db'}")
    upgrade(engine)
    admin = sandbox.world.add_user("maintainer", name="The Maintainer")
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
        admin_ids=frozenset({f"x:{admin.id}"}),
    )
    holder["app"] = create_app(settings, engine=engine, clock=clock)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield base_url, Ledger(engine, policy(settings), clock), admin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        engine.dispose()


def a_hundred_days(ledger: Ledger, clock: Any) -> None:
    """Tips every few days to five creators; two claim, the oldest holds expire."""
    end = clock.now
    clock.now = end - timedelta(days=100)
    creators = [
        Identity.x(str(500 + i), name)
        for i, name in enumerate(["ada", "grace", "linus", "margaret", "dennis"])
    ]
    for n in range(12):
        ledger.deposit(Identity.x(str(900 + n), f"fan{n}"), Money(5000, "EUR"), f"dep-{n}")
    for day in range(0, 100, 3):
        clock.now = end - timedelta(days=100 - day)
        supporter = Identity.x(str(900 + day % 12), f"fan{day % 12}")
        ledger.tip(supporter, creators[day % 5], Money(100 + 35 * (day % 7), "EUR"), f"t-{day}")
        if day in (45, 72):
            ledger.claim(creators[day % 5])
        ledger.expire_due()
    clock.now = end
    ledger.expire_due()


def test_the_admin_reads_the_maintainers_page_in_a_real_browser(chromium, sandbox, site, clock):
    base_url, ledger, admin = site
    a_hundred_days(ledger, clock)
    sandbox.world.sign_in(admin)
    context = chromium.new_context(
        viewport={"width": 1280, "height": 900}, java_script_enabled=False
    )
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(m.text) if m.type == "error" and page.url.startswith(base_url) else None
        ),
    )

    assert page.goto(base_url + "/admin").status == 404  # not signed in yet
    problems.clear()  # that 404 was the point
    page.goto(base_url + "/claim")
    page.get_by_role("button", name="Sign in with X").click()
    page.wait_for_url(sandbox.authorize_url + "?*")
    page.get_by_role("button", name="Authorize app").click()
    page.wait_for_url(base_url + "/claim/done")
    page.goto(base_url + "/admin")

    assert page.get_by_role("heading", level=1).inner_text() == "Maintainers"
    chart = page.locator("figure.chart svg")
    box = chart.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 200
    assert page.locator("figure.chart polyline").count() == 3
    text = " ".join(page.locator("main").inner_text().split())
    held = ledger.escrow_balances()
    assert f"Held for creators €{held.total_held_minor / 100:.2f}" in text
    assert "Escrow balances" in text and "Holds expiring within 7 days" in text
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-page.png"), full_page=True)
    page.get_by_role("link", name="Creator").click()  # sort by handle, server-side
    assert page.url.endswith("sort=creator&dir=asc") or "sort=creator" in page.url
    first = page.locator("section[aria-labelledby=balances-h] tbody tr td").first.inner_text()
    assert first == "@dennis"  # ada and linus claimed; dennis, grace, margaret wait
    assert problems == []  # no CSP violation, nothing blocked
    context.close()
