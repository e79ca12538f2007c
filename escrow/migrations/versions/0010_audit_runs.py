"""audit runs: the ledger's self-checks and the maintainer's audits, recorded

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

The worker checks the ledger daily and around every settlement; a failed check stops
settlement until a maintainer's `tipjar audit` comes back clean. Both are rows here.
"""

from alembic import op
import sqlalchemy as sa

from escrow.schema import UTCDateTime


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        'audit_runs',
        sa.Column('id', _Id, primary_key=True, autoincrement=True),
        sa.Column('trigger', sa.String(24), nullable=False),
        sa.Column('ok', sa.Boolean(), nullable=False),
        sa.Column('problems', sa.Integer(), nullable=False),
        sa.Column('details', sa.Text(), nullable=False),
        sa.Column('started_at', UTCDateTime(), nullable=False),
        sa.Column('finished_at', UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "trigger IN ('daily', 'before_settlement', 'after_settlement', 'maintainer')",
            name=op.f('ck_audit_runs_trigger'),
        ),
        sa.CheckConstraint(
            'problems >= 0 AND ok = (problems = 0)', name=op.f('ck_audit_runs_ok_iff_clean')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_runs')),
    )
    op.create_index('ix_audit_runs_ok_trigger', 'audit_runs', ['ok', 'trigger', 'id'])


def downgrade() -> None:
    op.drop_index('ix_audit_runs_ok_trigger', table_name='audit_runs')
    op.drop_table('audit_runs')
