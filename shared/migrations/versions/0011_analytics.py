"""analytics: rollup tables kept by the analytics actor, and the reconcile's record

Revision ID: 0011_analytics
Revises: 0010_outbox_retention
Create Date: 2026-12-04 10:40:00

The analytics endpoints read these small tables instead of counting conversations
and messages per request (shared/analytics). ``analytics_events`` is the actor's
queue of events still to count; the others are the rollups and the nightly
reconcile's runs. New tables only: nothing existing is rewritten or locked.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_analytics"
down_revision: str | None = "0010_outbox_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant() -> sa.Column:
    return sa.Column("tenant_id", sa.UUID(), nullable=False)


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        ondelete="CASCADE",
        name=op.f(f"fk_{table}_tenant_id_tenants"),
    )


def _counter(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "analytics_events",
        sa.Column("event_id", sa.UUID(), nullable=False),
        _tenant(),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "queued_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_analytics_events")),
        _tenant_fk("analytics_events"),
    )
    op.create_index(
        "ix_analytics_events_waiting",
        "analytics_events",
        ["tenant_id"],
        postgresql_where=sa.text("counted_at IS NULL"),
    )
    op.create_index(
        "ix_analytics_events_queued",
        "analytics_events",
        ["queued_at"],
        postgresql_where=sa.text("counted_at IS NULL"),
    )
    op.create_index("ix_analytics_events_counted", "analytics_events", ["counted_at"])

    op.create_table(
        "analytics_conversation_facts",
        sa.Column("conversation_id", sa.UUID(), nullable=False),
        _tenant(),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee_id", sa.UUID(), nullable=True),
        sa.Column("created_day", sa.Date(), nullable=False),
        sa.Column("created_hour", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_analytics_conversation_facts")),
        _tenant_fk("analytics_conversation_facts"),
    )
    op.create_index(
        "ix_analytics_conversation_facts_tenant", "analytics_conversation_facts", ["tenant_id"]
    )

    op.create_table(
        "analytics_conversation_counts",
        _tenant(),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("assignee_key", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("count", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "channel",
            "assignee_key",
            "status",
            name=op.f("pk_analytics_conversation_counts"),
        ),
        _tenant_fk("analytics_conversation_counts"),
    )

    op.create_table(
        "analytics_daily",
        _tenant(),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        _counter("conversations"),
        _counter("contacts"),
        _counter("inbound_messages"),
        _counter("outbound_messages"),
        sa.PrimaryKeyConstraint("tenant_id", "day", "channel", name=op.f("pk_analytics_daily")),
        _tenant_fk("analytics_daily"),
    )

    op.create_table(
        "analytics_hourly",
        _tenant(),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("hour", sa.SmallInteger(), nullable=False),
        _counter("conversations"),
        _counter("inbound_messages"),
        _counter("outbound_messages"),
        sa.PrimaryKeyConstraint("tenant_id", "day", "hour", name=op.f("pk_analytics_hourly")),
        _tenant_fk("analytics_hourly"),
    )

    op.create_table(
        "analytics_csat_daily",
        _tenant(),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("agent_key", sa.UUID(), nullable=False),
        _counter("surveys"),
        _counter("rated"),
        _counter("rating_sum"),
        *(_counter(f"rating_{n}") for n in range(1, 6)),
        sa.PrimaryKeyConstraint(
            "tenant_id", "day", "agent_key", name=op.f("pk_analytics_csat_daily")
        ),
        _tenant_fk("analytics_csat_daily"),
    )

    op.create_table(
        "analytics_reconcile_runs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        _counter("tenants"),
        _counter("days_checked"),
        _counter("days_skipped"),
        _counter("corrections"),
        sa.Column("details", postgresql.JSONB(), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_reconcile_runs")),
    )
    op.create_index(
        "ix_analytics_reconcile_runs_started", "analytics_reconcile_runs", ["started_at"]
    )


def downgrade() -> None:
    for table in (
        "analytics_reconcile_runs",
        "analytics_csat_daily",
        "analytics_hourly",
        "analytics_daily",
        "analytics_conversation_counts",
        "analytics_conversation_facts",
        "analytics_events",
    ):
        op.drop_table(table)
