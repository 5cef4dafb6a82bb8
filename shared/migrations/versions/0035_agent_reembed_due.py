"""an AI agent records a re-embedding it is owed, so a lost one is re-driven

Changing an agent's embedding model clears its vectors and sends ``embed_items`` for its
knowledge after commit; a message lost on the way (a worker killed, the broker's queue
flushed) left retrieval on text ranking for good, since nothing recorded the work owed.
``reembed_due_at`` is written in the changing transaction and read by the scheduler's
``sweep_knowledge_reembedding``, which sends the items still without a vector again
(later each time: ``reembed_attempts``) and clears it once none is left.

Backfill: agents that embed (a model, a provider other than ``offline``) and have items
without a vector are due now, so the re-embeddings already lost are re-driven once. The
downgrade drops the columns.

Revision ID: 0035_agent_reembed_due
Revises: 0034_invoice_number_counter
Create Date: 2026-12-07 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0035_agent_reembed_due"
down_revision: str | None = "0034_invoice_number_counter"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL = """
UPDATE ai_agents a
   SET reembed_due_at = now()
 WHERE a.embedding_model IS NOT NULL
   AND a.provider <> 'offline'
   AND (EXISTS (SELECT 1 FROM knowledge_chunks c
                 WHERE c.tenant_id = a.tenant_id AND c.ai_agent_id = a.id
                   AND c.embedding IS NULL)
        OR EXISTS (SELECT 1 FROM qna_pairs q
                    WHERE q.tenant_id = a.tenant_id AND q.ai_agent_id = a.id
                      AND q.embedding IS NULL)
        OR EXISTS (SELECT 1 FROM ai_products p
                    WHERE p.tenant_id = a.tenant_id AND p.ai_agent_id = a.id
                      AND p.embedding IS NULL))
"""


def upgrade() -> None:
    op.add_column("ai_agents", sa.Column("reembed_due_at", sa.DateTime(timezone=True)))
    op.add_column(
        "ai_agents",
        sa.Column("reembed_attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_index(
        "ix_ai_agents_reembed_due",
        "ai_agents",
        ["reembed_due_at"],
        postgresql_where=sa.text("reembed_due_at IS NOT NULL"),
    )
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_index("ix_ai_agents_reembed_due", table_name="ai_agents")
    op.drop_column("ai_agents", "reembed_attempts")
    op.drop_column("ai_agents", "reembed_due_at")
