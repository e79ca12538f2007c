"""SQLite's bound triggers fire after the row is written, not before

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

0009 gave SQLite triggers that refuse an account counter or a transfer amount above
10^15 minor units and a deposit reference over 128 characters. They were BEFORE
triggers; AFTER triggers refuse the very same rows (RAISE(ABORT) undoes the whole
statement, the row included) at about half the cost per row, which a settlement writing
tens of thousands of transfers notices. PostgreSQL keeps its CHECK constraints.
"""

from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

MAX_MINOR = 10**15  # escrow.money.MAX_MINOR when 0009 was written
_COUNTERS = ('debits_posted', 'credits_posted', 'debits_pending', 'credits_pending')
_ACCOUNTS_OVER = ' OR '.join(f'NEW.{c} > {MAX_MINOR}' for c in _COUNTERS)
# name -> (event and table, condition, message): the triggers of 0009.
_TRIGGERS = {
    'accounts_bounded_insert': (
        'INSERT ON accounts',
        _ACCOUNTS_OVER,
        'account counters above 10^15 minor units',
    ),
    'accounts_bounded_update': (
        'UPDATE ON accounts',
        _ACCOUNTS_OVER,
        'account counters above 10^15 minor units',
    ),
    'transfers_amount_bounded': (
        'INSERT ON transfers',
        f'NEW.amount_minor > {MAX_MINOR}',
        'transfer amount above 10^15 minor units',
    ),
    'deposits_reference_length': (
        'INSERT ON deposits',
        'length(NEW.reference) > 128',
        'deposit reference longer than 128 characters',
    ),
}


def _recreate(timing: str) -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    for name, (event, condition, message) in _TRIGGERS.items():
        op.execute(f'DROP TRIGGER IF EXISTS {name}')
        op.execute(
            f"CREATE TRIGGER {name} {timing} {event} WHEN {condition}"
            f" BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def upgrade() -> None:
    _recreate('AFTER')


def downgrade() -> None:
    _recreate('BEFORE')
