"""ledger: accounts, immutable transfers, tips, deposits

Revision ID: 0001
Revises: 
Create Date: 2026-11-21

Transfers are immutable: triggers on both databases refuse UPDATE and DELETE, so a
movement of money can only be corrected by another movement.
"""

from alembic import op
import sqlalchemy as sa

from escrow.schema import UTCDateTime


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('platform_user_id', sa.String(length=64), nullable=False),
    sa.Column('handle', sa.String(length=64), nullable=True),
    sa.Column('handle_key', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='unclaimed', nullable=False),
    sa.Column('no_overdraft', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('debits_posted', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('credits_posted', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('debits_pending', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('credits_pending', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.Column('claimed_at', UTCDateTime(), nullable=True),
    sa.CheckConstraint("status IN ('unclaimed', 'claimed', 'refusing', 'system')", name=op.f('ck_accounts_status')),
    sa.CheckConstraint('NOT no_overdraft OR credits_posted - debits_posted - debits_pending >= 0', name=op.f('ck_accounts_no_overdraft')),
    sa.CheckConstraint('debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 AND credits_pending >= 0', name=op.f('ck_accounts_counters_non_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('platform', 'platform_user_id', name=op.f('uq_accounts_platform_platform_user_id'))
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index('ix_accounts_handle_key', ['handle_key', 'updated_at'], unique=False)

    op.create_table('state',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_state'))
    )
    op.create_table('transfers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('debit_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('credit_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('pending_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('expires_at', UTCDateTime(), nullable=True),
    sa.Column('tip_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint("(kind = 'hold') = (expires_at IS NOT NULL)", name=op.f('ck_transfers_expiry_iff_hold')),
    sa.CheckConstraint("(kind IN ('post', 'void')) = (pending_id IS NOT NULL)", name=op.f('ck_transfers_pending_id_iff_resolution')),
    sa.CheckConstraint("kind IN ('deposit', 'tip', 'fee', 'hold', 'post', 'void', 'payout')", name=op.f('ck_transfers_kind')),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_transfers_amount_positive')),
    sa.CheckConstraint('debit_account_id <> credit_account_id', name=op.f('ck_transfers_distinct_accounts')),
    sa.ForeignKeyConstraint(['credit_account_id'], ['accounts.id'], name=op.f('fk_transfers_credit_account_id_accounts')),
    sa.ForeignKeyConstraint(['debit_account_id'], ['accounts.id'], name=op.f('fk_transfers_debit_account_id_accounts')),
    sa.ForeignKeyConstraint(['pending_id'], ['transfers.id'], name=op.f('fk_transfers_pending_id_transfers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transfers')),
    sa.UniqueConstraint('pending_id', name=op.f('uq_transfers_pending_id'))
    )
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.create_index('ix_transfers_credit_account_id', ['credit_account_id'], unique=False)
        batch_op.create_index('ix_transfers_debit_account_id', ['debit_account_id'], unique=False)
        batch_op.create_index('ix_transfers_tip_id', ['tip_id'], unique=False)

    op.create_table('deposits',
    sa.Column('reference', sa.String(length=128), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('transfer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_deposits_amount_positive')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_deposits_account_id_accounts')),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfers.id'], name=op.f('fk_deposits_transfer_id_transfers')),
    sa.PrimaryKeyConstraint('reference', name=op.f('pk_deposits')),
    sa.UniqueConstraint('transfer_id', name=op.f('uq_deposits_transfer_id'))
    )
    op.create_table('tips',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('source_id', sa.String(length=96), nullable=False),
    sa.Column('supporter_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('recipient_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), server_default='tip', nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('fee_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('resolution', sa.String(length=16), nullable=True),
    sa.Column('hold_transfer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('expires_at', UTCDateTime(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('resolved_at', UTCDateTime(), nullable=True),
    sa.CheckConstraint("kind IN ('tip', 'flattr')", name=op.f('ck_tips_kind')),
    sa.CheckConstraint("resolution IS NULL OR resolution IN ('claimed', 'expired', 'retracted', 'refused')", name=op.f('ck_tips_resolution')),
    sa.CheckConstraint("state <> 'held' OR (resolution IS NULL AND hold_transfer_id IS NOT NULL AND expires_at IS NOT NULL)", name=op.f('ck_tips_held_is_open_hold')),
    sa.CheckConstraint("state <> 'posted' OR resolution IS NULL OR resolution = 'claimed'", name=op.f('ck_tips_posted_reason')),
    sa.CheckConstraint("state <> 'voided' OR resolution IN ('expired', 'retracted', 'refused')", name=op.f('ck_tips_voided_has_reason')),
    sa.CheckConstraint("state IN ('posted', 'held', 'voided')", name=op.f('ck_tips_state')),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_tips_amount_positive')),
    sa.CheckConstraint('fee_minor >= 0 AND fee_minor <= amount_minor', name=op.f('ck_tips_fee_within_amount')),
    sa.CheckConstraint('supporter_account_id <> recipient_account_id', name=op.f('ck_tips_not_self')),
    sa.ForeignKeyConstraint(['hold_transfer_id'], ['transfers.id'], name=op.f('fk_tips_hold_transfer_id_transfers')),
    sa.ForeignKeyConstraint(['recipient_account_id'], ['accounts.id'], name=op.f('fk_tips_recipient_account_id_accounts')),
    sa.ForeignKeyConstraint(['supporter_account_id'], ['accounts.id'], name=op.f('fk_tips_supporter_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tips')),
    sa.UniqueConstraint('source_id', 'recipient_account_id', name=op.f('uq_tips_source_id_recipient_account_id'))
    )
    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.create_index('ix_tips_recipient_state', ['recipient_account_id', 'state'], unique=False)
        batch_op.create_index('ix_tips_state_expires_at', ['state', 'expires_at'], unique=False)
        batch_op.create_index('ix_tips_supporter_state', ['supporter_account_id', 'state'], unique=False)

    _make_transfers_immutable()


def downgrade() -> None:
    _drop_immutability()
    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.drop_index('ix_tips_supporter_state')
        batch_op.drop_index('ix_tips_state_expires_at')
        batch_op.drop_index('ix_tips_recipient_state')

    op.drop_table('tips')
    op.drop_table('deposits')
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.drop_index('ix_transfers_tip_id')
        batch_op.drop_index('ix_transfers_debit_account_id')
        batch_op.drop_index('ix_transfers_credit_account_id')

    op.drop_table('transfers')
    op.drop_table('state')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index('ix_accounts_handle_key')

    op.drop_table('accounts')


def _make_transfers_immutable() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION transfers_immutable() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'transfers are immutable: % refused', TG_OP;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER transfers_immutable BEFORE UPDATE OR DELETE ON transfers"
            " FOR EACH ROW EXECUTE FUNCTION transfers_immutable()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER transfers_no_{event.lower()} BEFORE {event} ON transfers"
                " BEGIN SELECT RAISE(ABORT, 'transfers are immutable'); END"
            )


def _drop_immutability() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS transfers_immutable ON transfers")
        op.execute("DROP FUNCTION IF EXISTS transfers_immutable()")
    else:
        op.execute("DROP TRIGGER IF EXISTS transfers_no_update")
        op.execute("DROP TRIGGER IF EXISTS transfers_no_delete")
