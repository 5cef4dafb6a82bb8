"""automation rules remember when they were (re)activated

A ``no_runs`` alert measured "no run for N minutes" from the rule's creation, so a rule
switched off for a week and back on was alerted on at the next check: it had no run
in the window because it was off. ``activated_at`` is when the rule last started to
run: created active, switched back on, its snooze ended early, or the tenant's global
control stopped pausing it; the check measures the silence from the latest of that,
the end of a snooze and the last run.

Backfill: the latest activity row that switched the rule on (``is_active`` false to
true) or ended its snooze, else its creation. The downgrade drops the column.

Revision ID: 0033_rule_activated_at
Revises: 0032_refund_charge_links
Create Date: 2026-12-06 21:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0033_rule_activated_at"
down_revision: str | None = "0032_refund_charge_links"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL = """
UPDATE automation_rules r
   SET activated_at = greatest(r.created_at, coalesce((
        SELECT max(a.created_at) FROM activity_logs a
         WHERE a.tenant_id = r.tenant_id
           AND a.entity_type = 'automation_rule'
           AND a.entity_id = r.id
           AND (a.action = 'automation_rule.unsnoozed'
                OR (a.before ->> 'is_active' = 'false' AND a.after ->> 'is_active' = 'true'))
       ), r.created_at))
"""


def upgrade() -> None:
    op.add_column(
        "automation_rules",
        sa.Column(
            "activated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_column("automation_rules", "activated_at")
