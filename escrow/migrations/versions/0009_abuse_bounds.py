"""abuse and cost: bounded amounts and references, session versions, platform usage

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

- Every account counter and every transfer amount stays at or below 10^15 minor units
  (far below 2^63: PostgreSQL never answers "bigint out of range", SQLite never turns a
  counter into a float), and a deposit reference has at most 128 characters on both
  databases. PostgreSQL gets CHECK constraints; SQLite cannot add a CHECK without
  copying the table (and `transfers` is immutable and referenced), so it gets triggers
  that refuse the same rows.
- `accounts.session_version`: signing out, a claim or a refusal bumps it and ends every
  copy of that account's session cookie.
- `outbox.supporter_account_id`: whose tip led to a notice, to cap notices per supporter.
- `platform_usage`: reads, posts and the estimated bill per day, for `tipjar costs`.
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

MAX_MINOR = 10**15  # escrow.money.MAX_MINOR when this migration was written
_COUNTERS = ('debits_posted', 'credits_posted', 'debits_pending', 'credits_pending')
_ACCOUNTS_OVER = ' OR '.join(f'NEW.{c} > {MAX_MINOR}' for c in _COUNTERS)
_SQLITE_TRIGGERS = {
    'accounts_bounded_insert': (
        f'BEFORE INSERT ON accounts WHEN {_ACCOUNTS_OVER}',
        'account counters above 10^15 minor units',
    ),
    'accounts_bounded_update': (
        f'BEFORE UPDATE ON accounts WHEN {_ACCOUNTS_OVER}',
        'account counters above 10^15 minor units',
    ),
    'transfers_amount_bounded': (
        f'BEFORE INSERT ON transfers WHEN NEW.amount_minor > {MAX_MINOR}',
        'transfer amount above 10^15 minor units',
    ),
    'deposits_reference_length': (
        'BEFORE INSERT ON deposits WHEN length(NEW.reference) > 128',
        'deposit reference longer than 128 characters',
    ),
}


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.create_check_constraint(
            op.f('ck_accounts_counters_bounded'), 'accounts',
            ' AND '.join(f'{c} <= {MAX_MINOR}' for c in _COUNTERS),
        )
        op.create_check_constraint(
            op.f('ck_transfers_amount_bounded'), 'transfers', f'amount_minor <= {MAX_MINOR}'
        )
        op.create_check_constraint(
            op.f('ck_deposits_reference_length'), 'deposits', 'length(reference) <= 128'
        )
    else:
        for name, (when, message) in _SQLITE_TRIGGERS.items():
            op.execute(
                f"CREATE TRIGGER {name} {when} BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
    op.add_column(
        'accounts',
        sa.Column('session_version', sa.Integer(), server_default='0', nullable=False),
    )
    op.add_column(
        'outbox',
        sa.Column(
            'supporter_account_id',
            sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
            nullable=True,
        ),
    )
    op.create_table('platform_usage',
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('reads', sa.Integer(), server_default='0', nullable=False),
    sa.Column('posts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('posts_with_link', sa.Integer(), server_default='0', nullable=False),
    sa.Column('spend_usd_micros', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('deferred', sa.Integer(), server_default='0', nullable=False),
    sa.Column('dropped', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('day', 'platform', name=op.f('pk_platform_usage'))
    )


def downgrade() -> None:
    op.drop_table('platform_usage')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('supporter_account_id')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('session_version')
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint(op.f('ck_deposits_reference_length'), 'deposits', type_='check')
        op.drop_constraint(op.f('ck_transfers_amount_bounded'), 'transfers', type_='check')
        op.drop_constraint(op.f('ck_accounts_counters_bounded'), 'accounts', type_='check')
    else:
        for name in _SQLITE_TRIGGERS:
            op.execute(f'DROP TRIGGER IF EXISTS {name}')
