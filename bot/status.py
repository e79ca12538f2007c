"""The bot's state at a glance: what `tipjar status`, `/admin` and `/metrics` show.

`collect(conn, settings, now)` reads a handful of cheap aggregate queries and returns a
`Status`: per platform the last successful poll and its age, whether it is rate limited;
the outbox by state and kind; money held in escrow and the next expiries; the last ledger
check. Each part is a small section function; a feature that is not installed (a table
that does not exist in this schema) leaves its section out, so the same code serves every
deployment. `Status.attention` lists what needs a maintainer: `tipjar status` exits 1
when it is not empty, and the alert rules in docs/alerts.yml watch the same numbers.

Money is integer minor units of the deployment's currency, in fields ending `_minor`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, select

from bot.config import Settings
from bot.metrics import observe_poll
from bot.state import put_state
from escrow import selfcheck
from escrow.db import transaction
from escrow.schema import accounts, metadata, outbox, state, tips

STALE_POLL = timedelta(minutes=10)  # as the alert: no successful poll for 10 minutes
MISSED_SHOWN = timedelta(days=7)  # a missed window needs a maintainer for a week
PAYOUT_FAILURES_SHOWN = timedelta(days=7)
EXPIRY_SOON = timedelta(days=7)
EXPIRY_URGENT = timedelta(hours=24)
NEXT_EXPIRIES = 5


def missed_key(platform: str) -> str:
    """The `state` key holding when a poll last found mentions it could never read."""
    return f"{platform}.mentions.missed_at"


def poll_key(platform: str) -> str:
    """The `state` key holding the time of the platform's last successful poll."""
    return f"{platform}.mentions.polled_at"


def resume_key(platform: str) -> str:
    """The `state` key holding the instant a rate-limited platform may be read again."""
    return f"{platform}.mentions.resume_at"


def platforms_of(settings: Settings) -> tuple[str, ...]:
    """The platforms this deployment reads (X alone until PLATFORMS says otherwise)."""
    configured = getattr(settings, "platforms", None)
    return tuple(configured) if configured else ("x",)


@dataclass
class Status:
    now: datetime
    currency: str
    sections: dict[str, Any] = field(default_factory=dict)
    attention: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.attention

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "attention": list(self.attention),
            "now": self.now,
            "currency": self.currency,
            **self.sections,
        }


Section = Callable[[Connection, Settings, datetime, Status], Any]


def _time(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _states(conn: Connection, keys: list[str]) -> dict[str, str]:
    rows = conn.execute(select(state.c.key, state.c.value).where(state.c.key.in_(keys)))
    return {str(k): str(v) for k, v in rows}


def platforms_section(
    conn: Connection, settings: Settings, now: datetime, status: Status
) -> list[dict[str, Any]]:
    names = platforms_of(settings)
    keys = [k for p in names for k in (poll_key(p), resume_key(p), missed_key(p))]
    values = _states(conn, keys)
    stale_after = max(STALE_POLL, 3 * settings.poll_interval)
    out = []
    for platform in names:
        polled = _time(values.get(poll_key(platform)))
        resume = _time(values.get(resume_key(platform)))
        missed = _time(values.get(missed_key(platform)))
        if missed is not None and now - missed <= MISSED_SHOWN:
            status.attention.append(
                f"{platform}: mentions were missed at {missed:%Y-%m-%d %H:%M} UTC"
                " (an outage longer than the platform lets tipjar read back)"
            )
        age = None if polled is None else max(0.0, (now - polled).total_seconds())
        stale = age is None or age > stale_after.total_seconds()
        if stale:
            status.attention.append(
                f"{platform}: no successful poll yet"
                if polled is None
                else f"{platform}: no successful poll for {int(age or 0) // 60} minutes"
            )
        out.append(
            {
                "platform": platform,
                "last_poll_at": polled,
                "last_poll_age_seconds": None if age is None else int(age),
                "stale": stale,
                "rate_limited_until": resume if resume is not None and resume > now else None,
                "missed_window_at": missed,
            }
        )
    return out


def outbox_section(
    conn: Connection, settings: Settings, now: datetime, status: Status
) -> dict[str, Any]:
    rows = conn.execute(
        select(outbox.c.state, outbox.c.kind, func.count()).group_by(outbox.c.state, outbox.c.kind)
    ).all()
    by_state: dict[str, int] = {}
    for row_state, _kind, n in rows:
        by_state[row_state] = by_state.get(row_state, 0) + int(n)
    oldest = conn.execute(
        select(func.min(outbox.c.created_at)).where(outbox.c.state.in_(("pending", "sending")))
    ).scalar_one()
    failed = by_state.get("failed", 0)
    if failed:
        status.attention.append(f"outbox: {failed} post(s) failed")
    return {
        "by_state": dict(sorted(by_state.items())),
        "by_kind": [
            {"state": s, "kind": k, "rows": int(n)} for s, k, n in sorted(rows, key=lambda r: r[:2])
        ],
        "oldest_waiting_at": oldest,
    }


def _expiring(conn: Connection, until: datetime) -> tuple[int, int]:
    total, holds = conn.execute(
        select(func.coalesce(func.sum(tips.c.amount_minor), 0), func.count()).where(
            tips.c.state == "held", tips.c.expires_at <= until
        )
    ).one()
    return int(total), int(holds)


def unnoticed_expiring(conn: Connection, until: datetime) -> int:
    """Holds that expire by `until` whose creator was sent no notice since the hold."""
    noticed = (
        select(outbox.c.id)
        .where(
            outbox.c.kind == "creator_notice",
            outbox.c.state == "sent",
            outbox.c.recipient_account_id == tips.c.recipient_account_id,
            outbox.c.sent_at >= tips.c.created_at,
        )
        .exists()
    )
    return int(
        conn.execute(
            select(func.count()).where(tips.c.state == "held", tips.c.expires_at <= until, ~noticed)
        ).scalar_one()
    )


def escrow_section(
    conn: Connection, settings: Settings, now: datetime, status: Status
) -> dict[str, Any]:
    held, holds, recipients = conn.execute(
        select(
            func.coalesce(func.sum(tips.c.amount_minor), 0),
            func.count(),
            func.count(tips.c.recipient_account_id.distinct()),
        ).where(tips.c.state == "held")
    ).one()
    soon_minor, soon_holds = _expiring(conn, now + EXPIRY_SOON)
    urgent_minor, urgent_holds = _expiring(conn, now + EXPIRY_URGENT)
    nexts = conn.execute(
        select(tips.c.id, tips.c.amount_minor, tips.c.expires_at, accounts.c.platform)
        .add_columns(accounts.c.platform_user_id, accounts.c.handle)
        .join(accounts, accounts.c.id == tips.c.recipient_account_id)
        .where(tips.c.state == "held")
        .order_by(tips.c.expires_at, tips.c.id)
        .limit(NEXT_EXPIRIES)
    )
    return {
        "total_held_minor": int(held),
        "holds": int(holds),
        "recipients": int(recipients),
        "expiring_7d_minor": soon_minor,
        "expiring_7d_holds": soon_holds,
        "expiring_24h_minor": urgent_minor,
        "expiring_24h_holds": urgent_holds,
        "expiring_24h_unnoticed": unnoticed_expiring(conn, now + EXPIRY_URGENT),
        "next_expiries": [
            {
                "tip_id": int(r.id),
                "platform": r.platform,
                "user_id": r.platform_user_id,
                "handle": r.handle,
                "amount_minor": int(r.amount_minor),
                "expires_at": r.expires_at,
            }
            for r in nexts
        ],
    }


def audit_section(
    conn: Connection, settings: Settings, now: datetime, status: Status
) -> dict[str, Any]:
    last = selfcheck.last_run(conn)
    blocked = selfcheck.ledger_blocked(conn)
    if blocked is not None:
        status.attention.append(
            f"ledger: the check of {blocked.finished_at:%Y-%m-%d %H:%M} found"
            f" {blocked.problems} problem(s); settlement is stopped until `tipjar audit` is clean"
        )
    return {
        "last": None
        if last is None
        else {
            "id": last.id,
            "trigger": last.trigger,
            "ok": last.ok,
            "problems": last.problems,
            "details": [{"kind": p.kind, "message": p.message} for p in last.details[:5]],
            "finished_at": last.finished_at,
        },
        "settlement_stopped": blocked is not None,
    }


def _by_state(conn: Connection, table: Table, amount: str = "amount_minor") -> dict[str, Any]:
    rows = conn.execute(
        select(table.c.state, func.count(), func.coalesce(func.sum(table.c[amount]), 0)).group_by(
            table.c.state
        )
    )
    return {str(s): {"count": int(n), "amount_minor": int(m)} for s, n, m in rows}


def funding_section(
    conn: Connection, settings: Settings, now: datetime, status: Status
) -> dict[str, Any] | None:
    """Card top-ups by state and open debts (issue 16), when that feature is installed."""
    topups = metadata.tables.get("topups")
    if topups is None:
        return None
    out: dict[str, Any] = {"topups": _by_state(conn, topups)}
    debts = metadata.tables.get("debts")
    if debts is not None:
        owed = debts.c.amount_minor - debts.c.paid_minor - debts.c.forgiven_minor
        n, minor = conn.execute(
            select(func.count(), func.coalesce(func.sum(owed), 0)).where(
                debts.c.settled_at.is_(None)
            )
        ).one()
        out["open_debts"] = int(n)
        out["open_debts_minor"] = int(minor)
    problems = sum(v["count"] for k, v in out["topups"].items() if k in ("failed", "problem"))
    if problems:
        status.attention.append(f"funding: {problems} top-up(s) failed or need a look")
    return out


def payouts_section(
    conn: Connection, settings: Settings, now: datetime, status: Status
) -> dict[str, Any] | None:
    """Payouts by state (issue 17), when that feature is installed."""
    payouts = metadata.tables.get("payouts")
    if payouts is None:
        return None
    by_state = _by_state(conn, payouts)
    # Refused by the provider (voided with its error) this week, or still retrying.
    refused, retrying = conn.execute(
        select(
            func.count().filter(
                payouts.c.state == "voided",
                payouts.c.last_error.is_not(None),
                payouts.c.resolved_at >= now - PAYOUT_FAILURES_SHOWN,
            ),
            func.count().filter(payouts.c.state == "pending", payouts.c.last_error.is_not(None)),
        )
    ).one()
    if refused:
        status.attention.append(f"payouts: {refused} payout(s) refused in the last 7 days")
    if retrying:
        status.attention.append(f"payouts: {retrying} payout(s) failing and being retried")
    return {"by_state": by_state, "refused_7d": int(refused), "retrying": int(retrying)}


def caps_section(
    conn: Connection, settings: Settings, now: datetime, status: Status
) -> list[dict[str, Any]] | None:
    """Today's posts and estimated spend per platform against the caps (issue 15), when
    usage is counted in this deployment."""
    usage = metadata.tables.get("platform_usage")
    if usage is None:
        return None
    today = now.astimezone(UTC).date().isoformat()
    rows = {str(r.platform): r for r in conn.execute(select(usage).where(usage.c.day == today))}
    budget = getattr(settings, "x_daily_budget_usd_micros", None)
    out = []
    for platform in platforms_of(settings):
        row = rows.get(platform)
        spend = int(row.spend_usd_micros) if row is not None else 0
        cap = budget if platform == "x" else None
        reached = cap is not None and spend >= cap
        if reached:
            status.attention.append(
                f"{platform}: the daily spend cap is reached; posts wait for tomorrow"
            )
        out.append(
            {
                "platform": platform,
                "day": today,
                "reads": int(row.reads) if row is not None else 0,
                "posts": int(row.posts) if row is not None else 0,
                "posts_with_link": int(row.posts_with_link) if row is not None else 0,
                "deferred": int(row.deferred) if row is not None else 0,
                "dropped": int(row.dropped) if row is not None else 0,
                "spend_usd_micros": spend,
                "spend_cap_usd_micros": cap,
                "cap_reached": reached,
                "notices_per_day": settings.notices_per_day,
                "replies_per_day": getattr(settings, "replies_per_day", None),
            }
        )
    return out


SECTIONS: dict[str, Section] = {
    "platforms": platforms_section,
    "outbox": outbox_section,
    "caps": caps_section,
    "escrow": escrow_section,
    "funding": funding_section,
    "payouts": payouts_section,
    "audit": audit_section,
}


def collect(conn: Connection, settings: Settings, now: datetime) -> Status:
    """Every section, in order; sections of features not installed are left out."""
    status = Status(now=now, currency=settings.currency)
    for name, section in SECTIONS.items():
        value = section(conn, settings, now, status)
        if value is not None:
            status.sections[name] = value
    return status


__all__ = [
    "SECTIONS",
    "Status",
    "collect",
    "missed_key",
    "platforms_of",
    "poll_key",
    "resume_key",
    "unnoticed_expiring",
]


def record_poll(
    engine: Engine,
    platform: str,
    mentions_seen: int,
    outcomes: Mapping[str, int],
    *,
    ok: bool,
    now: datetime,
    missed_window: int = 0,
) -> None:
    """Count a poll in the metrics and, when it succeeded, remember when (`poll_key`); a
    poll that could not read every mention is remembered too (`missed_key`)."""
    observe_poll(platform, mentions_seen, outcomes.items(), missed_window)

    def remember(conn: Connection) -> None:
        if ok:
            put_state(conn, poll_key(platform), now.isoformat(), now)
        if missed_window:
            put_state(conn, missed_key(platform), now.isoformat(), now)

    if ok or missed_window:
        transaction(engine, remember)
