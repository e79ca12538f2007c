"""Money out: creators withdraw what they received, through a provider, exactly once.

A payout is a two-phase transfer creator -> the `payouts` system account:

- **request** (`request_payout`): the creator's account is locked, the amount checked
  (at least the deployment's minimum, at most what is available, no open debt, no other
  payout on its way), and the `payouts` row and its hold are written in one transaction.
  A partial unique index allows one pending payout per creator, so two tabs submitting at
  once get one payout and one clear refusal, never two;
- **post** (`post_payout`) when the provider confirms: Stripe's transfer id, or the
  maintainer's reference for a manual payout;
- **void** (`void_payout`, money back to the creator) on a permanent refusal or a
  maintainer's cancel.

The Stripe relay (in `bot/payments`) claims due rows with `claim_due`: each claim counts
an attempt and pushes `next_attempt_at` out by the backoff (30 s doubling up to an hour),
which is also the claim's lease, so a relay that dies mid-call leaves the row to be sent
again later with the same idempotency key (`payout-<id>`). A Stripe reversal of a posted
payout gives the money back with a `payout` transfer `payouts` -> creator, recorded once per
reversal in `payout_reversals`.

Where a creator is paid lives in `payout_accounts`: the Stripe connected account and
whether Stripe lets it receive payouts, or the manual provider's details as ciphertext
(encryption happens in `bot`; this module never sees the plain text).

Every movement goes through `escrow.ledger.apply_transfers`; callers hold the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, Row, Select, and_, func, or_, select, update
from sqlalchemy.orm import aliased

from escrow.db import for_update, insert_returning_ids, skip_locked
from escrow.debts import open_debt
from escrow.ledger import (
    PAYOUTS,
    SYSTEM,
    LedgerError,
    Policy,
    Transfer,
    apply_transfers,
    available,
    available_of,
    lock_accounts,
    system_account,
)
from escrow.schema import accounts, payout_accounts, payout_reversals, payouts, transfers

PROVIDERS = ("stripe", "manual")
STATES = ("pending", "posted", "voided")
# A payout's hold must carry an expiry (the ledger's rule for holds); nothing expires
# payouts, and a manual payout may wait for the maintainer, so the bound is generous.
PAYOUT_HOLD = timedelta(days=365)
FIRST_RETRY = timedelta(seconds=30)
LAST_RETRY = timedelta(hours=1)
PERSONS = ("claimed", "refusing")


class PayoutError(LedgerError):
    """A payout request or action that cannot be done as asked; nothing was changed."""


def backoff(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th try: 30 s, 60 s, 120 s, ... at most 1 h."""
    step: timedelta = FIRST_RETRY * int(2 ** max(0, min(attempts - 1, 16)))
    return step if step < LAST_RETRY else LAST_RETRY


# --- where a creator is paid ------------------------------------------------------------


def payout_account(conn: Connection, account_id: int) -> Row[Any] | None:
    return conn.execute(
        select(payout_accounts).where(payout_accounts.c.account_id == account_id)
    ).one_or_none()


def _ensure_payout_account(conn: Connection, account_id: int, now: datetime) -> Row[Any]:
    row = conn.execute(
        for_update(select(payout_accounts).where(payout_accounts.c.account_id == account_id))
    ).one_or_none()
    if row is not None:
        return row
    conn.execute(
        payout_accounts.insert().values(account_id=account_id, created_at=now, updated_at=now)
    )
    return conn.execute(
        select(payout_accounts).where(payout_accounts.c.account_id == account_id)
    ).one()


def connection_key(conn: Connection, account_id: int, now: datetime) -> tuple[str | None, int]:
    """(the connected account already made, or None; the number of the connection to make).

    The caller creates a connected account with the idempotency key
    `account-<account_id>-<number>` when the first is None: a second tab (or a retry after a
    crash) asks with the same key and Stripe returns the same account.
    """
    row = _ensure_payout_account(conn, account_id, now)
    if row.stripe_account_id:
        return str(row.stripe_account_id), int(row.connections)
    return None, int(row.connections) + 1


def connected(
    conn: Connection, account_id: int, stripe_account_id: str, number: int, now: datetime
) -> None:
    """Remember the connected account Stripe made for `account_id` (once per connection)."""
    row = _ensure_payout_account(conn, account_id, now)
    if row.stripe_account_id == stripe_account_id:
        return
    if row.stripe_account_id:
        raise PayoutError("this creator is already connected to another Stripe account")
    conn.execute(
        update(payout_accounts)
        .where(payout_accounts.c.account_id == account_id)
        .values(
            stripe_account_id=stripe_account_id,
            payouts_enabled=False,
            connections=max(number, int(row.connections)),
            disconnected_at=None,
            updated_at=now,
        )
    )


def account_updated(
    conn: Connection, stripe_account_id: str, payouts_enabled: bool, now: datetime
) -> str:
    """Stripe's `account.updated`: keep whether the connected account can be paid."""
    result = conn.execute(
        update(payout_accounts)
        .where(payout_accounts.c.stripe_account_id == stripe_account_id)
        .values(payouts_enabled=payouts_enabled, updated_at=now)
    )
    if not result.rowcount:
        return "ignored: not a connected account of this tipjar"
    return f"{stripe_account_id}: payouts {'enabled' if payouts_enabled else 'disabled'}"


def disconnect(conn: Connection, stripe_account_id: str, now: datetime) -> str:
    """The creator (or Stripe) removed tipjar's access: the account can no longer be paid."""
    result = conn.execute(
        update(payout_accounts)
        .where(payout_accounts.c.stripe_account_id == stripe_account_id)
        .values(stripe_account_id=None, payouts_enabled=False, disconnected_at=now, updated_at=now)
    )
    if not result.rowcount:
        return "ignored: not a connected account of this tipjar"
    return f"{stripe_account_id}: disconnected"


def save_details(conn: Connection, account_id: int, ciphertext: str, now: datetime) -> None:
    """Store the manual provider's payment details, already encrypted by the caller."""
    _ensure_payout_account(conn, account_id, now)
    conn.execute(
        update(payout_accounts)
        .where(payout_accounts.c.account_id == account_id)
        .values(details_ciphertext=ciphertext, updated_at=now)
    )


# --- requesting a payout ----------------------------------------------------------------


def _destination(conn: Connection, account_id: int, provider: str) -> str | None:
    """Where the payout goes; refused when the creator has not said where to be paid."""
    where = payout_account(conn, account_id)
    if provider == "stripe":
        if where is None or not where.stripe_account_id:
            raise PayoutError("connect a Stripe account first (Get paid)")
        if not where.payouts_enabled:
            raise PayoutError(
                "Stripe does not let your account receive payouts yet; finish the sign-up on"
                " Stripe first"
            )
        return str(where.stripe_account_id)
    if where is None or not where.details_ciphertext:
        raise PayoutError("say first where you want to be paid")
    return None


def pending_payout(conn: Connection, account_id: int) -> Row[Any] | None:
    return conn.execute(
        select(payouts).where(payouts.c.account_id == account_id, payouts.c.state == "pending")
    ).first()


def request_payout(
    conn: Connection,
    policy: Policy,
    account_id: int,
    amount_minor: int,
    *,
    provider: str,
    minimum_minor: int,
    now: datetime,
    origin: str = "creator",
) -> int:
    """Reserve `amount_minor` of `account_id` for a payout through `provider`; its id."""
    if provider not in PROVIDERS:
        raise PayoutError("payouts are off on this server")
    if amount_minor <= 0:
        raise PayoutError("an amount must be more than zero")
    if amount_minor < minimum_minor:
        raise PayoutError(f"the smallest withdrawal is {policy.money(minimum_minor)}")
    sink = system_account(conn, PAYOUTS)
    row = lock_accounts(conn, [account_id, sink])[account_id]
    if row.status not in PERSONS:
        raise PayoutError("only a creator who signed in can withdraw")
    if open_debt(conn, account_id):
        raise PayoutError("you owe money after a card refund or dispute; it is paid first")
    waiting = pending_payout(conn, account_id)
    if waiting is not None:
        raise PayoutError(
            f"a withdrawal of {policy.money(int(waiting.amount_minor))} is already on its way;"
            " wait for it to arrive"
        )
    spare = available(row)
    if amount_minor > spare:
        raise PayoutError(f"you have only {policy.money(spare)} available")
    destination = _destination(conn, account_id, provider)
    (hold_id,) = apply_transfers(
        conn,
        [Transfer(account_id, sink, amount_minor, "hold", expires_at=now + PAYOUT_HOLD)],
        now,
        return_ids=True,
    )
    (payout_id,) = insert_returning_ids(
        conn,
        payouts,
        [
            {
                "account_id": account_id,
                "amount_minor": amount_minor,
                "currency": policy.currency,
                "provider": provider,
                "state": "pending",
                "hold_transfer_id": hold_id,
                "destination": destination,
                "origin": origin,
                "attempts": 0,
                "next_attempt_at": now if provider == "stripe" else None,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )
    return payout_id


# --- resolving a payout -----------------------------------------------------------------


def _locked(conn: Connection, payout_id: int) -> Row[Any]:
    row = conn.execute(for_update(select(payouts).where(payouts.c.id == payout_id))).one_or_none()
    if row is None:
        raise PayoutError(f"there is no payout {payout_id}")
    return row


def _resolve(conn: Connection, row: Row[Any], kind: str, now: datetime, **values: Any) -> None:
    sink = system_account(conn, PAYOUTS)
    lock_accounts(conn, [int(row.account_id), sink])
    (resolution_id,) = apply_transfers(
        conn,
        [
            Transfer(
                int(row.account_id),
                sink,
                int(row.amount_minor),
                kind,
                pending_id=int(row.hold_transfer_id),
            )
        ],
        now,
        return_ids=True,
    )
    conn.execute(
        update(payouts)
        .where(payouts.c.id == row.id)
        .values(
            state="posted" if kind == "post" else "voided",
            resolution_transfer_id=resolution_id,
            next_attempt_at=None,
            resolved_at=now,
            updated_at=now,
            **values,
        )
    )


def post_payout(conn: Connection, payout_id: int, reference: str, now: datetime) -> str:
    """The provider paid payout `payout_id` (`reference`: its transfer id); post it once."""
    row = _locked(conn, payout_id)
    if row.state == "posted":
        if row.reference == reference:
            return f"payout {payout_id} already posted"
        raise PayoutError(f"payout {payout_id} was already paid as {row.reference}")
    if row.state == "voided":
        problem = f"paid as {reference} after it was voided: reverse that transfer at the provider"
        conn.execute(
            update(payouts)
            .where(payouts.c.id == payout_id)
            .values(last_error=problem[:500], updated_at=now)
        )
        return f"problem: payout {payout_id} {problem}"
    _resolve(conn, row, "post", now, reference=reference, last_error=None)
    return f"payout {payout_id} posted as {reference}"


def void_payout(conn: Connection, payout_id: int, reason: str, now: datetime) -> str:
    """Payout `payout_id` will never be paid: give the money back to the creator, once."""
    row = _locked(conn, payout_id)
    if row.state != "pending":
        return f"payout {payout_id} is already {row.state}"
    _resolve(conn, row, "void", now, last_error=reason[:500])
    return f"payout {payout_id} voided: {reason}"


def retry_later(conn: Connection, payout_id: int, error: str, now: datetime) -> None:
    """The provider could not be reached: keep the row pending (its backoff already runs)."""
    conn.execute(
        update(payouts)
        .where(payouts.c.id == payout_id, payouts.c.state == "pending")
        .values(last_error=error[:500], updated_at=now)
    )


def claim_due(conn: Connection, now: datetime, limit: int) -> list[Row[Any]]:
    """Up to `limit` Stripe payouts due now, each with one more attempt counted.

    PostgreSQL skips rows another relay holds (FOR UPDATE SKIP LOCKED); SQLite serializes
    writers anyway. Moving `next_attempt_at` out by the backoff is the claim's lease: no
    other relay takes the row until then, and if this one dies the row comes back.
    """
    due = conn.execute(
        skip_locked(
            select(payouts.c.id, payouts.c.attempts)
            .where(
                payouts.c.state == "pending",
                payouts.c.provider == "stripe",
                payouts.c.next_attempt_at <= now,
            )
            .order_by(payouts.c.next_attempt_at, payouts.c.id)
            .limit(limit)
        )
    ).all()
    for payout_id, attempts in due:
        conn.execute(
            update(payouts)
            .where(payouts.c.id == payout_id)
            .values(
                attempts=attempts + 1,
                next_attempt_at=now + backoff(attempts + 1),
                updated_at=now,
            )
        )
    ids = [int(r.id) for r in due]
    if not ids:
        return []
    return list(conn.execute(select(payouts).where(payouts.c.id.in_(ids)).order_by(payouts.c.id)))


def cancel(conn: Connection, payout_id: int, now: datetime) -> str:
    """The maintainer cancels a pending payout: voided, the money back to the creator.

    A Stripe payout that was already sent once may have reached Stripe (a timeout hides the
    answer): voiding it could pay twice, so it is refused with what to do instead.
    """
    row = _locked(conn, payout_id)
    if row.state != "pending":
        raise PayoutError(f"payout {payout_id} is already {row.state}")
    if row.provider == "stripe" and row.attempts > 0:
        raise PayoutError(
            f"payout {payout_id} was already sent to Stripe; if Stripe made the transfer,"
            " reverse it in the Stripe dashboard (the reversal gives the money back)"
        )
    _resolve(conn, row, "void", now, last_error="cancelled by a maintainer")
    return f"payout {payout_id} cancelled"


def mark_paid(conn: Connection, payout_id: int, reference: str, now: datetime) -> str:
    """The maintainer paid a manual payout by hand: post it with their `reference`."""
    reference = reference.strip()
    if not reference:
        raise PayoutError("mark-paid needs --reference (the bank or PayPal transaction id)")
    row = _locked(conn, payout_id)
    if row.provider != "manual":
        raise PayoutError(f"payout {payout_id} goes through Stripe; the relay posts it")
    if row.state == "voided":
        raise PayoutError(f"payout {payout_id} was voided; nothing to mark paid")
    taken = conn.execute(
        select(payouts.c.id).where(payouts.c.reference == reference, payouts.c.id != payout_id)
    ).first()
    if taken is not None:
        raise PayoutError(f"reference {reference!r} was already used for payout {taken.id}")
    return post_payout(conn, payout_id, reference, now)


def find_by_transfer(
    conn: Connection, transfer_reference: str, payout_id: int | None
) -> Row[Any] | None:
    query = for_update(select(payouts))
    if payout_id is not None:
        return conn.execute(query.where(payouts.c.id == payout_id)).one_or_none()
    return conn.execute(query.where(payouts.c.reference == transfer_reference)).one_or_none()


def reversed_at_provider(
    conn: Connection,
    transfer_reference: str,
    payout_id: int | None,
    reversals: Sequence[tuple[str, int]],
    now: datetime,
) -> str:
    """Stripe reversed (part of) the payout's transfer: give each reversal back once.

    `reversals` are (reversal id, amount). A payout still pending was paid by Stripe (the
    transfer exists), so it is posted first; the reversals then bring the money back.
    """
    row = find_by_transfer(conn, transfer_reference, payout_id)
    if row is None:
        return "ignored: not a tipjar payout"
    if row.state == "voided":
        return f"problem: payout {row.id} was voided but Stripe reversed {transfer_reference}"
    if row.state == "pending":
        post_payout(conn, int(row.id), transfer_reference, now)
        row = _locked(conn, int(row.id))
    sink = system_account(conn, PAYOUTS)
    given = 0
    for reference, amount in reversals:
        seen = conn.execute(
            select(payout_reversals.c.id).where(payout_reversals.c.reference == reference)
        ).first()
        room = int(row.amount_minor) - int(row.reversed_minor) - given
        if seen is not None or amount <= 0 or amount > room:
            continue
        lock_accounts(conn, [int(row.account_id), sink])
        (transfer_id,) = apply_transfers(
            conn, [Transfer(sink, int(row.account_id), amount, "payout")], now, return_ids=True
        )
        conn.execute(
            payout_reversals.insert().values(
                payout_id=row.id,
                reference=reference,
                amount_minor=amount,
                transfer_id=transfer_id,
                created_at=now,
            )
        )
        given += amount
    if given:
        conn.execute(
            update(payouts)
            .where(payouts.c.id == row.id)
            .values(reversed_minor=payouts.c.reversed_minor + given, updated_at=now)
        )
    return f"payout {row.id}: {given} given back to the creator"


# --- the schedule -----------------------------------------------------------------------


def scheduled_candidates(conn: Connection, provider: str, minimum_minor: int) -> list[int]:
    """Creators a scheduled run pays: payable through `provider`, at least the minimum
    available, and no payout already on its way."""
    spare = available_of(accounts.c)
    payable = (
        and_(payout_accounts.c.stripe_account_id.is_not(None), payout_accounts.c.payouts_enabled)
        if provider == "stripe"
        else payout_accounts.c.details_ciphertext.is_not(None)
    )
    waiting = select(payouts.c.id).where(
        payouts.c.account_id == accounts.c.id, payouts.c.state == "pending"
    )
    rows = conn.execute(
        select(accounts.c.id)
        .join(payout_accounts, payout_accounts.c.account_id == accounts.c.id)
        .where(
            payable,
            accounts.c.status.in_(PERSONS),
            spare >= minimum_minor,
            ~waiting.exists(),
        )
        .order_by(accounts.c.id)
    )
    return [int(r.id) for r in rows]


# --- reports ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PayoutTotals:
    paid_out_minor: int  # posted, less what reversals gave back
    in_payout_minor: int  # pending


def totals(conn: Connection, account_id: int) -> PayoutTotals:
    paid = func.coalesce(
        func.sum(payouts.c.amount_minor - payouts.c.reversed_minor).filter(
            payouts.c.state == "posted"
        ),
        0,
    )
    pending = func.coalesce(
        func.sum(payouts.c.amount_minor).filter(payouts.c.state == "pending"), 0
    )
    row = conn.execute(select(paid, pending).where(payouts.c.account_id == account_id)).one()
    return PayoutTotals(int(row[0]), int(row[1]))


@dataclass(frozen=True)
class PayoutLine:
    id: int
    account_id: int
    creator: str
    amount_minor: int
    currency: str
    provider: str
    state: str
    reference: str | None
    reversed_minor: int
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    details_ciphertext: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "creator": self.creator,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "provider": self.provider,
            "state": self.state,
            "stripe_transfer_id": self.reference if self.provider == "stripe" else None,
            "reference": self.reference,
            "reversed_minor": self.reversed_minor,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error,
            "created_at": self.created_at,
        }


def list_payouts(
    conn: Connection,
    state: str | None = None,
    *,
    provider: str | None = None,
    account_id: int | None = None,
    limit: int = 500,
) -> list[PayoutLine]:
    """Payouts, newest first, with the creator's name (and the manual details' ciphertext)."""
    query = (
        select(
            payouts,
            accounts.c.platform,
            accounts.c.platform_user_id,
            accounts.c.handle,
            payout_accounts.c.details_ciphertext,
        )
        .join(accounts, accounts.c.id == payouts.c.account_id)
        .outerjoin(payout_accounts, payout_accounts.c.account_id == payouts.c.account_id)
        .order_by(payouts.c.id.desc())
        .limit(limit)
    )
    if state is not None:
        query = query.where(payouts.c.state == state)
    if provider is not None:
        query = query.where(payouts.c.provider == provider)
    if account_id is not None:
        query = query.where(payouts.c.account_id == account_id)
    return [
        PayoutLine(
            id=int(r.id),
            account_id=int(r.account_id),
            creator=f"@{r.handle}" if r.handle else f"{r.platform}:{r.platform_user_id}",
            amount_minor=int(r.amount_minor),
            currency=r.currency,
            provider=r.provider,
            state=r.state,
            reference=r.reference,
            reversed_minor=int(r.reversed_minor),
            attempts=int(r.attempts),
            next_attempt_at=r.next_attempt_at,
            last_error=r.last_error,
            created_at=r.created_at,
            details_ciphertext=r.details_ciphertext,
        )
        for r in conn.execute(query)
    ]


# --- the audit --------------------------------------------------------------------------


@cache
def audit_checks() -> list[tuple[Select[Any], Callable[[Any], str]]]:
    """Every payout resolved at most once and in agreement with its transfers; every hold
    into `payouts` belongs to a payout; reversals match theirs. Each row is a problem."""
    hold = aliased(transfers)
    res = aliased(transfers)
    sink = aliased(accounts)
    is_sink = and_(sink.c.platform == SYSTEM, sink.c.platform_user_id == PAYOUTS)
    expected = {"pending": None, "posted": "post", "voided": "void"}
    wrong_resolution = or_(
        and_(payouts.c.state == "pending", res.c.id.is_not(None)),
        *(
            and_(payouts.c.state == state, or_(res.c.id.is_(None), res.c.kind != kind))
            for state, kind in expected.items()
            if kind is not None
        ),
        and_(
            res.c.id.is_not(None),
            or_(
                payouts.c.resolution_transfer_id.is_(None),
                payouts.c.resolution_transfer_id != res.c.id,
            ),
        ),
    )
    resolution = (
        select(payouts.c.id, payouts.c.state, res.c.kind.label("rk"))
        .outerjoin(res, res.c.pending_id == payouts.c.hold_transfer_id)
        .where(wrong_resolution)
    )
    held = (
        select(payouts.c.id)
        .outerjoin(hold, hold.c.id == payouts.c.hold_transfer_id)
        .outerjoin(sink, sink.c.id == hold.c.credit_account_id)
        .where(
            or_(
                hold.c.id.is_(None),
                hold.c.kind != "hold",
                hold.c.amount_minor != payouts.c.amount_minor,
                hold.c.debit_account_id != payouts.c.account_id,
                ~is_sink,
            )
        )
    )
    orphan = (
        select(hold.c.id)
        .join(sink, sink.c.id == hold.c.credit_account_id)
        .outerjoin(payouts, payouts.c.hold_transfer_id == hold.c.id)
        .where(hold.c.kind == "hold", is_sink, payouts.c.id.is_(None))
    )
    given = (
        select(func.coalesce(func.sum(payout_reversals.c.amount_minor), 0))
        .where(payout_reversals.c.payout_id == payouts.c.id)
        .scalar_subquery()
    )
    reversed_sum = select(payouts.c.id).where(payouts.c.reversed_minor != given)
    reversal_entry = (
        select(payout_reversals.c.id)
        .join(payouts, payouts.c.id == payout_reversals.c.payout_id)
        .outerjoin(hold, hold.c.id == payout_reversals.c.transfer_id)
        .where(
            or_(
                hold.c.id.is_(None),
                hold.c.kind != "payout",
                hold.c.amount_minor != payout_reversals.c.amount_minor,
                hold.c.credit_account_id != payouts.c.account_id,
            )
        )
    )
    limit = 20
    return [
        (
            resolution.limit(limit),
            lambda r: f"payout {r.id} is {r.state} but its hold's resolution is {r.rk or 'none'}",
        ),
        (held.limit(limit), lambda r: f"payout {r.id} does not match its hold"),
        (orphan.limit(limit), lambda r: f"hold {r.id} into payouts belongs to no payout"),
        (
            reversed_sum.limit(limit),
            lambda r: f"payout {r.id}: what was reversed does not add up to its reversals",
        ),
        (
            reversal_entry.limit(limit),
            lambda r: f"payout reversal {r.id} does not match its transfer",
        ),
    ]
