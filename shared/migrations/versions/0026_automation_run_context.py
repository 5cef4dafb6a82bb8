"""automation run context: an evaluation's facts once, a rule snapshot once per content

Revision ID: 0026_automation_run_context
Revises: 0025_billing_cycle
Create Date: 2026-12-04 23:59:00

An event that triggers 50 rules wrote 50 runs, each with its own copy of the event's
facts and changes and of its rule's snapshot: most of the bytes PostgreSQL parsed,
stored and logged per event. Now an evaluation writes its facts and changes once
(``automation_run_contexts``, one row per event and evaluation: a retry or a reprocess
sees new facts) and a rule snapshot is stored once per content
(``automation_rule_snapshots``, keyed by a digest of its JSON); a run points at both.
The runs' own columns stay (nullable) for the runs written before, so nothing is
rewritten here. The runs' foreign key to the tenant goes: every run belongs to a queue
row of the same tenant whose cascade already removes it, and the check was a lookup per
inserted run.

Down copies the context and snapshot back into every run that points at them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0026_automation_run_context"
down_revision: str | None = "0025_billing_cycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONB = postgresql.JSONB(astext_type=sa.Text())


def upgrade() -> None:
    op.create_table(
        "automation_run_contexts",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("automation_event_id", sa.UUID(), nullable=False),
        sa.Column("facts", JSONB, nullable=False),
        sa.Column("changes", JSONB, server_default="{}", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["automation_event_id"],
            ["automation_events.id"],
            name=op.f("fk_automation_run_contexts_automation_event_id_automation_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_automation_run_contexts_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_run_contexts")),
    )
    op.create_index(
        "ix_automation_run_contexts_event",
        "automation_run_contexts",
        ["automation_event_id"],
        unique=False,
    )
    op.create_table(
        "automation_rule_snapshots",
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("rule_id", sa.UUID(), nullable=False),
        sa.Column("snapshot", JSONB, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_automation_rule_snapshots_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_automation_rule_snapshots")),
    )
    op.add_column("automation_runs", sa.Column("context_id", sa.UUID(), nullable=True))
    op.add_column(
        "automation_runs", sa.Column("snapshot_digest", sa.String(length=32), nullable=True)
    )
    for column in ("rule_snapshot", "facts", "changes"):
        op.alter_column("automation_runs", column, nullable=True)
    op.alter_column("automation_runs", "changes", server_default=None)
    op.drop_constraint(
        "fk_automation_runs_tenant_id_tenants", "automation_runs", type_="foreignkey"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE automation_runs AS r SET facts = c.facts, changes = c.changes"
        " FROM automation_run_contexts AS c WHERE c.id = r.context_id"
    )
    op.execute(
        "UPDATE automation_runs AS r SET rule_snapshot = s.snapshot"
        " FROM automation_rule_snapshots AS s WHERE s.digest = r.snapshot_digest"
    )
    op.execute("UPDATE automation_runs SET facts = '{}' WHERE facts IS NULL")
    op.execute("UPDATE automation_runs SET changes = '{}' WHERE changes IS NULL")
    op.execute("UPDATE automation_runs SET rule_snapshot = '{}' WHERE rule_snapshot IS NULL")
    op.create_foreign_key(
        "fk_automation_runs_tenant_id_tenants",
        "automation_runs",
        "tenants",
        ["tenant_id"],
        ["id"],
        ondelete="CASCADE",
    )
    for column in ("rule_snapshot", "facts", "changes"):
        op.alter_column("automation_runs", column, nullable=False)
    op.alter_column("automation_runs", "changes", server_default="{}")
    op.drop_column("automation_runs", "snapshot_digest")
    op.drop_column("automation_runs", "context_id")
    op.drop_table("automation_rule_snapshots")
    op.drop_index("ix_automation_run_contexts_event", table_name="automation_run_contexts")
    op.drop_table("automation_run_contexts")
