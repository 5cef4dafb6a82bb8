"""automation stats: rollups kept by the workers, their queue, alert occurrences

Revision ID: 0022_automation_stats
Revises: 0021_outbound_engine
Create Date: 2026-12-04 15:45:00

``automation_stats_pending`` is written by the evaluator (one insert per event, in the
transaction of its runs) and drained by ``roll_up_automation_stats`` into
``automation_stats`` (minute/hour/day buckets per rule and for all rules, with a fixed
latency histogram). ``automation_alerts`` holds one row per alert incident; a partial
unique index keeps one open incident per (rule, kind).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0022_automation_stats"
down_revision: str | None = "0021_outbound_engine"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: One column per latency bucket (13 bounds and +Inf), as in the model.
LATENCY_COLUMNS = [f"latency_{i:02d}" for i in range(14)]


def _counter(name: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "automation_stats_pending",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("items", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "queued_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_automation_stats_pending_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_automation_stats_pending"),
    )
    op.create_index(
        "ix_automation_stats_pending_tenant", "automation_stats_pending", ["tenant_id", "id"]
    )
    op.create_table(
        "automation_stats",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("granularity", sa.String(length=8), nullable=False),
        sa.Column("rule_id", sa.UUID(), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        _counter("runs"),
        _counter("matches"),
        _counter("skipped"),
        _counter("failures"),
        _counter("actions"),
        sa.Column("duration_ms_sum", sa.Float(), server_default="0", nullable=False),
        *(_counter(name) for name in LATENCY_COLUMNS),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_automation_stats_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "granularity", "rule_id", "bucket_start", name="pk_automation_stats"
        ),
    )
    op.create_index(
        "ix_automation_stats_time", "automation_stats", ["tenant_id", "granularity", "bucket_start"]
    )
    op.create_table(
        "automation_alerts",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("rule_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("triggered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("observed", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column(
            "details", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_automation_alerts_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_automation_alerts"),
    )
    op.create_index(
        "uq_automation_alerts_open",
        "automation_alerts",
        ["rule_id", "kind"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(
        "ix_automation_alerts_tenant_triggered",
        "automation_alerts",
        ["tenant_id", "triggered_at", "id"],
    )


def downgrade() -> None:
    op.drop_table("automation_alerts")
    op.drop_table("automation_stats")
    op.drop_table("automation_stats_pending")
