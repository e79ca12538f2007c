"""The ledger's primitives: identities, accounts, locking, and immutable transfers.

Everything that moves money goes through `apply_transfers`, which writes the transfer rows
and adjusts the account counters in the same transaction. Operations lock the accounts
they touch with `lock_accounts` (ordered by id, so two transactions never wait on each
other in a cycle) before they read a balance or a status, so a decision is never made on a
value another transaction is about to change. On SQLite `BEGIN IMMEDIATE` already
serializes writers and the row locks render as nothing.

Deposits live here too: they are the one way money enters, through the `funding` account.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar
from typing import cast as typed

from sqlalchemy import (
    BigInteger,
    Connection,
    Row,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Subquery

from escrow.db import (
    bulk_add,
    bulk_insert,
    dialect_insert,
    for_no_key_update,
    insert_returning_ids,
    one_of,
)
from escrow.money import MAX_MINOR, Money, MoneyError, percent_floor_of
from escrow.schema import TipState, UTCDateTime, accounts, deposits, state, tips, transfers

Clock = Callable[[], datetime]
_N = TypeVar("_N")


def utcnow() -> datetime:
    return datetime.now(UTC)


SYSTEM = "system"
FUNDING = "funding"
PAYOUTS = "payouts"
FEES = "fees"
SYSTEM_ACCOUNTS = (FUNDING, PAYOUTS, FEES)


class LedgerError(Exception):
    """An operation that cannot be done as asked; nothing was changed."""


@dataclass(frozen=True)
class Identity:
    """A person on a platform, by their immutable user id; the handle is only a snapshot."""

    platform: str
    user_id: str
    handle: str | None = None

    @classmethod
    def x(cls, user_id: str, handle: str | None = None) -> Identity:
        return cls("x", str(user_id), handle)

    @classmethod
    def parse(cls, text: str) -> Identity:
        """``x:12345`` -> Identity("x", "12345"). Handles (``@bob``) are resolved elsewhere."""
        m = re.fullmatch(r"([a-z]+):(\d{1,20})", text.strip())
        if not m:
            raise LedgerError(f"{text!r} is not an identity like x:12345")
        return cls(m.group(1), m.group(2))

    def __str__(self) -> str:
        return f"@{self.handle}" if self.handle else f"{self.platform}:{self.user_id}"


@dataclass(frozen=True)
class Policy:
    """The rules of one deployment that the ledger needs."""

    currency: str = "EUR"
    fee_percent: int = 10
    hold_period: timedelta = timedelta(days=90)

    def money(self, minor: int) -> Money:
        return Money(minor, self.currency)

    def fee(self, amount_minor: _N) -> _N:
        """The operator's fee, floored: the odd cent stays with the creator.

        `amount_minor` is an int, or a column when a statement computes fees in SQL.
        """
        return percent_floor_of(amount_minor, self.fee_percent)

    def check(self, amount: Money) -> int:
        if amount.currency != self.currency:
            raise MoneyError(f"this ledger keeps {self.currency}, not {amount.currency}")
        if amount.minor <= 0:
            raise MoneyError(f"an amount must be more than zero, not {amount}")
        if amount.minor > MAX_MINOR:
            largest = self.money(MAX_MINOR)
            raise MoneyError(f"{amount} is above the largest amount allowed, {largest}")
        return amount.minor


def available_of(account: Any) -> Any:
    """What an account can spend: posted credits less posted and reserved debits.

    The one definition: of a row it is a number, of a table's columns (``accounts.c``, or
    an alias's) the SQL expression.
    """
    return account.credits_posted - account.debits_posted - account.debits_pending


def available(row: Row[Any] | Any) -> int:
    """What the account of `row` can spend, in minor units."""
    return int(available_of(row))


def is_held(table: Any = tips) -> ColumnElement[bool]:
    """A tip whose money is held in escrow for its creator (`table`: `tips` or an alias)."""
    return typed(ColumnElement[bool], table.c.state == TipState.HELD)


def held_for(creator_id: Any, table: Any = tips) -> ColumnElement[bool]:
    """The tips held for the creator `creator_id` (an id, or a column to correlate with)."""
    return and_(table.c.recipient_account_id == creator_id, is_held(table))


# --- accounts ---------------------------------------------------------------------------


def ensure_account(conn: Connection, who: Identity, now: datetime) -> int:
    """The account id for `who`, created unclaimed if new; refreshes the handle snapshot."""
    handle_key = who.handle.casefold() if who.handle else None
    stmt = (
        dialect_insert(conn, accounts)
        .values(
            platform=who.platform,
            platform_user_id=who.user_id,
            handle=who.handle,
            handle_key=handle_key,
            status="unclaimed",
            no_overdraft=True,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["platform", "platform_user_id"])
    )
    conn.execute(stmt)
    row = conn.execute(
        select(accounts.c.id, accounts.c.handle).where(
            accounts.c.platform == who.platform, accounts.c.platform_user_id == who.user_id
        )
    ).one()
    if who.handle and row.handle != who.handle:
        conn.execute(
            update(accounts)
            .where(accounts.c.id == row.id)
            .values(handle=who.handle, handle_key=handle_key, updated_at=now)
        )
    return int(row.id)


def existing_accounts(conn: Connection, people: Iterable[Identity]) -> dict[tuple[str, str], Any]:
    """The accounts of `people` that exist, by (platform, user_id): id and handle only."""
    keys = list({(w.platform, w.user_id) for w in people})
    if not keys:
        return {}
    query = select(
        accounts.c.id, accounts.c.platform, accounts.c.platform_user_id, accounts.c.handle
    ).where(_identity_in(conn, keys))
    return {(r.platform, r.platform_user_id): r for r in conn.execute(query)}


def ensure_accounts(
    conn: Connection,
    people: Iterable[Identity],
    now: datetime,
    *,
    known: Mapping[tuple[str, str], Any] | None = None,
) -> dict[tuple[str, str], int]:
    """`ensure_account` for many people in a few statements: (platform, user_id) -> id.

    `known` is an `existing_accounts` answer the caller already has for (at least) these
    people, read in this transaction: it saves looking them up again.
    """
    wanted: dict[tuple[str, str], Identity] = {}
    for who in people:
        key = (who.platform, who.user_id)
        if who.handle or key not in wanted:
            wanted[key] = who
    if not wanted:
        return {}

    # Most people were seen before: look first (or take the caller's look), insert only who
    # is new.
    found = dict(known) if known is not None else existing_accounts(conn, wanted.values())
    missing = [w for k, w in wanted.items() if k not in found]
    if missing:
        rows = [
            {
                "platform": w.platform,
                "platform_user_id": w.user_id,
                "handle": w.handle,
                "handle_key": w.handle.casefold() if w.handle else None,
                "status": "unclaimed",
                "no_overdraft": True,
                "created_at": now,
                "updated_at": now,
            }
            for w in missing
        ]
        conn.execute(
            dialect_insert(conn, accounts).on_conflict_do_nothing(
                index_elements=["platform", "platform_user_id"]
            ),
            rows,
        )
        found.update(existing_accounts(conn, missing))
    stale = [
        {"aid": found[k].id, "h": w.handle, "hk": w.handle.casefold(), "now": now}
        for k, w in wanted.items()
        if w.handle and found[k].handle != w.handle
    ]
    if stale:
        conn.execute(
            update(accounts)
            .where(accounts.c.id == bindparam("aid"))
            .values(handle=bindparam("h"), handle_key=bindparam("hk"), updated_at=bindparam("now")),
            stale,
        )
    return {k: int(found[k].id) for k in wanted}


def _identity_in(conn: Connection, keys: Sequence[tuple[str, str]]) -> Any:
    """WHERE (platform, platform_user_id) IN keys, as one IN list per platform.

    PostgreSQL plans a long row-value IN list as a scan; `platform = p AND
    platform_user_id IN (...)` uses the unique index.
    """
    by_platform: dict[str, list[str]] = defaultdict(list)
    for platform, user_id in keys:
        by_platform[platform].append(user_id)
    return or_(
        *(
            and_(
                accounts.c.platform == platform,
                one_of(conn, accounts.c.platform_user_id, ids),
            )
            for platform, ids in by_platform.items()
        )
    )


def find_accounts(conn: Connection, people: Iterable[Identity]) -> dict[tuple[str, str], Row[Any]]:
    keys = list({(w.platform, w.user_id) for w in people})
    if not keys:
        return {}
    return {
        (r.platform, r.platform_user_id): r
        for r in conn.execute(select(accounts).where(_identity_in(conn, keys)))
    }


def find_account(conn: Connection, who: Identity) -> Row[Any] | None:
    return conn.execute(
        select(accounts).where(
            accounts.c.platform == who.platform, accounts.c.platform_user_id == who.user_id
        )
    ).one_or_none()


def find_by_handle(conn: Connection, handle: str, platform: str = "x") -> Row[Any] | None:
    """The account most recently seen with `handle` (handles get recycled; ids do not)."""
    return conn.execute(
        select(accounts)
        .where(accounts.c.platform == platform, accounts.c.handle_key == handle.casefold())
        .order_by(accounts.c.updated_at.desc(), accounts.c.id.desc())
        .limit(1)
    ).one_or_none()


def system_account(conn: Connection, name: str) -> int:
    """The id of a system account (`funding`, `payouts`, `fees`), created on first use.

    Looked up first: after the first use, one SELECT and no write.
    """

    def look() -> int | None:
        return conn.execute(
            select(accounts.c.id).where(
                accounts.c.platform == SYSTEM, accounts.c.platform_user_id == name
            )
        ).scalar_one_or_none()

    found = look()
    if found is not None:
        return int(found)
    stmt = (
        dialect_insert(conn, accounts)
        .values(
            platform=SYSTEM,
            platform_user_id=name,
            handle=name,
            handle_key=name,
            status="system",
            # Funding is where deposits come from: it is the one account that goes negative.
            no_overdraft=name != FUNDING,
            created_at=datetime(2000, 1, 1, tzinfo=UTC),
            updated_at=datetime(2000, 1, 1, tzinfo=UTC),
        )
        .on_conflict_do_nothing(index_elements=["platform", "platform_user_id"])
    )
    conn.execute(stmt)
    created = look()
    if created is None:  # pragma: no cover - the insert above or a racer made it
        raise LedgerError(f"system account {name} could not be created")
    return int(created)


def lock_accounts(conn: Connection, ids: Iterable[int]) -> dict[int, Row[Any]]:
    """Lock `ids` in id order and return their current rows.

    On PostgreSQL the lock is FOR NO KEY UPDATE, the lock an UPDATE of the counters takes
    anyway: it excludes every other writer of these rows, but not the KEY SHARE locks that
    foreign-key checks take, so inserting a row that merely refers to a locked account
    (a settlement's tips and transfers) never waits for it and never deadlocks with it.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = conn.execute(
        for_no_key_update(
            select(accounts).where(one_of(conn, accounts.c.id, wanted)).order_by(accounts.c.id)
        )
    ).all()
    return {int(r.id): r for r in rows}


def lock_accounts_of(
    conn: Connection, people: Iterable[Identity]
) -> dict[tuple[str, str], Row[Any]]:
    """`lock_accounts` for the accounts of `people` that exist, found and locked in one
    statement (id order); their rows by (platform, user_id)."""
    keys = list({(w.platform, w.user_id) for w in people})
    if not keys:
        return {}
    rows = conn.execute(
        for_no_key_update(select(accounts).where(_identity_in(conn, keys)).order_by(accounts.c.id))
    )
    return {(r.platform, r.platform_user_id): r for r in rows}


def bind_currency(conn: Connection, code: str, now: datetime) -> None:
    """Remember the deployment's currency; refuse to reopen the ledger in another one."""
    row = conn.execute(select(state.c.value).where(state.c.key == "currency")).one_or_none()
    if row is None:
        conn.execute(
            dialect_insert(conn, state)
            .values(key="currency", value=code, updated_at=now)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        row = conn.execute(select(state.c.value).where(state.c.key == "currency")).one()
    if row.value != code:
        raise LedgerError(
            f"this database keeps {row.value}; CURRENCY={code} would misread every amount"
        )


# --- transfers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Transfer:
    """One movement to write. `kind` decides which counters move (see `_deltas`)."""

    debit: int
    credit: int
    amount: int
    kind: str
    pending_id: int | None = None
    expires_at: datetime | None = None
    tip_id: int | None = None
    id: int | None = None  # set when the caller allocated it (see `allocate_ids`)
    # For post/void the amount is the hold's; these are the hold's accounts.


# How each kind of transfer moves the counters of both its accounts (TigerBeetle's
# two-phase rules), as (posted, pending) multiples of its amount: a hold reserves, a post
# turns the reservation into money moved, a void gives it back. Every other kind (tip,
# fee, deposit, payout) moves posted money. The one definition, for rows and for SQL.
COUNTER_RULES: dict[str, tuple[int, int]] = {"hold": (0, 1), "post": (1, -1), "void": (0, -1)}
POSTED_MOVE = (1, 0)


def _deltas(t: Transfer) -> list[tuple[int, str, int]]:
    """How a transfer moves the account counters."""
    posted, pending = COUNTER_RULES.get(t.kind, POSTED_MOVE)
    a = t.amount
    return [
        (t.debit, "debits_posted", posted * a),
        (t.debit, "debits_pending", pending * a),
        (t.credit, "credits_posted", posted * a),
        (t.credit, "credits_pending", pending * a),
    ]


COUNTERS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


def apply_transfers(
    conn: Connection, batch: Sequence[Transfer], now: datetime, *, return_ids: bool = False
) -> list[int]:
    """Write `batch` and move the counters; with `return_ids`, the new transfer ids in order.

    Each account's counters move by one UPDATE carrying its summed deltas, sent as one
    executemany; the database's CHECK constraints refuse any overdraft that slipped past
    the caller.
    """
    if not batch:
        return []
    rows = [
        {
            "debit_account_id": t.debit,
            "credit_account_id": t.credit,
            "amount_minor": t.amount,
            "kind": t.kind,
            "pending_id": t.pending_id,
            "expires_at": t.expires_at,
            "tip_id": t.tip_id,
            "created_at": now,
        }
        | ({"id": t.id} if t.id is not None else {})
        for t in batch
    ]
    ids: list[int] = []
    if return_ids:
        ids = insert_returning_ids(conn, transfers, rows)
    else:
        bulk_insert(conn, transfers, rows)
    sums: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    for t in batch:
        for account_id, counter, delta in _deltas(t):
            sums[account_id][counter] += delta
    _move_counters(conn, sorted(sums.items()))
    return ids


TRANSFER_SET_COLUMNS = ("id", "debit", "credit", "amount", "kind", "expires_at", "tip_id")


def _counter_move(kind: Any, amount: Any, which: int) -> Any:
    """SQL for what a transfer of `kind` adds to its accounts' posted (`which` 0) or
    pending (1) counters, by `COUNTER_RULES`: one branch per distinct multiple, so a row
    is compared with as few kinds as can tell it apart."""
    default = POSTED_MOVE[which]
    kinds: dict[int, list[str]] = defaultdict(list)
    for k, rule in COUNTER_RULES.items():
        if rule[which] != default:
            kinds[rule[which]].append(k)

    def times(multiple: int) -> Any:
        return {0: literal(0, BigInteger), 1: amount, -1: -amount}.get(multiple, amount * multiple)

    whens = [(kind.in_(names), times(multiple)) for multiple, names in kinds.items()]
    return case(*whens, else_=times(default)) if whens else times(default)


@contextmanager
def applying_transfer_set(conn: Connection, moves: Subquery, now: datetime) -> Iterator[None]:
    """The set-based twin of `apply_transfers`, for batches computed in SQL (settlement).

    `moves` selects the transfers to write, with the columns `TRANSFER_SET_COLUMNS` (ids
    allocated by the caller, so its other rows can point at them). They are written when
    the block is entered; the counters of their accounts move, by `COUNTER_RULES`, when it
    ends. In between the caller takes its account locks: the transfer rows take only the
    key-share locks of their foreign keys, so a batch inserts them without waiting and
    queues for its accounts only for the counters. A block that raises moves no counters
    (and its transaction rolls back).
    """
    m = moves.c
    conn.execute(
        transfers.insert().from_select(
            [
                "id",
                "debit_account_id",
                "credit_account_id",
                "amount_minor",
                "kind",
                "expires_at",
                "tip_id",
                "created_at",
            ],
            select(
                m.id,
                m.debit,
                m.credit,
                m.amount,
                m.kind,
                m.expires_at,
                m.tip_id,
                bindparam("created_at", now, type_=UTCDateTime),
            ).order_by(m.id),
        )
    )
    yield
    # Each side summed per account first: two sorts of one row per transfer, not one sort
    # of two, and the sum over both sides then has one row per account and side.
    posted = _counter_move(m.kind, m.amount, 0)
    pending = _counter_move(m.kind, m.amount, 1)
    zero = literal(0, BigInteger)
    sides = union_all(
        select(
            m.debit.label("account_id"),
            func.sum(posted).label("dp"),
            zero.label("cp"),
            func.sum(pending).label("dq"),
            zero.label("cq"),
        ).group_by(m.debit),
        select(m.credit, zero, func.sum(posted), zero, func.sum(pending)).group_by(m.credit),
    ).subquery()
    per_account = (
        select(
            sides.c.account_id,
            func.sum(sides.c.dp).label("dp"),
            func.sum(sides.c.cp).label("cp"),
            func.sum(sides.c.dq).label("dq"),
            func.sum(sides.c.cq).label("cq"),
        )
        .group_by(sides.c.account_id)
        .subquery()
    )
    conn.execute(
        update(accounts)
        .where(accounts.c.id == per_account.c.account_id)
        .values(
            debits_posted=accounts.c.debits_posted + per_account.c.dp,
            credits_posted=accounts.c.credits_posted + per_account.c.cp,
            debits_pending=accounts.c.debits_pending + per_account.c.dq,
            credits_pending=accounts.c.credits_pending + per_account.c.cq,
        )
    )


def _move_counters(conn: Connection, deltas: list[tuple[int, dict[str, int]]]) -> None:
    """Add `deltas` to the account counters, in account id order (the lock order).

    `updated_at` is left alone: it dates what a person did to the account (a handle seen,
    a claim), and an index includes it, so touching it would make every counter move an
    index update.
    """
    bulk_add(conn, accounts, COUNTERS, [(aid, [d[c] for c in COUNTERS]) for aid, d in deltas])


# --- deposits ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DepositResult:
    reference: str
    account_id: int
    amount: Money
    available: Money
    replayed: bool


MAX_REFERENCE = 128  # the deposits.reference column and its CHECK (migration 0009)


def _check_room(policy: Policy, counter: int, minor: int, what: str) -> None:
    """Refuse a movement that would take a counter past MAX_MINOR (the database would too)."""
    if counter + minor > MAX_MINOR:
        raise LedgerError(
            f"{policy.money(minor)} would take {what} above the largest amount allowed,"
            f" {policy.money(MAX_MINOR)}"
        )


def deposit(
    conn: Connection, policy: Policy, who: Identity, amount: Money, reference: str, now: datetime
) -> DepositResult:
    """Credit `amount` from `funding` to `who`, once per `reference`.

    A second call with the same reference and the same account and amount is a harmless
    replay; with anything else it is refused, because it is a different deposit.
    """
    minor = policy.check(amount)
    reference = reference.strip()
    if not reference:
        raise LedgerError("a deposit needs a --reference (the payment's id) to be idempotent")
    if len(reference) > MAX_REFERENCE:
        raise LedgerError(f"a --reference has at most {MAX_REFERENCE} characters")
    bind_currency(conn, policy.currency, now)
    account_id = ensure_account(conn, who, now)
    funding = system_account(conn, FUNDING)
    existing = conn.execute(select(deposits).where(deposits.c.reference == reference)).one_or_none()
    if existing is None:
        locked = lock_accounts(conn, [account_id, funding])
        _check_room(policy, locked[account_id].credits_posted, minor, "the account's balance")
        _check_room(policy, locked[funding].debits_posted, minor, "all deposits together")
        existing = conn.execute(
            select(deposits).where(deposits.c.reference == reference)
        ).one_or_none()
    if existing is not None:
        if existing.account_id != account_id or existing.amount_minor != minor:
            raise LedgerError(f"reference {reference!r} was already used for a different deposit")
        row = lock_accounts(conn, [account_id])[account_id]
        return DepositResult(reference, account_id, amount, policy.money(available(row)), True)
    (transfer_id,) = apply_transfers(
        conn,
        [Transfer(debit=funding, credit=account_id, amount=minor, kind="deposit")],
        now,
        return_ids=True,
    )
    conn.execute(
        deposits.insert().values(
            reference=reference,
            account_id=account_id,
            amount_minor=minor,
            transfer_id=transfer_id,
            created_at=now,
        )
    )
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).one()
    return DepositResult(reference, account_id, amount, policy.money(available(row)), False)


def total(conn: Connection, column: Any, *where: Any) -> int:
    return int(conn.execute(select(func.coalesce(func.sum(column), 0)).where(*where)).scalar_one())


class TipStatus(StrEnum):
    POSTED = "posted"
    HELD = "held"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    REFUSING_RECIPIENT = "refusing_recipient"
    SELF_TIP = "self_tip"
