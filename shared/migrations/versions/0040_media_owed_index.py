"""inbound files still without bytes are indexed, for the media prefetch sweep

``sweep_media_prefetch`` (every minute) looks for inbound files not fetched yet, of every
tenant, created within the last day. With only ``ix_media_files_tenant_created`` (tenant
first) that was a scan of the whole table each minute; this partial index holds only the
files still owed (inbound, no storage key), by creation time, so it stays as small as the
backlog of unfetched files. The downgrade drops it.

Revision ID: 0040_media_owed_index
Revises: 0039_embedding_sweep
Create Date: 2026-12-07 13:45:00
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0040_media_owed_index"
down_revision: str | None = "0039_embedding_sweep"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWED = "source = 'inbound' AND storage_key IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_media_files_owed", "media_files", ["created_at"], postgresql_where=text(OWED)
    )


def downgrade() -> None:
    op.drop_index("ix_media_files_owed", table_name="media_files")
