"""api inbox identifiers are unique per tenant, not across tenants

An integration account's ``(channel, external_id)`` was unique across tenants, because
inbound Meta and email webhooks find their tenant through it. An api account's
``external_id`` is only the tenant's own label (its inbound calls name the account by
id), so another tenant choosing the same label got 409: it learned the label existed and
could not use it. Meta and email ids keep the global index; api ids are unique within
their tenant.

Revision ID: 0031_api_inbox_ids_per_tenant
Revises: 0030_jobs_unfinished_index
Create Date: 2026-12-06 20:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031_api_inbox_ids_per_tenant"
down_revision: str | None = "0030_jobs_unfinished_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "integration_accounts"


def upgrade() -> None:
    op.create_index(
        "uq_integration_accounts_channel_external_routed",
        TABLE,
        ["channel", "external_id"],
        unique=True,
        postgresql_where=sa.text("channel <> 'api'"),
    )
    op.create_index(
        "uq_integration_accounts_api_external",
        TABLE,
        ["tenant_id", "external_id"],
        unique=True,
        postgresql_where=sa.text("channel = 'api'"),
    )
    op.drop_index("uq_integration_accounts_channel_external", table_name=TABLE)


def downgrade() -> None:
    """Fails if two tenants now share an api label: rename one before going back."""
    op.create_index(
        "uq_integration_accounts_channel_external", TABLE, ["channel", "external_id"], unique=True
    )
    op.drop_index("uq_integration_accounts_api_external", table_name=TABLE)
    op.drop_index("uq_integration_accounts_channel_external_routed", table_name=TABLE)
