"""The Mastodon act of `tipjar demo`: the same bot and ledger on a second platform.

Two loopback Mastodon instances (`bot.platforms.mastodon.sandbox`): the bot's, where the
supporter @mira lives, and another, where the creator @noor lives. Everything else is
real: `tipjar funds deposit` with a Mastodon address, the listener reading the bot's
mention notifications through Mastodon.py, the outbox relay posting the notice in the
tip's thread, `tipjar escrow balances`, and "Sign in with Mastodon" on the claim web app
served over HTTP (app registration on noor's instance, state and PKCE, the code exchange,
verify_credentials and WebFinger). The money lands in the ledger the X act used; the
audit after this act covers both platforms.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import textwrap
import threading
from collections.abc import Iterator
from html import unescape
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
from werkzeug.serving import make_server

from bot.config import Settings
from bot.listener import poll_once
from bot.notices import NOTICE_DELAY, plan_notices
from bot.outbox import send_pending
from bot.platforms.mastodon.sandbox import MastodonSandbox
from bot.platforms.mastodon.sandbox.server import approve
from bot.platforms.mastodon.wiring import build_mastodon_platform
from bot.platforms.x.sandbox.server import QuietHandler
from escrow.db import transaction
from escrow.ledger import Identity

if TYPE_CHECKING:  # bot.demo imports this module: no cycle at run time
    from bot.demo import Narrator, Stage

__all__ = ["mastodon_act"]

TIP = "1.50"
DEPOSIT = "5.00"
HTTP_TIMEOUT = 10.0


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def _starting(environ: object, start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting\n"]


@contextlib.contextmanager
def _web(settings: Settings, st: Stage) -> Iterator[str]:
    """The claim web app with Mastodon on, over HTTP on loopback; yields its base URL."""
    from bot.web import create_app

    server = make_server("127.0.0.1", 0, _starting, threaded=True, request_handler=QuietHandler)
    url = f"http://127.0.0.1:{server.server_port}"
    settings = dataclasses.replace(settings, public_base_url=url)
    server.app = create_app(settings, engine=st.engine, clock=st.clock)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def _claim(st: Stage, n: Narrator, settings: Settings, fedi: MastodonSandbox, noor: str) -> str:
    """noor signs in on her instance through the web app; the result page's headline."""
    say = n.say
    with _web(settings, st) as web:
        browser = _session()
        page = browser.get(f"{web}/claim", timeout=HTTP_TIMEOUT)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        _expect(token is not None, "the claim page has no Mastodon form")
        assert token is not None
        r = browser.post(
            f"{web}/claim/mastodon",
            data={"address": f"@{noor}", "csrf_token": unescape(token.group(1))},
            timeout=HTTP_TIMEOUT,
        )
        link = re.search(r'href="([^"]+/oauth/authorize\?[^"]+)"', r.text)
        _expect(r.status_code == 200 and link is not None, f"/claim/mastodon: {r.status_code}")
        assert link is not None
        authorize = unescape(link.group(1))
        say(
            f"POST /claim/mastodon      -> 200 tipjar registered on {fedi.other.domain}; "
            "a link to its authorize page (state + PKCE)"
        )
        consent = browser.get(authorize, timeout=HTTP_TIMEOUT)
        _expect(consent.status_code == 200, f"the authorize page answered {consent.status_code}")
        say(f"GET  /oauth/authorize     -> 200 on {fedi.other.domain}: 'Authorize as @noor'")
        callback = approve(
            fedi.world, fedi.other.domain, dict(_query(authorize)), noor.partition("@")[0]
        )
        r = browser.get(callback, allow_redirects=False, timeout=HTTP_TIMEOUT)
        _expect(r.status_code == 303, f"the callback answered {r.status_code}")
        say(
            "GET  /oauth/mastodon/callback -> 303 code exchanged, verify_credentials and "
            "WebFinger read, holds posted"
        )
        done = browser.get(urljoin(callback, r.headers["Location"]), timeout=HTTP_TIMEOUT)
        headline = re.search(r"<h1>(.*?)</h1>", done.text, re.S)
        return " ".join(unescape(headline.group(1)).split()) if headline else ""


def _query(url: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(urlsplit(url).query)


def _expect(condition: bool, message: str) -> None:
    from bot.demo import expect

    expect(condition, message)


def mastodon_act(st: Stage, n: Narrator) -> None:
    """Tell the Mastodon story on the demo's stage (`bot.demo.Stage`)."""
    from bot.cli.ledger_cmds import escrow_balances, funds_deposit

    say, heading, block = n.say, n.heading, n.block
    base = st.settings
    heading("Mastodon: the same bot, a second platform, the same ledger")
    with MastodonSandbox() as fedi:
        mira = fedi.world.add_account(fedi.home.domain, "mira", display_name="Mira").address
        noor = fedi.world.add_account(fedi.other.domain, "noor", display_name="Noor").address
        settings = dataclasses.replace(
            base,
            platforms=("x", "mastodon"),
            mastodon_base_url=fedi.home.base_url,
            mastodon_access_token=fedi.bot_token,
            mastodon_bot_acct=fedi.bot_address,
            allow_loopback_instances=True,
        )
        say(
            f"Two instances on loopback: the bot @{fedi.bot_address} and @mira live on "
            f"{fedi.home.domain}, @noor on {fedi.other.domain}."
        )
        args = (f"@{mira}", DEPOSIT, "--reference", "demo-mastodon-0001")
        say("$ tipjar funds deposit " + " ".join(args))
        block(st.cli(funds_deposit, *args))

        typed = f"@flattr @{noor} €{TIP}"
        tip = fedi.world.post(mira, typed)
        say(f"@mira posts: {typed!r}")
        bot = build_mastodon_platform(settings, clock=st.clock)
        result = poll_once(st.engine, bot, settings, clock=st.clock)
        _expect(result.tips_applied == 1, f"the Mastodon poll applied {result.tips_applied} tips")
        say(
            f"The worker polls GET /api/v1/notifications?types[]=mention: {result.processed} "
            "mention, 1 tip held for @noor."
        )
        st.clock.advance(NOTICE_DELAY)  # a tip counts for a notice once it has stood a day
        now = st.clock()
        transaction(st.engine, lambda conn: plan_notices(conn, settings, now))
        sent = send_pending(st.engine, bot, now, settings=settings)
        notice = next((s for s in fedi.world.statuses.values() if s.in_reply_to_id == tip.id), None)
        _expect(sent.sent == 1 and notice is not None, f"the Mastodon relay sent {sent}")
        assert notice is not None
        _expect(noor in notice.mentions, "the notice does not mention @noor")
        say(f"@flattr replied in @mira's thread ({notice.visibility}):")
        block(textwrap.fill(notice.text, width=74, break_long_words=False))
        say("$ tipjar escrow balances")
        block(st.cli(escrow_balances))

        say("")
        say("@noor claims, signing in with Mastodon on her own instance:")
        headline = _claim(st, n, settings, fedi, noor)
        say(f"The page says: {headline!r}")
        view = st.ledger.account(Identity("mastodon", noor))
        _expect(view is not None and view.status == "claimed", "noor's account is not claimed")
        assert view is not None
        say(f"@{noor} is now claimed: {st.settings.money(view.available_minor)} available.")
