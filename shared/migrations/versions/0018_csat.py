"""csat: surveys (token hash, rating) and per-tenant survey settings

Revision ID: 0018_csat
Revises: 0017_automation_ops
Create Date: 2026-12-04 14:40:00

A survey row is written with its outbound message; ``token_hash`` keeps only the
SHA-256 of the link's token. ``csat_settings`` says which channels are surveyed on
resolve, with which message, and how long a resolved-again conversation waits.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_csat"
down_revision: str | None = "0017_automation_ops"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "csat_surveys",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=True),
        sa.Column("agent_id", sa.UUID(), nullable=True),
        sa.Column("division_id", sa.UUID(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("rating", sa.SmallInteger(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column(
            "sent_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "rating IS NULL OR rating BETWEEN 1 AND 5", name=op.f("ck_csat_surveys_rating_range")
        ),
        sa.CheckConstraint(
            "(rating IS NULL) = (rated_at IS NULL)", name=op.f("ck_csat_surveys_rated_together")
        ),
        sa.CheckConstraint(
            "trigger IN ('manual', 'resolve')", name=op.f("ck_csat_surveys_trigger_known")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_csat_surveys_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_csat_surveys_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_csat_surveys_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["users.id"],
            name=op.f("fk_csat_surveys_agent_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["division_id"],
            ["divisions.id"],
            name=op.f("fk_csat_surveys_division_id_divisions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_csat_surveys_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_csat_surveys")),
    )
    op.create_index("uq_csat_surveys_token_hash", "csat_surveys", ["token_hash"], unique=True)
    op.create_index(
        "ix_csat_surveys_conversation", "csat_surveys", ["conversation_id", sa.text("sent_at DESC")]
    )
    op.create_index("ix_csat_surveys_sent", "csat_surveys", ["tenant_id", "sent_at"])
    op.create_index(
        "ix_csat_surveys_rated",
        "csat_surveys",
        ["tenant_id", "rated_at"],
        postgresql_where=sa.text("rated_at IS NOT NULL"),
    )
    op.create_table(
        "csat_settings",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column(
            "enabled_channels", sa.ARRAY(sa.String(length=16)), server_default="{}", nullable=False
        ),
        sa.Column("message_template", sa.Text(), nullable=True),
        sa.Column("resend_window_hours", sa.Integer(), server_default="168", nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_csat_settings_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_csat_settings")),
    )


def downgrade() -> None:
    op.drop_table("csat_settings")
    op.drop_index("ix_csat_surveys_rated", table_name="csat_surveys")
    op.drop_index("ix_csat_surveys_sent", table_name="csat_surveys")
    op.drop_index("ix_csat_surveys_conversation", table_name="csat_surveys")
    op.drop_index("uq_csat_surveys_token_hash", table_name="csat_surveys")
    op.drop_table("csat_surveys")
