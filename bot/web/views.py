"""The pages: claim with "Sign in with X", the OAuth callback, the account page, health.

Three named groups (`_PageBasics`, `_ClaimPages`, `_AccountPages`) register their routes.
The callback binds the signed-in person by the user id the platform's `SignIn` port
returns (X: `GET /2/users/me`), never by a handle from a URL or a form, and posts every
hold waiting for that id in one transaction (`escrow.claims.claim`). The session then
holds the account id and nothing else of the platform's. Every change on the account page
is a POST carrying the CSRF token and ends in a redirect (post/redirect/get), so a reload
never repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import (
    Flask,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import Connection, case, or_, select, text
from sqlalchemy.orm import aliased
from werkzeug.wrappers import Response as BaseResponse

from bot.outbox import is_opted_out
from bot.outbox import opt_out as stop_notices
from bot.platforms import PlatformUser, SignInError
from bot.web import oauth, sessions
from bot.web.context import Web
from bot.web.security import error_page, log
from escrow import claims
from escrow import tips as tips_ops
from escrow.db import transaction
from escrow.flattrs import get_budget
from escrow.flattrs import set_budget as save_budget
from escrow.ledger import Identity, LedgerError, is_held
from escrow.money import Money, MoneyError, currency
from escrow.pending_flattrs import CancelStatus, cancel_flattr, pending_flattrs
from escrow.reports import AccountView, account_view
from escrow.schema import accounts, tips

HISTORY = 20
WAITING_LISTED = 100

STATE_PROBLEMS = {
    oauth.StateProblem.UNKNOWN: "This sign-in is not one we started. Please start again.",
    oauth.StateProblem.USED: "This sign-in link was already used. Please start again.",
    oauth.StateProblem.EXPIRED: "This sign-in took longer than 10 minutes. Please start again.",
}


@dataclass(frozen=True)
class HistoryLine:
    tip_id: int
    when: datetime
    direction: str  # "in" | "out"
    other: str  # @handle or x:ID of the other side
    amount: Money
    fee: Money
    kind: str
    state: str  # "posted" | "held" | "voided"
    resolution: str | None
    expires_at: datetime | None


def _name(handle: str | None, platform: str, user_id: str) -> str:
    return f"@{handle}" if handle else f"{platform}:{user_id}"


def _lines(conn: Connection, web: Web, account_id: int, query: Any) -> list[HistoryLine]:
    return [
        HistoryLine(
            tip_id=int(r.id),
            when=r.created_at,
            direction="out" if r.supporter_account_id == account_id else "in",
            other=_name(r.handle, r.platform, r.platform_user_id),
            amount=web.policy.money(r.amount_minor),
            fee=web.policy.money(r.fee_minor),
            kind=r.kind,
            state=r.state,
            resolution=r.resolution,
            expires_at=r.expires_at,
        )
        for r in conn.execute(query)
    ]


def _history(conn: Connection, web: Web, account_id: int) -> list[HistoryLine]:
    """The newest tips in and out of `account_id`, with the other side's name."""
    other = aliased(accounts)
    other_id = case(
        (tips.c.supporter_account_id == account_id, tips.c.recipient_account_id),
        else_=tips.c.supporter_account_id,
    )
    query = (
        select(tips, other.c.platform, other.c.platform_user_id, other.c.handle)
        .join(other, other.c.id == other_id)
        .where(
            or_(
                tips.c.supporter_account_id == account_id,
                tips.c.recipient_account_id == account_id,
            )
        )
        .order_by(tips.c.created_at.desc(), tips.c.id.desc())
        .limit(HISTORY)
    )
    return _lines(conn, web, account_id, query)


def _waiting_out(conn: Connection, web: Web, account_id: int) -> list[HistoryLine]:
    """This supporter's tips still held for their creators, soonest to expire first."""
    other = aliased(accounts)
    query = (
        select(tips, other.c.platform, other.c.platform_user_id, other.c.handle)
        .join(other, other.c.id == tips.c.recipient_account_id)
        .where(tips.c.supporter_account_id == account_id, is_held())
        .order_by(tips.c.expires_at, tips.c.id)
        .limit(WAITING_LISTED + 1)
    )
    return _lines(conn, web, account_id, query)


def _current(conn: Connection) -> Any | None:
    return sessions.current_account(conn)


def _parse_amount(raw: str, code: str) -> Money:
    """``5``, ``5.00``, ``€5``, ``5 EUR`` -> Money; raises MoneyError for anything else."""
    cur = currency(code)
    cleaned = raw.strip()
    for mark in (cur.symbol.strip(), cur.code, cur.code.lower()):
        cleaned = cleaned.removeprefix(mark).removesuffix(mark).strip()
    return Money.parse(cleaned, cur.code)


def _identity(row: Any) -> Identity:
    return Identity(row.platform, row.platform_user_id, row.handle)


class _Pages:
    """A named group of pages over the shared `Web`; `register` adds them to the app."""

    def __init__(self, web: Web) -> None:
        self.web = web
        self.settings = web.settings

    def register(self, app: Flask) -> None:
        raise NotImplementedError


def _signed_out() -> BaseResponse:
    session.pop("account_id", None)
    return redirect(url_for("claim_page"), 303)


class _PageBasics(_Pages):
    """What every page shares (template globals and filters) and the health check."""

    def register(self, app: Flask) -> None:
        app.context_processor(self.page_globals)
        app.add_template_filter(self.money_filter, "money")
        app.add_template_filter(self.plain_filter, "plain")
        app.add_template_filter(self.day_filter, "day")
        app.add_url_rule("/healthz", "healthz", self.healthz, methods=["GET"])

    def page_globals(self) -> dict[str, Any]:
        x_on = self.settings.serves("x")
        return {
            "signed_in": isinstance(session.get("account_id"), int),
            "x_on": x_on,
            # The handle people mention: the X one, or the Mastodon address where X is off.
            "bot": self.settings.x_bot_username if x_on else self.settings.mastodon_bot_acct,
            "fee_percent": self.web.policy.fee_percent,
            "hold_days": self.web.policy.hold_period.days,
        }

    def money_filter(self, value: Money | int) -> str:
        return str(value if isinstance(value, Money) else self.web.policy.money(int(value)))

    def plain_filter(self, value: Money | int) -> str:
        return (value if isinstance(value, Money) else self.web.policy.money(int(value))).plain()

    def day_filter(self, value: datetime | None) -> str:
        return value.strftime("%Y-%m-%d") if value else ""

    def healthz(self) -> tuple[BaseResponse, int]:
        try:
            with self.web.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:
            log.warning("health check: database unreachable (%s)", type(e).__name__)
            return jsonify(ok=False), 503
        return jsonify(ok=True), 200


def claim_for(web: Web, person: PlatformUser) -> BaseResponse:
    """Post everything waiting for the signed-in `person` and start their session
    (every platform's sign-in ends here)."""
    who = Identity(person.platform, person.user_id, person.handle or None)

    def work(conn: Connection) -> tuple[claims.ClaimResult, str, int]:
        result = claims.claim(conn, web.policy, who, web.now())
        status = conn.execute(
            select(accounts.c.status).where(accounts.c.id == result.account_id)
        ).scalar_one()
        # A claim ends every session of this account that was open before it.
        version = sessions.end_every_session(conn, result.account_id)
        return result, str(status), version

    result, status, version = transaction(web.engine, work)
    log.info(
        "claim by %s:%s: %d tips from %d supporters posted (%d minor), %d expired",
        person.platform,
        person.user_id,
        result.tips,
        result.supporters,
        result.gross.minor,
        result.expired,
    )
    sessions.sign_in(result.account_id, version)
    session["claim_result"] = {
        "gross": result.gross.minor,
        "fee": result.fee.minor,
        "net": result.net.minor,
        "tips": result.tips,
        "supporters": result.supporters,
        "expired": result.expired,
        "refusing": status == "refusing",
        "handle": person.handle,
    }
    return redirect(url_for("claim_done"), 303)


class _ClaimPages(_Pages):
    """Claiming: the claim page, the sign-in round trip and its outcome, signing out."""

    def register(self, app: Flask) -> None:
        app.add_url_rule("/", "home", self.home, methods=["GET"])
        app.add_url_rule("/claim", "claim_page", self.claim_page, methods=["GET"])
        app.add_url_rule("/claim/start", "claim_start", self.claim_start, methods=["GET"])
        app.add_url_rule("/oauth/callback", "oauth_callback", self.oauth_callback, methods=["GET"])
        app.add_url_rule("/claim/done", "claim_done", self.claim_done, methods=["GET"])
        app.add_url_rule("/logout", "logout", self.logout, methods=["POST"])

    def home(self) -> BaseResponse:
        return redirect(url_for("claim_page"), 302)

    def claim_page(self) -> str:
        return render_template("claim.html")

    def claim_start(self) -> BaseResponse:
        if not self.settings.serves("x"):  # PLATFORMS leaves X out: no sign-in with it
            return error_page(404)
        sign_in = self.web.sign_in
        if not sign_in.configured:
            log.warning("sign-in asked for, but its client id / secret are not set")
            return error_page(
                503,
                f"Sign-in with {sign_in.label} is not set up here yet",
                f"The people running this site have not connected it to {sign_in.label} yet. "
                "Your money is safe and keeps waiting; please try again later.",
            )
        started = oauth.begin(sign_in, self._secret())
        sessions.remember_pending(started.state_key, self.web.now())
        return redirect(started.authorize_url, 302)

    @staticmethod
    def _secret() -> str:
        return str(current_app.config["SECRET_KEY"])

    def oauth_callback(self) -> BaseResponse:
        args = request.args
        state = args.get("state", "")
        # Whatever happens next, this state is spent for this browser too.
        started_at = sessions.take_pending(oauth.state_key(state)) if state else None
        refused = self._refused_callback(state, started_at)
        if refused is not None or started_at is None:
            return refused or error_page(400)
        begun = started_at
        verifier = transaction(
            self.web.engine,
            lambda conn: oauth.take(conn, state, self._secret(), begun, self.web.now()),
        )
        if isinstance(verifier, oauth.StateProblem):
            log.info("sign-in refused: state %s", verifier.value)
            return error_page(400, "This sign-in cannot be used", STATE_PROBLEMS[verifier])
        code = args.get("code", "")
        if not code:
            return error_page(
                400, "This sign-in link is incomplete", "It has no code. Please start again."
            )
        sign_in = self.web.sign_in
        try:
            access_token = sign_in.exchange_code(code, verifier)
            person = sign_in.current_user(access_token)
        except SignInError as e:
            log.warning("sign-in failed: %s", e.detail)
            return error_page(400, "Sign-in did not complete", e.reason)
        finally:
            access_token = ""  # not kept a moment longer than needed
        return self._claim_for(person)

    def _refused_callback(self, state: str, started_at: datetime | None) -> BaseResponse | None:
        """The page for a callback that carries an error or a state not started here."""
        args = request.args
        ours = started_at is not None
        if "error" in args:
            if started_at is not None:
                begun = started_at
                transaction(
                    self.web.engine,
                    lambda conn: oauth.take(conn, state, self._secret(), begun, self.web.now()),
                )
            if args.get("error") == "access_denied":
                return BaseResponse(
                    render_template("message.html", kind="denied"),
                    content_type="text/html; charset=utf-8",
                )
            log.info("sign-in: %s answered with an error instead of a code", self.web.sign_in.label)
            return error_page(
                400,
                "Sign-in did not complete",
                f"{self.web.sign_in.label} reported a problem. Please start again.",
            )
        if not state:
            return error_page(
                400,
                "This sign-in link is incomplete",
                "It has no state. Please start again from the claim page.",
            )
        if not ours:
            return error_page(
                400,
                "This sign-in was not started in this browser",
                "For your safety a sign-in must finish in the browser that started it,"
                " with cookies allowed for this site. Please start again.",
            )
        return None

    def _claim_for(self, person: PlatformUser) -> BaseResponse:
        return claim_for(self.web, person)

    def claim_done(self) -> BaseResponse | str:
        outcome = session.pop("claim_result", None)
        if not isinstance(outcome, dict):
            return redirect(url_for("me" if session.get("account_id") else "claim_page"), 303)
        return render_template("claim_done.html", r=outcome)

    def logout(self) -> BaseResponse:
        # A POST with the CSRF token (checked before any view), so no other site can sign
        # anyone out; it ends every copy of the cookie, not only this browser's.
        with self.web.engine.connect() as conn:
            row = _current(conn)
        if row is not None:
            account_id = int(row.id)
            transaction(self.web.engine, lambda conn: sessions.end_every_session(conn, account_id))
        session.clear()
        flash("You are signed out.", "ok")
        return redirect(url_for("claim_page"), 303)


class _AccountPages(_Pages):
    """The account page and its changes: budget, retracting, notices, refusing tips."""

    def register(self, app: Flask) -> None:
        app.add_url_rule("/me", "me", self.me, methods=["GET"])
        app.add_url_rule("/me/budget", "set_budget", self.set_budget, methods=["POST"])
        app.add_url_rule("/me/tips/<int:tip_id>/retract", "retract", self.retract, methods=["POST"])
        app.add_url_rule(
            "/me/flattrs/<int:share_id>/cancel",
            "cancel_flattr",
            self.cancel_flattr,
            methods=["POST"],
        )
        app.add_url_rule("/me/notices/opt-out", "opt_out", self.opt_out, methods=["POST"])
        app.add_url_rule("/me/refuse", "refuse", self.refuse, methods=["GET", "POST"])
        app.add_url_rule("/me/accept", "accept", self.accept, methods=["POST"])

    def me(self) -> BaseResponse | str:
        with self.web.engine.connect() as conn:
            row = _current(conn)
            if row is None:
                return _signed_out()
            view: AccountView = account_view(row)
            history = _history(conn, self.web, view.account_id)
            waiting = _waiting_out(conn, self.web, view.account_id)
            budget = get_budget(conn, view.account_id)
            opted_out = is_opted_out(conn, view.account_id)
            flattrs = pending_flattrs(conn, view.account_id)
        return render_template(
            "me.html",
            view=view,
            flattrs=flattrs,
            history=history,
            waiting=waiting[:WAITING_LISTED],
            more_waiting=len(waiting) > WAITING_LISTED,
            budget=budget,
            min_budget=self.settings.min_monthly_budget,
            opted_out=opted_out,
        )

    def set_budget(self) -> BaseResponse:
        with self.web.engine.connect() as conn:
            row = _current(conn)
        if row is None:
            return _signed_out()
        raw = request.form.get("amount", "").strip()
        try:
            amount = _parse_amount(raw, self.settings.currency)
        except MoneyError:
            flash(f"“{raw}” is not an amount. Write it like 5.00.", "problem")
            return redirect(url_for("me"), 303)
        minimum = self.settings.min_monthly_budget
        if amount < minimum:
            flash(f"The monthly budget must be at least {minimum}.", "problem")
            return redirect(url_for("me"), 303)
        who = _identity(row)
        try:
            saved = transaction(
                self.web.engine,
                lambda conn: save_budget(
                    conn, self.web.policy, who, amount, minimum=minimum, now=self.web.now()
                ),
            )
        except (LedgerError, MoneyError) as e:
            flash(str(e), "problem")
            return redirect(url_for("me"), 303)
        flash(f"Your monthly budget is now {saved}.", "ok")
        return redirect(url_for("me"), 303)

    def retract(self, tip_id: int) -> BaseResponse:
        with self.web.engine.connect() as conn:
            row = _current(conn)
        if row is None:
            return _signed_out()
        who = _identity(row)
        result = transaction(
            self.web.engine,
            lambda conn: tips_ops.retract(conn, self.web.policy, who, tip_id, self.web.now()),
        )
        if result.retracted:
            flash(f"Your tip of {result.amount} is back in your balance.", "ok")
        elif result.reason == "not_held":
            flash("That tip was already claimed or returned; nothing changed.", "problem")
        else:
            flash("There is no such tip of yours; nothing changed.", "problem")
        return redirect(url_for("me"), 303)

    def cancel_flattr(self, share_id: int) -> BaseResponse:
        """Withdraw one of the supporter's own flattrs before its month is settled."""
        with self.web.engine.connect() as conn:
            row = _current(conn)
        if row is None:
            return _signed_out()
        account_id = int(row.id)
        status = transaction(
            self.web.engine, lambda conn: cancel_flattr(conn, account_id, share_id)
        )
        if status == CancelStatus.CANCELLED:
            flash("That flattr is cancelled: it takes no share of your budget.", "ok")
        elif status == CancelStatus.SETTLED:
            flash("That month was already settled; nothing changed.", "problem")
        else:
            flash("There is no such flattr of yours; nothing changed.", "problem")
        return redirect(url_for("me"), 303)

    def opt_out(self) -> BaseResponse:
        with self.web.engine.connect() as conn:
            row = _current(conn)
        if row is None:
            return _signed_out()
        account_id = int(row.id)
        transaction(self.web.engine, lambda conn: stop_notices(conn, account_id, self.web.now()))
        flash(f"@{self.settings.x_bot_username} will not send you notices any more.", "ok")
        return redirect(url_for("me"), 303)

    def refuse(self) -> BaseResponse | str:
        with self.web.engine.connect() as conn:
            row = _current(conn)
        if row is None:
            return _signed_out()
        if request.method == "GET" or request.form.get("confirm") != "yes":
            return render_template("refuse.html", view=account_view(row))
        who = _identity(row)
        account_id = int(row.id)

        def refuse_tips(conn: Connection) -> tuple[claims.RefuseResult, int]:
            refused = claims.refuse(conn, self.web.policy, who, self.web.now())
            # Refusing ends every other session; this browser stays signed in.
            return refused, sessions.end_every_session(conn, account_id)

        result, version = transaction(self.web.engine, refuse_tips)
        sessions.sign_in(account_id, version)
        if result.voided == 1:
            flash(
                f"You now turn tips away. 1 waiting tip ({result.returned}) went back to its"
                " supporter.",
                "ok",
            )
        elif result.voided:
            flash(
                f"You now turn tips away. {result.voided} waiting tips ({result.returned})"
                " went back to their supporters.",
                "ok",
            )
        else:
            flash("You now turn tips away. Nothing was waiting for you.", "ok")
        return redirect(url_for("me"), 303)

    def accept(self) -> BaseResponse:
        with self.web.engine.connect() as conn:
            row = _current(conn)
        if row is None:
            return _signed_out()
        who = _identity(row)
        changed = transaction(
            self.web.engine, lambda conn: claims.accept_tips(conn, who, self.web.now())
        )
        flash("You accept tips again." if changed else "You already accept tips.", "ok")
        return redirect(url_for("me"), 303)


def register(app: Flask, web: Web) -> None:
    """Every page of the site, group by group."""
    for group in (_PageBasics(web), _ClaimPages(web), _AccountPages(web)):
        group.register(app)
