"""claim web: OAuth states

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21

`oauth_states` keeps the PKCE verifier of each "Sign in with X" under a SHA-256 hash of
its state, for single use within ten minutes.
"""

from alembic import op
import sqlalchemy as sa

from escrow.schema import UTCDateTime


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oauth_states',
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('code_verifier', sa.String(length=128), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('used_at', UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('state_hash', name=op.f('pk_oauth_states'))
    )
    with op.batch_alter_table('oauth_states', schema=None) as batch_op:
        batch_op.create_index('ix_oauth_states_created_at', ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('oauth_states', schema=None) as batch_op:
        batch_op.drop_index('ix_oauth_states_created_at')

    op.drop_table('oauth_states')
