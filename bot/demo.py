"""`tipjar demo`: the whole of tipjar, told as one story against the loopback X sandbox.

Everything real runs: the schema migrations on a throwaway SQLite database, the ledger,
the listener reading mentions through the tweepy adapter, the outbox relay posting
through it, the claim web app served over HTTP with the real OAuth 2.0 sign-in, the
monthly settlement, the expiry and the audit. Only X is local (`bot.platforms.x.sandbox`), and only
loopback is used. One shared clock drives the sandbox, the web app and the ledger, so the
story can jump to the next month and past the hold period in a second.

The settings are built here, explicitly: a `.env` in the working directory and the
environment's X_* keys are ignored, so `make demo` behaves the same on every machine.
Each step checks what it shows; a step that does not turn out as told ends the demo with
`DemoFailure` (the CLI exits 1 with its reason).

Stripe is local too (`bot.payments.sandbox`): alice adds money on /me through its checkout
page, and its signed webhooks credit her; a second top-up is refunded.

`run_story` tells the whole story; `serve` seeds it up to the claim and keeps the sandbox
and the web app running for a person to claim in their own browser.
"""

from __future__ import annotations

import contextlib
import io
import logging
import secrets
import shutil
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import click
import requests
from sqlalchemy import Connection, Engine, select
from werkzeug.serving import BaseWSGIServer, make_server

from bot import app as composition
from bot.cli.context import Context
from bot.cli.funds_cmds import funds_list_cmd
from bot.cli.output import money, table
from bot.config import Settings, load_settings
from bot.demo_mastodon import mastodon_act
from bot.hosts import is_loopback
from bot.listener import poll_once
from bot.notices import NOTICE_DELAY, plan_notices
from bot.outbox import send_pending
from bot.payments.sandbox import StripeSandbox
from bot.platforms.x.api import TweepyXApi
from bot.platforms.x.sandbox import Sandbox, Tweet, User
from bot.platforms.x.sandbox.server import QuietHandler
from bot.platforms.x.wiring import build_x_api
from bot.status import record_poll
from escrow.db import make_engine, transaction
from escrow.flattrs import get_budget, period_of
from escrow.ledger import SYSTEM, Identity, Policy, find_account
from escrow.migrate import upgrade
from escrow.money import Money
from escrow.reports import holds_for
from escrow.schema import accounts, mentions
from escrow.service import Ledger
from escrow.settlement import settle

log = logging.getLogger(__name__)

Write = Callable[[str], None]

#: The story starts here: a fixed, readable moment (nothing depends on the real date).
START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
CURRENCY = "EUR"
DEPOSIT = "10.00"  # alice's first top-up by card
SECOND_TOPUP = "5.00"  # refunded later in the story
BUDGET = "3.00"
HTTP_TIMEOUT = 10.0
SERVE_POLL_SECONDS = 2.0

PEOPLE = (
    ("alice", "Alice Supporter"),
    ("bob", "Bob Creator"),
    ("carol", "Carol Artist"),
    ("dave", "Dave Musician"),
)


class DemoFailure(Exception):
    """A step of the demo did not turn out as told; the message says which and how."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailure(message)


class DemoClock:
    """The one clock of the demo: it moves when told to and, when `ticking`, with real time.

    The full story uses a still clock (it jumps a month, then past the hold period);
    `--serve` lets it tick so that a person's sign-in and tweets happen "now".
    """

    def __init__(self, start: datetime, *, ticking: bool = False) -> None:
        self._start = start
        self._offset = timedelta(0)
        self._ticking = ticking
        self._t0 = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            now = self._start + self._offset
            if self._ticking:
                now += timedelta(seconds=time.monotonic() - self._t0)
            return now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._offset += delta
        return self()

    def set(self, moment: datetime) -> datetime:
        return self.advance(moment - self())


def _local_session() -> requests.Session:
    """An HTTP client for loopback only: no proxy from the environment, no .netrc."""
    session = requests.Session()
    session.trust_env = False
    return session


# --------------------------------------------------------------------------- the stage


@dataclass
class Stage:
    """Everything running for the demo: database, sandbox, web app, clients, the cast."""

    settings: Settings
    engine: Engine
    sandbox: Sandbox
    stripe: StripeSandbox
    web_url: str
    clock: DemoClock
    ledger: Ledger
    x_api: TweepyXApi
    people: dict[str, User]
    tweets: dict[str, Tweet] = field(default_factory=dict)

    @property
    def policy(self) -> Policy:
        return self.ledger.policy

    def identity(self, name: str) -> Identity:
        user = self.people[name]
        return Identity.x(user.id, user.username)

    def eur(self, text: str) -> Money:
        return Money.parse(text, self.settings.currency)

    def available(self, name: str) -> Money:
        view = self.ledger.account(self.identity(name))
        return self.settings.money(view.available_minor if view else 0)

    def cli(self, command: click.Command, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        """What a real `tipjar` command prints against this demo's database."""
        ctx = Context()
        # Context builds these lazily from the environment; the demo hands over its own.
        ctx.settings = self.settings
        ctx.raw_engine = self.engine
        ctx.engine = self.engine
        ctx.ledger = self.ledger
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                command.main(list(args), prog_name=command.name, obj=ctx, standalone_mode=False)
        except SystemExit as e:
            if (e.code or 0) not in ok:
                shown = " ".join([str(command.name), *args])
                raise DemoFailure(f"`{shown}` exited {e.code}: {out.getvalue().strip()}") from e
        return out.getvalue().rstrip("\n")


@contextlib.contextmanager
def stage(
    *, host: str = "127.0.0.1", web_port: int = 0, sandbox_port: int = 0, ticking: bool = False
) -> Iterator[Stage]:
    """Start the sandbox and the web app on loopback over a fresh database; clean up after."""
    if not is_loopback(host):
        raise ValueError(f"the demo serves on loopback only, not {host!r}")
    clock = DemoClock(START, ticking=ticking)
    workdir = tempfile.mkdtemp(prefix="tipjar-demo-")
    sandbox = Sandbox(host=host, port=sandbox_port, bot_username="flattr", clock=clock)
    stripe_box = StripeSandbox(host=host)
    server: BaseWSGIServer | None = None
    thread: threading.Thread | None = None
    engine: Engine | None = None
    try:
        people = {name: sandbox.world.add_user(name, name=full) for name, full in PEOPLE}
        sandbox.start()
        stripe_box.start()
        # Bind first, so that PUBLIC_BASE_URL (the OAuth callback) names the real port.
        server = make_server(
            host, web_port, _unavailable, threaded=True, request_handler=QuietHandler
        )
        netloc = f"[{host}]" if ":" in host else host
        web_url = f"http://{netloc}:{server.server_port}"
        stripe_box.webhook_url = f"{web_url}/stripe/webhook"
        stripe_box.connect_webhook_url = f"{web_url}/stripe/webhook/connect"
        settings = load_settings(
            {
                **sandbox.env(),
                **stripe_box.env(),
                "DATABASE_URL": f"sqlite:///{workdir}/tipjar-demo.db",
                "CURRENCY": CURRENCY,
                "FEE_PERCENT": "10",
                "HOLD_PERIOD": "90d",
                "MIN_MONTHLY_BUDGET": "2.00",
                "NOTICE_SCHEDULE": "first,before-expiry:14d",
                # The story's reply tip is €0.50: this deployment tells creators of that.
                "NOTICE_MIN_HELD": "0.50",
                "PUBLIC_BASE_URL": web_url,
                "SECRET_KEY": secrets.token_urlsafe(48),
                "LOG_LEVEL": "WARNING",
                "PAYOUT_MIN": "1.00",  # bob withdraws his €1.80
            },
            env_file=None,
        )
        engine = make_engine(settings.database_url)
        upgrade(engine)

        from bot.web import create_app  # Flask is needed only once the stage is up

        server.app = create_app(settings, engine=engine, clock=clock, http=_local_session())
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="tipjar-demo-web",
            daemon=True,
        )
        thread.start()
        yield Stage(
            settings=settings,
            engine=engine,
            sandbox=sandbox,
            stripe=stripe_box,
            web_url=web_url,
            clock=clock,
            ledger=composition.ledger(settings, engine, clock),
            x_api=build_x_api(settings, clock=clock, max_retries=1),
            people=people,
        )
    finally:
        if server is not None:
            if thread is not None:
                server.shutdown()
                thread.join(timeout=5)
            server.server_close()
        sandbox.stop()
        stripe_box.stop()
        if engine is not None:
            engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


def _unavailable(environ: Any, start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting\n"]


# --------------------------------------------------------------------------- narration


class Narrator:
    def __init__(self, write: Write) -> None:
        self.write = write
        self.step = 0

    def heading(self, title: str) -> None:
        self.step += 1
        self.write("")
        self.write(f"== {self.step}. {title} ".ljust(78, "="))

    def say(self, text: str = "") -> None:
        self.write(text)

    def block(self, text: str, indent: str = "    ") -> None:
        for line in text.splitlines():
            self.write(indent + line if line else "")


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _quote(text: str) -> str:
    return f"“{text}”"


# --------------------------------------------------------------------------- the steps


def introduce(st: Stage, n: Narrator) -> None:
    n.heading("The stage")
    n.say("A throwaway SQLite database, migrated to the newest schema; the X and Stripe")
    n.say("sandboxes and the web app, all on loopback. Nothing leaves this machine.")
    n.block(
        table(
            ["what", "where"],
            [
                ("X sandbox (fake X API)", st.sandbox.base_url),
                ("Stripe sandbox (fake Stripe API and checkout)", st.stripe.base_url),
                ("claim web app", st.web_url),
                ("the bot", f"@{st.settings.x_bot_username}"),
                ("people", ", ".join(f"@{name}" for name, _ in PEOPLE)),
                ("clock", _at(st.clock())),
            ],
        )
    )


def deposit(st: Stage, n: Narrator) -> None:
    n.heading("Alice adds money by card (Stripe Checkout, over HTTP)")
    browser = _local_session()
    n.say("@alice signs in on the web app with X, then opens /me and presses 'Add €10.00'.")
    _sign_in(st, browser, st.people["alice"])
    _top_up(st, n, browser, DEPOSIT)
    amount = st.eur(DEPOSIT)
    expect(
        st.available("alice") == amount, f"alice should have {amount}, has {st.available('alice')}"
    )
    n.say(f"Back on /me at once: {_quote(f'Available {amount}')}. Nothing was credited until")
    n.say("Stripe's signed event said the payment succeeded; a redelivery would change nothing.")

    n.say("")
    n.say(
        f"She adds {st.eur(SECOND_TOPUP)} more, then asks for it back; the operator refunds it in"
    )
    n.say("the Stripe dashboard, and Stripe sends charge.refunded:")
    second = _top_up(st, n, browser, SECOND_TOPUP)
    st.stripe.refund(second)
    refunded = st.stripe.deliveries[-1]
    expect(refunded.status == 200, f"the refund's webhook answered {refunded.status}")
    expect(st.available("alice") == amount, "the refund should leave alice her first €10.00")
    n.say(f"{refunded.event['type']} -> 200: the €5.00 left her balance; {amount} available again.")
    n.say("$ tipjar funds list")
    n.block(st.cli(funds_list_cmd))


def _sign_in(st: Stage, browser: requests.Session, user: User) -> None:
    """`user` signs in on the web app with X (the sandbox's consent page), in `browser`."""
    r = browser.get(f"{st.web_url}/claim/start", allow_redirects=False, timeout=HTTP_TIMEOUT)
    authorize = r.headers["Location"]
    consent = _page(browser.get(authorize, timeout=HTTP_TIMEOUT).text)
    form = [*consent.fields, ("user_id", user.id), ("decision", "authorize")]
    decision = urljoin(authorize, consent.action or "")
    r = browser.post(decision, data=form, allow_redirects=False, timeout=HTTP_TIMEOUT)
    r = browser.get(r.headers["Location"], timeout=HTTP_TIMEOUT)
    expect(r.status_code == 200, f"{user.username}'s sign-in ended with {r.status_code}")


def _top_up(st: Stage, n: Narrator, browser: requests.Session, amount: str) -> str:
    """Add `amount` on /me and pay on the Stripe sandbox's page; the payment intent's id."""
    me = _page(browser.get(f"{st.web_url}/me", timeout=HTTP_TIMEOUT).text)
    token = dict(me.fields).get("csrf_token", "")
    r = browser.post(
        f"{st.web_url}/me/topup",
        data={"csrf_token": token, "amount": amount},
        allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )
    expect(r.status_code == 303, f"/me/topup answered {r.status_code}")
    checkout = r.headers["Location"]
    n.say(f"POST /me/topup            -> 303 to Stripe Checkout ({_path(checkout)})")
    r = browser.post(checkout, data={"pay": "1"}, timeout=HTTP_TIMEOUT)
    expect(r.status_code == 200, f"paying on the checkout page ended with {r.status_code}")
    delivered = st.stripe.deliveries[-1]
    n.say(
        f"POST {_path(checkout)[:20]:20} -> paid; Stripe signs and sends"
        f" {delivered.event['type']} -> {delivered.status}; back to /me"
    )
    expect(delivered.status == 200, f"the webhook answered {delivered.status}")
    session_id = checkout.rsplit("/", 1)[1]
    return str(st.stripe.objects[session_id]["payment_intent"])


def tweet(st: Stage, n: Narrator) -> None:
    n.heading("Alice tweets")
    world, people = st.sandbox.world, st.people
    song = world.mention(people["dave"], "My new song is out today!")
    st.tweets["song"] = song
    n.say(f"@dave:  {_quote(song.text)}")
    story = (
        ("tip", "@flattr @bob €2", None, "an explicit tip to @bob, who has no account yet"),
        ("flattr", "@flattr @carol", None, "a flattr: one share of alice's monthly budget"),
        ("reply", "@dave @flattr €0.50", song.id, "a reply tip to the author of the tweet"),
        ("malformed", "@flattr @bob €2.505", None, "one decimal too many for EUR"),
    )
    for key, text, reply_to, meaning in story:
        st.clock.advance(timedelta(minutes=1))
        posted = world.mention(people["alice"], text, in_reply_to=reply_to)
        st.tweets[key] = posted
        where = " (reply to @dave)" if reply_to else ""
        n.say(f"@alice: {_quote(text):24}{where:18} {meaning}")
    # Thread chatter: X prefills a reply with the thread's mentions, the bot's among them.
    st.clock.advance(timedelta(minutes=1))
    tip = st.tweets["tip"]
    prefix = world.reply_prefix(tip.id, people["bob"])
    chatter = world.mention(people["bob"], prefix + "\U0001f64f thank you!", in_reply_to=tip.id)
    st.tweets["chatter"] = chatter
    n.say(
        f"@bob:   {_quote(chatter.text):24}{' (reply to @alice)':18} thread chatter: X "
        f"prefilled {prefix.strip()}, bob typed the rest"
    )


EXPECTED_OUTCOMES = {
    "tip": "held",
    "flattr": "flattred",
    "reply": "held",
    "malformed": "bad_amount",
    "chatter": "not_a_command",
}
MEANING = {
    "tip": "€2.00 held in escrow for @bob for 90 days",
    "flattr": "a share of alice's budget, paid when the month is settled",
    "reply": "€0.50 held in escrow for @dave",
    "malformed": "refused, nothing moved; alice gets a reply",
    "chatter": "only bob's own words count: no tip, no reply",
}


def poll(st: Stage, n: Narrator) -> None:
    n.heading("The worker polls the mentions")
    n.say("The worker's poll job (what `tipjar poll --once` runs), mention by mention:")
    result = poll_once(st.engine, st.x_api, st.settings, clock=st.clock)
    expect(result.ok, f"the poll failed: {result.error}")
    expect(result.processed == 5, f"5 mentions should be processed, not {result.processed}")
    with st.engine.connect() as conn:
        outcomes = dict(conn.execute(select(mentions.c.tweet_id, mentions.c.outcome)).all())
    rows = []
    for key in ("tip", "flattr", "reply", "malformed", "chatter"):
        tweet = st.tweets[key]
        outcome = outcomes.get(tweet.id, "(not seen)")
        expect(
            outcome == EXPECTED_OUTCOMES[key],
            f"{tweet.text!r} should be {EXPECTED_OUTCOMES[key]}, but was {outcome}",
        )
        rows.append((_quote(tweet.text), outcome, MEANING[key]))
    n.block(table(["mention", "outcome", "what happened"], rows))
    n.say(
        f"{result.mentions_seen} mentions read: {result.tips_applied} tips applied, "
        f"{result.flattrs_recorded} flattr recorded, {result.replies_queued} reply queued"
    )
    view = st.ledger.account(st.identity("alice"))
    expect(view is not None, "alice has no account")
    assert view is not None
    cur = st.settings.currency
    n.say(
        f"@alice: {money(view.available_minor, cur)} available, "
        f"{money(view.reserved_minor, cur)} reserved in tips waiting for their creators"
    )


def notices(st: Stage, n: Narrator) -> None:
    n.heading("The bot tells the creators, in the tip's thread")
    st.clock.advance(NOTICE_DELAY)
    n.say(
        f"(the clock moves to {_at(st.clock())}: a tip counts for a notice once it has stood"
        " a day, so one taken back at once never makes the bot post)"
    )
    n.say("The worker's notices job (what `tipjar notices send --once` runs):")
    now = st.clock()
    plan = transaction(st.engine, lambda conn: plan_notices(conn, st.settings, now))
    sent = send_pending(st.engine, st.x_api, now, settings=st.settings)
    expect(sent.failed == 0 and sent.error is None, f"the relay failed: {sent}")
    n.block(f"{plan.planned} creator notices planned; {sent.sent} posts sent")
    posted = st.sandbox.world.posted
    by_target = {p.in_reply_to: p for p in posted}
    for key, who in (("tip", "@bob"), ("reply", "@dave"), ("malformed", "@alice")):
        tip_tweet = st.tweets[key]
        post = by_target.get(tip_tweet.id)
        expect(post is not None, f"nothing was posted in reply to {tip_tweet.text!r}")
        assert post is not None
        expect(
            post.conversation_id == tip_tweet.conversation_id,
            f"the post to {who} is not in the tip's thread",
        )
        if key != "malformed":
            expect("€" in post.text, f"the notice to {who} does not say how much waits")
        n.say("")
        kind = "reply to the malformed tip" if key == "malformed" else f"notice to {who}"
        n.say(
            f"@{post.author.username} posted ({kind}), a reply to @alice's "
            f"{_quote(tip_tweet.text)}, in its thread:"
        )
        n.block(textwrap.fill(post.text, width=74, break_long_words=False))
    expect(len(posted) == 3, f"3 posts were expected, {len(posted)} were made")


def balances(st: Stage, n: Narrator) -> None:
    from bot.cli.ledger_cmds import escrow_balances

    n.heading("What waits in escrow")
    n.say("$ tipjar escrow balances")
    n.block(st.cli(escrow_balances))


class _Page(HTMLParser):
    """The few things the demo reads from an HTML page: forms' fields, h1, p.amount."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: list[tuple[str, str]] = []
        self.h1 = ""
        self.amount = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = a.get("action", "")
        elif tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "h1":
            self._in = "h1"
        elif tag == "p" and "amount" in a.get("class", "").split():
            self._in = "amount"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "p"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "h1":
            self.h1 += data
        elif self._in == "amount":
            self.amount += data


def _page(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def _path(url: str) -> str:
    return urlsplit(url).path


def claim(st: Stage, n: Narrator) -> None:
    n.heading("@bob claims, signing in with X (OAuth 2.0 + PKCE, over HTTP)")
    bob = st.people["bob"]
    browser = _local_session()

    def show(method: str, url: str, response: requests.Response, what: str) -> None:
        n.say(f"{method:4} {_path(url):22} -> {response.status_code} {what}")

    start = f"{st.web_url}/claim/start"
    r = browser.get(start, allow_redirects=False, timeout=HTTP_TIMEOUT)
    expect(r.status_code == 302, f"/claim/start answered {r.status_code}")
    authorize = r.headers["Location"]
    expect(
        authorize.startswith(st.settings.x_oauth_authorize_url),
        f"/claim/start did not send the browser to X: {authorize}",
    )
    show("GET", start, r, "to X's sign-in page, with a fresh state and a PKCE challenge")

    r = browser.get(authorize, timeout=HTTP_TIMEOUT)
    expect(r.status_code == 200, f"the consent page answered {r.status_code}")
    consent = _page(r.text)
    expect(bool(consent.fields), "the consent page has no form")
    show("GET", authorize, r, _quote(" ".join(consent.h1.split())))

    decision = urljoin(authorize, consent.action or "")
    form = [*consent.fields, ("user_id", bob.id), ("decision", "authorize")]
    r = browser.post(decision, data=form, allow_redirects=False, timeout=HTTP_TIMEOUT)
    expect(r.status_code == 302, f"the consent form answered {r.status_code}")
    callback = r.headers["Location"]
    expect(callback.startswith(st.settings.callback_url), f"X sent bob to {callback}")
    show("POST", decision, r, "as @bob, 'Authorize app': back to the callback with a code")

    r = browser.get(callback, allow_redirects=False, timeout=HTTP_TIMEOUT)
    expect(r.status_code == 303, f"the callback answered {r.status_code}: {r.text[:200]}")
    show("GET", callback, r, "code exchanged, /2/users/me read, holds posted")

    done_url = urljoin(callback, r.headers["Location"])
    r = browser.get(done_url, timeout=HTTP_TIMEOUT)
    expect(r.status_code == 200, f"the result page answered {r.status_code}")
    page = _page(r.text)
    show("GET", done_url, r, "the result page")
    sentence = " ".join(f"{page.h1}: {page.amount}".split())
    n.say("")
    n.say(f"The page says: {_quote(sentence)}")
    expect("arrived" in page.h1, f"the claim page says {sentence!r}")

    view = st.ledger.account(st.identity("bob"))
    expect(view is not None and view.status == "claimed", "bob's account is not claimed")
    assert view is not None
    cur = st.settings.currency
    n.say(
        f"@bob's account is now {view.status}: {money(view.available_minor, cur)} available "
        f"(the €2.00 tip less the {st.settings.fee_percent}% fee)"
    )


def settlement(st: Stage, n: Narrator) -> None:
    from bot.cli.settle_cmds import set_budget_cmd

    n.heading("The month ends: flattrs are settled")
    budget = st.eur(BUDGET)
    n.say(f"$ tipjar accounts set-budget @alice {BUDGET}")
    n.block(st.cli(set_budget_cmd, "@alice", BUDGET))
    with st.engine.connect() as conn:
        alice_row = find_account(conn, st.identity("alice"))
        expect(alice_row is not None, "alice has no account")
        assert alice_row is not None
        expect(get_budget(conn, int(alice_row.id)) == budget.minor, "alice's budget is not set")
    period = period_of(st.tweets["flattr"].created_at)
    year, month = map(int, period.split("-"))
    next_month = datetime(year + month // 12, month % 12 + 1, 1, 0, 15, tzinfo=UTC)
    st.clock.set(next_month)
    n.say(f"(the clock moves to {_at(st.clock())}: the worker's monthly job settles {period},")
    n.say(f" as `tipjar settle --period {period}` would)")
    before = st.available("alice")
    summary = settle(
        st.engine,
        st.policy,
        period,
        st.clock(),
        default_budget_minor=st.settings.min_monthly_budget_minor,
    )
    cur = st.settings.currency
    n.block(
        table(
            ["period", "supporters", "shares", "paid", "held", "fees"],
            [
                (
                    summary.period,
                    summary.supporters_settled,
                    summary.shares,
                    money(summary.total_posted_minor, cur),
                    money(summary.total_held_minor, cur),
                    money(summary.total_fees_minor, cur),
                )
            ],
            right=(1, 2, 3, 4, 5),
        )
    )
    expect(summary.shares == 1, f"one share should be settled, not {summary.shares}")
    expect(summary.total_held_minor == budget.minor, "alice's budget should wait for @carol")
    after = st.available("alice")
    n.say(
        f"alice's {budget} budget went to her one flattr: {budget} now waits for @carol "
        f"(alice's available: {before} -> {after})"
    )
    again = settle(st.engine, st.policy, period, st.clock())
    expect(again.already_settled, "settling the month twice should change nothing")
    expect(st.available("alice") == after, "settling twice moved money")
    n.say(f"settling {period} again changes nothing (already settled)")


def expiry(st: Stage, n: Narrator) -> None:
    from bot.cli.ledger_cmds import accounts_show, expire

    n.heading("Unclaimed money goes back")
    with st.engine.connect() as conn:
        holds = holds_for(conn, st.identity("dave"))
    expect(len(holds) == 1, f"one hold should wait for @dave, not {len(holds)}")
    hold = holds[0]
    n.say(f"@dave never claimed alice's €0.50; the hold expires {_at(hold.expires_at)}")
    before = st.available("alice")
    st.clock.set(hold.expires_at + timedelta(minutes=1))
    hold_days = st.settings.hold_period.days
    n.say(f"(the clock moves to {_at(st.clock())}, past the {hold_days}-day hold period)")
    n.say("$ tipjar expire --once")
    n.block(st.cli(expire, "--once"))
    after = st.available("alice")
    with st.engine.connect() as conn:
        expect(holds_for(conn, st.identity("dave")) == [], "the hold to @dave did not expire")
    expect(after - before == st.eur("0.50"), f"alice got {after - before} back, not €0.50")
    n.say(f"@alice's available balance: {before} -> {after}")
    n.say("$ tipjar accounts show @alice")
    n.block(st.cli(accounts_show, "@alice"))


def payout(st: Stage, n: Narrator) -> None:
    from bot.cli.ledger_cmds import accounts_show
    from bot.cli.payout_cmds import payouts_list, payouts_run

    n.heading("@bob withdraws his €1.80 (Stripe Connect, over HTTP)")
    browser = _local_session()
    _sign_in(st, browser, st.people["bob"])
    me = f"{st.web_url}/me"

    def token() -> str:
        return dict(_page(browser.get(me, timeout=HTTP_TIMEOUT).text).fields).get("csrf_token", "")

    r = browser.post(
        f"{me}/payouts/connect",
        data={"csrf_token": token()},
        allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )
    expect(r.status_code == 303, f"/me/payouts/connect answered {r.status_code}")
    onboarding = r.headers["Location"]
    n.say(f"POST /me/payouts/connect  -> 303 to Stripe's onboarding ({_path(onboarding)[:30]}…)")
    r = browser.post(onboarding, data={"submit": "1"}, allow_redirects=False, timeout=HTTP_TIMEOUT)
    expect(r.status_code == 303, f"the onboarding page answered {r.status_code}")
    delivered = st.stripe.deliveries[-1]
    expect(delivered.status == 200, f"the Connect webhook answered {delivered.status}")
    n.say(
        f"POST {_path(onboarding)[:20]:20} -> bob submits; Stripe signs and sends"
        f" {delivered.event['type']} (payouts_enabled) -> {delivered.status}; back to /me"
    )
    r = browser.post(
        f"{me}/payouts",
        data={"csrf_token": token(), "amount": "1.80"},
        allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )
    expect(r.status_code == 303, f"/me/payouts answered {r.status_code}")
    expect(st.available("bob") == st.eur("0.00"), "bob's €1.80 is not reserved for the payout")
    n.say("POST /me/payouts 1.80      -> 303; €1.80 is on its way (a hold bob -> payouts)")
    n.say("$ tipjar payouts run --once   (the worker does this every minute)")
    n.block(st.cli(payouts_run, "--once"))
    (made,) = st.stripe.transfers()
    expect(made["amount"] == 180, f"Stripe was asked to transfer {made['amount']}")
    n.say(f"Stripe made one transfer {made['id']} of €1.80 to {made['destination']}")
    n.say("$ tipjar payouts list")
    n.block(st.cli(payouts_list))
    n.say("$ tipjar accounts show @bob")
    n.block(st.cli(accounts_show, "@bob"))


def audit(st: Stage, n: Narrator) -> None:
    from bot.cli.ledger_cmds import audit as audit_cmd

    n.heading("The audit")
    cur = st.settings.currency
    rows: list[Sequence[object]] = []
    total = deposits = 0
    with st.engine.connect() as conn:
        for row in conn.execute(select(accounts).order_by(accounts.c.id)):
            posted = int(row.credits_posted - row.debits_posted)
            if row.platform == SYSTEM and row.platform_user_id == "funding":
                deposits = -posted
                continue
            if posted == 0 and row.debits_pending == 0:
                continue
            rows.append(
                (
                    f"@{row.handle}" if row.platform != SYSTEM else f"({row.handle})",
                    row.status,
                    money(posted - int(row.debits_pending), cur),
                    money(int(row.debits_pending), cur),
                )
            )
            total += posted
        alice = find_account(conn, st.identity("alice"))
    expect(alice is not None, "alice has no account")
    n.say("Where the money is now:")
    n.block(table(["account", "status", "available", "reserved"], rows, right=(2, 3)))
    n.say(
        f"available + reserved = {money(total, cur)}; money in less refunds ="
        f" {money(deposits, cur)}: "
        "nothing lost, nothing doubled"
    )
    expect(total == deposits, "the balances do not add up to the deposits")
    n.say("$ tipjar audit")
    problems = st.ledger.check_ledger()
    expect(problems == [], "the audit found problems: " + "; ".join(map(str, problems)))
    n.block(st.cli(audit_cmd))


def operations(st: Stage, n: Narrator) -> None:
    from bot.cli.ops_cmds import status_cmd

    n.heading("What the maintainer sees")
    # The worker polls every minute and records it for `tipjar status`; so does the demo.
    polled = poll_once(st.engine, st.x_api, st.settings, clock=st.clock)
    record_poll(
        st.engine,
        "x",
        polled.mentions_seen,
        polled.outcomes,
        ok=polled.ok and polled.rate_limited_until is None,
        now=st.clock(),
    )
    n.say("$ tipjar status               # one screen; exit 1 when a maintainer is needed")
    n.block(st.cli(status_cmd, ok=(0, 1)))


STORY_TO_CLAIM = (introduce, deposit, tweet, poll, notices, balances)
STORY_FROM_CLAIM = (claim, settlement, expiry, mastodon_act, payout, audit, operations)


def run_story(write: Write = click.echo) -> float:
    """Tell the whole story; returns the seconds it took. Raises DemoFailure on a bad step."""
    began = time.monotonic()
    n = Narrator(write)
    write("tipjar demo: tips by tweet, held in escrow until the creator claims them.")
    with stage() as st:
        for step in (*STORY_TO_CLAIM, *STORY_FROM_CLAIM):
            step(st, n)
    took = time.monotonic() - began
    n.say("")
    n.say(f"The story took {took:.1f} s. Run `tipjar demo --serve` to claim in your browser.")
    return took


# --------------------------------------------------------------------------- --serve


def _serve_loop(st: Stage, stop: threading.Event) -> None:
    """What the worker would do, every few seconds: read mentions, post notices."""
    while not stop.wait(SERVE_POLL_SECONDS):
        try:
            poll_once(st.engine, st.x_api, st.settings, clock=st.clock, should_stop=stop)
            now = st.clock()

            def plan(conn: Connection, now: datetime = now) -> object:
                return plan_notices(conn, st.settings, now)

            transaction(st.engine, plan)
            send_pending(st.engine, st.x_api, now, should_stop=stop, settings=st.settings)
        except Exception:
            log.exception("the demo's worker loop failed; it tries again")


def serve(
    *,
    host: str = "127.0.0.1",
    web_port: int = 0,
    sandbox_port: int = 0,
    write: Write = click.echo,
    stop: threading.Event | None = None,
) -> None:
    """Seed the story up to the claim, then serve until `stop` is set (or Ctrl-C)."""
    stop = stop or threading.Event()
    n = Narrator(write)
    write("tipjar demo --serve: the story up to the claim, then yours to play with.")
    try:
        _serve(n, stop, host=host, web_port=web_port, sandbox_port=sandbox_port)
    finally:
        write("tipjar demo: stopped; the demo database is gone.")


def _serve(
    n: Narrator, stop: threading.Event, *, host: str, web_port: int, sandbox_port: int
) -> None:
    with stage(host=host, web_port=web_port, sandbox_port=sandbox_port, ticking=True) as st:
        for step in STORY_TO_CLAIM:
            step(st, n)
        worker = threading.Thread(
            target=_serve_loop, args=(st, stop), name="tipjar-demo-worker", daemon=True
        )
        worker.start()
        n.heading("Your turn")
        n.block(
            table(
                ["", "URL"],
                [
                    ("claim page", f"{st.web_url}/claim"),
                    ("X sandbox control page", f"{st.sandbox.base_url}/"),
                    ("add money (sign in first)", f"{st.web_url}/me"),
                ],
            )
        )
        n.say("")
        n.say("Open the claim page, press 'Sign in with X' and authorize as @bob to claim")
        n.say("his €2.00 (or as @dave for €0.50). On the sandbox control page you can tweet")
        n.say("as anyone (e.g. as @alice: @flattr @carol €1); the demo polls every 2 s.")
        n.say("Signed in, /me adds money by card: the Stripe sandbox's page plays Stripe.")
        n.say("Ctrl-C stops.")
        try:
            while not stop.wait(0.5):
                pass
        finally:
            stop.set()
            worker.join(timeout=10)
