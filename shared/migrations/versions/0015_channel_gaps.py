"""channel gaps: read receipts owed to Meta, early delivery statuses, agent invitations

Revision ID: 0015_channel_gaps
Revises: 0014_timed
Create Date: 2026-12-04 13:30:00

Each table's sweeper reads only what it may act on through a partial index
(``ix_read_receipts_due``, ``ix_agent_invitations_due``: pending rows by ``sweep_at``)
or the expiry index (``ix_early_statuses_expires``). ``uq_early_statuses_report``
keeps a status Meta delivers twice once; ``uq_agent_invitations_token_hash`` makes a
token name one invitation.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_channel_gaps"
down_revision: str | None = "0014_timed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "read_receipts",
        sa.Column("message_id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sweep_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error_code", sa.String(length=64), nullable=True),
        sa.Column("last_error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed')", name=op.f("ck_read_receipts_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_read_receipts_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_read_receipts_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_read_receipts")),
    )
    op.create_index(
        "ix_read_receipts_due",
        "read_receipts",
        ["sweep_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_read_receipts_tenant", "read_receipts", ["tenant_id", "created_at"])

    op.create_table(
        "early_statuses",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_early_statuses_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_early_statuses")),
    )
    op.create_index(
        "uq_early_statuses_report",
        "early_statuses",
        ["tenant_id", "provider_message_id", "status"],
        unique=True,
    )
    op.create_index("ix_early_statuses_expires", "early_statuses", ["expires_at"])

    op.create_table(
        "agent_invitations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("invited_by", sa.UUID(), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sweep_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("last_error_code", sa.String(length=64), nullable=True),
        sa.Column("last_error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'accepted', 'failed')",
            name=op.f("ck_agent_invitations_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_agent_invitations_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_agent_invitations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"],
            ["users.id"],
            name=op.f("fk_agent_invitations_invited_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_invitations")),
    )
    op.create_index(
        "uq_agent_invitations_token_hash", "agent_invitations", ["token_hash"], unique=True
    )
    op.create_index(
        "ix_agent_invitations_user", "agent_invitations", ["tenant_id", "user_id", "created_at"]
    )
    op.create_index(
        "ix_agent_invitations_due",
        "agent_invitations",
        ["sweep_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_agent_invitations_due", table_name="agent_invitations")
    op.drop_index("ix_agent_invitations_user", table_name="agent_invitations")
    op.drop_index("uq_agent_invitations_token_hash", table_name="agent_invitations")
    op.drop_table("agent_invitations")
    op.drop_index("ix_early_statuses_expires", table_name="early_statuses")
    op.drop_index("uq_early_statuses_report", table_name="early_statuses")
    op.drop_table("early_statuses")
    op.drop_index("ix_read_receipts_tenant", table_name="read_receipts")
    op.drop_index("ix_read_receipts_due", table_name="read_receipts")
    op.drop_table("read_receipts")
