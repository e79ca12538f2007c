"""The monthly settlement of flattrs: shares of a supporter's budget become tips.

The shares themselves are recorded by `escrow.flattrs`. Once their month has ended,
`settle` gives each supporter's pool,
``min(monthly budget, available balance)``, to the creators they flattred that month: the
pool is split over the supporter's shares by the largest-remainder method (`split_pool`:
exact to the minor unit, the odd units going to the earliest shares), and each part then
goes like a tip of that amount, of kind "flattr" with source ``share:<share id>``: posted
with the fee to a claimed creator, held until HOLD_PERIOD for an unclaimed one, not taken
at all for a refusing one (the part stays with the supporter; the share is `refused`).
A part of zero (a pool smaller than the number of shares) moves nothing; a supporter with
nothing available has their shares marked `unfunded`; a month without shares takes nothing.

Settlement is set-based and resumable. Supporters are taken in batches, by keyset over
their account ids; each batch is one transaction of a fixed number of SQL statements that
work on all of the batch's supporters at once, so the cost per share is a few index
operations and memory does not grow with the month. Each supporter's marker row in
`settlements` commits in the same transaction as their money, so a crash loses at most the
batches in flight and a rerun settles every supporter exactly once; `settlement_runs`
keeps the month's running totals and when it was completed.

On PostgreSQL several batches run at once (`DEFAULT_WORKERS`), each on its own
connection, because a batch's work is the database's and one batch keeps one core busy.
They can, because a batch locks no account until its end: the marker insert is what
claims a supporter (a second run of the month waits for it, then skips them), the rows it
writes take only the key-share locks of their foreign keys, and then one statement locks
its supporters, creators and `fees` in id order, as every writer of accounts does, for
the counters. Under that lock the batch checks that what it read still holds (creators'
statuses, supporters' money, no share recorded meanwhile) and otherwise rolls back and
runs again; after `OPTIMISTIC_ATTEMPTS` it takes its locks first. Batches thus queue only
for their last few statements, and, each taking its account locks in one ordered
statement, cannot deadlock one another (a deadlock the server still detects elsewhere,
say with a batch that locked first, is retried like any transient failure).

Decisions where the brief left room:
- A supporter who never set a budget is settled with the deployment's minimum budget.
- The pool is what was available when the supporter's batch began (money flattred *to*
  the supporter in the same batch does not count).
- A flattr that arrives after its supporter was settled for the tweet's month, or after
  the month's settlement completed (a poll running late), counts in the month it was
  recorded. Shares that still slip into a completed month are settled by the next
  `settle`/`settle_due` of that month, exactly once like the rest.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any, TypeVar
from typing import cast as cast_type

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Subquery

from escrow.db import (
    dialect_insert,
    for_no_key_update,
    for_update,
    highest_ids,
    insert_ignore,
    next_id_sql,
    one_of,
    serializes_writers,
    temp_table_name,
    transaction,
)
from escrow.flattrs import MIN_MONTHLY_BUDGET_MINOR, SettlementError, period_bounds, period_of
from escrow.ledger import (
    FEES,
    Policy,
    applying_transfer_set,
    available_of,
    bind_currency,
    lock_accounts,
    system_account,
)
from escrow.schema import (
    TipState,
    UTCDateTime,
    accounts,
    budgets,
    debts,
    settlement_runs,
    settlements,
    shares,
    tips,
    transfers,
)
from escrow.selfcheck import require_sound_ledger

# Batches settled at once on PostgreSQL, each on a connection of its own. The work of a
# batch is the database server's, one core each; two was the fastest on a 2-core server
# (docs/PERFORMANCE.md), and a bigger server can be given more with `--workers`.
DEFAULT_WORKERS = 2
OPTIMISTIC_ATTEMPTS = 3  # then the batch takes its locks before it reads
SHARE_SOURCE_PREFIX = "share:"  # tips.source_id of a settled share: 'share:<share id>'

log = logging.getLogger(__name__)
_N = TypeVar("_N")


# --- the split ---------------------------------------------------------------------------


def pool_of(budget_minor: int, available_minor: int) -> int:
    """What a supporter gives for a month: their budget, or less if they have less."""
    return max(0, min(budget_minor, available_minor))


def split_pool(pool_minor: int, share_ids: Iterable[int]) -> dict[int, int]:
    """Split `pool_minor` over the shares, exactly, by the largest-remainder method.

    Every share weighs the same, so each one's quota is ``pool / n``: every share gets the
    floor of it, and the ``pool mod n`` units left over go one each to the shares with the
    largest remainders, which are all equal, so the tie is broken by share id (lowest
    first). The parts add up to the pool and differ by at most one unit; the result
    depends only on the set of ids, not on their order. No shares: nothing is taken.
    """
    if pool_minor < 0:
        raise ValueError(f"a pool cannot be negative: {pool_minor}")
    ids = sorted(set(share_ids))
    return {share_id: part_of(pool_minor, len(ids), rank) for rank, share_id in enumerate(ids, 1)}


def part_of(pool: _N, count: Any, rank: Any) -> _N:
    """The part of the `rank`-th share (1 = lowest id) of `count` in `pool`: the one
    definition of the split, as `split_pool` applies it and as settlement's SQL does.

    ``(pool + count - rank) // count`` is ``pool // count``, plus one unit for the first
    ``pool % count`` ranks: the largest-remainder method when every share weighs the same.
    Written with operators only, so it builds the SQL expression when given columns.
    """
    value: Any = pool
    return cast_type(_N, (value + count - rank) // count)


# --- settlement --------------------------------------------------------------------------


@dataclass(frozen=True)
class SettlementSummary:
    """A month's settlement totals (all batches, including those of earlier attempts)."""

    period: str
    supporters_settled: int
    shares: int
    total_posted_minor: int  # gross, to claimed creators (fees included)
    total_held_minor: int  # held for unclaimed creators
    total_fees_minor: int
    unfunded_shares: int
    refused_shares: int
    already_settled: bool  # true when the month was complete before this call
    completed_at: datetime | None

    def as_json(self) -> dict[str, object]:
        return {
            "period": self.period,
            "supporters_settled": self.supporters_settled,
            "shares": self.shares,
            "total_posted_minor": self.total_posted_minor,
            "total_held_minor": self.total_held_minor,
            "total_fees_minor": self.total_fees_minor,
            "unfunded_shares": self.unfunded_shares,
            "already_settled": self.already_settled,
        }


@dataclass(frozen=True)
class BatchResult:
    supporters: int  # settled by this batch (others may have been settled by another run)
    shares: int


def _summary(row: Any, already: bool) -> SettlementSummary:
    return SettlementSummary(
        period=row.period,
        supporters_settled=int(row.supporters_settled),
        shares=int(row.shares),
        total_posted_minor=int(row.posted_minor),
        total_held_minor=int(row.held_minor),
        total_fees_minor=int(row.fees_minor),
        unfunded_shares=int(row.unfunded_shares),
        refused_shares=int(row.refused_shares),
        already_settled=already,
        completed_at=row.completed_at,
    )


def _run_row(conn: Connection, period: str, *, lock: bool = False) -> Any:
    query = select(settlement_runs).where(settlement_runs.c.period == period)
    return conn.execute(for_update(query) if lock else query).one()


def _has_open_shares(conn: Connection, period: str) -> bool:
    open_share = select(shares.c.id).where(shares.c.period == period, shares.c.state == "open")
    return bool(conn.execute(select(exists(open_share))).scalar())


def _begin(conn: Connection, policy: Policy, period: str, now: datetime) -> tuple[Any, bool]:
    """Create the month's run row if new; returns it and whether open shares remain."""
    bind_currency(conn, policy.currency, now)
    system_account(conn, FEES)
    conn.execute(
        insert_ignore(conn, settlement_runs, "period").values(
            period=period, started_at=now, updated_at=now
        )
    )
    return _run_row(conn, period), _has_open_shares(conn, period)


def _lock_batch(conn: Connection, period: str, ids: Sequence[int], fees_id: int) -> None:
    """Lock the batch's supporters, the creators they flattred and `fees`, in id order.

    One statement, so the locks come in id order like everyone else's. A share recorded
    while it waited (its supporter's lock held by `record_flattr`) may name a creator the
    statement's snapshot did not see: those few are locked after, by a second look.
    """
    if serializes_writers(conn):
        return
    recipients = select(shares.c.recipient_account_id).where(
        shares.c.period == period,
        shares.c.state == "open",
        shares.c.supporter_account_id.in_(ids),
    )
    locked = set(
        conn.execute(
            for_no_key_update(
                select(accounts.c.id)
                .where(
                    accounts.c.id.in_(ids)
                    | accounts.c.id.in_(recipients.scalar_subquery())
                    | (accounts.c.id == fees_id)
                )
                .order_by(accounts.c.id)
            )
        ).scalars()
    )
    late = set(conn.execute(recipients.distinct()).scalars()) - locked
    if late:
        lock_accounts(conn, late)


def _lock_parts(conn: Connection, supporters: Sequence[int], fees_id: int) -> None:
    """Lock the batch's supporters, the creators of its parts and `fees`: one statement,
    in id order, FOR NO KEY UPDATE like `lock_accounts`, so batches and tips queue here
    rather than deadlock."""
    creators = select(settle_parts.c.recipient_id).scalar_subquery()
    conn.execute(
        for_no_key_update(
            select(accounts.c.id)
            .where(
                one_of(conn, accounts.c.id, supporters)
                | accounts.c.id.in_(creators)
                | (accounts.c.id == fees_id)
            )
            .order_by(accounts.c.id),
            of=accounts,
        )
    ).all()


def _went_stale(conn: Connection, period: str, supporters: Sequence[int]) -> bool:
    """Asked under the batch's locks: did anything the batch decided on change meanwhile?

    A creator whose status changed (a claim or a refusal) would get the wrong kind of
    part; a supporter who spent money since their pool was taken could be overdrawn (a
    supporter who received money keeps the pool of the batch's start, as decided); a
    share recorded meanwhile would either have been split a part the marker did not count
    or be left open behind its supporter's marker.
    """
    p = settle_parts.c
    creator = accounts.alias("creator")
    supporter = accounts.alias("supporter")
    available = available_of(supporter.c)
    changed_status = (
        select(p.share_id)
        .join(creator, creator.c.id == p.recipient_id)
        .where(creator.c.status != p.status)
    )
    of_batch = and_(
        settlements.c.period == period,
        one_of(conn, settlements.c.supporter_account_id, supporters),
    )
    short = (
        select(settlements.c.supporter_account_id)
        .join(supporter, supporter.c.id == settlements.c.supporter_account_id)
        .where(of_batch, available < settlements.c.pool_minor)
    )
    counted = (
        select(p.supporter_id.label("sid"), func.count().label("n"))
        .group_by(p.supporter_id)
        .subquery()
    )
    # A share recorded between the marker and the split: the pool was divided by the
    # marker's count but handed to one share more.
    split_differently = (
        select(settlements.c.supporter_account_id)
        .outerjoin(counted, counted.c.sid == settlements.c.supporter_account_id)
        .where(of_batch, settlements.c.shares != func.coalesce(counted.c.n, 0))
    )
    recorded_since = select(shares.c.id).where(
        shares.c.period == period,
        shares.c.state == "open",
        one_of(conn, shares.c.supporter_account_id, supporters),
    )
    return bool(
        conn.execute(
            select(
                changed_status.exists()
                | short.exists()
                | split_differently.exists()
                | recorded_since.exists()
            )
        ).scalar()
    )


# The batch's working set: one row per share being settled, with its part, what becomes
# of it and the ids its tip and transfers will have. A temporary table, so each statement
# after the first reads a few thousand rows instead of searching the big tables again.
_parts_md = MetaData()
settle_parts = Table(
    "settle_parts",
    _parts_md,
    # BIGINT, not INTEGER, on SQLite too: the share id is not the row id there, so the
    # row id counts the parts in the order they were inserted (see `_positions`).
    Column("share_id", BigInteger, primary_key=True, autoincrement=False),
    Column("supporter_id", BigInteger, nullable=False),
    Column("recipient_id", BigInteger, nullable=False),
    Column("part", BigInteger, nullable=False),
    Column("outcome", String(16), nullable=False),  # OUTCOMES
    Column("status", String(16), nullable=False),  # the creator's, as the outcome saw it
    Column("fee", BigInteger, nullable=False),
    Column("tip_id", BigInteger),
    Column("transfer_id", BigInteger),  # the tip's transfer, or its hold
    Column("fee_transfer_id", BigInteger),
    prefixes=["TEMPORARY"],
)


# What becomes of a share's part, and the share state it leaves.
class Outcome(StrEnum):
    POSTED = "posted"
    HELD = "held"
    ZERO = "zero"  # a part of 0: nothing to move
    REFUSED = "refused"  # the creator refuses tips: the part stays with the supporter
    UNFUNDED = "unfunded"  # the supporter had nothing available


OUTCOMES = {
    Outcome.POSTED: "settled",
    Outcome.HELD: "settled",
    Outcome.ZERO: "settled",
    Outcome.REFUSED: "refused",
    Outcome.UNFUNDED: "unfunded",
}


class _Raced(Exception):
    """What a batch read before taking its locks changed under it: run the batch again."""


def _next_supporters(conn: Connection, period: str, after: int, batch: int) -> list[int]:
    """The next `batch` supporters with open shares in `period` whose id is above `after`."""
    return [
        int(i)
        for i in conn.execute(
            select(shares.c.supporter_account_id)
            .where(
                shares.c.period == period,
                shares.c.state == "open",
                shares.c.supporter_account_id > after,
            )
            .group_by(shares.c.supporter_account_id)
            .order_by(shares.c.supporter_account_id)
            .limit(batch)
        ).scalars()
    ]


def _settle_batch(
    conn: Connection,
    policy: Policy,
    period: str,
    ids: Sequence[int],
    now: datetime,
    default_budget_minor: int,
    lock_first: bool = False,
) -> BatchResult:
    """Settle the supporters `ids` (those of them with open shares and no marker yet).

    Optimistic by default: everything is computed and written without locking accounts,
    and only at the end are the batch's supporters, creators and `fees` locked, in id
    order, in one statement. Then the batch checks that what it read still holds (each
    creator's status, each supporter's pool within what they have, no share recorded
    meanwhile) and raises `_Raced` if not, so the transaction rolls back and the batch is
    run again. Batches of one month therefore run side by side and queue only for that
    final lock. With `lock_first` the locks are taken before anything is read instead,
    so nothing can change under the batch: the fallback for a batch that raced too often.
    """
    fees_id = system_account(conn, FEES)
    if lock_first:
        _lock_batch(conn, period, ids, fees_id)
    ids = _mark_supporters(conn, period, ids, now, default_budget_minor)
    if not ids:
        return BatchResult(0, 0)
    _split_into_parts(conn, policy, period, ids)
    part_ids = _part_ids(conn)
    # The transfers go in first (the tips point at them); the counters move, through the
    # ledger's one writer, once the batch holds its locks and knows what it read holds.
    with applying_transfer_set(conn, _moves(policy, fees_id, now, part_ids), now):
        _write_tips(conn, policy, now, part_ids)
        _close_shares(conn, period, ids, now)
        if not serializes_writers(conn):  # else this batch is the only writer already
            _lock_parts(conn, ids, fees_id)
            if _went_stale(conn, period, ids):
                raise _Raced(f"batch of {len(ids)} supporters from id {ids[0]} raced a change")
    # The month's running totals, in the same transaction as the money they count.
    n_shares = _record_totals(conn, period, len(ids), now)
    _drop_parts(conn)
    return BatchResult(len(ids), n_shares)


def _open_shares_of(conn: Connection, period: str, who: Sequence[int]) -> ColumnElement[bool]:
    return and_(
        shares.c.period == period,
        shares.c.state == "open",
        one_of(conn, shares.c.supporter_account_id, who),
    )


def _mark_supporters(
    conn: Connection, period: str, ids: Sequence[int], now: datetime, default_budget_minor: int
) -> list[int]:
    """Step 1: the markers, with each supporter's pool = min(budget, available).

    A supporter another run settled meanwhile already has one: the insert waits for that
    run to commit, then skips them, so a supporter is settled by exactly one batch.
    Returns the supporters this batch marked, in id order.
    """
    counts = (
        select(shares.c.supporter_account_id.label("sid"), func.count().label("n"))
        .where(_open_shares_of(conn, period, ids))
        .group_by(shares.c.supporter_account_id)
        .subquery()
    )
    budget = func.coalesce(budgets.c.monthly_budget_minor, default_budget_minor)
    avail = available_of(accounts.c)
    in_debt = (
        select(debts.c.id)
        .where(debts.c.account_id == counts.c.sid, debts.c.settled_at.is_(None))
        .exists()
    )
    marked = conn.execute(
        dialect_insert(conn, settlements)
        .from_select(
            [
                "period",
                "supporter_account_id",
                "budget_minor",
                "available_minor",
                "pool_minor",
                "shares",
                "settled_at",
            ],
            select(
                literal(period, String),
                counts.c.sid,
                budget,
                avail,
                # A supporter in debt (a card refund or dispute) flattrs nobody.
                case((in_debt, 0), (avail < budget, avail), else_=budget),
                counts.c.n,
                bindparam("now", now, type_=UTCDateTime),
            )
            .select_from(counts)
            .join(accounts, accounts.c.id == counts.c.sid)
            .outerjoin(budgets, budgets.c.account_id == counts.c.sid)
            .order_by(counts.c.sid),  # markers in id order, like every other lock
        )
        .on_conflict_do_nothing(index_elements=["period", "supporter_account_id"])
        .returning(settlements.c.supporter_account_id)
    ).scalars()
    return sorted(int(i) for i in marked)


def _split_into_parts(conn: Connection, policy: Policy, period: str, ids: Sequence[int]) -> None:
    """Step 2: each share's part (`part_of`, as `split_pool` splits), what becomes of it,
    its fee, and the ids its tip and transfers will have, into `settle_parts`."""
    _drop_parts(conn)
    settle_parts.create(conn)
    marker = settlements
    recipient = accounts.alias("recipient")
    rank = func.row_number().over(partition_by=shares.c.supporter_account_id, order_by=shares.c.id)
    split = (
        select(
            shares.c.id.label("share_id"),
            shares.c.supporter_account_id.label("supporter_id"),
            shares.c.recipient_account_id.label("recipient_id"),
            part_of(marker.c.pool_minor, marker.c.shares, rank).label("part"),
            marker.c.pool_minor.label("pool"),
            recipient.c.status.label("status"),
        )
        .join(
            marker,
            and_(
                marker.c.period == shares.c.period,
                marker.c.supporter_account_id == shares.c.supporter_account_id,
            ),
        )
        .join(recipient, recipient.c.id == shares.c.recipient_account_id)
        .where(_open_shares_of(conn, period, ids))
        .subquery()
    )
    outcome = case(
        (split.c.pool == 0, Outcome.UNFUNDED),
        (split.c.status == "refusing", Outcome.REFUSED),
        (split.c.part == 0, Outcome.ZERO),
        (split.c.status == "claimed", Outcome.POSTED),
        else_=Outcome.HELD,
    )
    fee = case(
        (and_(split.c.status == "claimed", split.c.pool > 0), policy.fee(split.c.part)),
        else_=0,
    )
    ordered = (
        select(
            split.c.share_id,
            split.c.supporter_id,
            split.c.recipient_id,
            split.c.part,
            outcome.label("outcome"),
            split.c.status,
            fee.label("fee"),
        )
        .order_by(split.c.share_id)
        .subquery()
    )
    columns = ["share_id", "supporter_id", "recipient_id", "part", "outcome", "status", "fee"]
    rows = [ordered.c[name] for name in columns]
    if serializes_writers(conn):  # in the order `_positions` numbers them
        moves, with_fee = _moving(ordered.c.outcome, ordered.c.fee)
        order = [case((moves, 0), else_=1), case((with_fee, 0), else_=1), ordered.c.share_id]
        conn.execute(settle_parts.insert().from_select(columns, select(*rows).order_by(*order)))
        return
    # PostgreSQL: ids from the sequences, drawn as rows go in.
    columns += ["tip_id", "transfer_id", "fee_transfer_id"]
    rows += _sequence_ids(conn, ordered.c.outcome, ordered.c.fee)
    conn.execute(settle_parts.insert().from_select(columns, select(*rows)))


def _moving(outcome: Any, fee: Any) -> tuple[Any, Any]:
    """Whether a part moves money (a tip or a hold), and whether it also pays a fee."""
    moves = outcome.in_((Outcome.POSTED, Outcome.HELD))
    return moves, and_(moves, fee > 0)


@dataclass(frozen=True)
class _PartIds:
    """A part's tip id and transfer ids, as SQL over `settle_parts`; `moves` and
    `has_fee` say which parts have them."""

    tip: Any
    transfer: Any
    fee_transfer: Any
    moves: Any
    has_fee: Any


def _part_ids(conn: Connection) -> _PartIds:
    p = settle_parts.c
    if not serializes_writers(conn):  # PostgreSQL: drawn from the sequences, stored
        return _PartIds(
            p.tip_id,
            p.transfer_id,
            p.fee_transfer_id,
            p.tip_id.is_not(None),
            p.fee_transfer_id.is_not(None),
        )
    return _positions(conn)


def _moves(policy: Policy, fees_id: int, now: datetime, ids: _PartIds) -> Subquery:
    """Step 3: the transfers, a tip (and its fee) for each posted part, a hold for each
    held one, in the columns of `escrow.ledger.TRANSFER_SET_COLUMNS`."""
    p = settle_parts.c
    held = p.outcome == Outcome.HELD
    expires = bindparam("expires", now + policy.hold_period, type_=UTCDateTime)
    return union_all(
        select(
            ids.transfer.label("id"),
            p.supporter_id.label("debit"),
            p.recipient_id.label("credit"),
            p.part.label("amount"),
            case((held, "hold"), else_="tip").label("kind"),
            case((held, expires), else_=null()).label("expires_at"),
            ids.tip.label("tip_id"),
        ).where(ids.moves),
        select(
            ids.fee_transfer,
            p.recipient_id,
            literal(fees_id, BigInteger),
            p.fee,
            literal("fee", String),
            null(),
            ids.tip,
        ).where(ids.has_fee),
    ).subquery()


def _write_tips(conn: Connection, policy: Policy, now: datetime, ids: _PartIds) -> None:
    """Step 4: the tips, as `escrow.tips.tip` leaves them: held ones pointing at their hold."""
    p = settle_parts.c
    held = p.outcome == Outcome.HELD
    expires = bindparam("expires", now + policy.hold_period, type_=UTCDateTime)
    conn.execute(
        tips.insert().from_select(
            [
                "id",
                "source_id",
                "supporter_account_id",
                "recipient_account_id",
                "kind",
                "amount_minor",
                "fee_minor",
                "state",
                "hold_transfer_id",
                "expires_at",
                "created_at",
            ],
            select(
                ids.tip,
                literal(SHARE_SOURCE_PREFIX, String) + cast(p.share_id, String),
                p.supporter_id,
                p.recipient_id,
                literal("flattr", String),
                p.part,
                p.fee,
                case((held, TipState.HELD), else_=TipState.POSTED),
                case((held, ids.transfer), else_=null()),
                case((held, expires), else_=null()),
                bindparam("now", now, type_=UTCDateTime),
            )
            .where(ids.moves)
            .order_by(ids.tip),
        )
    )


def _close_shares(conn: Connection, period: str, ids: Sequence[int], now: datetime) -> None:
    """Step 5: the shares, settled (with their part, perhaps 0), refused or unfunded."""
    p = settle_parts.c
    conn.execute(
        update(shares)
        .where(shares.c.id == p.share_id, _open_shares_of(conn, period, ids))
        .values(
            state=case(*((p.outcome == o, s) for o, s in OUTCOMES.items())),
            part_minor=p.part,
            settled_at=bindparam("now", now, type_=UTCDateTime),
        )
    )


def _sequence_ids(conn: Connection, outcome: Any, fee: Any) -> list[Any]:
    """PostgreSQL: each part that moves money draws its tip id and transfer ids up front.

    Known before anything is inserted, a held tip is written already pointing at its
    hold (no second write of every tip). They come from the tables' own sequences, so
    concurrent inserts elsewhere never collide with them.
    """
    next_tip = next_id_sql(conn, tips)
    next_transfer = next_id_sql(conn, transfers)
    moves = outcome.in_((Outcome.POSTED, Outcome.HELD))
    return [
        case((moves, next_tip), else_=null()),
        case((moves, next_transfer), else_=null()),
        case((and_(moves, fee > 0), next_transfer), else_=null()),
    ]


def _positions(conn: Connection) -> _PartIds:
    """SQLite: the ids of `_sequence_ids`, numbered after the current maximum by position.

    SQLite has one writer at a time (BEGIN IMMEDIATE), so those ids are free. The parts
    went in (`_split_into_parts`) with those that pay a fee first, then the other ones that
    move money, then the rest, so the row id of the fresh table is each part's position
    and no part is written twice: with f parts paying a fee and k moving money, the part
    at position r <= k gets tip max + r, and transfer max + 2r - 1 and fee transfer max + 2r
    when r <= f, or transfer max + f + r. The layout is checked before any id is used.
    """
    p = settle_parts.c
    moves, with_fee = _moving(p.outcome, p.fee)
    position = literal_column("settle_parts.rowid", BigInteger)
    n, k, f = conn.execute(
        select(func.count(), func.count().filter(moves), func.count().filter(with_fee))
    ).one()
    misplaced = conn.execute(
        select(func.count()).where(
            or_(
                moves != (position <= k),
                with_fee != (position <= f),
                position > n,
            )
        )
    ).scalar_one()
    if misplaced:  # pragma: no cover - SQLite numbers a fresh table's rows 1, 2, ...
        raise RuntimeError(f"settle_parts: {misplaced} parts out of position")
    tops = highest_ids(conn, [tips, transfers])
    base_tip, base_transfer = tops[tips.name], tops[transfers.name]
    k, f = int(k), int(f)
    return _PartIds(
        tip=base_tip + position,
        transfer=base_transfer + case((position <= f, 2 * position - 1), else_=position + f),
        fee_transfer=base_transfer + 2 * position,
        moves=position <= k,
        has_fee=position <= f,
    )


def _drop_parts(conn: Connection) -> None:
    conn.execute(text(f"DROP TABLE IF EXISTS {temp_table_name(conn, 'settle_parts')}"))


def _record_totals(conn: Connection, period: str, supporters: int, now: datetime) -> int:
    """Add the batch to the run's totals; returns the number of shares it settled."""
    p = settle_parts.c

    def total(condition: ColumnElement[bool], value: Any = 1) -> Any:
        return func.coalesce(func.sum(case((condition, value), else_=0)), 0)

    t = conn.execute(
        select(
            func.count().label("n"),
            total(p.outcome == Outcome.UNFUNDED).label("unfunded"),
            total(p.outcome == Outcome.REFUSED).label("refused"),
            total(p.outcome == Outcome.POSTED, p.part).label("posted"),
            total(p.outcome == Outcome.HELD, p.part).label("held"),
            func.coalesce(func.sum(p.fee), 0).label("fees"),
        )
    ).one()
    r = settlement_runs.c
    conn.execute(
        update(settlement_runs)
        .where(r.period == period)
        .values(
            supporters_settled=r.supporters_settled + supporters,
            shares=r.shares + int(t.n),
            posted_minor=r.posted_minor + int(t.posted),
            held_minor=r.held_minor + int(t.held),
            fees_minor=r.fees_minor + int(t.fees),
            unfunded_shares=r.unfunded_shares + int(t.unfunded),
            refused_shares=r.refused_shares + int(t.refused),
            updated_at=now,
        )
    )
    return int(t.n)


def _complete(conn: Connection, period: str, now: datetime) -> Any:
    """Mark the month complete, unless shares arrived meanwhile (then None: go again)."""
    _run_row(conn, period, lock=True)
    if _has_open_shares(conn, period):
        return None
    conn.execute(
        update(settlement_runs)
        .where(settlement_runs.c.period == period, settlement_runs.c.completed_at.is_(None))
        .values(completed_at=now, updated_at=now)
    )
    return _run_row(conn, period)


def _settle_ids(
    engine: Engine,
    ids: Sequence[int],
    *,
    policy: Policy,
    period: str,
    now: datetime,
    default_budget_minor: int,
) -> BatchResult:
    """One batch, in its own transaction: optimistic first, locked first if it keeps racing."""
    for attempt in range(1, OPTIMISTIC_ATTEMPTS + 2):
        try:
            return transaction(
                engine,
                partial(
                    _settle_batch,
                    policy=policy,
                    period=period,
                    ids=ids,
                    now=now,
                    default_budget_minor=default_budget_minor,
                    lock_first=attempt > OPTIMISTIC_ATTEMPTS,
                ),
            )
        except _Raced as raced:
            if attempt > OPTIMISTIC_ATTEMPTS:  # pragma: no cover - locked first cannot race
                raise SettlementError(f"settling {period}: {raced}") from raced
            log.info("settling %s: %s; running it again", period, raced)
    raise AssertionError("unreachable")


def _sweep(
    engine: Engine,
    period: str,
    batch: int,
    workers: int,
    settle_ids: Callable[[Sequence[int]], BatchResult],
    progress: Callable[[int], None] | None,
) -> tuple[int, int]:
    """One pass over the month's supporters with open shares, `batch` at a time in id order,
    up to `workers` batches at once. Returns (supporters found, supporters settled)."""
    found = settled = 0

    def done(result: BatchResult) -> None:
        nonlocal settled
        settled += result.supporters
        if progress is not None:
            progress(result.shares)

    after = 0
    in_flight: deque[Future[BatchResult]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix=f"settle-{period}") as pool:
        try:
            while True:
                with engine.connect() as conn:
                    ids = _next_supporters(conn, period, after, batch)
                if not ids:
                    break
                found, after = found + len(ids), ids[-1]
                in_flight.append(pool.submit(settle_ids, ids))
                if len(in_flight) >= workers:
                    done(in_flight.popleft().result())
            while in_flight:
                done(in_flight.popleft().result())
        finally:
            pool.shutdown(cancel_futures=True)  # a failed batch: the others finish first
    return found, settled


def settle(
    engine: Engine,
    policy: Policy,
    period: str,
    now: datetime,
    *,
    batch: int = 1000,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    default_budget_minor: int = MIN_MONTHLY_BUDGET_MINOR,
) -> SettlementSummary:
    """Settle every supporter's flattrs of `period` (YYYY-MM), `batch` supporters a time.

    Refuses a month that has not ended at `now`. Safe to rerun at any point: a month
    already complete changes nothing and reports `already_settled`; a month interrupted
    half-way resumes with the supporters not yet settled. On PostgreSQL `workers` batches
    (default `DEFAULT_WORKERS`) run at once, each on its own connection; SQLite has one
    writer, so there it is one. `progress` gets the number of shares each batch settled,
    in supporter order. `default_budget_minor` is the budget of supporters who never set
    one (the deployment's minimum).
    """
    period = period.strip()
    _, end = period_bounds(period)
    if now < end:
        raise SettlementError(
            f"{period} has not ended yet; it can be settled from {end:%Y-%m-%d %H:%M} UTC"
        )
    if batch < 1:
        raise ValueError("a batch needs at least one supporter")
    if workers is not None and workers < 1:
        raise ValueError("a settlement needs at least one worker")
    with engine.connect() as conn:
        # A failed self-check stops settlement until a maintainer's audit is clean.
        require_sound_ledger(conn, "settlement")
    if serializes_writers(engine):  # one writer at a time: a second worker would only wait
        workers = 1
    elif workers is None:
        workers = DEFAULT_WORKERS
    run, open_left = transaction(engine, lambda conn: _begin(conn, policy, period, now))
    if run.completed_at is not None and not open_left:
        return _summary(run, already=True)
    settle_ids = partial(
        _settle_ids,
        engine,
        policy=policy,
        period=period,
        now=now,
        default_budget_minor=default_budget_minor,
    )
    idle_passes = 0
    while True:
        # Passes until one finds nobody: shares recorded behind the cursor while a pass
        # ran are found by the next one.
        found, settled = _sweep(engine, period, batch, workers, settle_ids, progress)
        if found:
            # Found but settled by nobody twice over: their marker exists, yet shares
            # stay open. Never expected; better said than looped on forever.
            idle_passes = idle_passes + 1 if not settled else 0
            if idle_passes >= 2:
                raise SettlementError(
                    f"{period}: {found} supporters have open shares but are already settled"
                )
            continue
        finished = transaction(engine, lambda conn: _complete(conn, period, now))
        if finished is not None:
            return _summary(finished, already=False)


def due_periods(conn: Connection, now: datetime) -> list[str]:
    """Ended months with shares still open or a run not completed, oldest first."""
    current = period_of(now)
    # The distinct months of all shares, one index probe each (a loose index scan), so
    # this stays cheap however many shares the past months hold.
    months = conn.execute(
        text(
            "WITH RECURSIVE m(period) AS ("
            " SELECT min(period) FROM shares"
            " UNION ALL"
            " SELECT (SELECT min(s.period) FROM shares s WHERE s.period > m.period)"
            " FROM m WHERE m.period IS NOT NULL)"
            " SELECT period FROM m WHERE period IS NOT NULL AND period < :current"
        ),
        {"current": current},
    ).scalars()
    due = {str(p) for p in list(months) if _has_open_shares(conn, str(p))}
    due |= set(
        conn.execute(
            select(settlement_runs.c.period).where(
                settlement_runs.c.completed_at.is_(None), settlement_runs.c.period < current
            )
        ).scalars()
    )
    return sorted(due)


def settle_due(
    engine: Engine,
    policy: Policy,
    now: datetime,
    *,
    batch: int = 1000,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    default_budget_minor: int = MIN_MONTHLY_BUDGET_MINOR,
) -> list[SettlementSummary]:
    """Settle every ended month that is not settled yet (the worker's monthly job)."""
    with engine.connect() as conn:
        periods = due_periods(conn, now)
    return [
        settle(
            engine,
            policy,
            period,
            now,
            batch=batch,
            workers=workers,
            progress=progress,
            default_budget_minor=default_budget_minor,
        )
        for period in periods
    ]
