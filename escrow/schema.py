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
from sqlalchemy.sql.expression import true
from sqlalchemy.types import TypeDecorator

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
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


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
)
Index("ix_accounts_handle_key", accounts.c.handle_key, accounts.c.updated_at)

TRANSFER_KINDS = ("deposit", "tip", "fee", "hold", "post", "void", "payout")

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

TIP_STATES = ("posted", "held", "voided")
TIP_RESOLUTIONS = ("claimed", "expired", "retracted", "refused")

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
        "state <> 'voided' OR resolution IN ('expired', 'retracted', 'refused')",
        name="voided_has_reason",
    ),
    CheckConstraint(
        "state <> 'posted' OR resolution IS NULL OR resolution = 'claimed'",
        name="posted_reason",
    ),
)
Index("ix_tips_recipient_state", tips.c.recipient_account_id, tips.c.state)
Index("ix_tips_supporter_state", tips.c.supporter_account_id, tips.c.state)
Index("ix_tips_state_expires_at", tips.c.state, tips.c.expires_at)

deposits = Table(
    "deposits",
    metadata,
    Column("reference", String(128), primary_key=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Money_("amount_minor", nullable=False),
    Column("transfer_id", Id, ForeignKey("transfers.id"), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
)
