"""The database schema: every table of tipjar, as SQLAlchemy Core metadata.

The ledger follows TigerBeetle's model. An account carries four counters
(`debits_posted`, `credits_posted`, `debits_pending`, `credits_pending`); every movement of
money is one immutable row in `transfers` with one debit and one credit account. A hold is
a *pending* transfer; it is resolved exactly once by a later `post` or `void` transfer that
points at it (`pending_id`, unique). Counters are a cache of the transfers: the audit
recomputes them. The invariants the database can hold itself are CHECK and UNIQUE
constraints here, so no code path can break them.

Alembic migrations in `escrow/migrations` create these tables; a test checks that the
migrated database and this metadata agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.sql.expression import false, text, true
from sqlalchemy.types import TypeDecorator

from escrow.money import MAX_MINOR

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both databases (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: tipjar stores only aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


def partial(condition: str) -> dict[str, Any]:
    """The keywords that make an Index partial (only rows matching `condition`), on both
    databases."""
    return {"postgresql_where": text(condition), "sqlite_where": text(condition)}


def Money_(name: str, **kw: Any) -> Column[int]:
    """A column of integer minor units."""
    return Column(name, BigInteger, **kw)


# Key/value state that must survive restarts: the deployment's currency, poll cursors.
state = Table(
    "state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

ACCOUNT_STATUSES = ("unclaimed", "claimed", "refusing", "system")

accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("platform", String(16), nullable=False),
    Column("platform_user_id", String(64), nullable=False),
    Column("handle", String(64)),  # display snapshot only; identity is the user id
    Column("handle_key", String(64)),  # casefolded handle, for @handle look-ups
    Column("status", String(16), nullable=False, server_default="unclaimed"),
    # System accounts (funding) may go below zero; everyone else may not.
    Column("no_overdraft", Boolean, nullable=False, server_default=true()),
    Money_("debits_posted", nullable=False, server_default="0"),
    Money_("credits_posted", nullable=False, server_default="0"),
    Money_("debits_pending", nullable=False, server_default="0"),
    Money_("credits_pending", nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("claimed_at", UTCDateTime),
    # Bumped when the account signs out, claims or refuses: every session cookie carries
    # the version it was issued under, so an older copy of the cookie stops working.
    Column("session_version", Integer, nullable=False, server_default="0"),
    UniqueConstraint("platform", "platform_user_id"),
    CheckConstraint(f"status IN {ACCOUNT_STATUSES!r}", name="status"),
    CheckConstraint(
        "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0"
        " AND credits_pending >= 0",
        name="counters_non_negative",
    ),
    CheckConstraint(
        "NOT no_overdraft OR credits_posted - debits_posted - debits_pending >= 0",
        name="no_overdraft",
    ),
    # Far below 2^63 (escrow.money.MAX_MINOR); SQLite enforces it with triggers (0007).
    CheckConstraint(
        f"debits_posted <= {MAX_MINOR} AND credits_posted <= {MAX_MINOR}"
        f" AND debits_pending <= {MAX_MINOR} AND credits_pending <= {MAX_MINOR}",
        name="counters_bounded",
    ),
)
Index("ix_accounts_handle_key", accounts.c.handle_key, accounts.c.updated_at)

# `refund`: money leaves a supporter back to `funding` because the card payment that
# brought it in was refunded, lost in a dispute, or a debt from one is being paid
# (migration 0007).
TRANSFER_KINDS = ("deposit", "tip", "fee", "hold", "post", "void", "payout", "refund")

transfers = Table(
    "transfers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("debit_account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("credit_account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Money_("amount_minor", nullable=False),
    Column("kind", String(16), nullable=False),
    # For post/void: the hold they resolve. Unique, so a hold is resolved at most once.
    Column("pending_id", Id, ForeignKey("transfers.id"), unique=True),
    Column("expires_at", UTCDateTime),  # holds only
    # The tip this movement belongs to. Not a foreign key: tips point at their hold
    # transfer, and a cycle of keys would need deferred constraints on both databases.
    Column("tip_id", Id),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint(f"amount_minor <= {MAX_MINOR}", name="amount_bounded"),
    CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
    CheckConstraint(f"kind IN {TRANSFER_KINDS!r}", name="kind"),
    CheckConstraint(
        "(kind IN ('post', 'void')) = (pending_id IS NOT NULL)", name="pending_id_iff_resolution"
    ),
    CheckConstraint("(kind = 'hold') = (expires_at IS NOT NULL)", name="expiry_iff_hold"),
)
Index("ix_transfers_debit_account_id", transfers.c.debit_account_id)
Index("ix_transfers_credit_account_id", transfers.c.credit_account_id)
Index("ix_transfers_tip_id", transfers.c.tip_id)


class TipState(StrEnum):
    """Where a tip stands: its money moved (`posted`), reserved for its creator (`held`), or
    returned to its supporter (`voided`)."""

    POSTED = "posted"
    HELD = "held"
    VOIDED = "voided"


TIP_STATES = tuple(TipState)
# `reversed`: the supporter's money was taken back by a card refund or dispute while the
# tip waited, so the hold was voided to cover it (migration 0007).
TIP_RESOLUTIONS = ("claimed", "expired", "retracted", "refused", "reversed")

tips = Table(
    "tips",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # The tweet that asked for it (first id of its edit history), or another natural key
    # such as a settlement share; with the recipient it makes a tip idempotent.
    Column("source_id", String(96), nullable=False),
    Column("supporter_account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("recipient_account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("kind", String(16), nullable=False, server_default="tip"),
    Money_("amount_minor", nullable=False),
    Money_("fee_minor", nullable=False, server_default="0"),
    Column("state", String(16), nullable=False),
    Column("resolution", String(16)),
    Column("hold_transfer_id", Id, ForeignKey("transfers.id")),
    Column("expires_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),
    UniqueConstraint("source_id", "recipient_account_id"),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint("fee_minor >= 0 AND fee_minor <= amount_minor", name="fee_within_amount"),
    CheckConstraint("kind IN ('tip', 'flattr')", name="kind"),
    CheckConstraint(f"state IN {TIP_STATES!r}", name="state"),
    CheckConstraint(f"resolution IS NULL OR resolution IN {TIP_RESOLUTIONS!r}", name="resolution"),
    CheckConstraint("supporter_account_id <> recipient_account_id", name="not_self"),
    CheckConstraint(
        "state <> 'held' OR (resolution IS NULL AND hold_transfer_id IS NOT NULL"
        " AND expires_at IS NOT NULL)",
        name="held_is_open_hold",
    ),
    CheckConstraint(
        "state <> 'voided' OR resolution IN ('expired', 'retracted', 'refused', 'reversed')",
        name="voided_has_reason",
    ),
    CheckConstraint(
        "state <> 'posted' OR resolution IS NULL OR resolution = 'claimed'",
        name="posted_reason",
    ),
)
Index("ix_tips_recipient_state", tips.c.recipient_account_id, tips.c.state)
Index("ix_tips_supporter_state", tips.c.supporter_account_id, tips.c.state)
# Only held tips are looked up by expiry (migration 0005: posted ones skip this index).
Index(
    "ix_tips_held_expires_at",
    tips.c.expires_at,
    tips.c.id,
    **partial("state = 'held'"),
)

deposits = Table(
    "deposits",
    metadata,
    Column("reference", String(128), primary_key=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Money_("amount_minor", nullable=False),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint("length(reference) <= 128", name="reference_length"),
)

# --- platform: processed mentions, outbox, notices (migration 0002) --------------------

# Every mention the listener has processed, keyed by the first id of its edit history: a
# replayed page or a later edit of the same tweet finds its row and changes nothing.
mentions = Table(
    "mentions",
    metadata,
    Column("tweet_id", String(32), primary_key=True),
    Column("author_id", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("processed_at", UTCDateTime, nullable=False),
)

OUTBOX_KINDS = ("creator_notice", "supporter_reply", "dm")
OUTBOX_STATES = ("pending", "sending", "sent", "failed", "skipped")

# The transactional outbox: posts written in the same transaction as the change they
# report, sent later by the relay. `dedupe_key` makes planning a notice twice harmless;
# `lease_until` lets a relay that died mid-send be taken over once the lease runs out.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(160), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("recipient_account_id", Id, ForeignKey("accounts.id")),
    Column("recipient_user_id", String(64)),  # the platform id, also for people with no account
    Column("topic", String(32)),  # the outcome a reply answers; first/reminder for notices
    Column("in_reply_to_tweet_id", String(32)),
    Column("text", Text, nullable=False),
    Column("state", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_until", UTCDateTime),
    Column("sent_tweet_id", String(32)),
    Column("error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    # Where it is posted: the relay of each platform sends only its own rows (0006).
    Column("platform", String(16), nullable=False, server_default="x"),
    # The supporter whose tip led to this post (notices): one supporter's tips may trigger
    # only so many notices a day (NOTICES_PER_SUPPORTER_PER_DAY). Migration 0007.
    Column("supporter_account_id", Id),
    CheckConstraint(f"kind IN {OUTBOX_KINDS!r}", name="kind"),
    CheckConstraint(f"state IN {OUTBOX_STATES!r}", name="state"),
    CheckConstraint("attempts >= 0", name="attempts_non_negative"),
    # Posts are replies in a thread someone started, never fresh unsolicited mentions.
    CheckConstraint("kind = 'dm' OR in_reply_to_tweet_id IS NOT NULL", name="in_thread"),
)
Index("ix_outbox_state_next_attempt_at", outbox.c.state, outbox.c.next_attempt_at)
Index("ix_outbox_kind_created_at", outbox.c.kind, outbox.c.created_at)
Index("ix_outbox_recipient_user_id", outbox.c.recipient_user_id, outbox.c.kind, outbox.c.created_at)
Index("ix_outbox_recipient_account_id", outbox.c.recipient_account_id, outbox.c.kind)

# What the bot spent on the platform, per UTC day: reads and posts counted as they happen,
# the estimated bill in integer micro-dollars (the platform bills in USD), and the posts the
# daily budget deferred to the next day or dropped. `tipjar costs` reads it. Migration 0007.
platform_usage = Table(
    "platform_usage",
    metadata,
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, UTC
    Column("platform", String(16), primary_key=True),
    Column("reads", Integer, nullable=False, server_default="0"),
    Column("posts", Integer, nullable=False, server_default="0"),
    Column("posts_with_link", Integer, nullable=False, server_default="0"),
    Column("spend_usd_micros", BigInteger, nullable=False, server_default="0"),
    Column("deferred", Integer, nullable=False, server_default="0"),
    Column("dropped", Integer, nullable=False, server_default="0"),
)

# Per creator: the notice cycle (a cycle opens with the first hold and closes when no hold
# is left) and the opt-out, which ends notices for good.
creator_notices = Table(
    "creator_notices",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id"), primary_key=True),
    Column("cycle", Integer, nullable=False, server_default="0"),
    Column("cycle_open_since", UTCDateTime),  # NULL: no cycle open
    Column("opted_out_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
)

# --- claim web: OAuth states (migration 0003) -------------------------------------------

# One row per "Sign in with X" started: the PKCE verifier, kept server-side, under a
# SHA-256 hash of the OAuth state (the state itself travels in URLs and is never stored).
# A row is used once (`used_at`) and only within minutes of `created_at`.
oauth_states = Table(
    "oauth_states",
    metadata,
    Column("state_hash", String(64), primary_key=True),
    Column("code_verifier", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
)
Index("ix_oauth_states_created_at", oauth_states.c.created_at)

# --- settlement: budgets, shares, runs (migration 0004) --------------------------------

# A supporter's monthly flattr budget. Without a row the deployment's minimum applies.
budgets = Table(
    "budgets",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id"), primary_key=True, autoincrement=False),
    Money_("monthly_budget_minor", nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("monthly_budget_minor > 0", name="budget_positive"),
)

SHARE_STATES = ("open", "settled", "refused", "unfunded")

# One flattr: a share of the supporter's budget for `period` (YYYY-MM, the UTC month of the
# tweet), at most one per supporter and recipient and month. It moves no money until the
# month is settled; then `part_minor` is its part of the pool and, when that part was
# given, the tip it became has source_id 'share:<id>'.
shares = Table(
    "shares",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("period", String(7), nullable=False),
    Column("supporter_account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("recipient_account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("source_id", String(96), nullable=False),  # the flattr tweet
    Column("state", String(16), nullable=False, server_default="open"),
    Money_("part_minor"),
    Column("flattred_at", UTCDateTime, nullable=False),  # the tweet's created_at
    Column("created_at", UTCDateTime, nullable=False),
    Column("settled_at", UTCDateTime),
    UniqueConstraint("period", "supporter_account_id", "recipient_account_id"),
    CheckConstraint(f"state IN {SHARE_STATES!r}", name="state"),
    CheckConstraint("supporter_account_id <> recipient_account_id", name="not_self"),
    CheckConstraint(
        "(state = 'open') = (part_minor IS NULL AND settled_at IS NULL)", name="open_iff_unsettled"
    ),
    CheckConstraint("part_minor IS NULL OR part_minor >= 0", name="part_non_negative"),
    CheckConstraint("state <> 'unfunded' OR part_minor = 0", name="unfunded_is_zero"),
)
# A month's open shares, by supporter: the settlement's keyset walks this index. Only
# open shares are in it, so settling a share writes one index fewer (migration 0005).
Index(
    "ix_shares_open_period_supporter",
    shares.c.period,
    shares.c.supporter_account_id,
    **partial("state = 'open'"),
)

# The per-supporter settlement marker: written in the same transaction as that supporter's
# money, so a month is settled exactly once per supporter however often it is rerun.
settlements = Table(
    "settlements",
    metadata,
    Column("period", String(7), primary_key=True),
    Column(
        "supporter_account_id",
        Id,
        ForeignKey("accounts.id"),
        primary_key=True,
        autoincrement=False,
    ),
    Money_("budget_minor", nullable=False),
    Money_("available_minor", nullable=False),  # before the settlement
    Money_("pool_minor", nullable=False),
    Column("shares", Integer, nullable=False),
    Column("settled_at", UTCDateTime, nullable=False),
    CheckConstraint(
        "pool_minor >= 0 AND pool_minor <= budget_minor AND pool_minor <= available_minor",
        name="pool_within_budget_and_balance",
    ),
)

# One row per settled month: started, running totals (updated in each batch's
# transaction), and `completed_at` once every supporter with shares is settled.
settlement_runs = Table(
    "settlement_runs",
    metadata,
    Column("period", String(7), primary_key=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    Column("supporters_settled", Integer, nullable=False, server_default="0"),
    Column("shares", Integer, nullable=False, server_default="0"),
    Money_("posted_minor", nullable=False, server_default="0"),
    Money_("held_minor", nullable=False, server_default="0"),
    Money_("fees_minor", nullable=False, server_default="0"),
    Column("unfunded_shares", Integer, nullable=False, server_default="0"),
    Column("refused_shares", Integer, nullable=False, server_default="0"),
    Column("updated_at", UTCDateTime, nullable=False),
)

# --- Mastodon sign-in: apps per instance, sign-ins in flight (migration 0006) ----------

# The app tipjar registered on a Mastodon instance (`POST /api/v1/apps`), once per
# instance, under the instance's domain; reused for every later sign-in there.
mastodon_apps = Table(
    "mastodon_apps",
    metadata,
    Column("domain", String(255), primary_key=True),
    Column("base_url", String(300), nullable=False),
    Column("client_id", String(255), nullable=False),
    Column("client_secret", String(255), nullable=False),
    Column("redirect_uri", String(500), nullable=False),
    Column("scopes", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# One row per "Sign in with Mastodon" started, as `oauth_states` for X: under a SHA-256
# of the state, the instance it was started with and the PKCE verifier (when the instance
# supports PKCE); used once (`used_at`) and only within minutes of `created_at`.
mastodon_sign_ins = Table(
    "mastodon_sign_ins",
    metadata,
    Column("state_hash", String(64), primary_key=True),
    Column("domain", String(255), ForeignKey("mastodon_apps.domain"), nullable=False),
    Column("code_verifier", String(128)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
)
Index("ix_mastodon_sign_ins_created_at", mastodon_sign_ins.c.created_at)

# --- money in: card top-ups, subscriptions, refunds, disputes, debts (migration 0007) ---

TOPUP_STATES = ("pending", "paid", "failed", "problem")

# One card top-up a supporter started on /me. The row comes first; the provider's checkout
# session is created with the idempotency key `topup-<id>`, and the money is credited only
# from the provider's verified webhook, as the deposit `deposit_reference`.
topups = Table(
    "topups",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Money_("amount_minor", nullable=False),
    Column("currency", String(3), nullable=False),
    Column("state", String(16), nullable=False, server_default="pending"),
    Column("checkout_session_id", String(255), unique=True),
    Column("payment_intent_id", String(255)),
    Column("deposit_reference", String(128), ForeignKey("deposits.reference"), unique=True),
    Column("problem", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint(f"state IN {TOPUP_STATES!r}", name="state"),
    CheckConstraint("(state = 'paid') = (deposit_reference IS NOT NULL)", name="paid_iff_deposit"),
)
Index("ix_topups_account_id", topups.c.account_id, topups.c.created_at)
Index("ix_topups_payment_intent_id", topups.c.payment_intent_id)

SUBSCRIPTION_STATES = ("pending", "active", "canceling", "canceled", "problem")

# A supporter's monthly budget paid by card: each paid invoice is a deposit of `amount_minor`
# (reference `stripe:<invoice id>`) and sets the supporter's monthly flattr budget to it.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Money_("amount_minor", nullable=False),
    Column("currency", String(3), nullable=False),
    Column("state", String(16), nullable=False, server_default="pending"),
    Column("checkout_session_id", String(255), unique=True),
    Column("provider_subscription_id", String(255), unique=True),
    Column("provider_customer_id", String(255)),
    Column("current_period_end", UTCDateTime),
    Column("months_paid", Integer, nullable=False, server_default="0"),
    Column("problem", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint(f"state IN {SUBSCRIPTION_STATES!r}", name="state"),
)
Index("ix_subscriptions_account_id", subscriptions.c.account_id, subscriptions.c.state)
Index("ix_subscriptions_provider_customer_id", subscriptions.c.provider_customer_id)

REVERSAL_KINDS = ("refund", "dispute")
REVERSAL_STATES = ("waiting", "taken", "open", "won", "lost", "problem")

# Money a card payment takes back: a refund (`stripe-refund:<id>`, taken at once) or a
# dispute (`stripe-dispute:<id>`, frozen as a hold on the supporter until it closes: voided
# if won, posted if lost). What the supporter's available money and voided tip holds could
# not cover is a debt. `waiting`: the payment it reverses is not credited yet (events come
# in any order); it is applied when the payment's deposit arrives.
reversals = Table(
    "reversals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("reference", String(128), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("payment_reference", String(128), nullable=False),  # the deposit it reverses
    Column("charge_id", String(255)),
    Column("account_id", Id, ForeignKey("accounts.id")),
    Money_("amount_minor", nullable=False),
    Column("currency", String(3), nullable=False),
    Column("state", String(16), nullable=False),
    Money_("voided_minor", nullable=False, server_default="0"),  # tip holds voided for it
    Money_("taken_minor", nullable=False, server_default="0"),  # taken (refund) or frozen
    Column("transfer_id", Id, ForeignKey("transfers.id"), unique=True),
    Column("resolution_transfer_id", Id, ForeignKey("transfers.id"), unique=True),
    Column("problem", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint(f"kind IN {REVERSAL_KINDS!r}", name="kind"),
    CheckConstraint(f"state IN {REVERSAL_STATES!r}", name="state"),
    CheckConstraint(
        "taken_minor >= 0 AND voided_minor >= 0 AND taken_minor <= amount_minor",
        name="taken_within_amount",
    ),
    CheckConstraint("(taken_minor > 0) = (transfer_id IS NOT NULL)", name="taken_iff_transfer"),
)
Index("ix_reversals_payment_reference", reversals.c.payment_reference)

# What a refund or a lost dispute could not take: the supporter owes it, tips are refused
# until new money pays it (`paid_minor`, one `debt_payments` row per refund transfer), and
# a won dispute forgives what it left unpaid.
debts = Table(
    "debts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("reversal_id", Id, ForeignKey("reversals.id"), nullable=False, unique=True),
    Money_("amount_minor", nullable=False),
    Money_("paid_minor", nullable=False, server_default="0"),
    Money_("forgiven_minor", nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("settled_at", UTCDateTime),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint(
        "paid_minor >= 0 AND forgiven_minor >= 0 AND paid_minor + forgiven_minor <= amount_minor",
        name="paid_within_amount",
    ),
    CheckConstraint(
        "(settled_at IS NULL) = (paid_minor + forgiven_minor < amount_minor)",
        name="settled_iff_covered",
    ),
)
Index("ix_debts_open", debts.c.account_id, **partial("settled_at IS NULL"))

debt_payments = Table(
    "debt_payments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("debt_id", Id, ForeignKey("debts.id"), nullable=False),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=False, unique=True),
    Money_("amount_minor", nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
)
Index("ix_debt_payments_debt_id", debt_payments.c.debt_id)

EVENT_ENDPOINTS = ("platform", "connect")

# Every verified provider event, once: the row is written in the same transaction as the
# event's effect, so a redelivery finds it and changes nothing.
stripe_events = Table(
    "stripe_events",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("endpoint", String(16), nullable=False),
    Column("type", String(96), nullable=False),
    Column("account", String(255)),  # the connected account, for Connect events
    Column("received_at", UTCDateTime, nullable=False),
    Column("result", String(255), nullable=False),
    CheckConstraint(f"endpoint IN {EVENT_ENDPOINTS!r}", name="endpoint"),
)
Index("ix_stripe_events_received_at", stripe_events.c.received_at)

# --- money out: payouts to creators (migration 0008) ------------------------------------

PAYOUT_PROVIDERS = ("stripe", "manual")
PAYOUT_STATES = ("pending", "posted", "voided")

# Where a creator is paid: a Stripe connected account (Connect) or, for the manual
# provider, free text (an IBAN, a PayPal address) kept only as Fernet ciphertext.
# `connections` counts connected accounts created for this creator, so a creator who
# disconnected and connects again gets a new idempotency key (`account-<id>-<n>`).
payout_accounts = Table(
    "payout_accounts",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id"), primary_key=True, autoincrement=False),
    Column("stripe_account_id", String(255), unique=True),
    Column("payouts_enabled", Boolean, nullable=False, server_default=false()),
    Column("connections", Integer, nullable=False, server_default="0"),
    Column("details_ciphertext", Text),
    Column("disconnected_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("connections >= 0", name="connections_non_negative"),
)

# One withdrawal: a hold (pending transfer) creator -> `payouts`, written with the row in
# one transaction; posted when the provider confirms (a Stripe transfer `reference`, or the
# maintainer's reference), voided when it is refused or cancelled. The relay sends a
# Stripe payout with the idempotency key `payout-<id>`; `attempts` and `next_attempt_at`
# are its backoff (claiming a row pushes `next_attempt_at` out, which is also its lease).
# A Stripe reversal of a posted payout gives money back: `reversed_minor`, one
# `payout_reversals` row per reversal.
payouts = Table(
    "payouts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Money_("amount_minor", nullable=False),
    Column("currency", String(3), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("state", String(16), nullable=False, server_default="pending"),
    Column("hold_transfer_id", Id, ForeignKey("transfers.id"), nullable=False, unique=True),
    Column("resolution_transfer_id", Id, ForeignKey("transfers.id"), unique=True),
    Column("destination", String(255)),  # the connected account (stripe)
    Column("reference", String(255), unique=True),  # Stripe transfer id or the maintainer's
    Money_("reversed_minor", nullable=False, server_default="0"),
    Column("origin", String(16), nullable=False, server_default="creator"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint(f"provider IN {PAYOUT_PROVIDERS!r}", name="provider"),
    CheckConstraint(f"state IN {PAYOUT_STATES!r}", name="state"),
    CheckConstraint("origin IN ('creator', 'schedule')", name="origin"),
    CheckConstraint("attempts >= 0", name="attempts_non_negative"),
    CheckConstraint(
        "(state = 'pending') = (resolution_transfer_id IS NULL)", name="pending_iff_unresolved"
    ),
    CheckConstraint(
        "reversed_minor >= 0 AND reversed_minor <= amount_minor", name="reversed_within_amount"
    ),
    CheckConstraint("state = 'posted' OR reversed_minor = 0", name="only_posted_reversed"),
)
Index("ix_payouts_account_id", payouts.c.account_id, payouts.c.created_at)
Index("ix_payouts_due", payouts.c.next_attempt_at, payouts.c.id, **partial("state = 'pending'"))
# At most one withdrawal on its way per creator: two tabs submitting at once get one payout
# and a clear refusal, never two.
Index("uq_payouts_one_pending", payouts.c.account_id, unique=True, **partial("state = 'pending'"))

payout_reversals = Table(
    "payout_reversals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("payout_id", Id, ForeignKey("payouts.id"), nullable=False),
    Column("reference", String(255), nullable=False, unique=True),
    Money_("amount_minor", nullable=False),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
)
Index("ix_payout_reversals_payout_id", payout_reversals.c.payout_id)

# --- operations: the ledger's self-checks (migration 0010) -----------------------------

AUDIT_TRIGGERS = ("daily", "before_settlement", "after_settlement", "maintainer")

# One row per run of `check_ledger`: the worker's daily self-check and the checks around a
# settlement, and every `tipjar audit` a maintainer runs. While the newest failed run is
# newer than the newest clean run by a maintainer, settlement (and payouts) stay stopped.
audit_runs = Table(
    "audit_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("trigger", String(24), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("problems", Integer, nullable=False),
    Column("details", Text, nullable=False),  # JSON: [{"kind", "message"}], the first ones
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    CheckConstraint(f"trigger IN {AUDIT_TRIGGERS!r}", name="trigger"),
    CheckConstraint("problems >= 0 AND ok = (problems = 0)", name="ok_iff_clean"),
)
Index("ix_audit_runs_ok_trigger", audit_runs.c.ok, audit_runs.c.trigger, audit_runs.c.id)
