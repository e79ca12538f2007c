"""settlement: monthly budgets, shares, settlement runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

`budgets` keeps each supporter's monthly flattr budget, `shares` one row per flattr
(supporter, recipient, month), `settlements` the per-supporter marker that makes a
month's settlement exactly-once, and `settlement_runs` one row per settled month.
"""

from alembic import op
import sqlalchemy as sa

from escrow.schema import UTCDateTime


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('budgets',
    sa.Column('account_id', _ID, autoincrement=False, nullable=False),
    sa.Column('monthly_budget_minor', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint('monthly_budget_minor > 0', name=op.f('ck_budgets_budget_positive')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_budgets_account_id_accounts')),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_budgets'))
    )
    op.create_table('shares',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('supporter_account_id', _ID, nullable=False),
    sa.Column('recipient_account_id', _ID, nullable=False),
    sa.Column('source_id', sa.String(length=96), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='open', nullable=False),
    sa.Column('part_minor', sa.BigInteger(), nullable=True),
    sa.Column('flattred_at', UTCDateTime(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('settled_at', UTCDateTime(), nullable=True),
    sa.CheckConstraint("state IN ('open', 'settled', 'refused', 'unfunded')", name=op.f('ck_shares_state')),
    sa.CheckConstraint('supporter_account_id <> recipient_account_id', name=op.f('ck_shares_not_self')),
    sa.CheckConstraint("(state = 'open') = (part_minor IS NULL AND settled_at IS NULL)", name=op.f('ck_shares_open_iff_unsettled')),
    sa.CheckConstraint('part_minor IS NULL OR part_minor >= 0', name=op.f('ck_shares_part_non_negative')),
    sa.CheckConstraint("state <> 'unfunded' OR part_minor = 0", name=op.f('ck_shares_unfunded_is_zero')),
    sa.ForeignKeyConstraint(['recipient_account_id'], ['accounts.id'], name=op.f('fk_shares_recipient_account_id_accounts')),
    sa.ForeignKeyConstraint(['supporter_account_id'], ['accounts.id'], name=op.f('fk_shares_supporter_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shares')),
    sa.UniqueConstraint('period', 'supporter_account_id', 'recipient_account_id', name=op.f('uq_shares_period_supporter_account_id_recipient_account_id'))
    )
    with op.batch_alter_table('shares', schema=None) as batch_op:
        batch_op.create_index('ix_shares_period_state_supporter', ['period', 'state', 'supporter_account_id'], unique=False)

    op.create_table('settlements',
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('supporter_account_id', _ID, autoincrement=False, nullable=False),
    sa.Column('budget_minor', sa.BigInteger(), nullable=False),
    sa.Column('available_minor', sa.BigInteger(), nullable=False),
    sa.Column('pool_minor', sa.BigInteger(), nullable=False),
    sa.Column('shares', sa.Integer(), nullable=False),
    sa.Column('settled_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint('pool_minor >= 0 AND pool_minor <= budget_minor AND pool_minor <= available_minor', name=op.f('ck_settlements_pool_within_budget_and_balance')),
    sa.ForeignKeyConstraint(['supporter_account_id'], ['accounts.id'], name=op.f('fk_settlements_supporter_account_id_accounts')),
    sa.PrimaryKeyConstraint('period', 'supporter_account_id', name=op.f('pk_settlements'))
    )
    op.create_table('settlement_runs',
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('started_at', UTCDateTime(), nullable=False),
    sa.Column('completed_at', UTCDateTime(), nullable=True),
    sa.Column('supporters_settled', sa.Integer(), server_default='0', nullable=False),
    sa.Column('shares', sa.Integer(), server_default='0', nullable=False),
    sa.Column('posted_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('held_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('fees_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('unfunded_shares', sa.Integer(), server_default='0', nullable=False),
    sa.Column('refused_shares', sa.Integer(), server_default='0', nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('period', name=op.f('pk_settlement_runs'))
    )


def downgrade() -> None:
    op.drop_table('settlement_runs')
    op.drop_table('settlements')
    with op.batch_alter_table('shares', schema=None) as batch_op:
        batch_op.drop_index('ix_shares_period_state_supporter')

    op.drop_table('shares')
    op.drop_table('budgets')
