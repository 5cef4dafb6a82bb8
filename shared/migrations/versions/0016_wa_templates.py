"""wa_templates: WhatsApp message templates and each account's template sync

Revision ID: 0016_wa_templates
Revises: 0015_channel_gaps
Create Date: 2026-12-04 13:30:00

``wa_templates`` is unique per (account, name, language), Meta's own identity of a
template inside a WABA, so a sync upserts on it. ``wa_template_syncs`` holds one row per
WhatsApp account; the scheduler claims the due ones through ``ix_wa_template_syncs_due``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016_wa_templates"
down_revision: str | None = "0015_channel_gaps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column]:
    return [
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
    ]


def upgrade() -> None:
    op.create_table(
        "wa_templates",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("integration_account_id", sa.UUID(), nullable=False),
        sa.Column("meta_template_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column(
            "components",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
        sa.Column(
            "parameter_format", sa.String(length=16), server_default="POSITIONAL", nullable=False
        ),
        sa.Column("rejected_reason", sa.Text(), nullable=True),
        sa.Column("quality_score", sa.String(length=32), nullable=True),
        sa.Column("header_media_url", sa.Text(), nullable=True),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column(
            "status_updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.UUID(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["integration_account_id"],
            ["integration_accounts.id"],
            name=op.f("fk_wa_templates_integration_account_id_integration_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_wa_templates_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wa_templates")),
    )
    op.create_index(
        "uq_wa_templates_account_name_language",
        "wa_templates",
        ["integration_account_id", "name", "language"],
        unique=True,
    )
    op.create_index(
        "ix_wa_templates_tenant_created",
        "wa_templates",
        ["tenant_id", sa.literal_column("created_at DESC"), "id"],
        unique=False,
    )
    op.create_index(
        "ix_wa_templates_meta_template", "wa_templates", ["meta_template_id"], unique=False
    )
    op.create_table(
        "wa_template_syncs",
        sa.Column("integration_account_id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column(
            "due_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "enqueued_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')",
            name=op.f("ck_wa_template_syncs_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["integration_account_id"],
            ["integration_accounts.id"],
            name=op.f("fk_wa_template_syncs_integration_account_id_integration_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_wa_template_syncs_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_wa_template_syncs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("integration_account_id", name=op.f("pk_wa_template_syncs")),
    )
    op.create_index("ix_wa_template_syncs_due", "wa_template_syncs", ["due_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_wa_template_syncs_due", table_name="wa_template_syncs")
    op.drop_table("wa_template_syncs")
    op.drop_index("ix_wa_templates_meta_template", table_name="wa_templates")
    op.drop_index("ix_wa_templates_tenant_created", table_name="wa_templates")
    op.drop_index("uq_wa_templates_account_name_language", table_name="wa_templates")
    op.drop_table("wa_templates")
