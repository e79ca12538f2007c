"""Creator notices: which notice is due for which creator, written to the outbox.

`plan_notices` writes one reply in the thread of a tip post, or of the flattr post behind
a settlement's hold (never a fresh unsolicited mention), aggregating everything waiting for
the creator; `bot.outbox` posts it. Notices follow `NOTICE_SCHEDULE` within a *cycle*:
a cycle opens when a creator who has no open cycle has a hold, and closes when no hold is
left (claimed, expired, retracted, refused). Per cycle: one notice at the first hold
(`notice:first:<account>:<cycle>`), one reminder per configured offset once the oldest
hold is that close to expiring (`notice:reminder:<account>:<cycle>:<offset>`), nothing
more. A reminder is not sent when a notice of the same cycle already went out inside its
window (it carried the expiry date). A creator whose holds all expired or were retracted
and who is tipped again later starts a new cycle: the new money is news, and a cycle lasts
at least as long as a hold waits, so this is at most two posts per hold period.

**The daily cap** (`NOTICES_PER_DAY`): creator notices planned in one UTC day (pending, in
flight or sent) never exceed it. A notice over the cap is not planned that day and is
planned on a later day, most urgent (nearest expiry) first; `NoticePlan.deferred` and the
log say how many wait, so nothing is dropped silently. Creators who opted out
(`bot.outbox.opt_out`) get none.

**Abuse limits** (issue 15): whatever happens to the holds (retracted, refused, tipped
again), a creator gets at most `NOTICES_PER_HOLD_PERIOD` (2) notices in any `HOLD_PERIOD`;
only tips that have stood for `NOTICE_DELAY` (a day) count, so one retracted sooner never
leads to a post; a first notice waits until `NOTICE_MIN_HELD` is held or a second
supporter tips; and one supporter's tips lead to at most `NOTICES_PER_SUPPORTER_PER_DAY`
notices (the outbox row names that supporter).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, String, cast, exists, func, literal, or_, select, update

from bot.config import Settings
from bot.outbox import enqueue, notice_row
from bot.replies import creator_notice
from bot.state import lock_state
from escrow.ledger import held_for, is_held
from escrow.money import Money
from escrow.reports import held_by_recipient
from escrow.schema import accounts, creator_notices, outbox, shares, tips
from escrow.settlement import SHARE_SOURCE_PREFIX

log = logging.getLogger(__name__)

PLAN_LOCK = "notices.plan"

FIRST = "first"
REMINDER = "reminder"

# Abuse limits (issue 15): a creator hears from the bot at most twice per hold period, and
# only about tips that stood for a day (a tip retracted sooner never leads to a post).
NOTICES_PER_HOLD_PERIOD = 2
NOTICE_DELAY = timedelta(days=1)


# --------------------------------------------------------------------------- creator notices


@dataclass(frozen=True)
class NoticePlan:
    planned: int = 0
    deferred: int = 0  # due but over today's NOTICES_PER_DAY: planned on a later day
    cycles_opened: int = 0
    cycles_closed: int = 0
    without_thread: int = 0  # creators whose holds have no tip tweet (or handle) to post with
    capped: int = 0  # due, but the creator or every supporter behind it had enough notices

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def _offset_label(offset: timedelta) -> str:
    return f"{int(offset.total_seconds())}s"


def _day_start(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)


def notices_planned_today(conn: Connection, now: datetime) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(outbox)
            .where(
                outbox.c.kind == "creator_notice",
                outbox.c.state.in_(("pending", "sending", "sent")),
                outbox.c.created_at >= _day_start(now),
            )
        ).scalar_one()
    )


def claim_url(settings: Settings) -> str:
    return settings.public_base_url.rstrip("/") + "/claim"


THREAD_CANDIDATES = 50  # the oldest waiting tips looked at for a thread to reply in


def _is_tweet_id(source: str | None) -> bool:
    """A post id a reply can go under: an X tweet id, or a Mastodon status (`mastodon:<id>`)."""
    if source is None:
        return False
    bare = source.removeprefix("mastodon:")
    return bare.isdigit() and len(bare) <= 19


def _threads_of(conn: Connection, account_id: int, settled_before: datetime) -> list[Any]:
    """Tweets to reply under, with the supporter whose tip it was, oldest waiting tip first.

    A tip asked for by a tweet has the tweet's id as its source. A hold made by the
    monthly settlement has its share as its source (`share:<id>`), and the share
    remembers the flattr tweet, so the notice goes under that tweet. A source that is
    neither (a deposit-era import, a share without its tweet) has no thread. Only tips
    that have stood for NOTICE_DELAY count: one retracted sooner never leads to a post.
    """
    found = conn.execute(
        select(tips.c.source_id, tips.c.supporter_account_id)
        .where(held_for(account_id), tips.c.created_at <= settled_before)
        .order_by(tips.c.created_at, tips.c.id)
        .limit(THREAD_CANDIDATES)
    )
    threads = []
    for source, supporter in list(found):
        if _is_tweet_id(source):
            threads.append(_Thread(str(source), int(supporter)))
            continue
        share_id = source.removeprefix(SHARE_SOURCE_PREFIX)
        if share_id != source and share_id.isdigit():
            tweet = conn.execute(
                select(shares.c.source_id).where(shares.c.id == int(share_id))
            ).scalar_one_or_none()
            if _is_tweet_id(tweet):
                threads.append(_Thread(str(tweet), int(supporter)))
    return threads


@dataclass(frozen=True)
class _Thread:
    tweet_id: str
    supporter_account_id: int


def notices_in_window(conn: Connection, account_id: int, since: datetime) -> int:
    """Creator notices planned for `account_id` after `since` (pending, in flight or sent)."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(outbox)
            .where(
                outbox.c.recipient_account_id == account_id,
                outbox.c.kind == "creator_notice",
                outbox.c.state.in_(("pending", "sending", "sent")),
                outbox.c.created_at > since,
            )
        ).scalar_one()
    )


def notices_triggered_by(conn: Connection, supporter_account_id: int, now: datetime) -> int:
    """Creator notices one supporter's tips led to in the last 24 hours."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(outbox)
            .where(
                outbox.c.supporter_account_id == supporter_account_id,
                outbox.c.kind == "creator_notice",
                outbox.c.state.in_(("pending", "sending", "sent")),
                outbox.c.created_at > now - timedelta(days=1),
            )
        ).scalar_one()
    )


def _worth_a_first_notice(settings: Settings, candidate: Any) -> bool:
    """Enough waits to tell a stranger about: NOTICE_MIN_HELD, or a second supporter."""
    return int(candidate.held_minor) >= settings.notice_min_held_minor or (
        int(candidate.supporters) >= 2
    )


def _cycle_notices(conn: Connection, account_id: int, cycle: int) -> list[Any]:
    """The creator notices of one cycle (keys `notice:<what>:<account>:<cycle>[:...]`)."""
    rows = conn.execute(
        select(outbox.c.dedupe_key, outbox.c.created_at).where(
            outbox.c.recipient_account_id == account_id, outbox.c.kind == "creator_notice"
        )
    )
    wanted = [str(account_id), str(cycle)]
    return [r for r in rows if r.dedupe_key.split(":")[2:4] == wanted]


def _due_notice(
    settings: Settings,
    existing: Sequence[Any],
    account_id: int,
    cycle: int,
    oldest_expiry: datetime,
    now: datetime,
) -> tuple[str, bool] | None:
    """The dedupe key of the notice due now and whether it is a reminder, or None."""
    keys = {row.dedupe_key for row in existing}
    schedule = settings.notice_schedule
    first_key = f"notice:{FIRST}:{account_id}:{cycle}"
    if schedule.at_first_hold and first_key not in keys:
        return first_key, False
    # The most urgent reminder whose window has opened; a notice already posted inside
    # that window carried the expiry date, so the reminder would say nothing new.
    for offset in sorted(schedule.reminders_before_expiry):
        opens = oldest_expiry - offset
        if now < opens:
            continue
        key = f"notice:{REMINDER}:{account_id}:{cycle}:{_offset_label(offset)}"
        if key in keys or any(row.created_at >= opens for row in existing):
            return None
        return key, True
    return None


def _candidates(conn: Connection, settings: Settings, now: datetime) -> list[Any]:
    """Unclaimed creators with holds who did not opt out, most urgent first.

    Only those for whom something may be due: a cycle that opens now, a first notice still
    unwritten (deferred by the cap), or an oldest hold inside a reminder window.
    """
    per = held_by_recipient(created_before=now - notice_delay(settings))
    schedule = settings.notice_schedule
    maybe_due: list[Any] = [creator_notices.c.cycle_open_since.is_(None)]
    if schedule.at_first_hold:
        first_key = (
            literal("notice:first:", String)
            + cast(per.c.account_id, String)
            + literal(":", String)
            + cast(creator_notices.c.cycle, String)
        )
        maybe_due.append(~exists().where(outbox.c.dedupe_key == first_key))
    if schedule.reminders_before_expiry:
        widest = max(schedule.reminders_before_expiry)
        maybe_due.append(per.c.next_expiry_at <= now + widest)
    return list(
        conn.execute(
            select(per, accounts.c.handle, accounts.c.platform)
            .join(accounts, accounts.c.id == per.c.account_id)
            .outerjoin(creator_notices, creator_notices.c.account_id == per.c.account_id)
            .where(
                accounts.c.status == "unclaimed",
                creator_notices.c.opted_out_at.is_(None),
                or_(*maybe_due),
            )
            .order_by(per.c.next_expiry_at, per.c.account_id)
        )
    )


def plan_notices(conn: Connection, settings: Settings, now: datetime) -> NoticePlan:
    """Write the creator notices due at `now` to the outbox (one transaction)."""
    lock_state(conn, PLAN_LOCK, now)
    held = is_held()
    has_holds = select(tips.c.id).where(
        tips.c.recipient_account_id == creator_notices.c.account_id, held
    )
    closed = conn.execute(
        update(creator_notices)
        .where(creator_notices.c.cycle_open_since.is_not(None), ~has_holds.exists())
        .values(cycle_open_since=None, updated_at=now)
    ).rowcount

    candidates = _candidates(conn, settings, now)
    tally = _Tally(budget=max(0, settings.notices_per_day - notices_planned_today(conn, now)))
    for c in candidates:
        _plan_one(conn, settings, c, now, tally)
    if tally.deferred:
        log.warning(
            "%d creator notice(s) wait for a later day: NOTICES_PER_DAY=%d is reached",
            tally.deferred,
            settings.notices_per_day,
        )
    return NoticePlan(
        tally.planned,
        tally.deferred,
        tally.opened,
        int(closed or 0),
        tally.threadless,
        tally.capped,
    )


def notice_delay(settings: Settings) -> timedelta:
    """How long a tip stands before it counts for a notice (shorter for short hold periods)."""
    return min(NOTICE_DELAY, settings.hold_period / 4)


@dataclass
class _Tally:
    budget: int
    planned: int = 0
    deferred: int = 0
    opened: int = 0
    threadless: int = 0
    capped: int = 0


def _open_cycle(conn: Connection, account_id: int, now: datetime, tally: _Tally) -> int:
    row = notice_row(conn, account_id, now)
    cycle = int(row.cycle)
    if row.cycle_open_since is None:
        cycle += 1
        tally.opened += 1
        conn.execute(
            update(creator_notices)
            .where(creator_notices.c.account_id == account_id)
            .values(cycle=cycle, cycle_open_since=now, updated_at=now)
        )
    return cycle


def _plan_one(conn: Connection, settings: Settings, c: Any, now: datetime, tally: _Tally) -> None:
    """Plan the notice due for one creator, if any, within every limit."""
    account_id = int(c.account_id)
    cycle = _open_cycle(conn, account_id, now, tally)
    existing = _cycle_notices(conn, account_id, cycle)
    due = _due_notice(settings, existing, account_id, cycle, c.next_expiry_at, now)
    if due is None:
        return
    key, reminder = due
    if not reminder and not _worth_a_first_notice(settings, c):
        return  # not yet: more may come, and a lone small tip is not worth a post
    # Whatever happens to the holds (retracted, refused, tipped again), a creator hears
    # from the bot at most twice per hold period.
    if notices_in_window(conn, account_id, now - settings.hold_period) >= NOTICES_PER_HOLD_PERIOD:
        tally.capped += 1
        return
    threads = _threads_of(conn, account_id, now - notice_delay(settings))
    if not threads or not c.handle:
        tally.threadless += 1
        return
    thread = next(
        (
            t
            for t in threads
            if notices_triggered_by(conn, t.supporter_account_id, now)
            < settings.notices_per_supporter_per_day
        ),
        None,
    )
    if thread is None:
        tally.capped += 1  # every supporter here has led to enough notices today
        return
    if tally.budget <= 0:
        tally.deferred += 1
        return
    try:
        text = creator_notice(
            creator_handle=c.handle,
            total=Money(int(c.held_minor), settings.currency),
            supporters=int(c.supporters),
            tips=int(c.tips),
            claim_url=claim_url(settings),
            expires_on=c.next_expiry_at.date(),
            reminder=reminder,
            platform=c.platform,
        )
    except ValueError as exc:  # a handle or PUBLIC_BASE_URL the text cannot carry
        log.warning("no notice for account %d: %s", account_id, exc)
        tally.threadless += 1
        return
    written = enqueue(
        conn,
        now,
        dedupe_key=key,
        kind="creator_notice",
        recipient_account_id=account_id,
        topic=REMINDER if reminder else FIRST,
        in_reply_to_tweet_id=thread.tweet_id,
        supporter_account_id=thread.supporter_account_id,
        text=text,
        platform=c.platform,
    )
    if written:
        tally.planned += 1
        tally.budget -= 1
