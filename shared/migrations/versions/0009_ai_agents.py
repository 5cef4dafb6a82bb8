"""ai agents: agents, assignments, handoff and orchestration rules, knowledge, replies, usage

The conversation learns which AI agent owns it (``ai_agent_id``, its ``ai_active`` flag
already exists) and how many AI turns it has had. Knowledge rows carry a generated
``tsvector`` and trigram indexes for retrieval without pgvector (embeddings, when a
provider makes them, are ``real[]``). ``ai_replies`` is the durable record of each answer
owed, with at most one in flight per conversation (a partial unique index).

Revision ID: 0009_ai_agents
Revises: 0008_retention
Create Date: 2026-12-04 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_ai_agents"
down_revision: str | None = "0008_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ai_agents",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("provider", sa.String(length=16), server_default="offline", nullable=False),
        sa.Column("model", sa.String(length=120), nullable=True),
        sa.Column("embedding_model", sa.String(length=120), nullable=True),
        sa.Column("base_url", sa.String(length=500), nullable=True),
        sa.Column("api_key_encrypted", sa.Text(), nullable=True),
        sa.Column("instructions", sa.Text(), server_default="", nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("temperature", sa.Float(), server_default="0.3", nullable=False),
        sa.Column("max_tokens", sa.Integer(), server_default="512", nullable=False),
        sa.Column("guardrails", sa.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("settle_seconds", sa.Float(), server_default="2", nullable=False),
        sa.Column("confidence_threshold", sa.Float(), server_default="0.1", nullable=False),
        sa.Column("handoff_message", sa.Text(), nullable=True),
        sa.Column(
            "prompt_cost_per_1k",
            sa.Numeric(precision=12, scale=6),
            server_default="0",
            nullable=False,
        ),
        sa.Column(
            "completion_cost_per_1k",
            sa.Numeric(precision=12, scale=6),
            server_default="0",
            nullable=False,
        ),
        sa.Column("daily_reply_limit", sa.Integer(), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "provider IN ('offline', 'openai')", name=op.f("ck_ai_agents_provider_known")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_ai_agents_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_agents")),
    )
    op.create_index(
        "ix_ai_agents_tenant_created",
        "ai_agents",
        ["tenant_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_index(
        "uq_ai_agents_tenant_name",
        "ai_agents",
        ["tenant_id", sa.literal_column("lower(name)")],
        unique=True,
    )
    op.create_table(
        "ai_handoff_rules",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("ai_agent_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("keywords", sa.ARRAY(sa.String(length=200)), server_default="{}", nullable=False),
        sa.Column("max_turns", sa.Integer(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("division_id", sa.UUID(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('keyword', 'explicit_request', 'max_turns', 'low_confidence', 'model_error', 'usage_limit')",
            name=op.f("ck_ai_handoff_rules_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["ai_agent_id"],
            ["ai_agents.id"],
            name=op.f("fk_ai_handoff_rules_ai_agent_id_ai_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["division_id"],
            ["divisions.id"],
            name=op.f("fk_ai_handoff_rules_division_id_divisions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_ai_handoff_rules_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_handoff_rules")),
    )
    op.create_index(
        "ix_ai_handoff_rules_agent",
        "ai_handoff_rules",
        ["tenant_id", "ai_agent_id", "position"],
        unique=False,
    )
    op.create_table(
        "ai_orchestration_rules",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("match_type", sa.String(length=16), nullable=False),
        sa.Column("intent", sa.String(length=120), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("keywords", sa.ARRAY(sa.String(length=200)), server_default="{}", nullable=False),
        sa.Column("target_ai_agent_id", sa.UUID(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="100", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "match_type IN ('intent', 'channel', 'keyword')",
            name=op.f("ck_ai_orchestration_rules_match_type_known"),
        ),
        sa.ForeignKeyConstraint(
            ["target_ai_agent_id"],
            ["ai_agents.id"],
            name=op.f("fk_ai_orchestration_rules_target_ai_agent_id_ai_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_ai_orchestration_rules_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_orchestration_rules")),
    )
    op.create_index(
        "ix_ai_orchestration_rules_tenant",
        "ai_orchestration_rules",
        ["tenant_id", "priority", "created_at"],
        unique=False,
    )
    op.create_table(
        "ai_products",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("ai_agent_id", sa.UUID(), nullable=False),
        sa.Column("sku", sa.String(length=120), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("price", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("image_url", sa.String(length=2048), nullable=True),
        sa.Column("in_stock", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed(
                "to_tsvector('simple', name || ' ' || coalesce(sku, '') || ' ' || coalesce(description, ''))",
                persisted=True,
            ),
            nullable=False,
        ),
        sa.Column("embedding", sa.ARRAY(sa.REAL()), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("price >= 0", name=op.f("ck_ai_products_price_not_negative")),
        sa.ForeignKeyConstraint(
            ["ai_agent_id"],
            ["ai_agents.id"],
            name=op.f("fk_ai_products_ai_agent_id_ai_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_ai_products_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_products")),
    )
    op.create_index(
        "ix_ai_products_agent",
        "ai_products",
        ["tenant_id", "ai_agent_id", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_ai_products_search", "ai_products", ["search"], unique=False, postgresql_using="gin"
    )
    op.create_index(
        "uq_ai_products_agent_sku",
        "ai_products",
        ["ai_agent_id", "sku"],
        unique=True,
        postgresql_where=sa.text("sku IS NOT NULL"),
    )
    op.create_table(
        "ai_usage_daily",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("ai_agent_id", sa.UUID(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("replies", sa.Integer(), server_default="0", nullable=False),
        sa.Column("test_replies", sa.Integer(), server_default="0", nullable=False),
        sa.Column("handoffs", sa.Integer(), server_default="0", nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost", sa.Numeric(precision=16, scale=6), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["ai_agent_id"],
            ["ai_agents.id"],
            name=op.f("fk_ai_usage_daily_ai_agent_id_ai_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_ai_usage_daily_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "ai_agent_id", "day", name=op.f("pk_ai_usage_daily")),
    )
    op.create_table(
        "ai_agent_assignments",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("ai_agent_id", sa.UUID(), nullable=False),
        sa.Column("integration_account_id", sa.UUID(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("division_id", sa.UUID(), nullable=True),
        sa.Column("mode", sa.String(length=32), server_default="always", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "mode IN ('always', 'outside_working_hours')",
            name=op.f("ck_ai_agent_assignments_mode_known"),
        ),
        sa.CheckConstraint(
            "integration_account_id IS NOT NULL OR channel IS NOT NULL",
            name=op.f("ck_ai_agent_assignments_has_target"),
        ),
        sa.ForeignKeyConstraint(
            ["ai_agent_id"],
            ["ai_agents.id"],
            name=op.f("fk_ai_agent_assignments_ai_agent_id_ai_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["division_id"],
            ["divisions.id"],
            name=op.f("fk_ai_agent_assignments_division_id_divisions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["integration_account_id"],
            ["integration_accounts.id"],
            name=op.f("fk_ai_agent_assignments_integration_account_id_integration_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_ai_agent_assignments_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_agent_assignments")),
    )
    op.create_index(
        "ix_ai_agent_assignments_account",
        "ai_agent_assignments",
        ["tenant_id", "integration_account_id"],
        unique=False,
    )
    op.create_index(
        "ix_ai_agent_assignments_tenant",
        "ai_agent_assignments",
        ["tenant_id", "ai_agent_id"],
        unique=False,
    )
    op.create_table(
        "knowledge_sources",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("ai_agent_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("media_id", sa.UUID(), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("chunk_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('file', 'url', 'text')", name=op.f("ck_knowledge_sources_kind_known")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'ready', 'failed')",
            name=op.f("ck_knowledge_sources_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["ai_agent_id"],
            ["ai_agents.id"],
            name=op.f("fk_knowledge_sources_ai_agent_id_ai_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["media_id"],
            ["media_files.id"],
            name=op.f("fk_knowledge_sources_media_id_media_files"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_knowledge_sources_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_sources")),
    )
    op.create_index(
        "ix_knowledge_sources_agent",
        "knowledge_sources",
        ["tenant_id", "ai_agent_id", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_knowledge_sources_stuck",
        "knowledge_sources",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )
    op.create_table(
        "ai_evaluations",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("ai_agent_id", sa.UUID(), nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=False),
        sa.Column("evaluator_id", sa.UUID(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("score BETWEEN 1 AND 5", name=op.f("ck_ai_evaluations_score_range")),
        sa.ForeignKeyConstraint(
            ["ai_agent_id"],
            ["ai_agents.id"],
            name=op.f("fk_ai_evaluations_ai_agent_id_ai_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["evaluator_id"],
            ["users.id"],
            name=op.f("fk_ai_evaluations_evaluator_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_ai_evaluations_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_ai_evaluations_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_evaluations")),
    )
    op.create_index(
        "ix_ai_evaluations_agent",
        "ai_evaluations",
        ["tenant_id", "ai_agent_id", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_index(
        "uq_ai_evaluations_message_evaluator",
        "ai_evaluations",
        ["message_id", "evaluator_id"],
        unique=True,
    )
    op.create_table(
        "ai_replies",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=False),
        sa.Column("ai_agent_id", sa.UUID(), nullable=False),
        sa.Column("last_message_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column(
            "due_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reply_message_id", sa.UUID(), nullable=True),
        sa.Column(
            "sources", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False
        ),
        sa.Column("prompt_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completion_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("handoff_reason", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'generating', 'sent', 'handed_off', 'skipped', 'failed')",
            name=op.f("ck_ai_replies_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["ai_agent_id"],
            ["ai_agents.id"],
            name=op.f("fk_ai_replies_ai_agent_id_ai_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_ai_replies_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["last_message_id"],
            ["messages.id"],
            name=op.f("fk_ai_replies_last_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reply_message_id"],
            ["messages.id"],
            name=op.f("fk_ai_replies_reply_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_ai_replies_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_replies")),
    )
    op.create_index(
        "ix_ai_replies_conversation",
        "ai_replies",
        ["tenant_id", "conversation_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_ai_replies_due",
        "ai_replies",
        ["due_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_ai_replies_generating",
        "ai_replies",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("status = 'generating'"),
    )
    op.create_index(
        "uq_ai_replies_in_flight",
        "ai_replies",
        ["conversation_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('pending', 'generating')"),
    )
    op.create_table(
        "knowledge_chunks",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("ai_agent_id", sa.UUID(), nullable=False),
        sa.Column("source_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('simple', content)", persisted=True),
            nullable=False,
        ),
        sa.Column("embedding", sa.ARRAY(sa.REAL()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ai_agent_id"],
            ["ai_agents.id"],
            name=op.f("fk_knowledge_chunks_ai_agent_id_ai_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["knowledge_sources.id"],
            name=op.f("fk_knowledge_chunks_source_id_knowledge_sources"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_knowledge_chunks_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_chunks")),
    )
    op.create_index(
        "ix_knowledge_chunks_search",
        "knowledge_chunks",
        ["search"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "ix_knowledge_chunks_source",
        "knowledge_chunks",
        ["tenant_id", "source_id", "position"],
        unique=False,
    )
    op.create_index(
        "ix_knowledge_chunks_trigram",
        "knowledge_chunks",
        ["content"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"content": "gin_trgm_ops"},
    )
    op.create_table(
        "qna_pairs",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("ai_agent_id", sa.UUID(), nullable=False),
        sa.Column("source_id", sa.UUID(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('simple', question || ' ' || answer)", persisted=True),
            nullable=False,
        ),
        sa.Column("embedding", sa.ARRAY(sa.REAL()), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["ai_agent_id"],
            ["ai_agents.id"],
            name=op.f("fk_qna_pairs_ai_agent_id_ai_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["knowledge_sources.id"],
            name=op.f("fk_qna_pairs_source_id_knowledge_sources"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_qna_pairs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qna_pairs")),
    )
    op.create_index(
        "ix_qna_pairs_search", "qna_pairs", ["search"], unique=False, postgresql_using="gin"
    )
    op.create_index(
        "ix_qna_pairs_source",
        "qna_pairs",
        ["tenant_id", "source_id", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_qna_pairs_trigram",
        "qna_pairs",
        ["question"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"question": "gin_trgm_ops"},
    )
    op.add_column("conversations", sa.Column("ai_agent_id", sa.UUID(), nullable=True))
    op.add_column(
        "conversations", sa.Column("ai_turns", sa.Integer(), server_default="0", nullable=False)
    )
    op.create_foreign_key(
        op.f("fk_conversations_ai_agent_id_ai_agents"),
        "conversations",
        "ai_agents",
        ["ai_agent_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(
        "ix_conversations_ai_agent",
        "conversations",
        ["ai_agent_id"],
        unique=False,
        postgresql_where=sa.text("ai_agent_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_ai_agent", table_name="conversations")
    op.drop_constraint(
        op.f("fk_conversations_ai_agent_id_ai_agents"), "conversations", type_="foreignkey"
    )
    op.drop_column("conversations", "ai_turns")
    op.drop_column("conversations", "ai_agent_id")
    op.drop_index(
        "ix_qna_pairs_trigram",
        table_name="qna_pairs",
        postgresql_using="gin",
        postgresql_ops={"question": "gin_trgm_ops"},
    )
    op.drop_index("ix_qna_pairs_source", table_name="qna_pairs")
    op.drop_index("ix_qna_pairs_search", table_name="qna_pairs", postgresql_using="gin")
    op.drop_table("qna_pairs")
    op.drop_index(
        "ix_knowledge_chunks_trigram",
        table_name="knowledge_chunks",
        postgresql_using="gin",
        postgresql_ops={"content": "gin_trgm_ops"},
    )
    op.drop_index("ix_knowledge_chunks_source", table_name="knowledge_chunks")
    op.drop_index(
        "ix_knowledge_chunks_search", table_name="knowledge_chunks", postgresql_using="gin"
    )
    op.drop_table("knowledge_chunks")
    op.drop_index(
        "uq_ai_replies_in_flight",
        table_name="ai_replies",
        postgresql_where=sa.text("status IN ('pending', 'generating')"),
    )
    op.drop_index(
        "ix_ai_replies_generating",
        table_name="ai_replies",
        postgresql_where=sa.text("status = 'generating'"),
    )
    op.drop_index(
        "ix_ai_replies_due", table_name="ai_replies", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_index("ix_ai_replies_conversation", table_name="ai_replies")
    op.drop_table("ai_replies")
    op.drop_index("uq_ai_evaluations_message_evaluator", table_name="ai_evaluations")
    op.drop_index("ix_ai_evaluations_agent", table_name="ai_evaluations")
    op.drop_table("ai_evaluations")
    op.drop_index(
        "ix_knowledge_sources_stuck",
        table_name="knowledge_sources",
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )
    op.drop_index("ix_knowledge_sources_agent", table_name="knowledge_sources")
    op.drop_table("knowledge_sources")
    op.drop_index("ix_ai_agent_assignments_tenant", table_name="ai_agent_assignments")
    op.drop_index("ix_ai_agent_assignments_account", table_name="ai_agent_assignments")
    op.drop_table("ai_agent_assignments")
    op.drop_table("ai_usage_daily")
    op.drop_index(
        "uq_ai_products_agent_sku",
        table_name="ai_products",
        postgresql_where=sa.text("sku IS NOT NULL"),
    )
    op.drop_index("ix_ai_products_search", table_name="ai_products", postgresql_using="gin")
    op.drop_index("ix_ai_products_agent", table_name="ai_products")
    op.drop_table("ai_products")
    op.drop_index("ix_ai_orchestration_rules_tenant", table_name="ai_orchestration_rules")
    op.drop_table("ai_orchestration_rules")
    op.drop_index("ix_ai_handoff_rules_agent", table_name="ai_handoff_rules")
    op.drop_table("ai_handoff_rules")
    op.drop_index("uq_ai_agents_tenant_name", table_name="ai_agents")
    op.drop_index("ix_ai_agents_tenant_created", table_name="ai_agents")
    op.drop_table("ai_agents")
