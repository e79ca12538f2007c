"""The listener: reads the bot's mentions on a platform and turns each into exactly one outcome.

It speaks only to the platform port (`bot.platforms.Platform`), so each platform is one
adapter away. `poll_once` fetches every mention newer than the platform's stored cursor
(`state` key `<platform>.mentions.since_id`, `x.mentions.since_id` for X), walking the
pages until the platform has no more, then processes them oldest first. Per mention:

- reposts (retweets) and the bot's own posts are skipped; an edit is its original tweet (the first
  id of its edit history is the idempotency key, recorded in the `mentions` table); when a
  tweet and its edits arrive in the same run, the latest version decides, and once applied
  later edits change nothing;
- the text is parsed by `bot.commands.parse`, with the mention's display range (only the
  author's own words are a command; without one, logged once per platform, a reply must
  ask for money) and the links of its own media or quote; recipients become user ids from
  the response itself (the mention's entities and the page's users), the rest from one batched
  `lookup_users` call per run; an unknown handle is `unknown_recipient`;
- an explicit amount is a tip to each recipient (kind "tip", source = the original tweet
  id), applied for a whole chunk by one `escrow.tips.tip_many` call, which decides exactly
  as one `tip` call per recipient in tweet order would; no amount is a flattr
  (`escrow.flattrs.record_flattrs`: a share paid at settlement); `help` gets a help reply
  and `stop` opts the author out of creator notices (and gets a short confirmation);
- a tip to oneself (by user id) is `self_tip`, to the bot's user id `bot_tip`; a supporter
  nobody ever funded is `unknown_supporter`, one without enough money `insufficient_funds`;
- an error gets a reply through the outbox (rate-limited per supporter, see
  `bot.outbox`); a successful tip gets none (the creator notice confirms it).

No silent loss: X serves only the newest 800 mentions. When a run reads a full window and
X has no more pages, the mentions between the cursor and the window are read through the
platform's search (`BackfillsMentions`: X's recent search, 7 days) and go through the same
path; what lies beyond search's reach is logged at ERROR and counted (`missed_window`).

Exactly once: the tips of a chunk of mentions (one page's worth), their outbox rows, the
`mentions` records and the advanced cursor commit in one transaction; a replayed page or
an edit finds its `mentions` row and does nothing, so a crash at any point loses nothing
and doubles nothing. Platform faults stop the run without losing anything: a 429 records
`<platform>.mentions.resume_at` and the next run before that time returns at once without
calling the platform (nothing here waits for a rate limit); 5xx, timeouts and malformed
bodies (after the adapter's few quick retries) leave the cursor where it was, and the next
run retries.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from bot import app
from bot.commands import (
    AmountRules,
    Command,
    ControlCommand,
    NotACommand,
    Outcome,
    Rejection,
    TipCommand,
    parse,
)
from bot.config import Settings
from bot.costs import record_reads
from bot.outbox import opt_out, queue_reply
from bot.platforms import (
    BackfillsMentions,
    Mention,
    MentionsPage,
    PermanentError,
    Platform,
    PlatformError,
    PlatformUser,
    RateLimited,
    TransientError,
)
from bot.replies import ReplyContext, reply_for
from bot.state import get_state, get_time, lock_state, put_state
from escrow.db import bulk_insert, one_of, transaction
from escrow.decide import TipRequest, TipResult
from escrow.flattrs import record_flattrs
from escrow.ledger import (
    Clock,
    Identity,
    Policy,
    TipStatus,
    ensure_account,
    find_account,
    utcnow,
)
from escrow.money import Money
from escrow.schema import mentions, state
from escrow.tips import tip_many

log = logging.getLogger(__name__)

CURSOR_KEY = "x.mentions.since_id"  # X's keys, as cursor_key("x") and resume_key("x")
RESUME_KEY = "x.mentions.resume_at"
PAGE_SIZE = 100
MAX_PAGES = 100  # X serves at most the newest 800 mentions; this only guards a broken API
MAX_SEARCH_PAGES = 1000  # 7 days of backfill, 100 a page: far beyond any real backlog

# Outcomes of mentions that are not commands at all, recorded so they are never re-read.
RETWEET = "retweet"
OWN_TWEET = "own_tweet"


def cursor_key(platform: str) -> str:
    """The `state` key of the newest mention id read on `platform`."""
    return f"{platform}.mentions.since_id"


def resume_key(platform: str) -> str:
    """The `state` key of when reading mentions on `platform` may resume after a 429."""
    return f"{platform}.mentions.resume_at"


_SUCCESS = frozenset({Outcome.tipped, Outcome.held, Outcome.flattred})
_TIP_OUTCOMES = {TipStatus.POSTED: Outcome.tipped, TipStatus.HELD: Outcome.held}
_FLATTR_OUTCOMES = {
    "recorded": Outcome.flattred,
    "already_flattred": Outcome.already_flattred,
    "refusing_recipient": Outcome.refusing_recipient,
    "unknown_supporter": Outcome.unknown_supporter,
    "self_tip": Outcome.self_tip,
}


@dataclass
class PollResult:
    mentions_seen: int = 0  # fetched from the platform this run
    processed: int = 0  # recorded for the first time this run
    already_processed: int = 0  # replays and edits of mentions processed before
    tips_applied: int = 0
    flattrs_recorded: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    replies_queued: int = 0
    replies_suppressed: int = 0  # over the supporter's reply limit
    pages: int = 0
    cursor: str | None = None
    rate_limited_until: datetime | None = None
    error: str | None = None
    interrupted: bool = False  # stopped early because the worker is shutting down
    backfilled: int = 0  # read through search after the mentions window was overrun
    missed_window: int = 0  # 1 when mentions older than search's reach could not be read

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "mentions_seen": self.mentions_seen,
            "processed": self.processed,
            "already_processed": self.already_processed,
            "tips_applied": self.tips_applied,
            "flattrs_recorded": self.flattrs_recorded,
            "outcomes": dict(sorted(self.outcomes.items())),
            "replies_queued": self.replies_queued,
            "replies_suppressed": self.replies_suppressed,
            "pages": self.pages,
            "cursor": self.cursor,
            "rate_limited_until": self.rate_limited_until,
            "error": self.error,
            "interrupted": self.interrupted,
            "backfilled": self.backfilled,
            "missed_window": self.missed_window,
        }


@dataclass(frozen=True)
class _Chunk:
    """What one transaction did; returned (not accumulated) so a retried one counts once."""

    processed: int = 0
    already: int = 0
    tips: int = 0
    flattrs: int = 0
    replies: int = 0
    suppressed: int = 0
    outcomes: tuple[str, ...] = ()
    cursor: str | None = None


@dataclass(frozen=True)
class _Context:
    settings: Settings
    policy: Policy
    rules: AmountRules
    platform: str
    bot_user_id: str
    bot_handle: str
    users: Mapping[str, PlatformUser]  # casefolded username -> user, from the pages and the lookup
    commands: Mapping[str, Command]  # by tweet id: each text is parsed once per run


# --------------------------------------------------------------------------- one mention


@dataclass
class _Decided:
    outcome: str
    tips: int = 0
    flattrs: int = 0
    reply: ReplyContext | None = None  # facts for the reply, when one is due
    reply_outcome: Outcome | None = None


def _rules(settings: Settings) -> AmountRules:
    return AmountRules(settings.currency, settings.min_tip, settings.max_tip)


def _reply_context(
    ctx: _Context,
    mention: Mention,
    *,
    recipients: Iterable[str] = (),
    amount: Money | None = None,
    available: Money | None = None,
    needed: Money | None = None,
    detail: str = "",
    owed: Money | None = None,
) -> ReplyContext:
    base = ctx.settings.public_base_url.rstrip("/")
    return ReplyContext(
        author_handle=mention.author_handle or "",
        recipients=tuple(recipients),
        amount=amount,
        available=available,
        needed=needed or amount,  # a tweet's whole need, when the decider gave it
        min_tip=ctx.settings.min_tip,
        max_tip=ctx.settings.max_tip,
        currency=ctx.settings.currency,
        signup_url=base + "/me",
        claim_url=base + "/claim",
        detail=detail,
        owed=owed,
    )


def _shown(ctx: _Context, user_id: str | None, written: str) -> str:
    """The handle to keep for `user_id`: the platform's own when the page named the user
    under its id (a Mastodon address), else the handle as written in the post."""
    known = ctx.users.get(user_id.casefold()) if user_id else None
    return known.handle if known is not None and known.user_id == user_id else written


def _resolve(ctx: _Context, mention: Mention, command: TipCommand) -> list[tuple[str, str | None]]:
    """(handle as shown, user id or None) for each recipient of `command`."""
    if command.is_reply and mention.in_reply_to_user_id:
        replied = mention.in_reply_to_user_id
        return [
            (_shown(ctx, replied, mention.in_reply_to_handle or command.recipients[0]), replied)
        ]
    out: list[tuple[str, str | None]] = []
    for handle in command.recipients:
        key = handle.casefold()
        user = ctx.users.get(key)
        user_id = mention.mentioned_ids.get(key) or (user.user_id if user else None)
        out.append((user.handle if user else _shown(ctx, user_id, handle), user_id))
    return out


@dataclass
class _Pending:
    """A tip command whose tips wait for the chunk's one batched `tip_many` call."""

    mention: Mention
    command: TipCommand
    # Per recipient: its handle, and its outcome (decided already) or its request's index.
    slots: list[tuple[str, Outcome | int]]
    flattrs: int = 0


def _plan_tips(
    conn: Connection,
    ctx: _Context,
    mention: Mention,
    command: TipCommand,
    now: datetime,
    requests: list[TipRequest],
) -> _Pending:
    supporter = Identity(mention.platform, mention.author_id, mention.author_handle)
    pending = _Pending(mention, command, [])
    flattred: list[tuple[int, Identity]] = []  # (slot, recipient) of each share to record
    for handle, user_id in _resolve(ctx, mention, command):
        if user_id is None:
            pending.slots.append((handle, Outcome.unknown_recipient))
            continue
        if user_id == mention.author_id:
            pending.slots.append((handle, Outcome.self_tip))
            continue
        if user_id == ctx.bot_user_id:
            pending.slots.append((handle, Outcome.bot_tip))
            continue
        recipient = Identity(ctx.platform, user_id, handle)
        if command.amount is not None:
            pending.slots.append((handle, len(requests)))
            requests.append(TipRequest(supporter, recipient, command.amount, mention.original_id))
            continue
        flattred.append((len(pending.slots), recipient))
        pending.slots.append((handle, Outcome.flattred))  # until its share is recorded
    if flattred:
        # No money moves now: the shares are paid from the supporter's budget at settlement.
        # One call for the tweet's shares: all of them are recorded together or none.
        results = record_flattrs(
            conn,
            ctx.policy,
            supporter,
            [recipient for _, recipient in flattred],
            mention.created_at,
            mention.original_id,
            now,
        )
        for (slot, _), flattr in zip(flattred, results, strict=True):
            outcome = _FLATTR_OUTCOMES.get(str(flattr.status), Outcome.already_flattred)
            pending.flattrs += 1 if outcome == Outcome.flattred and not flattr.replayed else 0
            pending.slots[slot] = (pending.slots[slot][0], outcome)
    return pending


def _tip_outcome(result: TipResult) -> Outcome:
    if result.status in _TIP_OUTCOMES:
        return _TIP_OUTCOMES[result.status]
    if result.status == TipStatus.INSUFFICIENT_FUNDS:
        if result.supporter_ever_funded:
            return Outcome.insufficient_funds
        return Outcome.unknown_supporter
    if result.status == TipStatus.REFUSING_RECIPIENT:
        return Outcome.refusing_recipient
    return Outcome.self_tip


def _settle(ctx: _Context, pending: _Pending, results: list[TipResult]) -> _Decided:
    """The outcome of a tip command once its tips were applied."""
    outcomes: list[tuple[str, Outcome]] = []
    tips = 0
    available: Money | None = None
    needed: Money | None = None
    owed: Money | None = None
    for handle, slot in pending.slots:
        if isinstance(slot, Outcome):
            outcomes.append((handle, slot))
            continue
        result = results[slot]
        available = result.available
        needed = result.needed or needed
        owed = owed or result.owed
        tips += 1 if result.applied and not result.replayed else 0
        outcomes.append((handle, _tip_outcome(result)))
    failure = next((o for _h, o in outcomes if o not in _SUCCESS), None)
    if failure is None:
        return _Decided(outcomes[0][1].value, tips=tips, flattrs=pending.flattrs)
    about = [h for h, o in outcomes if o == failure]
    reply = _reply_context(
        ctx,
        pending.mention,
        recipients=about,
        amount=pending.command.amount,
        available=available,
        needed=needed,
        owed=owed,
    )
    return _Decided(
        failure.value, tips=tips, flattrs=pending.flattrs, reply=reply, reply_outcome=failure
    )


def _decide(
    conn: Connection,
    ctx: _Context,
    mention: Mention,
    now: datetime,
    requests: list[TipRequest],
) -> _Decided | _Pending:
    if mention.is_repost:
        return _Decided(RETWEET)
    if mention.author_id == ctx.bot_user_id:
        return _Decided(OWN_TWEET)
    command = ctx.commands.get(mention.id) or _parse(ctx.bot_handle, ctx.rules, mention)
    if isinstance(command, NotACommand):
        return _Decided(Outcome.not_a_command.value)
    if isinstance(command, ControlCommand):
        if command.action == "stop":
            author = Identity(mention.platform, mention.author_id, mention.author_handle)
            opt_out(conn, ensure_account(conn, author, now), now)
            return _Decided("stop", reply=_reply_context(ctx, mention), reply_outcome=Outcome.stop)
        return _Decided("help", reply=_reply_context(ctx, mention), reply_outcome=Outcome.help)
    if isinstance(command, Rejection):
        reply = _reply_context(ctx, mention, detail=command.detail)
        return _Decided(command.outcome.value, reply=reply, reply_outcome=command.outcome)
    return _plan_tips(conn, ctx, mention, command, now, requests)


# --------------------------------------------------------------------------- a chunk


def _process_chunk(conn: Connection, ctx: _Context, chunk: list[Mention], now: datetime) -> _Chunk:
    key = cursor_key(ctx.platform)
    current = lock_state(conn, key, now) or None
    originals = {m.original_id for m in chunk}
    done = set(
        conn.execute(
            select(mentions.c.tweet_id).where(one_of(conn, mentions.c.tweet_id, sorted(originals)))
        ).scalars()
    )
    decided: list[tuple[Mention, _Decided | _Pending]] = []
    requests: list[TipRequest] = []
    already = 0
    for mention in chunk:
        if mention.original_id in done:
            already += 1
            continue
        done.add(mention.original_id)
        decided.append((mention, _decide(conn, ctx, mention, now, requests)))
    # Every tip of the chunk in one batched call: as many `tip` calls would, in order.
    results = tip_many(conn, ctx.policy, requests, now) if requests else []

    tips = flattrs = replies = suppressed = 0
    outcomes: list[str] = []
    records: list[dict[str, Any]] = []
    for mention, step in decided:
        final = _settle(ctx, step, results) if isinstance(step, _Pending) else step
        if final.reply is not None and final.reply_outcome is not None:
            text = reply_for(final.reply_outcome, final.reply)
            if text:
                author = find_account(conn, Identity(mention.platform, mention.author_id))
                if queue_reply(
                    conn,
                    source=mention.original_id,
                    in_reply_to_tweet_id=mention.id,
                    author_id=mention.author_id,
                    author_account_id=int(author.id) if author is not None else None,
                    platform=mention.platform,
                    outcome=final.reply_outcome.value,
                    text=text,
                    now=now,
                    daily_cap=ctx.settings.replies_per_day,
                ):
                    replies += 1
                else:
                    suppressed += 1
        records.append(
            {
                "tweet_id": mention.original_id,
                "author_id": mention.author_id,
                "outcome": final.outcome,
                "processed_at": now,
            }
        )
        tips += final.tips
        flattrs += final.flattrs
        outcomes.append(final.outcome)
    if records:
        bulk_insert(conn, mentions, records)
    processed = len(records)
    newest = max((m.id for m in chunk), key=int)
    cursor = current
    if current is None or int(newest) > int(current):
        cursor = newest
        conn.execute(update(state).where(state.c.key == key).values(value=newest, updated_at=now))
    return _Chunk(processed, already, tips, flattrs, replies, suppressed, tuple(outcomes), cursor)


# --------------------------------------------------------------------------- the run


def _already_done(engine: Engine, ids: list[str]) -> set[str]:
    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            found.update(
                conn.execute(
                    select(mentions.c.tweet_id).where(one_of(conn, mentions.c.tweet_id, batch))
                ).scalars()
            )
    return found


def _bot_handle(platform: Platform, settings: Settings) -> str:
    # X's adapter may be built without the bot's handle (it reads by user id); the
    # deployment's X_BOT_USERNAME names it then.
    return platform.bot_handle or (settings.x_bot_username if platform.name == "x" else "")


_WITHOUT_DISPLAY_RANGE: set[str] = set()  # platforms whose replies came without one (logged)


def _parse(bot_handle: str, rules: AmountRules, mention: Mention) -> Command:
    if mention.display_range is None and mention.in_reply_to_user_id is not None:
        if mention.platform not in _WITHOUT_DISPLAY_RANGE:
            _WITHOUT_DISPLAY_RANGE.add(mention.platform)
            log.info(
                "replies on %s come without a display range: a reply is a tip only when its "
                "words after the leading mentions hold an amount or tip/flattr",
                mention.platform,
            )
    return parse(
        mention.text,
        bot_username=bot_handle,
        in_reply_to_username=mention.in_reply_to_handle,
        author_username=mention.author_handle,
        rules=rules,
        display_range=mention.display_range,
        attachment_urls=mention.attachment_urls,
    )


def _latest_versions(ordered: list[Mention]) -> list[Mention]:
    """One version per tweet, oldest first: when a tweet and its edits arrive in the same
    poll, the latest version (the newest id of its edit history) decides."""
    latest: dict[str, Mention] = {}
    for mention in ordered:  # oldest first, so a later version replaces an earlier one
        latest[mention.original_id] = mention
    if len(latest) == len(ordered):
        return ordered
    kept = {m.id for m in latest.values()}
    return [m for m in ordered if m.id in kept]


def _wanted_names(
    todo: Iterable[Mention], commands: Mapping[str, Command], users: Mapping[str, PlatformUser]
) -> list[str]:
    """Handles of recipients that the response itself does not resolve."""
    wanted: dict[str, str] = {}
    for m in todo:
        command = commands[m.id]
        if not isinstance(command, TipCommand) or command.is_reply:
            continue
        for handle in command.recipients:
            key = handle.casefold()
            if key not in m.mentioned_ids and key not in users:
                wanted.setdefault(key, handle)
    return list(wanted.values())


def _rate_limited(
    engine: Engine, platform: str, result: PollResult, exc: RateLimited, now: datetime
) -> PollResult:
    key = resume_key(platform)
    transaction(engine, lambda conn: put_state(conn, key, exc.reset_at.isoformat(), now))
    result.rate_limited_until = exc.reset_at
    log.warning(
        "%s rate-limits %s until %s: polling resumes then", platform, exc.endpoint, exc.reset_at
    )
    return result


@dataclass
class _Read:
    """What one run read from the platform: mentions by id, users by casefolded handle."""

    collected: dict[str, Mention] = field(default_factory=dict)
    users: dict[str, PlatformUser] = field(default_factory=dict)
    exhausted: bool = False  # the platform said it has no more pages

    def add(self, page: MentionsPage) -> None:
        self.collected.update((m.id, m) for m in page.mentions)
        self.users.update((u.handle.casefold(), u) for u in page.users.values())


def _read_mentions(
    platform: Platform, cursor: str | None, page_size: int, result: PollResult, read: _Read
) -> None:
    token: str | None = None
    while True:
        page = platform.mentions(since_id=cursor, pagination_token=token, max_results=page_size)
        result.pages += 1
        read.add(page)
        if not page.next_token or page.next_token == token:
            read.exhausted = True
            return
        if result.pages >= MAX_PAGES:
            return
        token = page.next_token


def _window_overrun(platform: BackfillsMentions, read: _Read) -> bool:
    """Whether older mentions than the ones read may lie beyond the platform's window.

    X serves only its newest 800 mentions and then says it has no more: a full window
    with no further page means the cursor may be older than the window's oldest mention.
    """
    return read.exhausted and len(read.collected) >= platform.mentions_window


def _backfill(
    platform: BackfillsMentions,
    name: str,
    cursor: str,
    result: PollResult,
    read: _Read,
    now: datetime,
) -> None:
    """Read through search what fell out of the mentions window, back to the cursor.

    The mentions found go through the same exactly-once path as the window's. What is
    older than search's reach cannot be read: that is logged at ERROR and counted.
    """
    oldest = min(read.collected, key=int)
    token: str | None = None
    complete = False
    for _ in range(MAX_SEARCH_PAGES):
        page = platform.search_mentions(since_id=cursor, until_id=oldest, pagination_token=token)
        result.pages += 1
        result.backfilled += sum(1 for m in page.mentions if m.id not in read.collected)
        read.add(page)
        if not page.next_token or page.next_token == token:
            complete = True
            break
        token = page.next_token
    reach = platform.search_reach
    cursor_at = platform.posted_at(cursor)
    if not complete or (cursor_at is not None and cursor_at < now - reach):
        result.missed_window = 1
        log.error(
            "%s mentions posted between %s and %s were never read: more than %d mentions "
            "arrived while polling was down, and search reaches back only %s; tips in them "
            "were not applied",
            name,
            cursor_at.isoformat() if cursor_at else f"mention {cursor}",
            (now - reach).isoformat() if complete else f"mention {min(read.collected, key=int)}",
            platform.mentions_window,
            reach,
        )
    log.warning(
        "%s mentions window overrun: %d older mentions read through search",
        name,
        result.backfilled,
    )


def _bill(platform: Platform, settings: Settings) -> Settings | None:
    """The settings to price reads with: X bills per read; other platforms do not."""
    return settings if platform.name == "x" else None


def _counted(
    engine: Engine, bill: Settings | None, looked_up: dict[str, PlatformUser], now: datetime
) -> dict[str, PlatformUser]:
    _count_reads(engine, bill, len(looked_up), now)
    return looked_up


def _counted_mentions(
    engine: Engine, bill: Settings | None, collected: dict[str, Mention], now: datetime
) -> list[Mention]:
    """The mentions read, oldest first, counted as reads for `tipjar costs`."""
    _count_reads(engine, bill, len(collected), now)
    return sorted(collected.values(), key=lambda m: int(m.id))


def _count_reads(engine: Engine, bill: Settings | None, count: int, now: datetime) -> None:
    """X bills every resource read (`bill`: the settings, for X only): for `tipjar costs`."""
    if bill is not None and count > 0:
        settings = bill
        transaction(engine, lambda conn: record_reads(conn, settings, count, now))


def poll_once(
    engine: Engine,
    platform: Platform,
    settings: Settings,
    *,
    clock: Clock = utcnow,
    page_size: int = PAGE_SIZE,
    should_stop: Callable[[], bool] | threading.Event | None = None,
) -> PollResult:
    """Fetch and apply every new mention; see the module docstring. Never sleeps."""
    stop = should_stop.is_set if isinstance(should_stop, threading.Event) else should_stop
    now = clock()
    name = platform.name

    def read(conn: Connection) -> tuple[str | None, datetime | None]:
        return get_state(conn, cursor_key(name)) or None, get_time(conn, resume_key(name))

    cursor, resume_at = transaction(engine, read)
    result = PollResult(cursor=cursor)
    if resume_at is not None and now < resume_at:
        result.rate_limited_until = resume_at
        return result

    fetched = _Read()
    try:
        _read_mentions(platform, cursor, page_size, result, fetched)
        if (
            cursor is not None
            and isinstance(platform, BackfillsMentions)
            and _window_overrun(platform, fetched)
        ):
            _backfill(platform, name, cursor, result, fetched, now)
    except RateLimited as exc:
        # The pages read so far are the newest ones: applying them would skip older ones.
        return _rate_limited(engine, name, result, exc, now)
    except PlatformError as exc:
        result.error = str(exc)
        log.warning("reading mentions failed, the next run retries: %s", exc)
        return result

    users = fetched.users
    ordered = _counted_mentions(engine, _bill(platform, settings), fetched.collected, now)
    result.mentions_seen = len(ordered)
    if not ordered:
        return result
    latest = _latest_versions(ordered)
    result.already_processed += len(ordered) - len(latest)  # earlier versions of an edit
    ordered = latest

    done = _already_done(engine, sorted({m.original_id for m in ordered}))
    todo = [m for m in ordered if m.original_id not in done]
    rules = _rules(settings)
    bot_handle = _bot_handle(platform, settings)
    commands = {m.id: _parse(bot_handle, rules, m) for m in todo}
    names = _wanted_names(todo, commands, users)
    if names:
        try:
            users.update(
                _counted(engine, _bill(platform, settings), platform.lookup_users(names), now)
            )
        except RateLimited as exc:
            return _rate_limited(engine, name, result, exc, now)
        except (TransientError, PermanentError) as exc:
            result.error = str(exc)
            log.warning("looking up recipients failed, the next run retries: %s", exc)
            return result

    ctx = _Context(
        settings,
        app.policy(settings),
        rules,
        name,
        platform.bot_user_id,
        bot_handle,
        users,
        commands,
    )
    size = max(1, page_size)
    for start in range(0, len(ordered), size):
        if stop is not None and stop():
            result.interrupted = True
            break
        chunk = ordered[start : start + size]
        at = clock()

        def work(conn: Connection, chunk: list[Mention] = chunk, at: datetime = at) -> _Chunk:
            return _process_chunk(conn, ctx, chunk, at)

        done_chunk = transaction(engine, work)
        result.processed += done_chunk.processed
        result.already_processed += done_chunk.already
        result.tips_applied += done_chunk.tips
        result.flattrs_recorded += done_chunk.flattrs
        result.replies_queued += done_chunk.replies
        result.replies_suppressed += done_chunk.suppressed
        result.outcomes.update(done_chunk.outcomes)
        result.cursor = done_chunk.cursor
    return result
