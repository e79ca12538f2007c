"""X integration: processed mentions, outbox, notice bookkeeping

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

`mentions` makes ingestion idempotent (one row per original tweet id), `outbox` holds the
posts to send (replies and creator notices) with a unique dedupe key, and
`creator_notices` keeps each creator's notice cycle and opt-out.
"""

from alembic import op
import sqlalchemy as sa

from escrow.schema import UTCDateTime


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('mentions',
    sa.Column('tweet_id', sa.String(length=32), nullable=False),
    sa.Column('author_id', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('processed_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('tweet_id', name=op.f('pk_mentions'))
    )
    op.create_table('outbox',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('dedupe_key', sa.String(length=160), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('recipient_account_id', _ID, nullable=True),
    sa.Column('recipient_user_id', sa.String(length=64), nullable=True),
    sa.Column('topic', sa.String(length=32), nullable=True),
    sa.Column('in_reply_to_tweet_id', sa.String(length=32), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', UTCDateTime(), nullable=False),
    sa.Column('lease_until', UTCDateTime(), nullable=True),
    sa.Column('sent_tweet_id', sa.String(length=32), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('sent_at', UTCDateTime(), nullable=True),
    sa.CheckConstraint("kind IN ('creator_notice', 'supporter_reply', 'dm')", name=op.f('ck_outbox_kind')),
    sa.CheckConstraint("state IN ('pending', 'sending', 'sent', 'failed', 'skipped')", name=op.f('ck_outbox_state')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_outbox_attempts_non_negative')),
    sa.CheckConstraint("kind = 'dm' OR in_reply_to_tweet_id IS NOT NULL", name=op.f('ck_outbox_in_thread')),
    sa.ForeignKeyConstraint(['recipient_account_id'], ['accounts.id'], name=op.f('fk_outbox_recipient_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_outbox_dedupe_key'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_state_next_attempt_at', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_outbox_kind_created_at', ['kind', 'created_at'], unique=False)
        batch_op.create_index('ix_outbox_recipient_user_id', ['recipient_user_id', 'kind', 'created_at'], unique=False)
        batch_op.create_index('ix_outbox_recipient_account_id', ['recipient_account_id', 'kind'], unique=False)

    op.create_table('creator_notices',
    sa.Column('account_id', _ID, nullable=False),
    sa.Column('cycle', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cycle_open_since', UTCDateTime(), nullable=True),
    sa.Column('opted_out_at', UTCDateTime(), nullable=True),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_creator_notices_account_id_accounts')),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_creator_notices'))
    )


def downgrade() -> None:
    op.drop_table('creator_notices')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_recipient_account_id')
        batch_op.drop_index('ix_outbox_recipient_user_id')
        batch_op.drop_index('ix_outbox_kind_created_at')
        batch_op.drop_index('ix_outbox_state_next_attempt_at')

    op.drop_table('outbox')
    op.drop_table('mentions')
