"""The maintainers' page `/admin` and the web app's `/metrics`.

`/admin` is for the identities in ADMIN_IDS (`x:ID`, `mastodon:user@domain`), signed in
the way every creator signs in; to anyone else, signed in or not, it does not exist (404).
It is read-only: what `tipjar status` shows, the escrow balances per creator (the same
query as `tipjar escrow balances`, sorted and searched by handle with plain query
parameters), holds expiring soon, failed outbox rows and payouts, and a chart of the
money held in escrow, released to creators and returned to supporters per day over the
last 90 days, drawn on the server as SVG (`bot.web.chart`), so the page needs no script
and the Content-Security-Policy stays as strict as everywhere else.

`/metrics` is Prometheus's text format: the event counters of every web worker (multiprocess
mode under gunicorn) and the state gauges read from the database (`bot.metrics_state`).
It carries aggregates only (no handle, no id); restrict who reaches it at the proxy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Flask, Response, abort, render_template, request, session
from markupsafe import Markup
from sqlalchemy import Connection, and_, func, select

from bot.metrics import observe_request
from bot.metrics_state import CONTENT_TYPE_LATEST, LedgerCollector, exposition
from bot.status import collect
from bot.web.chart import Series, line_chart
from bot.web.context import Web
from escrow.db import utc_day
from escrow.reports import held_by_recipient, notices_sent_by_recipient
from escrow.schema import accounts, metadata, outbox, tips, transfers

PAGE_SIZE = 50
LISTED = 50
CHART_DAYS = 90
EXPIRING_WITHIN = timedelta(days=7)
SORTS = {
    "creator": "handle_key",
    "held": "held_minor",
    "tips": "tips",
    "supporters": "supporters",
    "oldest": "oldest_at",
    "expiry": "next_expiry_at",
}
DEFAULT_DIRECTION = {"creator": "asc", "oldest": "asc", "expiry": "asc"}


def admin_key(platform: str, user_id: str) -> str:
    """How ADMIN_IDS names an account: `x:ID`, or `mastodon:user@domain` in lower case."""
    key = f"{platform}:{user_id}"
    return key if platform == "x" else key.lower()


def _admin(conn: Connection, web: Web) -> Any | None:
    account_id = session.get("account_id")
    if not isinstance(account_id, int) or isinstance(account_id, bool):
        return None
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).one_or_none()
    if row is None or row.status == "system":
        return None
    if admin_key(row.platform, row.platform_user_id) not in web.settings.admin_ids:
        return None
    return row


# --------------------------------------------------------------------------- the queries


@dataclass(frozen=True)
class BalancesQuery:
    q: str
    sort: str
    direction: str
    page: int

    @classmethod
    def from_args(cls, args: Any) -> BalancesQuery:
        q = str(args.get("q", "")).strip().lstrip("@")[:64]
        sort = str(args.get("sort", "held"))
        if sort not in SORTS:
            sort = "held"
        direction = str(args.get("dir", DEFAULT_DIRECTION.get(sort, "desc")))
        if direction not in ("asc", "desc"):
            direction = "desc"
        try:
            page = max(1, min(10_000, int(args.get("page", 1))))
        except (TypeError, ValueError):
            page = 1
        return cls(q, sort, direction, page)

    def link(self, **changes: Any) -> dict[str, Any]:
        """Query parameters for a link from this view (empty values left out)."""
        values = {"q": self.q, "sort": self.sort, "dir": self.direction, "page": self.page}
        values.update(changes)
        return {k: v for k, v in values.items() if v not in ("", None, 1) or k == "sort"}


def _like(text: str) -> str:
    escaped = text.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def balances(conn: Connection, query: BalancesQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of the escrow balances (as `tipjar escrow balances`), and how many match."""
    per = held_by_recipient()
    base = select(
        accounts.c.platform,
        accounts.c.platform_user_id,
        accounts.c.handle,
        accounts.c.handle_key,
        per,
    ).join(per, per.c.account_id == accounts.c.id)
    if query.q:
        base = base.where(accounts.c.handle_key.like(_like(query.q), escape="\\"))
    matching = int(conn.execute(select(func.count()).select_from(base.subquery())).scalar_one())
    column = per.c[SORTS[query.sort]] if query.sort != "creator" else accounts.c.handle_key
    order = column.asc() if query.direction == "asc" else column.desc()
    rows = conn.execute(
        base.order_by(order.nulls_last(), accounts.c.id)
        .limit(PAGE_SIZE)
        .offset((query.page - 1) * PAGE_SIZE)
    ).all()
    notices = notices_sent_by_recipient(conn)
    return [
        {
            "platform": r.platform,
            "user_id": r.platform_user_id,
            "handle": r.handle,
            "held_minor": int(r.held_minor),
            "tips": int(r.tips),
            "supporters": int(r.supporters),
            "oldest_at": r.oldest_at,
            "next_expiry_at": r.next_expiry_at,
            "notices_sent": notices.get(r.account_id, 0),
        }
        for r in rows
    ], matching


def expiring_soon(conn: Connection, now: datetime) -> list[Any]:
    return list(
        conn.execute(
            select(tips.c.id, tips.c.amount_minor, tips.c.expires_at, tips.c.created_at)
            .add_columns(accounts.c.platform, accounts.c.platform_user_id, accounts.c.handle)
            .join(accounts, accounts.c.id == tips.c.recipient_account_id)
            .where(tips.c.state == "held", tips.c.expires_at <= now + EXPIRING_WITHIN)
            .order_by(tips.c.expires_at, tips.c.id)
            .limit(LISTED)
        )
    )


def failed_outbox(conn: Connection) -> list[Any]:
    return list(
        conn.execute(
            select(outbox)
            .where(outbox.c.state == "failed")
            .order_by(outbox.c.created_at.desc(), outbox.c.id.desc())
            .limit(LISTED)
        )
    )


def failed_payouts(conn: Connection) -> list[Any] | None:
    """Failed payouts, newest first; None when payouts are not installed."""
    payouts = metadata.tables.get("payouts")
    if payouts is None:
        return None
    order = payouts.c.get("updated_at", payouts.c.id)
    return list(
        conn.execute(
            select(payouts).where(payouts.c.state == "failed").order_by(order.desc()).limit(LISTED)
        )
    )


@dataclass(frozen=True)
class MoneyByDay:
    days: list[date]
    held: list[int]  # in escrow at the end of the day
    released: list[int]  # to creators: claimed holds and tips to claimed creators
    returned: list[int]  # to supporters: holds voided (expired, retracted, refused)


def money_by_day(conn: Connection, now: datetime, days: int = CHART_DAYS) -> MoneyByDay:
    """Per UTC day of the last `days`: held at the end of the day, released, returned.

    Only movements of tips count (`tip_id` set): a hold a payment dispute puts on a
    supporter is not escrow for a creator. The end-of-day held amount is computed
    backwards from what is held now, so only the window's transfers are read.
    """
    first = now.astimezone(UTC).date() - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, tzinfo=UTC)
    day = utc_day(conn, transfers.c.created_at)
    rows = conn.execute(
        select(day.label("day"), transfers.c.kind, func.sum(transfers.c.amount_minor))
        .where(
            transfers.c.created_at >= start,
            transfers.c.tip_id.is_not(None),
            transfers.c.kind.in_(("hold", "post", "void", "tip")),
        )
        .group_by(day, transfers.c.kind)
    )
    moved: dict[tuple[str, str], int] = {(str(d), str(k)): int(n) for d, k, n in rows}
    held_now = int(
        conn.execute(
            select(func.coalesce(func.sum(tips.c.amount_minor), 0)).where(
                and_(tips.c.state == "held", tips.c.hold_transfer_id.is_not(None))
            )
        ).scalar_one()
    )
    dates = [first + timedelta(days=i) for i in range(days)]
    keys = [d.isoformat() for d in dates]
    released = [moved.get((k, "post"), 0) + moved.get((k, "tip"), 0) for k in keys]
    returned = [moved.get((k, "void"), 0) for k in keys]
    held = [0] * days
    level = held_now
    for i in range(days - 1, -1, -1):
        held[i] = level
        # Before this day: undo its new holds, redo its resolved ones.
        level -= moved.get((keys[i], "hold"), 0)
        level += moved.get((keys[i], "post"), 0) + returned[i]
    return MoneyByDay(dates, held, released, returned)


# --------------------------------------------------------------------------- the routes


def register(app: Flask, web: Web) -> None:
    collector = LedgerCollector(web.engine, web.settings, web.clock)

    @app.after_request
    def count(response: Response) -> Response:
        # The route's pattern, never the URL itself: no ids or codes in a label.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        observe_request(route, response.status_code)
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(exposition(collector), content_type=CONTENT_TYPE_LATEST)

    @app.get("/admin")
    def admin() -> str:
        now = web.now()
        query = BalancesQuery.from_args(request.args)
        with web.engine.connect() as conn:
            if _admin(conn, web) is None:
                abort(404)
            status = collect(conn, web.settings, now)
            rows, matching = balances(conn, query)
            soon = expiring_soon(conn, now)
            outbox_failed = failed_outbox(conn)
            payouts_failed = failed_payouts(conn)
            by_day = money_by_day(conn, now)
        chart = line_chart(
            by_day.days,
            [
                Series("Held in escrow", "#0b5d3b", by_day.held),
                Series("Released to creators", "#1a56db", by_day.released),
                Series("Returned to supporters", "#a3121f", by_day.returned, dashed=True),
            ],
            title=f"Money per day, the last {CHART_DAYS} days",
            money=lambda minor: str(web.policy.money(minor)),
        )
        return render_template(
            "admin.html",
            status=status,
            s=status.sections,
            rows=rows,
            matching=matching,
            query=query,
            pages=max(1, -(-matching // PAGE_SIZE)),
            soon=soon,
            outbox_failed=outbox_failed,
            payouts_failed=payouts_failed,
            by_day=by_day,
            chart=Markup(chart),  # noqa: S704 (built from escaped parts in bot.web.chart)
            sorts=list(SORTS),
        )
