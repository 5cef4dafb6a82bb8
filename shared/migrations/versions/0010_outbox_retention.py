"""outbox retention: an index for the purge of old processed outbox events

Every domain event stays in ``outbox_events`` after dispatch; the retention purge
now deletes processed and failed ones past the retention, oldest first, and this
partial index serves that scan. Built CONCURRENTLY, like 0008, so upgrading a live
database never blocks the writes that emit events.

Revision ID: 0010_outbox_retention
Revises: 0009_ai_agents
Create Date: 2026-12-04 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_outbox_retention"
down_revision: str | None = "0009_ai_agents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_outbox_events_final_occurred"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # NOTE: a CONCURRENTLY build cut short leaves an invalid index behind;
        # drop it first so that running the upgrade again repairs it.
        op.drop_index(
            INDEX, table_name="outbox_events", postgresql_concurrently=True, if_exists=True
        )
        op.create_index(
            INDEX,
            "outbox_events",
            ["occurred_at"],
            postgresql_where=sa.text("status IN ('processed', 'failed')"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            INDEX, table_name="outbox_events", postgresql_concurrently=True, if_exists=True
        )
