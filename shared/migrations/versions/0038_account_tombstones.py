"""a sender connected again takes its deleted account's id back

Integration accounts are hard-deleted, but conversations and api contacts keep naming
them by id (no foreign key), and a conversation of a deleted account refuses replies
(``account_deleted``). When the tenant connected the same number, page or
address again, the new account had a new id, so those conversations stayed refused
though the customer's number was back. ``integration_account_tombstones`` keeps
(tenant, channel, external id) -> the deleted id, written with the deletion; connecting
that sender again takes the id back and removes the row.

Backfill: the accounts deleted before this revision are known only from their
``integration_account.disconnected`` activity rows (those the retention kept); for each
(tenant, channel, external id) not connected now, the latest deleted id is remembered.
The downgrade drops the table (a reconnection gets a new id again).

Revision ID: 0038_account_tombstones
Revises: 0037_api_contacts_per_account
Create Date: 2026-12-07 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0038_account_tombstones"
down_revision: str | None = "0037_api_contacts_per_account"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "integration_account_tombstones"

#: The latest deleted id per (tenant, channel, external id) the tenant has not connected again.
BACKFILL = """
INSERT INTO integration_account_tombstones (tenant_id, channel, external_id, account_id,
                                            deleted_at)
SELECT DISTINCT ON (l.tenant_id, l.before->>'channel', l.before->>'external_id')
       l.tenant_id, l.before->>'channel', l.before->>'external_id', l.entity_id, l.created_at
  FROM activity_logs l
 WHERE l.action = 'integration_account.disconnected'
   AND l.entity_type = 'integration_account'
   AND l.entity_id IS NOT NULL
   AND l.before->>'channel' IN ('whatsapp', 'instagram', 'messenger', 'email', 'api')
   AND length(l.before->>'external_id') BETWEEN 1 AND 255
   AND NOT EXISTS (SELECT 1 FROM integration_accounts a WHERE a.id = l.entity_id)
   AND NOT EXISTS (SELECT 1 FROM integration_accounts a
                    WHERE a.tenant_id = l.tenant_id AND a.channel = l.before->>'channel'
                      AND a.external_id = l.before->>'external_id')
 ORDER BY l.tenant_id, l.before->>'channel', l.before->>'external_id',
          l.created_at DESC, l.id DESC
"""


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column(
            "deleted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "channel IN ('whatsapp', 'instagram', 'messenger', 'email', 'api')",
            name=op.f("ck_integration_account_tombstones_channel_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_integration_account_tombstones_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "channel", "external_id", name=op.f("pk_integration_account_tombstones")
        ),
    )
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_table(TABLE)
