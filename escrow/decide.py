"""The rules of a tip, decided without a database: what a batch of tip requests does.

`decide_tips` takes the requests and what the ledger knows of the people in them (a
`Book`: their accounts' balances and statuses, the tips applied before) and returns what
each request does and which new tips to write; `escrow.tips.tip_many` loads the book,
calls it, and writes the result. The rules (DESIGN section 3):

- a tip to oneself moves nothing (`self_tip`);
- a supporter nobody ever funded has no account: `insufficient_funds`, never funded;
- the same (tweet, recipient) again is a replay: the first result, nothing moves;
- a creator who refuses tips gets nothing (`refusing_recipient`);
- one tweet, one decision: the requests of one tweet (a run of requests with the same
  supporter and source) move money together or not at all. If the supporter cannot cover
  what the whole tweet needs, every request of it that would move money is
  `insufficient_funds`, carrying what the tweet needed and what was available;
- otherwise the tip posts at once to a claimed creator, with the operator's fee
  (`Policy.fee`, floored: the odd cent stays with the creator), or is held in escrow for
  an unclaimed one until `hold_period` has passed; nobody is ever overdrawn;
- the requests are decided in order, each on the balances the ones before it left, so a
  creator paid earlier in a batch may spend it later in the same batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from escrow.ledger import Identity, Policy, TipStatus
from escrow.money import Money


class AccountStatus(StrEnum):
    UNCLAIMED = "unclaimed"
    CLAIMED = "claimed"
    REFUSING = "refusing"
    SYSTEM = "system"


@dataclass(frozen=True)
class TipResult:
    status: TipStatus
    amount: Money
    available: Money  # the supporter's available balance after the tip (or as it stands)
    tip_id: int | None = None
    fee: Money | None = None
    expires_at: datetime | None = None
    replayed: bool = False
    supporter_ever_funded: bool = True
    # insufficient_funds: what the whole tweet needed (`available` is what there was)
    needed: Money | None = None
    # insufficient_funds: a debt from a card refund or dispute, which refuses every tip
    owed: Money | None = None

    @property
    def applied(self) -> bool:
        return self.status in (TipStatus.POSTED, TipStatus.HELD)


@dataclass(frozen=True)
class TipRequest:
    supporter: Identity
    recipient: Identity
    amount: Money
    source: str
    kind: str = "tip"


@dataclass
class Account:
    """What the decider knows of an account, and changes as it decides."""

    id: int
    status: str
    available: int  # minor units the account can spend
    credited: int  # credits_posted: whether it was ever funded
    owed: int = 0  # an open debt (escrow.funding): no tip until new money pays it


@dataclass(frozen=True)
class PriorTip:
    """A tip applied before this batch, for its replay."""

    id: int
    amount_minor: int
    fee_minor: int
    held: bool
    expires_at: datetime | None


@dataclass
class Book:
    """The ledger as the decider sees it; `decide_tips` updates the balances it decides on.

    `ids` maps (platform, user id) to an account id for every supporter that has an
    account and every recipient of a funded request; `prior` holds the tips already
    applied, by (source, recipient account id).
    """

    ids: dict[tuple[str, str], int]
    accounts: dict[int, Account]
    prior: dict[tuple[str, int], PriorTip] = field(default_factory=dict)


@dataclass(frozen=True)
class NewTip:
    """A tip to write: its tip id and transfer ids are allocated when it is written."""

    source: str
    supporter_id: int
    recipient_id: int
    kind: str
    amount_minor: int
    fee_minor: int
    expires_at: datetime | None  # set when it is held

    @property
    def held(self) -> bool:
        return self.expires_at is not None


@dataclass
class Decisions:
    """One result per request, and the new tips to write. `new_of[i]` is the index in
    `new` of the tip request `i` writes or replays from earlier in the batch (its result's
    tip id comes from there); `pending` finds those by (source, recipient account id)."""

    results: list[TipResult] = field(default_factory=list)
    new: list[NewTip] = field(default_factory=list)
    new_of: dict[int, int] = field(default_factory=dict)
    pending: dict[tuple[str, int], int] = field(default_factory=dict)


def _key(who: Identity) -> tuple[str, str]:
    return who.platform, who.user_id


def _tweets(requests: Sequence[TipRequest]) -> list[range]:
    """The runs of consecutive requests with the same supporter and source: one per tweet."""
    runs: list[range] = []
    start = 0
    for i in range(1, len(requests) + 1):
        if i == len(requests) or (
            (_key(requests[i].supporter), requests[i].source)
            != (_key(requests[start].supporter), requests[start].source)
        ):
            runs.append(range(start, i))
            start = i
    return runs


def decide_tips(
    requests: Sequence[TipRequest], book: Book, policy: Policy, now: datetime
) -> Decisions:
    """Decide `requests` in order against `book` (whose balances it moves as it goes)."""
    out = Decisions()
    for tweet in _tweets(requests):
        _decide_tweet(requests, tweet, book, policy, now, out)
    return out


def _alone(r: TipRequest, book: Book) -> TipStatus | PriorTip | None:
    """What a request is whatever the rest of its tweet: a status that moves nothing, the
    tip it replays, or None if it would move money (or replay a tip of this batch)."""
    if _key(r.supporter) == _key(r.recipient):
        return TipStatus.SELF_TIP
    if _key(r.supporter) not in book.ids:
        return TipStatus.INSUFFICIENT_FUNDS  # never funded: no account
    recipient_id = book.ids[_key(r.recipient)]
    prior = book.prior.get((r.source, recipient_id))
    if prior is not None:
        return prior
    if book.accounts[recipient_id].status == AccountStatus.REFUSING:
        return TipStatus.REFUSING_RECIPIENT
    return None


def _decide_tweet(
    requests: Sequence[TipRequest],
    tweet: range,
    book: Book,
    policy: Policy,
    now: datetime,
    out: Decisions,
) -> None:
    """Decide the requests of one tweet, whose money moves all together or not at all."""
    alone = {i: _alone(requests[i], book) for i in tweet}
    undecided = [i for i in tweet if alone[i] is None]
    payer_id = book.ids.get(_key(requests[tweet.start].supporter))
    payer = book.accounts[payer_id] if payer_id is not None else None
    # What the tweet needs: each recipient once, less what this batch applied already.
    fresh: dict[tuple[str, int], int] = {}
    for i in undecided:
        k = (requests[i].source, book.ids[_key(requests[i].recipient)])
        if k not in out.pending and k not in fresh:
            fresh[k] = i
    needed = sum(requests[i].amount.minor for i in fresh.values())
    short = payer is not None and (payer.owed > 0 or needed > payer.available)
    for i in tweet:
        r, what = requests[i], alone[i]
        balance = policy.money(payer.available if payer is not None else 0)
        if isinstance(what, PriorTip):
            out.results.append(_replay(policy, what, balance.minor))
        elif what == TipStatus.SELF_TIP:
            out.results.append(TipResult(what, r.amount, policy.money(0)))
        elif what == TipStatus.INSUFFICIENT_FUNDS:
            # Nobody funded this supporter yet; creating an empty account would only add noise.
            out.results.append(TipResult(what, r.amount, balance, supporter_ever_funded=False))
        elif what is not None:
            out.results.append(TipResult(what, r.amount, balance))
        elif (
            short
            and payer is not None
            and (r.source, book.ids[_key(r.recipient)]) not in out.pending
        ):
            out.results.append(
                TipResult(
                    TipStatus.INSUFFICIENT_FUNDS,
                    r.amount,
                    balance,
                    supporter_ever_funded=payer.credited > 0,
                    needed=policy.money(needed),
                    owed=policy.money(payer.owed) if payer.owed else None,
                )
            )
        else:
            out.results.append(_move(r, i, book, policy, now, out))


def _move(
    r: TipRequest, index: int, book: Book, policy: Policy, now: datetime, out: Decisions
) -> TipResult:
    """Apply one request the tweet can afford (or replay the batch's tip of it)."""
    payer = book.accounts[book.ids[_key(r.supporter)]]
    recipient_id = book.ids[_key(r.recipient)]
    k = (r.source, recipient_id)
    replayed = k in out.pending
    if not replayed:
        creator = book.accounts[recipient_id]
        minor = r.amount.minor
        held = creator.status != AccountStatus.CLAIMED
        fee = 0 if held else policy.fee(minor)
        payer.available -= minor
        if not held:
            creator.credited += minor
            creator.available += minor - fee
        out.pending[k] = len(out.new)
        out.new.append(
            NewTip(
                source=r.source,
                supporter_id=payer.id,
                recipient_id=recipient_id,
                kind=r.kind,
                amount_minor=minor,
                fee_minor=fee,
                expires_at=now + policy.hold_period if held else None,
            )
        )
    new = out.new[out.pending[k]]
    out.new_of[index] = out.pending[k]
    return TipResult(
        status=TipStatus.HELD if new.held else TipStatus.POSTED,
        amount=policy.money(new.amount_minor),
        available=policy.money(payer.available),
        fee=policy.money(new.fee_minor),
        expires_at=new.expires_at,
        replayed=replayed,
    )


def _replay(policy: Policy, prior: PriorTip, available_minor: int) -> TipResult:
    return TipResult(
        status=TipStatus.HELD if prior.held else TipStatus.POSTED,
        amount=policy.money(prior.amount_minor),
        available=policy.money(available_minor),
        tip_id=prior.id,
        fee=policy.money(prior.fee_minor),
        expires_at=prior.expires_at,
        replayed=True,
    )


def with_tip_ids(decisions: Decisions, tip_ids: Sequence[int]) -> list[TipResult]:
    """The results, each new (or replayed-in-batch) tip's carrying the id it was given."""
    return [
        replace(result, tip_id=tip_ids[decisions.new_of[i]]) if i in decisions.new_of else result
        for i, result in enumerate(decisions.results)
    ]
