"""A sign-in racing the expiry of the very holds it releases (PostgreSQL, real threads).

The callback's claim runs a second before the holds expire; `expire_due` runs a second
after, at the same moment. Whichever takes a hold first resolves it; the other finds it
gone. Every hold ends exactly once, posted or voided, and each creator's page tells the
truth about what was posted.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.app import policy
from escrow.audit import check_ledger
from escrow.expiry import expire_due
from escrow.ledger import Identity
from escrow.schema import tips, transfers
from tests.integration.test_web_support import Site, person_totals, text_of

CREATORS = 6
SUPPORTERS = [Identity.x(str(100 + i), f"fan{i}") for i in range(3)]


@pytest.mark.postgres
@pytest.mark.parametrize("round_", range(3))
def test_a_claim_racing_an_expiry_resolves_each_hold_exactly_once(pg_engine, clock, rsps, round_):
    site = Site(pg_engine, clock, rsps)
    creators = [Identity.x(str(5000 + i), f"creator{i}") for i in range(CREATORS)]
    for supporter in SUPPORTERS:
        site.fund(supporter, "50.00")
        for n, creator in enumerate(creators):
            site.tip(supporter, creator, f"{n + 1}.00", f"tweet-{supporter.user_id}-{n}")
    expires_at = clock.now + site.settings.hold_period
    clock.now = expires_at - timedelta(seconds=1)  # the claim still sees live holds
    browsers = [site.browser() for _ in creators]
    callbacks = [
        site.x.approve(site.start(b), c.user_id, c.handle or "")
        for b, c in zip(browsers, creators, strict=True)
    ]
    pages: dict[int, str] = {}
    failures: list[BaseException] = []
    barrier = threading.Barrier(2 * CREATORS)

    def sign_in(i: int) -> None:
        try:
            barrier.wait()
            page = browsers[i].get(callbacks[i], follow_redirects=True)
            pages[i] = text_of(page.get_data(as_text=True))
        except BaseException as e:  # reported below, with the thread's own traceback
            failures.append(e)

    def expire() -> None:
        try:
            barrier.wait()
            expire_due(pg_engine, policy(site.settings), expires_at + timedelta(seconds=1), 2)
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=sign_in, args=(i,)) for i in range(CREATORS)]
    threads += [threading.Thread(target=expire) for _ in range(CREATORS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    expire_due(pg_engine, policy(site.settings), expires_at + timedelta(seconds=1))

    assert failures == []
    with pg_engine.connect() as conn:
        states = dict(conn.execute(select(tips.c.state, func.count()).group_by(tips.c.state)).all())
        resolutions = conn.execute(
            select(transfers.c.pending_id, func.count())
            .where(transfers.c.pending_id.is_not(None))
            .group_by(transfers.c.pending_id)
        ).all()
        holds = conn.execute(
            select(func.count()).select_from(transfers).where(transfers.c.kind == "hold")
        ).scalar_one()
        assert check_ledger(conn) == []
    assert "held" not in states
    assert sum(states.values()) == len(SUPPORTERS) * CREATORS
    assert len(resolutions) == holds and {n for _, n in resolutions} == {1}
    assert person_totals(pg_engine) == (15000, 15000)
    for i, creator in enumerate(creators):
        posted_net = site.available(creator)
        said = pages[i]
        if posted_net:
            amount = re.search(r"€(\d+\.\d\d) from \d supporters?", said)
            assert amount, said
            assert amount.group(1) == f"{posted_net // 100}.{posted_net % 100:02d}"
        else:
            assert "Nothing was waiting for you" in said
