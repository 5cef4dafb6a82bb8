"""campaigns remember that they named their sending account

``campaigns.integration_account_id`` is ``ON DELETE SET NULL``, and null means "the
channel's default account". So deleting the account a campaign named turned it, mid-run,
into a campaign of the default account, and its remaining recipients went out from
another number than the one chosen. ``account_named`` keeps the choice: a campaign that
named an account whose id is now null fails (``account_deleted``) instead.

Backfill: the campaigns whose account is still set named it. Those whose account was
already deleted cannot be told apart from default-account ones and keep running as before.
The downgrade drops the column.

Revision ID: 0036_campaign_account_named
Revises: 0035_agent_reembed_due
Create Date: 2026-12-07 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0036_campaign_account_named"
down_revision: str | None = "0035_agent_reembed_due"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "campaigns",
        sa.Column("account_named", sa.Boolean(), server_default="false", nullable=False),
    )
    op.execute("UPDATE campaigns SET account_named = true WHERE integration_account_id IS NOT NULL")


def downgrade() -> None:
    op.drop_column("campaigns", "account_named")
