"""A batch of tips (one page of mentions) does exactly what the same tweets one by one do."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from escrow.audit import check_ledger
from escrow.claims import claim, refuse
from escrow.decide import TipRequest
from escrow.ledger import Identity, Policy, deposit
from escrow.money import Money
from escrow.tips import tip, tip_many

POLICY = Policy()
EXAMPLES = itertools.count()

request_strategy = st.lists(
    st.tuples(
        st.integers(0, 3),  # supporter (3 is never funded)
        st.integers(0, 4),  # recipient (0..2 are also supporters)
        st.integers(1, 700),  # amount in cents
        st.integers(0, 12),  # source tweet: repeats are replays
    ),
    max_size=25,
)


def _world(conn, platform, now):
    """Three funded supporters; creator 3 has claimed, creator 4 refuses tips."""
    for i, cents in enumerate((1000, 300, 50)):
        deposit(
            conn, POLICY, Identity(platform, str(i), f"s{i}"), Money(cents), f"{platform}{i}", now
        )
    claim(conn, POLICY, Identity(platform, "3", "c3"), now)
    refuse(conn, POLICY, Identity(platform, "4", "c4"), now)


def _requests(platform, raw):
    return [
        TipRequest(
            Identity(platform, str(s)),
            Identity(platform, str(r), f"h{r}"),
            Money(cents),
            f"{platform}-tweet-{src}",
        )
        for s, r, cents, src in raw
    ]


def _tweets(requests):
    runs = []
    for r in requests:
        if runs and (runs[-1][0].supporter, runs[-1][0].source) == (r.supporter, r.source):
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


def _outcome(result):
    return (
        result.status,
        result.amount,
        result.available,
        result.fee,
        result.replayed,
        result.supporter_ever_funded,
        result.expires_at,
        result.needed,
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=request_strategy)
def test_a_batch_of_tips_equals_the_same_tweets_one_by_one(engine, clock, raw):
    now = clock()
    # Each example gets platforms of its own in the same database: "a…" one by one, "b…" batched.
    tag = str(next(EXAMPLES))
    one, many = f"a{tag}", f"b{tag}"
    with engine.begin() as conn:
        _world(conn, one, now)
        _world(conn, many, now)
        # One tweet, one decision: a run of requests of one supporter and tweet is one
        # call, as the listener makes it; a tweet of one recipient is `tip` itself.
        singles = []
        for tweet in _tweets(_requests(one, raw)):
            if len(tweet) == 1:
                (r,) = tweet
                singles.append(tip(conn, POLICY, r.supporter, r.recipient, r.amount, r.source, now))
            else:
                singles += tip_many(conn, POLICY, tweet, now)
        batch = tip_many(conn, POLICY, _requests(many, raw), now)
    assert [_outcome(r) for r in batch] == [_outcome(r) for r in singles]
    with engine.connect() as conn:
        assert check_ledger(conn) == []
