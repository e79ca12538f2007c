"""money out: payouts to creators, where they are paid, reversals

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

`payout_accounts` says where a creator is paid (a Stripe connected account, or encrypted
free text for the manual provider); `payouts` is one withdrawal each, a hold creator ->
`payouts` resolved exactly once; `payout_reversals` the Stripe reversals that gave money
back. A partial unique index allows one pending payout per creator.
"""

from alembic import op
import sqlalchemy as sa

from escrow.schema import UTCDateTime


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    op.create_table('payout_accounts',
    sa.Column('account_id', _ID, autoincrement=False, nullable=False),
    sa.Column('stripe_account_id', sa.String(length=255), nullable=True),
    sa.Column('payouts_enabled', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('connections', sa.Integer(), server_default='0', nullable=False),
    sa.Column('details_ciphertext', sa.Text(), nullable=True),
    sa.Column('disconnected_at', UTCDateTime(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint('connections >= 0', name=op.f('ck_payout_accounts_connections_non_negative')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_payout_accounts_account_id_accounts')),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_payout_accounts')),
    sa.UniqueConstraint('stripe_account_id', name=op.f('uq_payout_accounts_stripe_account_id'))
    )
    op.create_table('payouts',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('account_id', _ID, nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('hold_transfer_id', _ID, nullable=False),
    sa.Column('resolution_transfer_id', _ID, nullable=True),
    sa.Column('destination', sa.String(length=255), nullable=True),
    sa.Column('reference', sa.String(length=255), nullable=True),
    sa.Column('reversed_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('origin', sa.String(length=16), server_default='creator', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.Column('resolved_at', UTCDateTime(), nullable=True),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_payouts_amount_positive')),
    sa.CheckConstraint("provider IN ('stripe', 'manual')", name=op.f('ck_payouts_provider')),
    sa.CheckConstraint("state IN ('pending', 'posted', 'voided')", name=op.f('ck_payouts_state')),
    sa.CheckConstraint("origin IN ('creator', 'schedule')", name=op.f('ck_payouts_origin')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_payouts_attempts_non_negative')),
    sa.CheckConstraint("(state = 'pending') = (resolution_transfer_id IS NULL)", name=op.f('ck_payouts_pending_iff_unresolved')),
    sa.CheckConstraint('reversed_minor >= 0 AND reversed_minor <= amount_minor', name=op.f('ck_payouts_reversed_within_amount')),
    sa.CheckConstraint("state = 'posted' OR reversed_minor = 0", name=op.f('ck_payouts_only_posted_reversed')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_payouts_account_id_accounts')),
    sa.ForeignKeyConstraint(['hold_transfer_id'], ['transfers.id'], name=op.f('fk_payouts_hold_transfer_id_transfers')),
    sa.ForeignKeyConstraint(['resolution_transfer_id'], ['transfers.id'], name=op.f('fk_payouts_resolution_transfer_id_transfers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payouts')),
    sa.UniqueConstraint('hold_transfer_id', name=op.f('uq_payouts_hold_transfer_id')),
    sa.UniqueConstraint('resolution_transfer_id', name=op.f('uq_payouts_resolution_transfer_id')),
    sa.UniqueConstraint('reference', name=op.f('uq_payouts_reference'))
    )
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.create_index('ix_payouts_account_id', ['account_id', 'created_at'], unique=False)
        batch_op.create_index('ix_payouts_due', ['next_attempt_at', 'id'], unique=False, postgresql_where=_PENDING, sqlite_where=_PENDING)
        batch_op.create_index('uq_payouts_one_pending', ['account_id'], unique=True, postgresql_where=_PENDING, sqlite_where=_PENDING)

    op.create_table('payout_reversals',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('payout_id', _ID, nullable=False),
    sa.Column('reference', sa.String(length=255), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('transfer_id', _ID, nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_payout_reversals_amount_positive')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payout_reversals_payout_id_payouts')),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfers.id'], name=op.f('fk_payout_reversals_transfer_id_transfers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_reversals')),
    sa.UniqueConstraint('reference', name=op.f('uq_payout_reversals_reference')),
    sa.UniqueConstraint('transfer_id', name=op.f('uq_payout_reversals_transfer_id'))
    )
    with op.batch_alter_table('payout_reversals', schema=None) as batch_op:
        batch_op.create_index('ix_payout_reversals_payout_id', ['payout_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('payout_reversals', schema=None) as batch_op:
        batch_op.drop_index('ix_payout_reversals_payout_id')
    op.drop_table('payout_reversals')
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_index('uq_payouts_one_pending', postgresql_where=_PENDING, sqlite_where=_PENDING)
        batch_op.drop_index('ix_payouts_due', postgresql_where=_PENDING, sqlite_where=_PENDING)
        batch_op.drop_index('ix_payouts_account_id')
    op.drop_table('payouts')
    op.drop_table('payout_accounts')
