"""ai knowledge: a per-agent lexicon for misspelt questions; agent-scoped passage search

``knowledge_terms`` holds every word an agent's passages use and in how many passages
(written by ingestion): retrieval finds candidates through the rarer words of a
question, and a trigram index (GiST: nearest first, so the closest word is one index probe): a misspelt question word is corrected against it in a millisecond,
where trigram similarity over whole passages rechecks most of them (seconds at 100,000).
That makes the trigram index on passages unused, and it was the costliest to keep up
on insert (a thousand trigrams a passage): it goes. The full-text index gets the agent
in front (btree_gin), so one agent's query never walks another tenant's postings.

Revision ID: 0013_ai_knowledge
Revises: 0012_ai_config
Create Date: 2026-12-04 11:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_ai_knowledge"
down_revision: str | None = "0012_ai_config"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "knowledge_terms",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("ai_agent_id", sa.UUID(), nullable=False),
        sa.Column("term", sa.Text(), nullable=False),
        sa.Column("chunks", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["ai_agent_id"],
            ["ai_agents.id"],
            name=op.f("fk_knowledge_terms_ai_agent_id_ai_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_knowledge_terms_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ai_agent_id", "term", name=op.f("pk_knowledge_terms")),
    )
    op.create_index(
        "ix_knowledge_terms_trigram",
        "knowledge_terms",
        ["term"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={"term": "gist_trgm_ops"},
    )
    op.drop_index(
        "ix_knowledge_chunks_trigram",
        table_name="knowledge_chunks",
        postgresql_using="gin",
        postgresql_ops={"content": "gin_trgm_ops"},
    )
    op.drop_index(
        "ix_knowledge_chunks_search", table_name="knowledge_chunks", postgresql_using="gin"
    )
    op.create_index(
        "ix_knowledge_chunks_search",
        "knowledge_chunks",
        ["ai_agent_id", "search"],
        unique=False,
        postgresql_using="gin",
    )
    # Passages already ingested: their words, so correction works before any reprocess.
    op.execute(
        """
        INSERT INTO knowledge_terms (tenant_id, ai_agent_id, term, chunks)
        SELECT min(tenant_id::text)::uuid, ai_agent_id, lexeme, count(*)
          FROM knowledge_chunks, unnest(tsvector_to_array(search)) AS lexeme
         WHERE length(lexeme) BETWEEN 3 AND 40
         GROUP BY ai_agent_id, lexeme
        """
    )


def downgrade() -> None:
    op.drop_index(
        "ix_knowledge_chunks_search", table_name="knowledge_chunks", postgresql_using="gin"
    )
    op.create_index(
        "ix_knowledge_chunks_search",
        "knowledge_chunks",
        ["search"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "ix_knowledge_chunks_trigram",
        "knowledge_chunks",
        ["content"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"content": "gin_trgm_ops"},
    )
    op.drop_index(
        "ix_knowledge_terms_trigram",
        table_name="knowledge_terms",
        postgresql_using="gist",
        postgresql_ops={"term": "gist_trgm_ops"},
    )
    op.drop_table("knowledge_terms")
