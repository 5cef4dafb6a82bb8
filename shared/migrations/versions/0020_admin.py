"""admin: super admins, the platform audit log, user suspension, impersonation attribution

Revision ID: 0020_admin
Revises: 0019_campaigns
Create Date: 2026-12-04 15:50:00

Super admins live outside every tenant (no ``tenant_id``). ``platform_audit_logs`` keeps
one row per super-admin call. ``users.suspended_at`` refuses a user's credentials while
set; ``activity_logs.impersonator_id`` names the super admin behind an impersonation.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020_admin"
down_revision: str | None = "0019_campaigns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "super_admins",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("tokens_valid_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_super_admins")),
    )
    op.create_index("uq_super_admins_email", "super_admins", [sa.text("lower(email)")], unique=True)
    op.create_table(
        "platform_audit_logs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("super_admin_id", sa.UUID(), nullable=True),
        sa.Column("action", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=2048), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=True),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["super_admin_id"],
            ["super_admins.id"],
            name=op.f("fk_platform_audit_logs_super_admin_id_super_admins"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_audit_logs")),
    )
    op.create_index("ix_platform_audit_logs_created", "platform_audit_logs", ["created_at", "id"])
    op.create_index(
        "ix_platform_audit_logs_admin", "platform_audit_logs", ["super_admin_id", "created_at"]
    )
    op.create_index(
        "ix_platform_audit_logs_tenant", "platform_audit_logs", ["tenant_id", "created_at"]
    )
    op.add_column("users", sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("activity_logs", sa.Column("impersonator_id", sa.UUID(), nullable=True))


def downgrade() -> None:
    op.drop_column("activity_logs", "impersonator_id")
    op.drop_column("users", "suspended_at")
    op.drop_index("ix_platform_audit_logs_tenant", table_name="platform_audit_logs")
    op.drop_index("ix_platform_audit_logs_admin", table_name="platform_audit_logs")
    op.drop_index("ix_platform_audit_logs_created", table_name="platform_audit_logs")
    op.drop_table("platform_audit_logs")
    op.drop_index("uq_super_admins_email", table_name="super_admins")
    op.drop_table("super_admins")
