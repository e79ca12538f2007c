"""money in: card top-ups, subscriptions, refunds, disputes, debts, provider events

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

`topups` and `subscriptions` are what supporters start on /me; `reversals` the refunds and
disputes that take money back, `debts` (and `debt_payments`) what they could not take;
`stripe_events` every verified provider event, once. Transfers gain the kind `refund`
(money back to `funding`) and tips the resolution `reversed` (a hold voided to cover a
refund or dispute).

Widening a CHECK: PostgreSQL drops and re-adds the constraint. SQLite cannot alter a
constraint, and rebuilding `transfers` would fight the foreign keys that point at it; but a
CHECK that only admits *more* values changes nothing stored, which is the case SQLite's
documentation allows to be made by editing the table's SQL in `sqlite_schema` (ALTER TABLE,
section 7): the text is replaced, the schema version bumped, and the file checked.
"""

from alembic import op
import sqlalchemy as sa

from escrow.schema import UTCDateTime


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

_KINDS_OLD = "kind IN ('deposit', 'tip', 'fee', 'hold', 'post', 'void', 'payout')"
_KINDS_NEW = "kind IN ('deposit', 'tip', 'fee', 'hold', 'post', 'void', 'payout', 'refund')"
_RESOLUTION_OLD = "resolution IS NULL OR resolution IN ('claimed', 'expired', 'retracted', 'refused')"
_RESOLUTION_NEW = (
    "resolution IS NULL OR resolution IN ('claimed', 'expired', 'retracted', 'refused', 'reversed')"
)
_VOIDED_OLD = "state <> 'voided' OR resolution IN ('expired', 'retracted', 'refused')"
_VOIDED_NEW = "state <> 'voided' OR resolution IN ('expired', 'retracted', 'refused', 'reversed')"

_CHECKS = [
    ('transfers', 'ck_transfers_kind', _KINDS_OLD, _KINDS_NEW),
    ('tips', 'ck_tips_resolution', _RESOLUTION_OLD, _RESOLUTION_NEW),
    ('tips', 'ck_tips_voided_has_reason', _VOIDED_OLD, _VOIDED_NEW),
]


def _replace_check(table: str, name: str, old: str, new: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        op.drop_constraint(op.f(name), table, type_='check')
        op.create_check_constraint(op.f(name), table, sa.text(new))
        return
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    before, after = f'CONSTRAINT {name} CHECK ({old})', f'CONSTRAINT {name} CHECK ({new})'
    if before not in sql:
        raise RuntimeError(f'{table}: constraint {name} is not the one this migration widens')
    version = bind.exec_driver_sql('PRAGMA schema_version').scalar_one()
    bind.exec_driver_sql('PRAGMA writable_schema = ON')
    bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
        (sql.replace(before, after), table),
    )
    bind.exec_driver_sql(f'PRAGMA schema_version = {int(version) + 1}')
    bind.exec_driver_sql('PRAGMA writable_schema = OFF')
    check = bind.exec_driver_sql('PRAGMA quick_check').scalar_one()
    if check != 'ok':
        raise RuntimeError(f'{table}: the database failed its check after widening {name}: {check}')


def upgrade() -> None:
    for table, name, old, new in _CHECKS:
        _replace_check(table, name, old, new)
    op.create_table('stripe_events',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('endpoint', sa.String(length=16), nullable=False),
    sa.Column('type', sa.String(length=96), nullable=False),
    sa.Column('account', sa.String(length=255), nullable=True),
    sa.Column('received_at', UTCDateTime(), nullable=False),
    sa.Column('result', sa.String(length=255), nullable=False),
    sa.CheckConstraint("endpoint IN ('platform', 'connect')", name=op.f('ck_stripe_events_endpoint')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_events'))
    )
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.create_index('ix_stripe_events_received_at', ['received_at'], unique=False)

    op.create_table('subscriptions',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('account_id', _ID, nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('checkout_session_id', sa.String(length=255), nullable=True),
    sa.Column('provider_subscription_id', sa.String(length=255), nullable=True),
    sa.Column('provider_customer_id', sa.String(length=255), nullable=True),
    sa.Column('current_period_end', UTCDateTime(), nullable=True),
    sa.Column('months_paid', sa.Integer(), server_default='0', nullable=False),
    sa.Column('problem', sa.Text(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint("state IN ('pending', 'active', 'canceling', 'canceled', 'problem')", name=op.f('ck_subscriptions_state')),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_subscriptions_amount_positive')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_subscriptions_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions')),
    sa.UniqueConstraint('checkout_session_id', name=op.f('uq_subscriptions_checkout_session_id')),
    sa.UniqueConstraint('provider_subscription_id', name=op.f('uq_subscriptions_provider_subscription_id'))
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index('ix_subscriptions_account_id', ['account_id', 'state'], unique=False)
        batch_op.create_index('ix_subscriptions_provider_customer_id', ['provider_customer_id'], unique=False)

    op.create_table('reversals',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('reference', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('payment_reference', sa.String(length=128), nullable=False),
    sa.Column('charge_id', sa.String(length=255), nullable=True),
    sa.Column('account_id', _ID, nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('voided_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('taken_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('transfer_id', _ID, nullable=True),
    sa.Column('resolution_transfer_id', _ID, nullable=True),
    sa.Column('problem', sa.Text(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('resolved_at', UTCDateTime(), nullable=True),
    sa.CheckConstraint("kind IN ('refund', 'dispute')", name=op.f('ck_reversals_kind')),
    sa.CheckConstraint("state IN ('waiting', 'taken', 'open', 'won', 'lost', 'problem')", name=op.f('ck_reversals_state')),
    sa.CheckConstraint('(taken_minor > 0) = (transfer_id IS NOT NULL)', name=op.f('ck_reversals_taken_iff_transfer')),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_reversals_amount_positive')),
    sa.CheckConstraint('taken_minor >= 0 AND voided_minor >= 0 AND taken_minor <= amount_minor', name=op.f('ck_reversals_taken_within_amount')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_reversals_account_id_accounts')),
    sa.ForeignKeyConstraint(['resolution_transfer_id'], ['transfers.id'], name=op.f('fk_reversals_resolution_transfer_id_transfers')),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfers.id'], name=op.f('fk_reversals_transfer_id_transfers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reversals')),
    sa.UniqueConstraint('reference', name=op.f('uq_reversals_reference')),
    sa.UniqueConstraint('resolution_transfer_id', name=op.f('uq_reversals_resolution_transfer_id')),
    sa.UniqueConstraint('transfer_id', name=op.f('uq_reversals_transfer_id'))
    )
    with op.batch_alter_table('reversals', schema=None) as batch_op:
        batch_op.create_index('ix_reversals_payment_reference', ['payment_reference'], unique=False)

    op.create_table('debts',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('account_id', _ID, nullable=False),
    sa.Column('reversal_id', _ID, nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('paid_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('forgiven_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('settled_at', UTCDateTime(), nullable=True),
    sa.CheckConstraint('(settled_at IS NULL) = (paid_minor + forgiven_minor < amount_minor)', name=op.f('ck_debts_settled_iff_covered')),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_debts_amount_positive')),
    sa.CheckConstraint('paid_minor >= 0 AND forgiven_minor >= 0 AND paid_minor + forgiven_minor <= amount_minor', name=op.f('ck_debts_paid_within_amount')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_debts_account_id_accounts')),
    sa.ForeignKeyConstraint(['reversal_id'], ['reversals.id'], name=op.f('fk_debts_reversal_id_reversals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_debts')),
    sa.UniqueConstraint('reversal_id', name=op.f('uq_debts_reversal_id'))
    )
    with op.batch_alter_table('debts', schema=None) as batch_op:
        batch_op.create_index('ix_debts_open', ['account_id'], unique=False, postgresql_where=sa.text('settled_at IS NULL'), sqlite_where=sa.text('settled_at IS NULL'))

    op.create_table('topups',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('account_id', _ID, nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('checkout_session_id', sa.String(length=255), nullable=True),
    sa.Column('payment_intent_id', sa.String(length=255), nullable=True),
    sa.Column('deposit_reference', sa.String(length=128), nullable=True),
    sa.Column('problem', sa.Text(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint("(state = 'paid') = (deposit_reference IS NOT NULL)", name=op.f('ck_topups_paid_iff_deposit')),
    sa.CheckConstraint("state IN ('pending', 'paid', 'failed', 'problem')", name=op.f('ck_topups_state')),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_topups_amount_positive')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_topups_account_id_accounts')),
    sa.ForeignKeyConstraint(['deposit_reference'], ['deposits.reference'], name=op.f('fk_topups_deposit_reference_deposits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_topups')),
    sa.UniqueConstraint('checkout_session_id', name=op.f('uq_topups_checkout_session_id')),
    sa.UniqueConstraint('deposit_reference', name=op.f('uq_topups_deposit_reference'))
    )
    with op.batch_alter_table('topups', schema=None) as batch_op:
        batch_op.create_index('ix_topups_account_id', ['account_id', 'created_at'], unique=False)
        batch_op.create_index('ix_topups_payment_intent_id', ['payment_intent_id'], unique=False)

    op.create_table('debt_payments',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('debt_id', _ID, nullable=False),
    sa.Column('transfer_id', _ID, nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_debt_payments_amount_positive')),
    sa.ForeignKeyConstraint(['debt_id'], ['debts.id'], name=op.f('fk_debt_payments_debt_id_debts')),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfers.id'], name=op.f('fk_debt_payments_transfer_id_transfers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_debt_payments')),
    sa.UniqueConstraint('transfer_id', name=op.f('uq_debt_payments_transfer_id'))
    )
    with op.batch_alter_table('debt_payments', schema=None) as batch_op:
        batch_op.create_index('ix_debt_payments_debt_id', ['debt_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('debt_payments', schema=None) as batch_op:
        batch_op.drop_index('ix_debt_payments_debt_id')

    op.drop_table('debt_payments')
    with op.batch_alter_table('topups', schema=None) as batch_op:
        batch_op.drop_index('ix_topups_payment_intent_id')
        batch_op.drop_index('ix_topups_account_id')

    op.drop_table('topups')
    with op.batch_alter_table('debts', schema=None) as batch_op:
        batch_op.drop_index('ix_debts_open', postgresql_where=sa.text('settled_at IS NULL'), sqlite_where=sa.text('settled_at IS NULL'))

    op.drop_table('debts')
    with op.batch_alter_table('reversals', schema=None) as batch_op:
        batch_op.drop_index('ix_reversals_payment_reference')

    op.drop_table('reversals')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index('ix_subscriptions_provider_customer_id')
        batch_op.drop_index('ix_subscriptions_account_id')

    op.drop_table('subscriptions')
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.drop_index('ix_stripe_events_received_at')

    op.drop_table('stripe_events')
    for table, name, old, new in reversed(_CHECKS):
        _replace_check(table, name, new, old)
