"""The outbox: everything the bot posts, written once, and the relay that posts it.

Everything the bot posts is first written to the `outbox` table, in the same transaction
as the change it reports, under a unique `dedupe_key` (`enqueue`); the relay
(`send_pending`) sends it later through the platform port. Writers are the listener
(supporter replies, `queue_reply`) and the notice planner (`bot.notices`).

- **Supporter replies** (`queue_reply`), written by the listener in the page transaction:
  an error reply, the help text or the confirmation of `stop`, in reply to the post that
  asked (one per post, whatever its edits). A successful tip gets no reply of its own.
  Replies are rate-limited per author (by platform user id): the sign-up pointer
  (`unknown_supporter`) at most once per `UNKNOWN_SUPPORTER_WINDOW` (30 days), every other
  reply at most `REPLIES_PER_DAY` (5) in any rolling 24 hours; and all supporters together
  get at most the setting REPLIES_PER_DAY (200) replies per UTC day. A reply over its limit
  is not written: the mention is still recorded with its outcome, and `PollResult` counts it.
- **The bill** (`bot.costs`): given the settings, the relay counts every post and holds it
  to X_DAILY_BUDGET: a post over the day's budget waits for the next day (then the oldest
  go first), an error reply that would wait more than a day is dropped.

`opt_out` (from `@bot stop` or the web link) ends creator notices for good: pending ones
are skipped, none is planned again, and the relay skips any that slipped through.

The relay claims one row at a time (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite
serializes writers) by setting it `sending` with a lease, posts outside the transaction,
then marks it `sent` with the post id. A relay that dies mid-send leaves a `sending` row;
once its lease runs out another run retries it, and the platform's duplicate-content
refusal on such a retry means the first attempt was posted: the row is marked sent without
an id, and the reason recorded. A rate limit stops the run and holds every post until the
reset (recorded in `state` under `posting_resume_key`: `x.tweets.resume_at` for X); 5xx
and timeouts back the row off exponentially (30 s doubling up to an hour; failed after
`MAX_ATTEMPTS`) and stop the run, since the platform is likely down for the rows behind it
too; any other refusal marks the row failed with the platform's reason. A creator notice
is skipped at send time if the creator opted out, or (on its first attempt) if nothing
waits for them any more (claimed, expired, refused).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, update

from bot.config import Settings
from bot.costs import Admission, admit_post, next_day, record_post, record_reads
from bot.platforms import (
    DuplicateContent,
    KnowsUsersById,
    PermanentError,
    Platform,
    PlatformError,
    RateLimited,
    TransientError,
)
from bot.state import get_time, put_state
from escrow.db import dialect_insert, transaction
from escrow.ledger import held_for
from escrow.schema import accounts, creator_notices, outbox, tips

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


def posting_resume_key(platform: str) -> str:
    """The `state` key holding when posting on `platform` may resume after a rate limit."""
    return TWEETS_RESUME_AT if platform == "x" else f"{platform}.posts.resume_at"


# --------------------------------------------------------------------------- opt-out


def notice_row(conn: Connection, account_id: int, now: datetime) -> Any:
    """The creator's `creator_notices` row, locked for this transaction (created if missing)."""
    conn.execute(
        dialect_insert(conn, creator_notices)
        .values(account_id=account_id, cycle=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["account_id"])
    )
    return conn.execute(
        select(creator_notices).where(creator_notices.c.account_id == account_id).with_for_update()
    ).one()


def opt_out(conn: Connection, account_id: int, now: datetime) -> None:
    """No more creator notices for `account_id`, ever; pending ones are skipped."""
    row = notice_row(conn, account_id, now)
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
    platform: str = "x",
    daily_cap: int | None = None,
) -> bool:
    """Write a supporter reply to the outbox unless the supporter's limit is reached.

    `source` is the mention's original id: one reply per tweet, whatever its edits.
    `daily_cap` (the setting REPLIES_PER_DAY) bounds replies to all supporters together per
    UTC day. Returns True when a row was written.
    """
    if not reply_allowed(conn, author_id, outcome, now):
        return False
    if daily_cap is not None and replies_planned_today(conn, now) >= daily_cap:
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
        platform=platform,
    )


def replies_planned_today(conn: Connection, now: datetime) -> int:
    """Supporter replies written since the start of this UTC day (pending, in flight, sent)."""
    day_start = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    return int(
        conn.execute(
            select(func.count())
            .select_from(outbox)
            .where(
                outbox.c.kind == "supporter_reply",
                outbox.c.state.in_(("pending", "sending", "sent")),
                outbox.c.created_at >= day_start,
            )
        ).scalar_one()
    )


def enqueue(conn: Connection, now: datetime, **row: Any) -> bool:
    """Add a post to the outbox, due now, once per `dedupe_key`; True if it is new."""
    # RETURNING, not rowcount: SQLAlchemy reports -1 for an INSERT on PostgreSQL.
    added = conn.execute(
        dialect_insert(conn, outbox)
        .values(**row, state="pending", attempts=0, next_attempt_at=now, created_at=now)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(outbox.c.id)
    )
    return added.first() is not None


# --------------------------------------------------------------------------- the relay


@dataclass(frozen=True)
class SendResult:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retry_later: int = 0
    rate_limited_until: datetime | None = None
    error: str | None = None
    held_back: int = 0  # deferred to the next day or dropped: X_DAILY_BUDGET was reached

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


def _over_budget(conn: Connection, settings: Settings, row: Any, now: datetime) -> str | None:
    """Hold back a post over today's X_DAILY_BUDGET: "deferred" or "dropped", else None."""
    admission = admit_post(
        conn, settings, kind=row.kind, text=row.text, created_at=row.created_at, now=now
    )
    if admission is Admission.POST:
        return None
    if admission is Admission.DEFER:
        # Due again when the next day's budget opens; the relay takes the oldest first.
        values: dict[str, Any] = {"next_attempt_at": next_day(now), "state": "pending"}
        values["error"] = "waits for the next day: X_DAILY_BUDGET is reached"
    else:
        values = {"state": "skipped", "error": "dropped: X_DAILY_BUDGET is reached"}
    conn.execute(update(outbox).where(outbox.c.id == row.id).values(lease_until=None, **values))
    return "deferred" if admission is Admission.DEFER else "dropped"


def _claim_one(
    conn: Connection,
    now: datetime,
    lease: timedelta,
    platform: str = "x",
    settings: Settings | None = None,
) -> _Claimed | str | None:
    """Take the next due row (a `sending` row whose lease ran out counts as due).

    Returns the claimed row, "skipped" when the row was a notice nobody should get any
    more (marked so in this transaction), "deferred"/"dropped" when today's spend cap
    holds it back, or None when nothing is due.
    """
    row = conn.execute(
        select(outbox)
        .where(
            outbox.c.platform == platform,
            or_(
                and_(outbox.c.state == "pending", outbox.c.next_attempt_at <= now),
                and_(outbox.c.state == "sending", outbox.c.lease_until <= now),
            ),
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
    if settings is not None and platform == "x":  # the platform that bills per post
        held_back = _over_budget(conn, settings, row, now)
        if held_back is not None:
            return held_back
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


def _post(platform: Platform, claimed: _Claimed) -> str:
    if claimed.kind == "dm":
        if not claimed.recipient_user_id:
            raise PermanentError("a direct message without a recipient")
        return platform.send_dm(claimed.recipient_user_id, claimed.text)
    if not claimed.in_reply_to_tweet_id:
        raise PermanentError("a post without a thread to reply in")
    return platform.reply(claimed.text, claimed.in_reply_to_tweet_id)


def send_pending(
    engine: Engine,
    platform: Platform,
    now: datetime,
    limit: int = 50,
    *,
    lease: timedelta = LEASE,
    should_stop: Callable[[], bool] | threading.Event | None = None,
    settings: Settings | None = None,
) -> SendResult:
    """Send up to `limit` due outbox rows; safe to run in several processes at once.

    With `settings`, every post is counted for `tipjar costs` and held to X_DAILY_BUDGET.
    """
    stop = should_stop.is_set if isinstance(should_stop, threading.Event) else should_stop
    resume_key = posting_resume_key(platform.name)
    not_now = _not_now(engine, platform, settings, now, limit)
    if not_now is not None:
        return not_now
    sent = failed = skipped = later = held_back = 0
    for _ in range(limit):
        if stop is not None and stop():
            break
        claimed = transaction(
            engine, lambda conn: _claim_one(conn, now, lease, platform.name, settings)
        )
        if claimed is None:
            break
        if isinstance(claimed, str):  # skipped, or held back by the day's spend cap
            skipped += claimed == "skipped"
            held_back += claimed != "skipped"
            continue
        try:
            tweet_id = _post(platform, claimed)
        except RateLimited as exc:
            reset_at = exc.reset_at
            _wait_for_reset(engine, claimed, reset_at, resume_key, now)
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
                _count_post(engine, settings, platform.name, claimed, now)
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
            log.warning(
                "posting failed for now (%s); the next run retries",
                exc,
                extra={"tweet_id": claimed.in_reply_to_tweet_id, "platform": platform.name},
            )
            return SendResult(sent, failed, skipped, later, error=str(exc))
        except (PermanentError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, PermanentError) else str(exc)
            _finish_row(engine, claimed, state="failed", error=reason)
            failed += 1
            log.warning(
                "outbox row %d failed for good: %s",
                claimed.id,
                reason,
                extra={"tweet_id": claimed.in_reply_to_tweet_id, "platform": platform.name},
            )
        else:
            _finish_row(
                engine, claimed, state="sent", sent_tweet_id=tweet_id, sent_at=now, error=None
            )
            _count_post(engine, settings, platform.name, claimed, now)
            sent += 1
    if held_back:
        log.warning("%d post(s) held back: X_DAILY_BUDGET is reached for today", held_back)
    return SendResult(sent, failed, skipped, later, held_back=held_back)


def _wait_for_reset(
    engine: Engine, claimed: _Claimed, until: datetime, resume_key: str, now: datetime
) -> None:
    """Put a rate-limited row back until the platform's reset; posting resumes then."""

    def wait(conn: Connection) -> None:
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
        put_state(conn, resume_key, until.isoformat(), now)

    transaction(engine, wait)


def _not_now(
    engine: Engine, platform: Platform, settings: Settings | None, now: datetime, limit: int
) -> SendResult | None:
    """Why no post may go out in this run (a rate limit's reset, the platform unable to name
    the creators), or None."""
    resume_key = posting_resume_key(platform.name)
    resume_at = transaction(engine, lambda conn: get_time(conn, resume_key))
    if resume_at is not None and now < resume_at:
        return SendResult(rate_limited_until=resume_at)
    if settings is not None and isinstance(platform, KnowsUsersById):
        problem = _refresh_creators(engine, platform.name, platform, settings, now, limit)
        if problem is not None:
            log.warning("posting waits: the creators' handles could not be checked (%s)", problem)
            return SendResult(error=f"could not check the creators' accounts: {problem}")
    return None


def _refresh_creators(
    engine: Engine,
    platform_name: str,
    platform: KnowsUsersById,
    settings: Settings,
    now: datetime,
    limit: int,
) -> str | None:
    """Before notices go out, ask the platform who their creators are now (batched by id).

    Handles are recycled: a notice planned for "@bob" must not reach whoever took that
    handle after Bob renamed. A renamed creator is addressed by the new handle (and the
    account's snapshot updated); a creator the platform no longer knows gets no post.
    Returns why the platform could not be asked, or None.
    """
    query = (
        select(outbox.c.id, outbox.c.text, accounts.c.id.label("account_id"))
        .add_columns(accounts.c.platform_user_id, accounts.c.handle)
        .join(accounts, accounts.c.id == outbox.c.recipient_account_id)
        .where(
            outbox.c.kind == "creator_notice",
            outbox.c.state == "pending",
            outbox.c.next_attempt_at <= now,
            accounts.c.platform == platform_name,
        )
        .order_by(outbox.c.next_attempt_at, outbox.c.id)
        .limit(limit)
    )
    due = transaction(engine, lambda conn: list(conn.execute(query)))
    if not due:
        return None
    try:
        found = platform.lookup_users_by_id(sorted({r.platform_user_id for r in due}))
    except PlatformError as exc:
        return str(exc)

    def apply(conn: Connection) -> None:
        record_reads(conn, settings, len(found), now)
        pending = outbox.c.state == "pending"
        for r in due:
            user = found.get(r.platform_user_id)
            if user is None:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id == r.id, pending)
                    .values(state="skipped", error="the creator's account is gone")
                )
            elif user.handle != r.handle:
                conn.execute(
                    update(accounts)
                    .where(accounts.c.id == r.account_id)
                    .values(handle=user.handle, handle_key=user.handle.casefold())
                )
                text = readdress(r.text, r.handle, user.handle)
                conn.execute(update(outbox).where(outbox.c.id == r.id, pending).values(text=text))

    transaction(engine, apply)
    return None


def readdress(text: str, old: str | None, new: str) -> str:
    """The notice `text` addressed to @new instead of @old (its first word)."""
    if old and text.startswith(f"@{old} "):
        return f"@{new} " + text[len(old) + 2 :]
    return text


def _count_post(
    engine: Engine, settings: Settings | None, platform: str, claimed: _Claimed, now: datetime
) -> None:
    if settings is not None and platform == "x":  # the bill `tipjar costs` shows is X's
        transaction(engine, lambda conn: record_post(conn, settings, claimed.text, now))


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
