"""The rules of a tip (DESIGN section 3), through the pure decider: no database.

`decide_tips` gets the balances and statuses `escrow.tips.tip_many` would load and says
what each request does; these tests pin every rule, and a property checks that a batch
decides exactly as its tweets would one after another.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from escrow.decide import Account, Book, PriorTip, TipRequest, decide_tips
from escrow.ledger import Identity, Policy, TipStatus
from escrow.money import Money

POLICY = Policy(currency="EUR", fee_percent=10, hold_period=timedelta(days=90))
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ALICE, BOB, CAROL, DAVE = (Identity.x(str(i), h) for i, h in enumerate("abcd", 1))
NEWBIE = Identity.x("9", "newbie")  # never funded: no account


def book(**accounts: tuple[str, int]) -> Book:
    """Accounts by handle letter: (status, available cents); ids are the user ids."""
    people = {"a": ALICE, "b": BOB, "c": CAROL, "d": DAVE}
    ids = {(people[k].platform, people[k].user_id): int(people[k].user_id) for k in accounts}
    return Book(
        ids,
        {
            int(people[k].user_id): Account(int(people[k].user_id), status, cents, cents)
            for k, (status, cents) in accounts.items()
        },
    )


def ask(supporter: Identity, recipient: Identity, cents: int, source: str = "t1") -> TipRequest:
    return TipRequest(supporter, recipient, Money(cents), source)


def decide(requests: list[TipRequest], world: Book) -> list[tuple[TipStatus, int]]:
    decided = decide_tips(requests, world, POLICY, NOW)
    return [(r.status, r.available.minor) for r in decided.results]


def test_a_tip_to_a_claimed_creator_posts_with_the_fee_floored_in_the_creators_favour():
    world = book(a=("claimed", 1000), b=("claimed", 0))

    decided = decide_tips([ask(ALICE, BOB, 199)], world, POLICY, NOW)

    (result,) = decided.results
    assert (result.status, result.fee, result.available) == (
        TipStatus.POSTED,
        Money(19),  # 19.9 floored
        Money(801),
    )
    assert world.accounts[2].available == 199 - 19
    assert decided.new[0].fee_minor == 19 and not decided.new[0].held


def test_a_tip_to_an_unclaimed_creator_is_held_until_the_hold_period_ends_without_a_fee():
    world = book(a=("claimed", 1000), b=("unclaimed", 0))

    (result,) = decide_tips([ask(ALICE, BOB, 300)], world, POLICY, NOW).results

    assert result.status == TipStatus.HELD
    assert result.expires_at == NOW + timedelta(days=90)
    assert result.fee == Money(0) and result.available == Money(700)
    assert world.accounts[2].available == 0  # held money is not the creator's to spend


def test_a_tip_to_oneself_moves_nothing():
    world = book(a=("claimed", 1000))

    assert decide([ask(ALICE, ALICE, 100)], world) == [(TipStatus.SELF_TIP, 0)]
    assert world.accounts[1].available == 1000


def test_a_supporter_nobody_funded_has_insufficient_funds_and_was_never_funded():
    world = book(b=("claimed", 0))

    (result,) = decide_tips([ask(NEWBIE, BOB, 100)], world, POLICY, NOW).results

    assert result.status == TipStatus.INSUFFICIENT_FUNDS and not result.supporter_ever_funded


def test_a_refusing_creator_gets_nothing_and_the_supporter_keeps_it():
    world = book(a=("claimed", 1000), b=("refusing", 0))

    assert decide([ask(ALICE, BOB, 100)], world) == [(TipStatus.REFUSING_RECIPIENT, 1000)]


def test_insufficient_funds_moves_nothing_and_says_what_was_available():
    world = book(a=("claimed", 250), b=("claimed", 0))

    decided = decide_tips([ask(ALICE, BOB, 300)], world, POLICY, NOW)

    (result,) = decided.results
    assert result.status == TipStatus.INSUFFICIENT_FUNDS and result.supporter_ever_funded
    assert (result.available, result.needed) == (Money(250), Money(300))
    assert decided.new == [] and world.accounts[1].available == 250


def test_a_tip_of_exactly_what_is_available_leaves_zero_and_the_next_is_refused():
    world = book(a=("claimed", 300), b=("claimed", 0), c=("unclaimed", 0))

    assert decide([ask(ALICE, BOB, 300, "t1"), ask(ALICE, CAROL, 1, "t2")], world) == [
        (TipStatus.POSTED, 0),
        (TipStatus.INSUFFICIENT_FUNDS, 0),
    ]


def test_the_same_tweet_again_is_a_replay_of_the_tip_applied_before():
    world = book(a=("claimed", 1000), b=("claimed", 0))
    world.prior[("t1", 2)] = PriorTip(41, 300, 30, held=False, expires_at=None)

    decided = decide_tips([ask(ALICE, BOB, 300)], world, POLICY, NOW)

    (result,) = decided.results
    assert (result.status, result.replayed, result.tip_id) == (TipStatus.POSTED, True, 41)
    assert decided.new == [] and world.accounts[1].available == 1000


def test_the_same_tweet_twice_in_one_batch_moves_money_once():
    world = book(a=("claimed", 1000), b=("unclaimed", 0))

    decided = decide_tips([ask(ALICE, BOB, 300), ask(ALICE, BOB, 300)], world, POLICY, NOW)

    assert [(r.status, r.replayed) for r in decided.results] == [
        (TipStatus.HELD, False),
        (TipStatus.HELD, True),
    ]
    assert len(decided.new) == 1 and decided.new_of == {0: 0, 1: 0}


def test_money_a_creator_received_earlier_in_the_batch_can_be_spent_later_in_it():
    world = book(a=("claimed", 1000), b=("claimed", 0), c=("claimed", 0))

    assert decide([ask(ALICE, BOB, 500, "t1"), ask(BOB, CAROL, 450, "t2")], world) == [
        (TipStatus.POSTED, 500),
        (TipStatus.POSTED, 0),  # bob had 500 - 50 fee
    ]


def test_one_tweet_to_several_creators_applies_to_all_of_them():
    world = book(a=("claimed", 500), b=("claimed", 0), c=("unclaimed", 0))

    statuses = decide([ask(ALICE, BOB, 200), ask(ALICE, CAROL, 300)], world)

    assert statuses == [(TipStatus.POSTED, 300), (TipStatus.HELD, 0)]


def test_one_tweet_the_supporter_cannot_cover_whole_applies_to_none_and_says_what_it_needed():
    # Alice with 5.00 tweets "@c0 @c1 @c2 €2": 6.00 needed, nothing moves.
    world = book(a=("claimed", 500), b=("unclaimed", 0), c=("unclaimed", 0), d=("claimed", 0))

    decided = decide_tips(
        [ask(ALICE, BOB, 200), ask(ALICE, CAROL, 200), ask(ALICE, DAVE, 200)], world, POLICY, NOW
    )

    assert {r.status for r in decided.results} == {TipStatus.INSUFFICIENT_FUNDS}
    assert {(r.needed, r.available) for r in decided.results} == {(Money(600), Money(500))}
    assert decided.new == [] and world.accounts[1].available == 500


def test_a_refusing_creator_in_a_tweet_is_left_out_of_what_the_tweet_needs():
    world = book(a=("claimed", 300), b=("refusing", 0), c=("claimed", 0))

    statuses = decide([ask(ALICE, BOB, 300), ask(ALICE, CAROL, 300)], world)

    assert statuses == [(TipStatus.REFUSING_RECIPIENT, 300), (TipStatus.POSTED, 0)]


# --- the batch decides as its tweets would, one after another ----------------------------

requests_strategy = st.lists(
    st.tuples(
        st.sampled_from([1, 2, 3, 4, 7]),  # supporter (4 and 7 never funded; 7 no account)
        st.integers(1, 6),  # recipient
        st.integers(1, 700),  # cents
        st.integers(0, 6),  # source tweet: repeats are replays
    ),
    max_size=30,
)


def _world() -> Book:
    statuses = {1: "claimed", 2: "unclaimed", 3: "claimed", 4: "unclaimed", 5: "claimed"}
    statuses[6] = "refusing"
    funds = {1: 1000, 2: 300, 3: 50}
    ids = {("x", str(i)): i for i in statuses}
    accounts = {i: Account(i, s, funds.get(i, 0), funds.get(i, 0)) for i, s in statuses.items()}
    return Book(ids, accounts)


def _requests(raw: list[tuple[int, int, int, int]]) -> list[TipRequest]:
    return [
        TipRequest(Identity.x(str(s)), Identity.x(str(r)), Money(c), f"tweet-{s}-{src}")
        for s, r, c, src in raw
    ]


def _tweets(requests: list[TipRequest]) -> list[list[TipRequest]]:
    runs: list[list[TipRequest]] = []
    for r in requests:
        if runs and (runs[-1][0].supporter, runs[-1][0].source) == (r.supporter, r.source):
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


@settings(max_examples=300, deadline=None)
@given(raw=requests_strategy)
def test_a_batch_decides_as_its_tweets_would_one_after_another(raw):
    requests = _requests(raw)
    batch_book, single_book = _world(), _world()
    batch = decide_tips(requests, batch_book, POLICY, NOW)

    singles = []
    for tweet in _tweets(requests):
        decided = decide_tips(tweet, single_book, POLICY, NOW)
        singles += decided.results
        for i, new in enumerate(decided.new):  # what the next call would load as prior
            single_book.prior[(new.source, new.recipient_id)] = PriorTip(
                -1 - i, new.amount_minor, new.fee_minor, new.held, new.expires_at
            )

    def seen(r):
        return (r.status, r.amount, r.available, r.fee, r.expires_at, r.needed, r.replayed)

    assert [seen(r) for r in batch.results] == [seen(r) for r in singles]
    assert {a.id: a.available for a in batch_book.accounts.values()} == {
        a.id: a.available for a in single_book.accounts.values()
    }
    # Never an overdraft, and every new tip is paid for.
    assert all(a.available >= 0 for a in batch_book.accounts.values())
    moved = sum(t.amount_minor for t in batch.new)
    assert sum(a.available for a in _world().accounts.values()) - moved + sum(
        t.amount_minor - t.fee_minor for t in batch.new if not t.held
    ) == sum(a.available for a in batch_book.accounts.values())
