"""Notices and the outbox relay: what the bot posts, when, and how it gets there exactly once.

Everything the bot posts is first written to the `outbox` table, in the same transaction
as the change it reports, under a unique `dedupe_key`; the relay (`send_pending`) sends it
later. Three writers use the outbox:

- **Supporter replies** (`queue_reply`), written by the listener in the page transaction:
  an error reply, the help text or the confirmation of `stop`, in reply to the tweet that
  asked (one per tweet, whatever its edits). A successful tip gets no reply of its own.
  Replies are rate-limited per author (by platform user id): the sign-up pointer
  (`unknown_supporter`) at most once per `UNKNOWN_SUPPORTER_WINDOW` (30 days), every other
  reply at most `REPLIES_PER_DAY` (5) in any rolling 24 hours. A reply over its limit is
  not written: the mention is still recorded with its outcome, and `PollResult` counts it.
- **Creator notices** (`plan_notices`): one reply in the thread of a tip tweet, or of the
  flattr tweet behind a settlement's hold (never a fresh unsolicited mention),
  aggregating everything waiting for the creator. They follow `NOTICE_SCHEDULE` within a
  *cycle*: a cycle opens when a creator who has no open cycle
  has a hold, and closes when no hold is left (claimed, expired, retracted, refused). Per
  cycle: one notice at the first hold (`notice:first:<account>:<cycle>`), one reminder per
  configured offset once the oldest hold is that close to expiring
  (`notice:reminder:<account>:<cycle>:<offset>`), nothing more. A reminder is not sent
  when a notice of the same cycle already went out inside its window (it carried the
  expiry date). A creator whose holds all expired or were retracted and who is tipped again
  later starts a new cycle: the new money is news, and a cycle lasts at least as long as a
  hold waits, so this is at most two posts per hold period.
- **The daily cap** (`NOTICES_PER_DAY`): creator notices planned in one UTC day (pending,
  in flight or sent) never exceed it. A notice over the cap is not planned that day and
  is planned on a later day, most urgent (nearest expiry) first; `NoticePlan.deferred`
  and the log say how many wait, so nothing is dropped silently.

`opt_out` (from `@bot stop` or the web link) ends creator notices for good: pending ones
are skipped, none is planned again, and the relay skips any that slipped through.

The relay claims one row at a time (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite
serializes writers) by setting it `sending` with a lease, posts outside the transaction,
then marks it `sent` with the tweet id. A relay that dies mid-send leaves a `sending` row;
once its lease runs out another run retries it, and X's duplicate-content 403 on such a
retry means the first attempt was posted: the row is marked sent without an id, and the
reason recorded. 429 stops the run and holds every post until the reset (recorded in
`state` as `x.tweets.resume_at`); 5xx and timeouts back the row off exponentially (30 s
doubling up to an hour; failed after `MAX_ATTEMPTS`) and stop the run, since the platform is
likely down for the rows behind it too; any other refusal marks the row failed with X's
reason. A creator notice is skipped at send time if the creator opted out, or (on its
first attempt) if nothing waits for them any more (claimed, expired, refused).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    String,
    and_,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from bot.config import Settings
from bot.replies import creator_notice
from bot.x_api import DuplicateContent, PermanentError, RateLimited, TransientError, XApi
from escrow.db import transaction
from escrow.ledger import held_for, is_held
from escrow.money import Money
from escrow.reports import held_by_recipient
from escrow.schema import accounts, creator_notices, outbox, shares, state, tips
from escrow.settlement import SHARE_SOURCE_PREFIX

log = logging.getLogger(__name__)

UNKNOWN_SUPPORTER = "unknown_supporter"
UNKNOWN_SUPPORTER_WINDOW = timedelta(days=30)
REPLIES_PER_DAY = 5
REPLY_WINDOW = timedelta(days=1)

LEASE = timedelta(minutes=10)  # far longer than one post can take, retries included
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
MAX_ATTEMPTS = 12  # transient failures before a post is given up (about half a day)

TWEETS_RESUME_AT = "x.tweets.resume_at"
PLAN_LOCK = "notices.plan"

FIRST = "first"
REMINDER = "reminder"


# --------------------------------------------------------------------------- durable state


def _insert(conn: Connection, table: Any) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def get_state(conn: Connection, key: str) -> str | None:
    value = conn.execute(select(state.c.value).where(state.c.key == key)).scalar_one_or_none()
    return None if value is None else str(value)


def put_state(conn: Connection, key: str, value: str, now: datetime) -> None:
    stmt = _insert(conn, state).values(key=key, value=value, updated_at=now)
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value, "updated_at": now})
    )


def lock_state(conn: Connection, key: str, now: datetime, default: str = "") -> str:
    """Lock the `state` row `key` for this transaction (created if missing); its value.

    Serializes the writers of one piece of state on PostgreSQL (SQLite's BEGIN IMMEDIATE
    already does), so two pollers or planners never work on the same thing at once.
    """
    conn.execute(
        _insert(conn, state)
        .values(key=key, value=default, updated_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    return str(
        conn.execute(select(state.c.value).where(state.c.key == key).with_for_update()).scalar_one()
    )


def get_time(conn: Connection, key: str) -> datetime | None:
    raw = get_state(conn, key)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- opt-out


def _notice_row(conn: Connection, account_id: int, now: datetime) -> Any:
    conn.execute(
        _insert(conn, creator_notices)
        .values(account_id=account_id, cycle=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["account_id"])
    )
    return conn.execute(
        select(creator_notices).where(creator_notices.c.account_id == account_id).with_for_update()
    ).one()


def opt_out(conn: Connection, account_id: int, now: datetime) -> None:
    """No more creator notices for `account_id`, ever; pending ones are skipped."""
    row = _notice_row(conn, account_id, now)
    if row.opted_out_at is None:
        conn.execute(
            update(creator_notices)
            .where(creator_notices.c.account_id == account_id)
            .values(opted_out_at=now, updated_at=now)
        )
    conn.execute(
        update(outbox)
        .where(
            outbox.c.recipient_account_id == account_id,
            outbox.c.kind == "creator_notice",
            outbox.c.state == "pending",
        )
        .values(state="skipped", error="the creator opted out of notices", lease_until=None)
    )


def is_opted_out(conn: Connection, account_id: int) -> bool:
    return (
        conn.execute(
            select(creator_notices.c.opted_out_at).where(creator_notices.c.account_id == account_id)
        ).scalar_one_or_none()
        is not None
    )


# --------------------------------------------------------------------------- supporter replies


def reply_allowed(conn: Connection, author_id: str, outcome: str, now: datetime) -> bool:
    """Whether one more reply about `outcome` may go to the supporter `author_id` now."""
    mine = and_(outbox.c.kind == "supporter_reply", outbox.c.recipient_user_id == author_id)
    if outcome == UNKNOWN_SUPPORTER:
        where = [mine, outbox.c.topic == UNKNOWN_SUPPORTER]
        since, allowed = now - UNKNOWN_SUPPORTER_WINDOW, 1
    else:
        where = [mine, outbox.c.topic != UNKNOWN_SUPPORTER]
        since, allowed = now - REPLY_WINDOW, REPLIES_PER_DAY
    count = conn.execute(
        select(func.count()).select_from(outbox).where(*where, outbox.c.created_at > since)
    ).scalar_one()
    return int(count) < allowed


def queue_reply(
    conn: Connection,
    *,
    source: str,
    in_reply_to_tweet_id: str,
    author_id: str,
    author_account_id: int | None,
    outcome: str,
    text: str,
    now: datetime,
) -> bool:
    """Write a supporter reply to the outbox unless the supporter's limit is reached.

    `source` is the mention's original id: one reply per tweet, whatever its edits.
    Returns True when a row was written.
    """
    if not reply_allowed(conn, author_id, outcome, now):
        return False
    return enqueue(
        conn,
        now,
        dedupe_key=f"reply:{source}",
        kind="supporter_reply",
        recipient_account_id=author_account_id,
        recipient_user_id=author_id,
        topic=outcome,
        in_reply_to_tweet_id=in_reply_to_tweet_id,
        text=text,
    )


def enqueue(conn: Connection, now: datetime, **row: Any) -> bool:
    """Add a post to the outbox, due now, once per `dedupe_key`; True if it is new."""
    result = conn.execute(
        _insert(conn, outbox)
        .values(**row, state="pending", attempts=0, next_attempt_at=now, created_at=now)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    return bool(result.rowcount)


# --------------------------------------------------------------------------- creator notices


@dataclass(frozen=True)
class NoticePlan:
    planned: int = 0
    deferred: int = 0  # due but over today's NOTICES_PER_DAY: planned on a later day
    cycles_opened: int = 0
    cycles_closed: int = 0
    without_thread: int = 0  # creators whose holds have no tip tweet (or handle) to post with

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
    return source is not None and source.isdigit() and len(source) <= 19


def _thread_of(conn: Connection, account_id: int) -> str | None:
    """The tweet to reply under: that of the oldest waiting tip that came from one.

    A tip asked for by a tweet has the tweet's id as its source. A hold made by the
    monthly settlement has its share as its source (`share:<id>`), and the share
    remembers the flattr tweet, so the notice goes under that tweet. A source that is
    neither (a deposit-era import, a share without its tweet) has no thread.
    """
    sources = conn.execute(
        select(tips.c.source_id)
        .where(held_for(account_id))
        .order_by(tips.c.created_at, tips.c.id)
        .limit(THREAD_CANDIDATES)
    ).scalars()
    for source in list(sources):
        if _is_tweet_id(source):
            return str(source)
        share_id = source.removeprefix(SHARE_SOURCE_PREFIX)
        if share_id != source and share_id.isdigit():
            tweet = conn.execute(
                select(shares.c.source_id).where(shares.c.id == int(share_id))
            ).scalar_one_or_none()
            if _is_tweet_id(tweet):
                return str(tweet)
    return None


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

    per = held_by_recipient()
    # Only creators for whom something may be due: a cycle that opens now, a first notice
    # still unwritten (deferred by the cap), or an oldest hold inside a reminder window.
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
    candidates = list(
        conn.execute(
            select(per, accounts.c.handle)
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
    budget = max(0, settings.notices_per_day - notices_planned_today(conn, now))
    planned = deferred = opened = threadless = 0
    for c in candidates:
        account_id = int(c.account_id)
        row = _notice_row(conn, account_id, now)
        cycle = int(row.cycle)
        if row.cycle_open_since is None:
            cycle += 1
            opened += 1
            conn.execute(
                update(creator_notices)
                .where(creator_notices.c.account_id == account_id)
                .values(cycle=cycle, cycle_open_since=now, updated_at=now)
            )
        due = _due_notice(
            settings,
            _cycle_notices(conn, account_id, cycle),
            account_id,
            cycle,
            c.next_expiry_at,
            now,
        )
        if due is None:
            continue
        key, reminder = due
        thread = _thread_of(conn, account_id)
        if thread is None or not c.handle:
            threadless += 1
            continue
        if budget <= 0:
            deferred += 1
            continue
        try:
            text = creator_notice(
                creator_handle=c.handle,
                total=Money(int(c.held_minor), settings.currency),
                supporters=int(c.supporters),
                tips=int(c.tips),
                claim_url=claim_url(settings),
                expires_on=c.next_expiry_at.date(),
                reminder=reminder,
            )
        except ValueError as exc:  # a handle or PUBLIC_BASE_URL the text cannot carry
            log.warning("no notice for account %d: %s", account_id, exc)
            threadless += 1
            continue
        written = enqueue(
            conn,
            now,
            dedupe_key=key,
            kind="creator_notice",
            recipient_account_id=account_id,
            topic=REMINDER if reminder else FIRST,
            in_reply_to_tweet_id=thread,
            text=text,
        )
        if written:
            planned += 1
            budget -= 1
    if deferred:
        log.warning(
            "%d creator notice(s) wait for a later day: NOTICES_PER_DAY=%d is reached",
            deferred,
            settings.notices_per_day,
        )
    return NoticePlan(planned, deferred, opened, int(closed or 0), threadless)


# --------------------------------------------------------------------------- the relay


@dataclass(frozen=True)
class SendResult:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retry_later: int = 0
    rate_limited_until: datetime | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Claimed:
    id: int
    kind: str
    text: str
    in_reply_to_tweet_id: str | None
    recipient_user_id: str | None
    attempts: int


def _nothing_waiting(conn: Connection, account_id: int) -> bool:
    status = conn.execute(
        select(accounts.c.status).where(accounts.c.id == account_id)
    ).scalar_one_or_none()
    if status != "unclaimed":
        return True
    return conn.execute(select(tips.c.id).where(held_for(account_id)).limit(1)).first() is None


def _claim_one(conn: Connection, now: datetime, lease: timedelta) -> _Claimed | str | None:
    """Take the next due row (a `sending` row whose lease ran out counts as due).

    Returns the claimed row, "skipped" when the row was a notice nobody should get any
    more (marked so in this transaction), or None when nothing is due.
    """
    row = conn.execute(
        select(outbox)
        .where(
            or_(
                and_(outbox.c.state == "pending", outbox.c.next_attempt_at <= now),
                and_(outbox.c.state == "sending", outbox.c.lease_until <= now),
            )
        )
        .order_by(outbox.c.next_attempt_at, outbox.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).one_or_none()
    if row is None:
        return None
    if row.kind == "creator_notice" and row.recipient_account_id is not None:
        reason = None
        if is_opted_out(conn, row.recipient_account_id):
            reason = "the creator opted out of notices"
        elif row.attempts == 0 and _nothing_waiting(conn, row.recipient_account_id):
            reason = "nothing is waiting for the creator any more"
        if reason is not None:
            conn.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(state="skipped", error=reason, lease_until=None)
            )
            return "skipped"
    attempts = int(row.attempts) + 1
    conn.execute(
        update(outbox)
        .where(outbox.c.id == row.id)
        .values(state="sending", attempts=attempts, lease_until=now + lease)
    )
    return _Claimed(
        id=int(row.id),
        kind=row.kind,
        text=row.text,
        in_reply_to_tweet_id=row.in_reply_to_tweet_id,
        recipient_user_id=row.recipient_user_id,
        attempts=attempts,
    )


def _finish_row(engine: Engine, claimed: _Claimed, **values: Any) -> None:
    # Gated on the claim: a row another relay took over after our lease ran out is theirs.
    transaction(
        engine,
        lambda conn: conn.execute(
            update(outbox)
            .where(
                outbox.c.id == claimed.id,
                outbox.c.state == "sending",
                outbox.c.attempts == claimed.attempts,
            )
            .values(lease_until=None, **values)
        ),
    )


def _backoff(attempts: int) -> timedelta:
    return min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, attempts - 1))


def _post(x_api: XApi, claimed: _Claimed) -> str:
    if claimed.kind == "dm":
        if not claimed.recipient_user_id:
            raise PermanentError("a direct message without a recipient")
        return x_api.send_dm(claimed.recipient_user_id, claimed.text)
    if not claimed.in_reply_to_tweet_id:
        raise PermanentError("a post without a thread to reply in")
    return x_api.reply(claimed.text, claimed.in_reply_to_tweet_id)


def send_pending(
    engine: Engine,
    x_api: XApi,
    now: datetime,
    limit: int = 50,
    *,
    lease: timedelta = LEASE,
    should_stop: Callable[[], bool] | threading.Event | None = None,
) -> SendResult:
    """Send up to `limit` due outbox rows; safe to run in several processes at once."""
    stop = should_stop.is_set if isinstance(should_stop, threading.Event) else should_stop
    resume_at = transaction(engine, lambda conn: get_time(conn, TWEETS_RESUME_AT))
    if resume_at is not None and now < resume_at:
        return SendResult(rate_limited_until=resume_at)
    sent = failed = skipped = later = 0
    for _ in range(limit):
        if stop is not None and stop():
            break
        claimed = transaction(engine, lambda conn: _claim_one(conn, now, lease))
        if claimed is None:
            break
        if isinstance(claimed, str):
            skipped += 1
            continue
        try:
            tweet_id = _post(x_api, claimed)
        except RateLimited as exc:
            reset_at = exc.reset_at

            def wait(
                conn: Connection, claimed: _Claimed = claimed, until: datetime = reset_at
            ) -> None:
                # A 429 posted nothing: the attempt does not count.
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id == claimed.id, outbox.c.attempts == claimed.attempts)
                    .values(
                        state="pending",
                        attempts=claimed.attempts - 1,
                        next_attempt_at=until,
                        lease_until=None,
                    )
                )
                put_state(conn, TWEETS_RESUME_AT, until.isoformat(), now)

            transaction(engine, wait)
            log.warning("posting is rate limited until %s", reset_at.isoformat())
            return SendResult(sent, failed, skipped, later + 1, rate_limited_until=reset_at)
        except DuplicateContent as exc:
            if claimed.attempts > 1:
                _finish_row(
                    engine,
                    claimed,
                    state="sent",
                    sent_at=now,
                    error=f"assumed sent: an earlier attempt was posted ({exc.reason})",
                )
                sent += 1
            else:
                _finish_row(engine, claimed, state="failed", error=exc.reason)
                failed += 1
        except TransientError as exc:
            if claimed.attempts >= MAX_ATTEMPTS:
                _finish_row(engine, claimed, state="failed", error=f"gave up after retries: {exc}")
                failed += 1
            else:
                _finish_row(
                    engine,
                    claimed,
                    state="pending",
                    next_attempt_at=now + _backoff(claimed.attempts),
                    error=str(exc),
                )
                later += 1
            log.warning("posting failed for now (%s); the next run retries", exc)
            return SendResult(sent, failed, skipped, later, error=str(exc))
        except (PermanentError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, PermanentError) else str(exc)
            _finish_row(engine, claimed, state="failed", error=reason)
            failed += 1
            log.warning("outbox row %d failed for good: %s", claimed.id, reason)
        else:
            _finish_row(
                engine, claimed, state="sent", sent_tweet_id=tweet_id, sent_at=now, error=None
            )
            sent += 1
    return SendResult(sent, failed, skipped, later)


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class OutboxRow:
    id: int
    kind: str
    state: str
    topic: str | None
    recipient_account_id: int | None
    recipient_user_id: str | None
    in_reply_to_tweet_id: str | None
    text: str
    attempts: int
    next_attempt_at: datetime
    sent_tweet_id: str | None
    error: str | None
    created_at: datetime
    sent_at: datetime | None
    dedupe_key: str


def list_outbox(
    conn: Connection, *, state_filter: str | None = None, limit: int = 200
) -> list[OutboxRow]:
    """Outbox rows, newest first (optionally only one state)."""
    query = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
    if state_filter is not None:
        query = query.where(outbox.c.state == state_filter)
    return [
        OutboxRow(
            id=int(r.id),
            kind=r.kind,
            state=r.state,
            topic=r.topic,
            recipient_account_id=r.recipient_account_id,
            recipient_user_id=r.recipient_user_id,
            in_reply_to_tweet_id=r.in_reply_to_tweet_id,
            text=r.text,
            attempts=int(r.attempts),
            next_attempt_at=r.next_attempt_at,
            sent_tweet_id=r.sent_tweet_id,
            error=r.error,
            created_at=r.created_at,
            sent_at=r.sent_at,
            dedupe_key=r.dedupe_key,
        )
        for r in conn.execute(query)
    ]
