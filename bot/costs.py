"""The operator's bill: what the bot reads and posts each day, and the daily spend cap.

The platform bills every read and every post, and a post with a link many times a post
without one. Each read and each post is counted, per UTC day, in `platform_usage`, with
its estimated price in integer micro-dollars (the platform bills in USD; prices come from
X_PRICE_POST, X_PRICE_POST_WITH_LINK and X_PRICE_MENTION_READ). Before the relay posts,
`admit_post` checks the post against X_DAILY_BUDGET: over it, a post waits for the next
day (the relay then sends the oldest first), and an error reply to a supporter that would
wait more than a day is dropped. The deferred and dropped posts are counted too, and
`tipjar costs` shows it all.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, select

from bot.config import Settings
from escrow.db import dialect_insert
from escrow.schema import platform_usage

X = "x"
_LINK = re.compile(r"https?://", re.IGNORECASE)
DROP_AFTER = timedelta(days=1)  # an error reply later than this is no use to anyone
COUNTERS = ("reads", "posts", "posts_with_link", "spend_usd_micros", "deferred", "dropped")


def day_of(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


def next_day(moment: datetime) -> datetime:
    """The start of the UTC day after `moment`: when a deferred post is due again."""
    return datetime.combine(moment.astimezone(UTC).date() + timedelta(days=1), time(0), UTC)


def has_link(text: str) -> bool:
    return _LINK.search(text) is not None


def post_price(settings: Settings, text: str) -> int:
    """The estimated price of posting `text`, in micro-dollars."""
    if has_link(text):
        return settings.x_price_post_with_link_usd_micros
    return settings.x_price_post_usd_micros


def _add(conn: Connection, now: datetime, platform: str = X, **deltas: int) -> None:
    """Add `deltas` to today's counters (one upsert; concurrent writers add, never overwrite)."""
    stmt = dialect_insert(conn, platform_usage).values(day=day_of(now), platform=platform, **deltas)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["day", "platform"],
            set_={k: getattr(platform_usage.c, k) + v for k, v in deltas.items()},
        )
    )


def record_reads(conn: Connection, settings: Settings, count: int, now: datetime) -> None:
    """`count` resources read from the platform (mentions, users looked up)."""
    if count > 0:
        _add(
            conn,
            now,
            reads=count,
            spend_usd_micros=count * settings.x_price_mention_read_usd_micros,
        )


def record_post(conn: Connection, settings: Settings, text: str, now: datetime) -> None:
    link = has_link(text)
    _add(
        conn,
        now,
        posts=0 if link else 1,
        posts_with_link=1 if link else 0,
        spend_usd_micros=post_price(settings, text),
    )


def spent_today(conn: Connection, now: datetime, platform: str = X) -> int:
    value = conn.execute(
        select(platform_usage.c.spend_usd_micros).where(
            platform_usage.c.day == day_of(now), platform_usage.c.platform == platform
        )
    ).scalar_one_or_none()
    return int(value or 0)


class Admission(StrEnum):
    POST = "post"  # within today's budget: post it now
    DEFER = "defer"  # over the budget: due again at the start of the next day
    DROP = "drop"  # over the budget, and a supporter's error reply would come too late


def admit_post(
    conn: Connection,
    settings: Settings,
    *,
    kind: str,
    text: str,
    created_at: datetime,
    now: datetime,
) -> Admission:
    """Whether a post fits in today's X_DAILY_BUDGET; counts it when deferred or dropped."""
    if spent_today(conn, now) + post_price(settings, text) <= settings.x_daily_budget_usd_micros:
        return Admission.POST
    if kind == "supporter_reply" and next_day(now) - created_at > DROP_AFTER:
        _add(conn, now, dropped=1)
        return Admission.DROP
    _add(conn, now, deferred=1)
    return Admission.DEFER


@dataclass(frozen=True)
class DayUsage:
    day: str
    reads: int
    posts: int
    posts_with_link: int
    spend_usd_micros: int
    deferred: int
    dropped: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def usage(conn: Connection, days: int, now: datetime, platform: str = X) -> list[DayUsage]:
    """The last `days` UTC days up to today, newest first; days with nothing show zeros."""
    today = now.astimezone(UTC).date()
    wanted = [(today - timedelta(days=i)).isoformat() for i in range(days)]
    rows = {
        r.day: r
        for r in conn.execute(
            select(platform_usage).where(
                platform_usage.c.platform == platform, platform_usage.c.day.in_(wanted)
            )
        )
    }
    return [
        DayUsage(day, *(int(getattr(rows[day], c)) if day in rows else 0 for c in COUNTERS))
        for day in wanted
    ]


def format_usd(micros: int) -> str:
    """Micro-dollars as people read them: $0.215, $5.00."""
    dollars, rest = divmod(micros, 1_000_000)
    cents = str(rest).rjust(6, "0").rstrip("0").ljust(2, "0")
    return f"${dollars}.{cents}"
