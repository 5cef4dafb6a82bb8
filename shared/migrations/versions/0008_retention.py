"""retention: indexes for the purge's age scans and the resend_of foreign key

Revision ID: 0008_retention
Revises: 0007_api_channel
Create Date: 2026-12-04 05:40:00

The purge (shared/retention) reads the oldest final rows of each table first;
without these partial indexes every batch would scan the table. The index on
``webhook_deliveries.resend_of`` serves the foreign key's ON DELETE SET NULL:
without it every deleted delivery costs a scan of the whole table.

Built CONCURRENTLY (outside the migration's transaction), so upgrading a live
database never blocks the webhook pipeline's writes while the indexes build.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_retention"
down_revision: str | None = "0007_api_channel"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (name, table, columns, partial-index predicate)
INDEXES = (
    (
        "ix_webhook_deliveries_finished",
        "webhook_deliveries",
        ["finished_at"],
        "status IN ('succeeded', 'failed', 'disabled')",
    ),
    (
        "ix_webhook_deliveries_resend_of",
        "webhook_deliveries",
        ["resend_of"],
        "resend_of IS NOT NULL",
    ),
    (
        "ix_automation_events_finished",
        "automation_events",
        ["finished_at"],
        "status IN ('done', 'failed')",
    ),
    (
        "ix_inbound_events_final_received",
        "inbound_events",
        ["received_at"],
        "status IN ('processed', 'failed', 'dropped')",
    ),
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, columns, where in INDEXES:
            # NOTE: a CONCURRENTLY build cut short leaves an invalid index behind;
            # drop it first so that running the upgrade again repairs it.
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
            op.create_index(
                name,
                table,
                columns,
                postgresql_where=sa.text(where),
                postgresql_concurrently=True,
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _columns, _where in reversed(INDEXES):
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
