"""foreign keys whose parents the platform deletes get the index their ON DELETE reads

Deleting an AI agent, a division, an integration account or a media file makes
PostgreSQL find the rows that reference it (to delete them or set them null). Without
an index leading with the referencing column that is a scan of the whole table, every
tenant's rows, inside the request's transaction and under its locks: ``ai_replies``
(one row per AI answer) for an AI agent, ``csat_surveys`` for a division, ``media_files``
and ``campaigns`` for an account, ``knowledge_sources`` for each file a deleted source
frees. ``tests/migrations/test_foreign_key_indexes.py`` keeps every foreign key indexed or
named with the reason it need not be.

Built CONCURRENTLY (outside the migration's transaction), as 0008 did, so upgrading a
live database never blocks writes to these tables while the indexes build.

Revision ID: 0041_foreign_key_indexes
Revises: 0040_media_owed_index
Create Date: 2026-12-07 16:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0041_foreign_key_indexes"
down_revision: str | None = "0040_media_owed_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (name, table, column, partial-index predicate or None)
INDEXES = (
    ("ix_ai_replies_ai_agent", "ai_replies", "ai_agent_id", None),
    ("ix_csat_surveys_division", "csat_surveys", "division_id", "division_id IS NOT NULL"),
    ("ix_media_files_account", "media_files", "account_id", "account_id IS NOT NULL"),
    (
        "ix_campaigns_integration_account",
        "campaigns",
        "integration_account_id",
        "integration_account_id IS NOT NULL",
    ),
    ("ix_knowledge_sources_media", "knowledge_sources", "media_id", "media_id IS NOT NULL"),
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, column, where in INDEXES:
            # NOTE: a CONCURRENTLY build cut short leaves an invalid index behind;
            # drop it first so that running the upgrade again repairs it.
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
            op.create_index(
                name,
                table,
                [column],
                postgresql_where=sa.text(where) if where else None,
                postgresql_concurrently=True,
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _column, _where in reversed(INDEXES):
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
