"""Money in by card: top-ups, monthly subscriptions, refunds, disputes and the debts they leave.

The funding port's card side, independent of the provider's library (the adapter in
`bot/payments` speaks to Stripe and hands plain values here). The rules:

- A top-up or subscription is a row first (`pending`); the provider's checkout is created
  afterwards with an idempotency key from the row's id. Money is credited only when a
  verified event says the payment succeeded: a deposit with the reference
  `stripe:<payment id>`, once, through `escrow.ledger.deposit`. A payment whose amount or
  currency differs from its row credits nothing and marks the row `problem`.
- A refund takes its amount back from the supporter (`refund` transfer to `funding`); a
  dispute freezes it (a hold on the supporter for `funding`), voided if the dispute is won,
  posted if lost. When the supporter's available money is short, their tips still waiting
  for creators are voided first (newest first, resolution `reversed`); what still cannot be
  covered becomes a debt. No step ever overdraws an account.
- A debt refuses the supporter's tips (`escrow.debts`, asked by `escrow.tips`) until new
  money pays it: every deposit pays open debts first, oldest first.
- Events arrive in any order: a refund or dispute for a payment not credited yet waits
  (`waiting`) and is applied in the transaction that credits the payment.

Every movement goes through `escrow.ledger.apply_transfers`; callers hold the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, select, update

from escrow.db import insert_returning_ids
from escrow.flattrs import set_budget
from escrow.ledger import (
    FUNDING,
    DepositResult,
    Identity,
    LedgerError,
    Policy,
    Transfer,
    apply_transfers,
    available,
    lock_accounts,
    system_account,
)
from escrow.ledger import deposit as ledger_deposit
from escrow.money import Money
from escrow.schema import (
    accounts,
    debt_payments,
    debts,
    deposits,
    reversals,
    subscriptions,
    tips,
    topups,
)
from escrow.tips import void_holds

# A dispute's freeze is a hold; card networks close disputes within months, so a year is
# an upper bound that keeps the hold's expiry (which the audit checks) honest.
DISPUTE_FREEZE = timedelta(days=365)


class FundingError(LedgerError):
    """A funding request that cannot be done as asked; nothing was changed."""


def payment_reference(payment_id: str) -> str:
    return f"stripe:{payment_id}"


def refund_reference(refund_id: str) -> str:
    return f"stripe-refund:{refund_id}"


def dispute_reference(dispute_id: str) -> str:
    return f"stripe-dispute:{dispute_id}"


# --- starting a top-up or a subscription ------------------------------------------------


def check_amount(policy: Policy, amount: Money, minimum: Money, maximum: Money) -> int:
    minor = policy.check(amount)
    if amount < minimum:
        raise FundingError(f"the smallest amount to add is {minimum}")
    if amount > maximum:
        raise FundingError(f"the largest amount to add at once is {maximum}")
    return minor


def start_topup(
    conn: Connection, policy: Policy, account_id: int, amount: Money, now: datetime
) -> int:
    """Write a pending top-up for `account_id`; returns its id (the idempotency key's root)."""
    minor = policy.check(amount)
    (topup_id,) = insert_returning_ids(
        conn,
        topups,
        [
            {
                "account_id": account_id,
                "amount_minor": minor,
                "currency": policy.currency,
                "state": "pending",
                "created_at": now,
                "updated_at": now,
            }
        ],
    )
    return topup_id


def start_subscription(
    conn: Connection, policy: Policy, account_id: int, amount: Money, now: datetime
) -> int:
    """Write a pending monthly subscription; refused while another one is live."""
    minor = policy.check(amount)
    live = conn.execute(
        select(subscriptions.c.id).where(
            subscriptions.c.account_id == account_id,
            subscriptions.c.state.in_(("active", "canceling")),
        )
    ).first()
    if live is not None:
        raise FundingError("you already have a monthly budget by card; cancel it first")
    (sub_id,) = insert_returning_ids(
        conn,
        subscriptions,
        [
            {
                "account_id": account_id,
                "amount_minor": minor,
                "currency": policy.currency,
                "state": "pending",
                "created_at": now,
                "updated_at": now,
            }
        ],
    )
    return sub_id


def session_created(
    conn: Connection, table: Any, row_id: int, session_id: str, now: datetime
) -> None:
    """Remember the provider's checkout session for a top-up or subscription row."""
    conn.execute(
        update(table)
        .where(table.c.id == row_id)
        .values(checkout_session_id=session_id, updated_at=now)
    )


def mark_failed(conn: Connection, topup_id: int, reason: str, now: datetime) -> None:
    """The provider refused the checkout for good: the top-up will never be paid."""
    conn.execute(
        update(topups)
        .where(topups.c.id == topup_id, topups.c.state == "pending")
        .values(state="failed", problem=reason[:500], updated_at=now)
    )


# --- debts --------------------------------------------------------------------------------


def pay_debts(conn: Connection, account_id: int, now: datetime) -> int:
    """Pay `account_id`'s open debts, oldest first, from its available money; returns paid."""
    open_rows = conn.execute(
        select(debts)
        .where(debts.c.account_id == account_id, debts.c.settled_at.is_(None))
        .order_by(debts.c.id)
    ).all()
    if not open_rows:
        return 0
    funding = system_account(conn, FUNDING)
    spare = available(lock_accounts(conn, [account_id, funding])[account_id])
    paid = 0
    for debt in open_rows:
        owed = int(debt.amount_minor - debt.paid_minor - debt.forgiven_minor)
        part = min(owed, spare - paid)
        if part <= 0:
            break
        (transfer_id,) = apply_transfers(
            conn, [Transfer(account_id, funding, part, "refund")], now, return_ids=True
        )
        conn.execute(
            debt_payments.insert().values(
                debt_id=debt.id, transfer_id=transfer_id, amount_minor=part, created_at=now
            )
        )
        conn.execute(
            update(debts)
            .where(debts.c.id == debt.id)
            .values(
                paid_minor=debts.c.paid_minor + part,
                settled_at=now if part == owed else None,
            )
        )
        paid += part
    return paid


def deposit(
    conn: Connection, policy: Policy, who: Identity, amount: Money, reference: str, now: datetime
) -> DepositResult:
    """`escrow.ledger.deposit`, then open debts are paid from the new money first."""
    result = ledger_deposit(conn, policy, who, amount, reference, now)
    if result.replayed or not pay_debts(conn, result.account_id, now):
        return result
    row = conn.execute(select(accounts).where(accounts.c.id == result.account_id)).one()
    return DepositResult(
        result.reference,
        result.account_id,
        result.amount,
        policy.money(available(row)),
        result.replayed,
    )


def _identity(conn: Connection, account_id: int) -> Identity:
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).one()
    return Identity(row.platform, row.platform_user_id, row.handle)


# --- payments in --------------------------------------------------------------------------


def _mismatch(policy: Policy, row: Row[Any], amount_minor: int, code: str) -> str | None:
    if code.upper() != policy.currency or code.upper() != row.currency:
        return f"paid in {code.upper()}, but this ledger keeps {policy.currency}"
    if amount_minor != row.amount_minor:
        return f"paid {amount_minor} minor units, expected {row.amount_minor}"
    return None


def credit_topup(
    conn: Connection,
    policy: Policy,
    topup_id: int,
    payment_id: str,
    amount_minor: int,
    code: str,
    now: datetime,
) -> str:
    """A verified payment for top-up `topup_id`: credit it once; returns what happened."""
    row = conn.execute(
        select(topups).where(topups.c.id == topup_id).with_for_update()
    ).one_or_none()
    if row is None:
        return "ignored: no such top-up"
    if row.state == "paid":
        return f"already credited as {row.deposit_reference}"
    problem = _mismatch(policy, row, amount_minor, code)
    if problem is not None:
        conn.execute(
            update(topups)
            .where(topups.c.id == topup_id)
            .values(state="problem", problem=problem, payment_intent_id=payment_id, updated_at=now)
        )
        return f"problem: {problem}"
    reference = payment_reference(payment_id)
    deposit(
        conn, policy, _identity(conn, row.account_id), policy.money(amount_minor), reference, now
    )
    conn.execute(
        update(topups)
        .where(topups.c.id == topup_id)
        .values(
            state="paid",
            payment_intent_id=payment_id,
            deposit_reference=reference,
            problem=None,
            updated_at=now,
        )
    )
    applied = apply_waiting(conn, policy, reference, row.account_id, now)
    return f"credited {reference}" + (f"; applied {applied} waiting reversal(s)" if applied else "")


@dataclass(frozen=True)
class Invoice:
    """A paid invoice of a subscription, as the adapter read it from the event."""

    invoice_id: str
    subscription_row: int | None  # our id, from the subscription's metadata, if present
    provider_subscription_id: str | None
    customer_id: str | None
    amount_minor: int
    currency: str
    period_end: datetime | None
    payment_id: str | None = None


def _find_subscription(conn: Connection, invoice: Invoice) -> Row[Any] | None:
    query = select(subscriptions).with_for_update()
    if invoice.subscription_row is not None:
        return conn.execute(
            query.where(subscriptions.c.id == invoice.subscription_row)
        ).one_or_none()
    if invoice.provider_subscription_id:
        return conn.execute(
            query.where(
                subscriptions.c.provider_subscription_id == invoice.provider_subscription_id
            )
        ).one_or_none()
    return None


def credit_invoice(conn: Connection, policy: Policy, invoice: Invoice, now: datetime) -> str:
    """A month of a subscription was paid: credit it once and set the monthly budget to it."""
    row = _find_subscription(conn, invoice)
    if row is None:
        return "ignored: no such subscription"
    reference = payment_reference(invoice.invoice_id)
    done = conn.execute(
        select(deposits.c.reference).where(deposits.c.reference == reference)
    ).first()
    if done is not None:
        return f"already credited as {reference}"
    problem = _mismatch(policy, row, invoice.amount_minor, invoice.currency)
    if problem is not None:
        conn.execute(
            update(subscriptions)
            .where(subscriptions.c.id == row.id)
            .values(problem=f"invoice {invoice.invoice_id}: {problem}", updated_at=now)
        )
        return f"problem: {problem}"
    who = _identity(conn, row.account_id)
    month = policy.money(invoice.amount_minor)
    deposit(conn, policy, who, month, reference, now)
    # The month paid is the budget, whatever the deployment's minimum for ones set by hand.
    set_budget(conn, policy, who, month, minimum=month, now=now)
    conn.execute(
        update(subscriptions)
        .where(subscriptions.c.id == row.id)
        .values(
            state="active" if row.state in ("pending", "problem") else row.state,
            provider_subscription_id=row.provider_subscription_id
            or invoice.provider_subscription_id,
            provider_customer_id=row.provider_customer_id or invoice.customer_id,
            current_period_end=invoice.period_end or row.current_period_end,
            months_paid=subscriptions.c.months_paid + 1,
            updated_at=now,
        )
    )
    # A refund or dispute names the charge's payment: the invoice's payment intent, if the
    # event said which; else the invoice itself.
    applied = apply_waiting(conn, policy, reference, row.account_id, now)
    if invoice.payment_id:
        intent = payment_reference(invoice.payment_id)
        applied += apply_waiting(conn, policy, intent, row.account_id, now)
    return f"credited {reference}" + (f"; applied {applied} waiting reversal(s)" if applied else "")


def subscription_started(
    conn: Connection,
    subscription_row: int,
    provider_subscription_id: str | None,
    customer_id: str | None,
    now: datetime,
) -> str:
    """The supporter finished the subscription's checkout: link the provider's ids."""
    row = conn.execute(
        select(subscriptions).where(subscriptions.c.id == subscription_row).with_for_update()
    ).one_or_none()
    if row is None:
        return "ignored: no such subscription"
    conn.execute(
        update(subscriptions)
        .where(subscriptions.c.id == subscription_row)
        .values(
            state="active" if row.state == "pending" else row.state,
            provider_subscription_id=row.provider_subscription_id or provider_subscription_id,
            provider_customer_id=row.provider_customer_id or customer_id,
            updated_at=now,
        )
    )
    return f"subscription {subscription_row} started"


def subscription_changed(
    conn: Connection,
    provider_subscription_id: str,
    *,
    status: str,
    cancel_at_period_end: bool,
    period_end: datetime | None,
    now: datetime,
) -> str:
    """The provider's view of a subscription changed (canceling, canceled, renewed)."""
    row = conn.execute(
        select(subscriptions)
        .where(subscriptions.c.provider_subscription_id == provider_subscription_id)
        .with_for_update()
    ).one_or_none()
    if row is None:
        return "ignored: no such subscription"
    if status in ("canceled", "incomplete_expired"):
        state = "canceled"
    elif cancel_at_period_end:
        state = "canceling"
    elif status in ("active", "trialing", "past_due"):
        state = "active"
    else:
        state = row.state
    conn.execute(
        update(subscriptions)
        .where(subscriptions.c.id == row.id)
        .values(
            state=state, current_period_end=period_end or row.current_period_end, updated_at=now
        )
    )
    return f"subscription {row.id} is {state}"


def cancel_requested(conn: Connection, subscription_id: int, now: datetime) -> None:
    """The supporter asked to stop at the period's end (the provider confirmed it)."""
    conn.execute(
        update(subscriptions)
        .where(subscriptions.c.id == subscription_id, subscriptions.c.state == "active")
        .values(state="canceling", updated_at=now)
    )


# --- money back: refunds and disputes -----------------------------------------------------


@dataclass(frozen=True)
class Reversal:
    """A refund or a dispute as the adapter read it from the event."""

    kind: str  # "refund" | "dispute"
    provider_id: str  # re_… or dp_…
    payment_id: str  # the payment it reverses (pi_…, or in_… for a subscription month)
    charge_id: str | None
    amount_minor: int
    currency: str
    customer_id: str | None = None  # for a subscription's charge

    @property
    def reference(self) -> str:
        if self.kind == "refund":
            return refund_reference(self.provider_id)
        return dispute_reference(self.provider_id)


def take_back(conn: Connection, policy: Policy, reversal: Reversal, now: datetime) -> str:
    """Apply a refund or a new dispute once; waits if its payment is not credited yet."""
    if reversal.kind not in ("refund", "dispute"):
        raise FundingError(f"unknown reversal kind {reversal.kind!r}")
    existing = conn.execute(
        select(reversals.c.id, reversals.c.state).where(reversals.c.reference == reversal.reference)
    ).first()
    if existing is not None:
        return f"already recorded ({existing.state})"
    paid = _payer(conn, payment_reference(reversal.payment_id), reversal.customer_id)
    row = {
        "reference": reversal.reference,
        "kind": reversal.kind,
        "payment_reference": payment_reference(reversal.payment_id),
        "charge_id": reversal.charge_id,
        "amount_minor": reversal.amount_minor,
        "currency": reversal.currency.upper(),
        "created_at": now,
    }
    if reversal.currency.upper() != policy.currency or reversal.amount_minor <= 0:
        problem = f"{reversal.amount_minor} {reversal.currency.upper()} does not fit this ledger"
        conn.execute(
            reversals.insert().values(
                **row, amount_minor=max(reversal.amount_minor, 1), state="problem", problem=problem
            )
        )
        return f"problem: {problem}"
    if paid is None:
        conn.execute(reversals.insert().values(**row, state="waiting"))
        return "waiting for its payment to be credited"
    (reversal_id,) = insert_returning_ids(
        conn, reversals, [{**row, "state": "waiting", "account_id": paid}]
    )
    return _apply(conn, policy, reversal_id, now)


def _payer(conn: Connection, reference: str, customer_id: str | None) -> int | None:
    """The account the payment `reference` was credited to; for a subscription's month
    (credited under its invoice's id) the account of the subscription's customer."""
    account_id = conn.execute(
        select(deposits.c.account_id).where(deposits.c.reference == reference)
    ).scalar()
    if account_id is None and customer_id:
        account_id = conn.execute(
            select(subscriptions.c.account_id)
            .where(subscriptions.c.provider_customer_id == customer_id)
            .order_by(subscriptions.c.id.desc())
            .limit(1)
        ).scalar()
    return None if account_id is None else int(account_id)


def apply_waiting(
    conn: Connection, policy: Policy, reference: str, account_id: int, now: datetime
) -> int:
    """Apply the refunds and disputes that waited for the payment `reference` (whose money
    went to `account_id`)."""
    waiting = conn.execute(
        select(reversals.c.id)
        .where(reversals.c.payment_reference == reference, reversals.c.state == "waiting")
        .order_by(reversals.c.id)
    ).scalars()
    count = 0
    for reversal_id in list(waiting):
        rev = conn.execute(select(reversals).where(reversals.c.id == reversal_id)).one()
        conn.execute(
            update(reversals).where(reversals.c.id == reversal_id).values(account_id=account_id)
        )
        _apply(conn, policy, reversal_id, now)
        if rev.kind == "dispute" and rev.resolved_at is not None:
            # It was lost while it waited (see `close_dispute`): take what it froze.
            close_dispute(conn, policy, rev.reference.removeprefix("stripe-dispute:"), False, now)
        count += 1
    return count


def _held_tips(conn: Connection, account_id: int) -> list[Row[Any]]:
    """The supporter's tips still waiting for creators, newest first (voided first)."""
    return list(
        conn.execute(
            select(tips)
            .where(tips.c.supporter_account_id == account_id, tips.c.state == "held")
            .order_by(tips.c.created_at.desc(), tips.c.id.desc())
        )
    )


def _cover(
    conn: Connection, policy: Policy, account_id: int, amount: int, now: datetime
) -> tuple[int, int]:
    """Make up to `amount` available on `account_id`, voiding its newest holds if needed.

    Locks the supporter, `funding` and the creators of the supporter's holds (id order).
    Returns (available now, voided).
    """
    funding = system_account(conn, FUNDING)
    held = _held_tips(conn, account_id)
    locked = lock_accounts(conn, [account_id, funding, *(t.recipient_account_id for t in held)])
    spare = available(locked[account_id])
    if spare >= amount:
        return spare, 0
    held = _held_tips(conn, account_id)  # as they are now that the accounts are locked
    chosen: list[Row[Any]] = []
    for t in held:
        if spare + sum(c.amount_minor for c in chosen) >= amount:
            break
        chosen.append(t)
    voided = sum(int(t.amount_minor) for t in void_holds(conn, policy, chosen, "reversed", now))
    return spare + voided, voided


def _apply(conn: Connection, policy: Policy, reversal_id: int, now: datetime) -> str:
    """Take (refund) or freeze (dispute) a recorded reversal; the rest becomes a debt."""
    rev = conn.execute(select(reversals).where(reversals.c.id == reversal_id)).one()
    account_id = int(rev.account_id)
    spare, voided = _cover(conn, policy, account_id, int(rev.amount_minor), now)
    taken = min(spare, int(rev.amount_minor))
    funding = system_account(conn, FUNDING)
    transfer_id = None
    if taken:
        if rev.kind == "refund":
            move = Transfer(account_id, funding, taken, "refund")
        else:
            move = Transfer(account_id, funding, taken, "hold", expires_at=now + DISPUTE_FREEZE)
        (transfer_id,) = apply_transfers(conn, [move], now, return_ids=True)
    conn.execute(
        update(reversals)
        .where(reversals.c.id == reversal_id)
        .values(
            state="taken" if rev.kind == "refund" else "open",
            voided_minor=voided,
            taken_minor=taken,
            transfer_id=transfer_id,
            resolved_at=now if rev.kind == "refund" else None,
        )
    )
    short = int(rev.amount_minor) - taken
    if short:
        conn.execute(
            debts.insert().values(
                account_id=account_id, reversal_id=reversal_id, amount_minor=short, created_at=now
            )
        )
    what = "refunded" if rev.kind == "refund" else "frozen"
    return f"{what} {taken}, voided {voided} of tips, debt {short}"


def close_dispute(
    conn: Connection, policy: Policy, dispute_id: str, won: bool, now: datetime
) -> str:
    """A dispute closed: won releases the frozen money and forgives its debt; lost takes it."""
    reference = dispute_reference(dispute_id)
    rev = conn.execute(
        select(reversals).where(reversals.c.reference == reference).with_for_update()
    ).one_or_none()
    if rev is None:
        return "ignored: dispute not seen"
    if rev.state == "waiting":
        if won:
            conn.execute(
                update(reversals)
                .where(reversals.c.id == rev.id)
                .values(state="won", resolved_at=now)
            )
            return "won before its payment was credited: nothing to take"
        # `resolved_at` on a waiting dispute marks it lost: taken when its payment arrives.
        conn.execute(update(reversals).where(reversals.c.id == rev.id).values(resolved_at=now))
        return "lost before its payment was credited: taken when the payment arrives"
    if rev.state != "open":
        return f"already closed ({rev.state})"
    account_id = int(rev.account_id)
    funding = system_account(conn, FUNDING)
    lock_accounts(conn, [account_id, funding])
    resolution_id = None
    if rev.transfer_id is not None:
        kind = "void" if won else "post"
        (resolution_id,) = apply_transfers(
            conn,
            [Transfer(account_id, funding, int(rev.taken_minor), kind, pending_id=rev.transfer_id)],
            now,
            return_ids=True,
        )
    conn.execute(
        update(reversals)
        .where(reversals.c.id == rev.id)
        .values(
            state="won" if won else "lost", resolution_transfer_id=resolution_id, resolved_at=now
        )
    )
    if not won:
        return f"lost: took {rev.taken_minor}"
    returned = _forgive(conn, policy, rev, now)
    pay_debts(conn, account_id, now)
    return f"won: released {rev.taken_minor}, returned {returned} paid towards its debt"


def _forgive(conn: Connection, policy: Policy, rev: Row[Any], now: datetime) -> int:
    """A won dispute's debt is void: forgive what is unpaid and give back what was paid."""
    debt = conn.execute(select(debts).where(debts.c.reversal_id == rev.id)).one_or_none()
    if debt is None:
        return 0
    unpaid = int(debt.amount_minor - debt.paid_minor - debt.forgiven_minor)
    conn.execute(
        update(debts)
        .where(debts.c.id == debt.id)
        .values(forgiven_minor=debts.c.forgiven_minor + unpaid, settled_at=debt.settled_at or now)
    )
    if debt.paid_minor:
        who = _identity(conn, int(rev.account_id))
        ledger_deposit(
            conn,
            policy,
            who,
            policy.money(int(debt.paid_minor)),
            f"stripe-dispute-won:{rev.id}",
            now,
        )
    return int(debt.paid_minor)
