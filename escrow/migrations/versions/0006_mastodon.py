"""mastodon: sign-in apps per instance, sign-ins in flight

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

`mastodon_apps` keeps the app tipjar registered on each instance (once per instance);
`mastodon_sign_ins` keeps each "Sign in with Mastodon" in flight (state hash, instance,
PKCE verifier), for single use within ten minutes. `outbox.platform` says where a post
goes, so that each platform's relay sends only its own (every row before is X's).
"""

from alembic import op
import sqlalchemy as sa

from escrow.schema import UTCDateTime


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

def upgrade() -> None:
    op.create_table('mastodon_apps',
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('base_url', sa.String(length=300), nullable=False),
    sa.Column('client_id', sa.String(length=255), nullable=False),
    sa.Column('client_secret', sa.String(length=255), nullable=False),
    sa.Column('redirect_uri', sa.String(length=500), nullable=False),
    sa.Column('scopes', sa.String(length=255), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('domain', name=op.f('pk_mastodon_apps'))
    )
    op.create_table('mastodon_sign_ins',
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('code_verifier', sa.String(length=128), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('used_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['domain'], ['mastodon_apps.domain'],
                            name=op.f('fk_mastodon_sign_ins_domain_mastodon_apps')),
    sa.PrimaryKeyConstraint('state_hash', name=op.f('pk_mastodon_sign_ins'))
    )
    op.create_index('ix_mastodon_sign_ins_created_at', 'mastodon_sign_ins', ['created_at'])
    op.add_column('outbox', sa.Column('platform', sa.String(length=16), nullable=False,
                                      server_default='x'))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('platform')
    op.drop_index('ix_mastodon_sign_ins_created_at', table_name='mastodon_sign_ins')
    op.drop_table('mastodon_sign_ins')
    op.drop_table('mastodon_apps')
