"""The pages: claim with "Sign in with X", the OAuth callback, the account page, health.

The callback binds the signed-in person by the user id X returns from `GET /2/users/me`,
never by a handle from a URL or a form, and posts every hold waiting for that id in one
transaction (`escrow.claims.claim`). The session then holds the account id and nothing
else of X's. Every change on the account page is a POST carrying the CSRF token and ends
in a redirect (post/redirect/get), so a reload never repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask, flash, jsonify, redirect, render_template, request, session, url_for
from sqlalchemy import Connection, case, or_, select, text
from sqlalchemy.orm import aliased
from werkzeug.wrappers import Response as BaseResponse

from bot.outbox import is_opted_out
from bot.outbox import opt_out as stop_notices
from bot.web import oauth
from bot.web.context import Web
from bot.web.security import error_page, log
from escrow import claims
from escrow import tips as tips_ops
from escrow.db import transaction
from escrow.flattrs import get_budget
from escrow.flattrs import set_budget as save_budget
from escrow.ledger import Identity, LedgerError, is_held
from escrow.money import Money, MoneyError, currency
from escrow.reports import AccountView, account_view
from escrow.schema import accounts, tips

HISTORY = 20
WAITING_LISTED = 100
PENDING_STATES = 3  # sign-ins one browser may have in flight (several tabs)

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
    """The signed-in account's row, or None (signed out, or the account is not a person)."""
    account_id = session.get("account_id")
    if not isinstance(account_id, int) or isinstance(account_id, bool):
        return None
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).one_or_none()
    if row is None or row.status not in ("claimed", "refusing"):
        return None
    return row


def _parse_amount(raw: str, code: str) -> Money:
    """``5``, ``5.00``, ``€5``, ``5 EUR`` -> Money; raises MoneyError for anything else."""
    cur = currency(code)
    cleaned = raw.strip()
    for mark in (cur.symbol.strip(), cur.code, cur.code.lower()):
        cleaned = cleaned.removeprefix(mark).removesuffix(mark).strip()
    return Money.parse(cleaned, cur.code)


def _identity(row: Any) -> Identity:
    return Identity(row.platform, row.platform_user_id, row.handle)


def register(app: Flask, web: Web) -> None:
    settings = web.settings

    @app.context_processor
    def page_globals() -> dict[str, Any]:
        return {
            "signed_in": isinstance(session.get("account_id"), int),
            "bot": settings.x_bot_username,
            "fee_percent": web.policy.fee_percent,
            "hold_days": web.policy.hold_period.days,
        }

    @app.template_filter("money")
    def money_filter(value: Money | int) -> str:
        return str(value if isinstance(value, Money) else web.policy.money(int(value)))

    @app.template_filter("plain")
    def plain_filter(value: Money | int) -> str:
        return (value if isinstance(value, Money) else web.policy.money(int(value))).plain()

    @app.template_filter("day")
    def day_filter(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%d") if value else ""

    def signed_out() -> BaseResponse:
        session.pop("account_id", None)
        return redirect(url_for("claim_page"), 303)

    # -- claim ---------------------------------------------------------------------------

    @app.get("/")
    def home() -> BaseResponse:
        return redirect(url_for("claim_page"), 302)

    @app.get("/claim")
    def claim_page() -> str:
        return render_template("claim.html")

    @app.get("/claim/start")
    def claim_start() -> BaseResponse:
        if not (settings.x_client_id and settings.x_client_secret):
            log.warning("sign-in asked for, but X_CLIENT_ID / X_CLIENT_SECRET are not set")
            return error_page(
                503,
                "Sign-in with X is not set up here yet",
                "The people running this site have not connected it to X yet. "
                "Your money is safe and keeps waiting; please try again later.",
            )
        started = transaction(web.engine, lambda conn: oauth.begin(conn, settings, web.now()))
        pending = [k for k in session.get("oauth_states", []) if isinstance(k, str)]
        session["oauth_states"] = [*pending, started.state_key][-PENDING_STATES:]
        return redirect(started.authorize_url, 302)

    @app.get("/oauth/callback")
    def oauth_callback() -> BaseResponse:
        args = request.args
        state = args.get("state", "")
        pending = [k for k in session.get("oauth_states", []) if isinstance(k, str)]
        key = oauth.state_key(state) if state else ""
        ours = bool(key) and key in pending
        if ours:
            # Whatever happens next, this state is spent for this browser too.
            session["oauth_states"] = [k for k in pending if k != key]

        if "error" in args:
            if ours:
                transaction(web.engine, lambda conn: oauth.take(conn, state, web.now()))
            if args.get("error") == "access_denied":
                return BaseResponse(
                    render_template("message.html", kind="denied"),
                    content_type="text/html; charset=utf-8",
                )
            log.info("sign-in: X answered with an error instead of a code")
            return error_page(
                400, "Sign-in did not complete", "X reported a problem. Please start again."
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
        verifier = transaction(web.engine, lambda conn: oauth.take(conn, state, web.now()))
        if isinstance(verifier, oauth.StateProblem):
            log.info("sign-in refused: state %s", verifier.value)
            return error_page(400, "This sign-in cannot be used", STATE_PROBLEMS[verifier])
        code = args.get("code", "")
        if not code:
            return error_page(
                400, "This sign-in link is incomplete", "It has no code. Please start again."
            )
        try:
            access_token = oauth.exchange_code(web.http, settings, code, verifier)
            person = oauth.fetch_me(web.http, settings, access_token)
        except oauth.SignInError as e:
            log.warning("sign-in failed: %s", e.detail)
            return error_page(400, "Sign-in did not complete", e.reason)
        finally:
            access_token = ""  # not kept a moment longer than needed

        who = Identity.x(person.user_id, person.username)

        def work(conn: Connection) -> tuple[claims.ClaimResult, str]:
            result = claims.claim(conn, web.policy, who, web.now())
            status = conn.execute(
                select(accounts.c.status).where(accounts.c.id == result.account_id)
            ).scalar_one()
            return result, str(status)

        result, status = transaction(web.engine, work)
        log.info(
            "claim by x:%s: %d tips from %d supporters posted (%d minor), %d expired",
            person.user_id,
            result.tips,
            result.supporters,
            result.gross.minor,
            result.expired,
        )
        # A fresh session on sign-in: nothing from before (a planted session) carries over.
        session.clear()
        session.permanent = True
        session["account_id"] = result.account_id
        session["claim_result"] = {
            "gross": result.gross.minor,
            "fee": result.fee.minor,
            "net": result.net.minor,
            "tips": result.tips,
            "supporters": result.supporters,
            "expired": result.expired,
            "refusing": status == "refusing",
            "handle": person.username or "",
        }
        return redirect(url_for("claim_done"), 303)

    @app.get("/claim/done")
    def claim_done() -> BaseResponse | str:
        outcome = session.pop("claim_result", None)
        if not isinstance(outcome, dict):
            return redirect(url_for("me" if session.get("account_id") else "claim_page"), 303)
        return render_template("claim_done.html", r=outcome)

    @app.get("/logout")
    def logout() -> BaseResponse:
        session.clear()
        flash("You are signed out.", "ok")
        return redirect(url_for("claim_page"), 303)

    # -- the account page ------------------------------------------------------------------

    @app.get("/me")
    def me() -> BaseResponse | str:
        with web.engine.connect() as conn:
            row = _current(conn)
            if row is None:
                return signed_out()
            view: AccountView = account_view(row)
            history = _history(conn, web, view.account_id)
            waiting = _waiting_out(conn, web, view.account_id)
            budget = get_budget(conn, view.account_id)
            opted_out = is_opted_out(conn, view.account_id)
        return render_template(
            "me.html",
            view=view,
            history=history,
            waiting=waiting[:WAITING_LISTED],
            more_waiting=len(waiting) > WAITING_LISTED,
            budgets=True,
            budget=budget,
            min_budget=settings.min_monthly_budget,
            notices=True,
            opted_out=opted_out,
        )

    @app.post("/me/budget")
    def set_budget() -> BaseResponse:
        with web.engine.connect() as conn:
            row = _current(conn)
        if row is None:
            return signed_out()
        raw = request.form.get("amount", "").strip()
        try:
            amount = _parse_amount(raw, settings.currency)
        except MoneyError:
            flash(f"“{raw}” is not an amount. Write it like 5.00.", "problem")
            return redirect(url_for("me"), 303)
        minimum = settings.min_monthly_budget
        if amount < minimum:
            flash(f"The monthly budget must be at least {minimum}.", "problem")
            return redirect(url_for("me"), 303)
        who = _identity(row)
        try:
            saved = transaction(
                web.engine,
                lambda conn: save_budget(
                    conn, web.policy, who, amount, minimum=minimum, now=web.now()
                ),
            )
        except (LedgerError, MoneyError) as e:
            flash(str(e), "problem")
            return redirect(url_for("me"), 303)
        flash(f"Your monthly budget is now {saved}.", "ok")
        return redirect(url_for("me"), 303)

    @app.post("/me/tips/<int:tip_id>/retract")
    def retract(tip_id: int) -> BaseResponse:
        with web.engine.connect() as conn:
            row = _current(conn)
        if row is None:
            return signed_out()
        who = _identity(row)
        result = transaction(
            web.engine,
            lambda conn: tips_ops.retract(conn, web.policy, who, tip_id, web.now()),
        )
        if result.retracted:
            flash(f"Your tip of {result.amount} is back in your balance.", "ok")
        elif result.reason == "not_held":
            flash("That tip was already claimed or returned; nothing changed.", "problem")
        else:
            flash("There is no such tip of yours; nothing changed.", "problem")
        return redirect(url_for("me"), 303)

    @app.post("/me/notices/opt-out")
    def opt_out() -> BaseResponse:
        with web.engine.connect() as conn:
            row = _current(conn)
        if row is None:
            return signed_out()
        account_id = int(row.id)
        transaction(web.engine, lambda conn: stop_notices(conn, account_id, web.now()))
        flash(f"@{settings.x_bot_username} will not send you notices any more.", "ok")
        return redirect(url_for("me"), 303)

    @app.route("/me/refuse", methods=["GET", "POST"])
    def refuse() -> BaseResponse | str:
        with web.engine.connect() as conn:
            row = _current(conn)
        if row is None:
            return signed_out()
        if request.method == "GET" or request.form.get("confirm") != "yes":
            return render_template("refuse.html", view=account_view(row))
        who = _identity(row)
        result = transaction(
            web.engine, lambda conn: claims.refuse(conn, web.policy, who, web.now())
        )
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

    @app.post("/me/accept")
    def accept() -> BaseResponse:
        with web.engine.connect() as conn:
            row = _current(conn)
        if row is None:
            return signed_out()
        who = _identity(row)
        changed = transaction(web.engine, lambda conn: claims.accept_tips(conn, who, web.now()))
        flash("You accept tips again." if changed else "You already accept tips.", "ok")
        return redirect(url_for("me"), 303)

    # -- health --------------------------------------------------------------------------

    @app.get("/healthz")
    def healthz() -> tuple[BaseResponse, int]:
        try:
            with web.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:
            log.warning("health check: database unreachable (%s)", type(e).__name__)
            return jsonify(ok=False), 503
        return jsonify(ok=True), 200
