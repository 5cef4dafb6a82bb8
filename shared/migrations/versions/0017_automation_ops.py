"""automation ops: the global control of a tenant's automation

Revision ID: 0017_automation_ops
Revises: 0016_wa_templates
Create Date: 2026-12-04 14:00:00

The control lives on ``automation_settings``, the row the evaluator already reads
(for the rules version) on every event: pausing, per-type pauses and the action
ceiling cost no extra round trip and apply to the next event. Snooze, schedule and
rollout use the rule columns that 0006 created.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_automation_ops"
down_revision: str | None = "0016_wa_templates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "automation_settings",
        sa.Column("paused", sa.Boolean(), server_default="false", nullable=False),
    )
    op.add_column(
        "automation_settings",
        sa.Column(
            "paused_event_types",
            sa.ARRAY(sa.String(length=64)),
            server_default="{}",
            nullable=False,
        ),
    )
    op.add_column(
        "automation_settings", sa.Column("max_actions_per_minute", sa.Integer(), nullable=True)
    )
    op.add_column(
        "automation_settings", sa.Column("pause_reason", sa.String(length=500), nullable=True)
    )
    op.add_column(
        "automation_settings",
        sa.Column("control_updated_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("automation_settings", sa.Column("control_updated_by", sa.UUID(), nullable=True))


def downgrade() -> None:
    for column in (
        "control_updated_by",
        "control_updated_at",
        "pause_reason",
        "max_actions_per_minute",
        "paused_event_types",
        "paused",
    ):
        op.drop_column("automation_settings", column)
