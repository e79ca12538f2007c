"""The maintainers' page: only for ADMIN_IDS, read-only, the same numbers as the CLI."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.web.admin import money_by_day
from escrow.ledger import Identity
from tests.integration.test_web_support import Site, text_of

ADMIN = ("900", "maintainer")
ALICE, BOB, CAROL = Identity.x("101", "alice"), Identity.x("202", "bob"), Identity.x("303", "carol")
DAVE = Identity.x("404", "dave")


@pytest.fixture
def site(engine, clock, rsps) -> Site:
    return Site(engine, clock, rsps, admin_ids=frozenset({f"x:{ADMIN[0]}"}))


@pytest.fixture
def held(site: Site) -> Site:
    """Alice and dave tipped bob and carol, who have not claimed yet."""
    site.fund(ALICE, "20.00")
    site.fund(DAVE, "5.00")
    site.tip(ALICE, BOB, "2.50", "t-1")
    site.tip(ALICE, CAROL, "1.00", "t-2")
    site.tip(DAVE, CAROL, "0.75", "t-3")
    return site


def test_anonymous_visitors_and_signed_in_non_admins_get_404(held):
    anonymous = held.browser().get("/admin")
    assert anonymous.status_code == 404

    someone = held.browser()
    held.sign_in("202", "bob", someone)
    assert someone.get("/me").status_code == 200  # really signed in
    refused = someone.get("/admin")

    assert refused.status_code == 404
    assert "Escrow balances" not in refused.get_data(as_text=True)


def test_the_admin_sees_status_balances_and_the_chart(held, db_url):
    admin = held.browser()
    held.sign_in(*ADMIN, admin)

    page = admin.get("/admin")

    assert page.status_code == 200
    body = page.get_data(as_text=True)
    text = text_of(body)
    assert "Maintainers" in text and "Held for creators €4.25" in text
    assert "Needs a maintainer" in text and "x: no successful poll yet" in text
    assert body.count("<svg") == 1 and body.count("<polyline") == 3
    assert "<script" not in body and " style=" not in body
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp

    cli = CliRunner().invoke(main, ["escrow", "balances", "--json"], env={"DATABASE_URL": db_url})
    report = json.loads(cli.stdout)
    rows = _balance_rows(body)
    assert [r[0] for r in rows] == [f"@{r['handle']}" for r in report["recipients"]]
    assert [r[1] for r in rows] == [f"€{r['held_minor'] / 100:.2f}" for r in report["recipients"]]
    assert [int(r[2]) for r in rows] == [r["tips"] for r in report["recipients"]]
    assert [int(r[3]) for r in rows] == [r["supporters"] for r in report["recipients"]]
    assert f"€{report['total_held_minor'] / 100:.2f}" in text


def _balance_rows(body: str) -> list[list[str]]:
    table = body.split('id="balances-h"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>\s*(.*?)</tr>", table.split("<tbody>", 1)[1], re.S)
    return [[text_of(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in rows]


def test_balances_sort_and_search_with_plain_query_parameters(held):
    admin = held.browser()
    held.sign_in(*ADMIN, admin)

    by_held = _balance_rows(admin.get("/admin").get_data(as_text=True))
    by_name = _balance_rows(admin.get("/admin?sort=creator&dir=desc").get_data(as_text=True))
    found = _balance_rows(admin.get("/admin?q=%40CAR").get_data(as_text=True))
    none = admin.get("/admin?q=100%25_").get_data(as_text=True)
    odd = admin.get("/admin?sort=nonsense&dir=sideways&page=x")

    assert [r[0] for r in by_held] == ["@bob", "@carol"]
    assert [r[0] for r in by_name] == ["@carol", "@bob"]
    assert [r[0] for r in found] == ["@carol"] and found[0][1] == "€1.75"
    assert "Nothing held for a handle like that" in text_of(none)
    assert odd.status_code == 200


def test_the_page_lists_failed_posts_and_holds_expiring_soon(held, clock):
    from sqlalchemy import insert

    from escrow.schema import outbox

    with held.engine.begin() as conn:
        conn.execute(
            insert(outbox).values(
                dedupe_key="reply:t-9",
                kind="supporter_reply",
                recipient_user_id="101",
                in_reply_to_tweet_id="9",
                text="Sorry",
                state="failed",
                attempts=5,
                error="POST /2/tweets: HTTP 403: forbidden",
                next_attempt_at=clock(),
                created_at=clock(),
            )
        )
    clock.advance(days=85)
    admin = held.browser()
    held.sign_in(*ADMIN, admin)

    text = text_of(admin.get("/admin").get_data(as_text=True))

    assert "HTTP 403: forbidden" in text and "outbox: 1 post(s) failed" in text
    soon = text.split("Holds expiring within 7 days", 1)[1].split("Failed posts", 1)[0]
    assert "@bob €2.50" in soon and soon.count("@carol") == 2


def test_the_chart_counts_held_released_and_returned_money_per_day(site, clock):
    start = clock()
    site.fund(ALICE, "20.00")
    site.tip(ALICE, BOB, "2.50", "t-1")
    site.tip(ALICE, CAROL, "1.00", "t-2")
    clock.advance(days=5)
    site.ledger.claim(BOB)
    clock.advance(days=3)
    dave_tip: Any = site.tip(ALICE, DAVE, "0.50", "t-3")
    site.ledger.retract(ALICE, dave_tip.tip_id)
    clock.advance(days=2)
    site.tip(ALICE, BOB, "0.30", "t-4")

    with site.engine.connect() as conn:
        chart = money_by_day(conn, clock())

    assert chart.days[-1] == clock().date() and len(chart.days) == 90
    at = {d: i for i, d in enumerate(chart.days)}
    first, claim, retract = (
        start.date(),
        (start + timedelta(days=5)).date(),
        (start + timedelta(days=8)).date(),
    )
    assert chart.held[at[first] - 1] == 0 and chart.held[at[first]] == 350
    assert chart.held[at[claim]] == 100 and chart.released[at[claim]] == 250
    assert chart.returned[at[retract]] == 50 and chart.held[at[retract]] == 100
    assert chart.released[-1] == 30 and chart.held[-1] == 100
    assert sum(chart.returned) == 50 and sum(chart.released) == 280
