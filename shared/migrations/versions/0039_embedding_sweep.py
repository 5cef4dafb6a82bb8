"""items owed an embedding record their re-drives, so a lost ``embed_items`` is sent again

New chunks, QnA pairs and products get their vector from ``embed_items``, sent after
commit; a message lost on the way (the process killed after commit, the broker's queue
flushed) left the item ranked by text alone for good. The scheduler's
``sweep_knowledge_embeddings`` now sends it again: ``embed_attempts`` counts its sends
(each doubles the wait to the next, from ``embed_swept_at``), and an item still without a
vector after the last is given up (``embed_gave_up_at``), never sent forever.

PERF: each table gets a partial index over the items still owed (``embedding IS NULL``
and not given up), by agent, so the sweep reads only those of agents that embed.

No backfill: items already without a vector are owed now (never swept, past the grace
period) and are re-driven by the first sweeps, a batch at a time. The downgrade drops
the indexes and columns.

Revision ID: 0039_embedding_sweep
Revises: 0038_account_tombstones
Create Date: 2026-12-07 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0039_embedding_sweep"
down_revision: str | None = "0038_account_tombstones"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("knowledge_chunks", "qna_pairs", "ai_products")
OWED = "embedding IS NULL AND embed_gave_up_at IS NULL"


def upgrade() -> None:
    for table in TABLES:
        op.add_column(
            table,
            sa.Column("embed_attempts", sa.SmallInteger(), server_default="0", nullable=False),
        )
        op.add_column(table, sa.Column("embed_swept_at", sa.DateTime(timezone=True)))
        op.add_column(table, sa.Column("embed_gave_up_at", sa.DateTime(timezone=True)))
        op.create_index(
            f"ix_{table}_embedding_owed",
            table,
            ["ai_agent_id"],
            postgresql_where=sa.text(OWED),
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_embedding_owed", table_name=table)
        op.drop_column(table, "embed_gave_up_at")
        op.drop_column(table, "embed_swept_at")
        op.drop_column(table, "embed_attempts")
