"""admin follow-ups: who impersonated, on events and activity rows; password-reset emails

Revision ID: 0024_admin_followups
Revises: 0023_billing
Create Date: 2026-12-04 18:30:00

``outbox_events.impersonated_by`` keeps ``{"id", "email"}`` of the super admin who acted
through an impersonation token, so every envelope built from the event names them.
``activity_logs.impersonator_email`` keeps their email next to ``impersonator_id`` (the
audit trail outlives a deleted super admin). ``agent_invitations.purpose`` tells a
password reset's set-password email from an invitation's (its own subject and text).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0024_admin_followups"
down_revision: str | None = "0023_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "outbox_events",
        sa.Column("impersonated_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column("activity_logs", sa.Column("impersonator_email", sa.String(254), nullable=True))
    op.add_column(
        "agent_invitations",
        sa.Column("purpose", sa.String(16), server_default="invitation", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_agent_invitations_purpose_known"),
        "agent_invitations",
        "purpose IN ('invitation', 'password_reset')",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_agent_invitations_purpose_known"), "agent_invitations", type_="check"
    )
    op.drop_column("agent_invitations", "purpose")
    op.drop_column("activity_logs", "impersonator_email")
    op.drop_column("outbox_events", "impersonated_by")
