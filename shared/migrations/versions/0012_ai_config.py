"""ai config: product import bodies, kept apart from jobs until the import has read them

Revision ID: 0012_ai_config
Revises: 0011_analytics
Create Date: 2026-12-04 10:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_ai_config"
down_revision: str | None = "0011_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ai_product_imports",
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("ai_agent_id", sa.UUID(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "format IN ('csv', 'json')", name=op.f("ck_ai_product_imports_format_known")
        ),
        sa.ForeignKeyConstraint(
            ["ai_agent_id"],
            ["ai_agents.id"],
            name=op.f("fk_ai_product_imports_ai_agent_id_ai_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_ai_product_imports_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_ai_product_imports_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_ai_product_imports")),
    )


def downgrade() -> None:
    op.drop_table("ai_product_imports")
