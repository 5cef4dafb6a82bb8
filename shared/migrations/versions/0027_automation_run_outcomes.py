"""automation run outcomes: a run keeps one character per condition leaf, not its trace

Revision ID: 0027_automation_run_outcomes
Revises: 0026_automation_run_context
Create Date: 2026-12-05 03:10:00

An event that triggers 50 rules wrote 50 condition traces (~150 bytes of JSON a leaf),
built and encoded by the worker and parsed and stored by PostgreSQL, though each is
the tracing walk of the run's stored snapshot over its stored facts. A run now keeps
each leaf's outcome (``condition_outcomes``: ``1`` matched, ``0`` not, ``t`` its
regular expression ran out of time) and its trace is rebuilt on read; its
``condition_results`` stays ``[]``. Runs written before keep their trace.

Down writes the rebuilt trace into every run that has outcomes, then drops the column.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027_automation_run_outcomes"
down_revision: str | None = "0026_automation_run_context"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Runs rebuilt per statement on the way down.
BATCH = 1000


def upgrade() -> None:
    op.add_column("automation_runs", sa.Column("condition_outcomes", sa.Text(), nullable=True))


def downgrade() -> None:
    import json
    from types import SimpleNamespace

    from shared.automation.traces import rebuilt_trace

    bind = op.get_bind()
    select = sa.text(
        """
        SELECT r.id, r.snapshot_digest, r.condition_outcomes,
               coalesce(r.rule_snapshot, s.snapshot) AS rule_snapshot,
               coalesce(r.facts, c.facts) AS facts, coalesce(r.changes, c.changes) AS changes
          FROM automation_runs AS r
          LEFT JOIN automation_rule_snapshots AS s ON s.digest = r.snapshot_digest
          LEFT JOIN automation_run_contexts AS c ON c.id = r.context_id
         WHERE r.condition_outcomes IS NOT NULL AND r.id > :after
         ORDER BY r.id LIMIT :batch
        """
    )
    update = sa.text(
        """
        UPDATE automation_runs AS r SET condition_results = t.trace, condition_outcomes = NULL
          FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t(id uuid, trace jsonb)
         WHERE r.id = t.id
        """
    )
    after = "00000000-0000-0000-0000-000000000000"
    while True:
        rows = bind.execute(select, {"after": after, "batch": BATCH}).mappings().all()
        if not rows:
            break
        traces = [
            {"id": str(row["id"]), "trace": rebuilt_trace(SimpleNamespace(**row))} for row in rows
        ]
        bind.execute(update, {"rows": json.dumps(traces)})
        after = str(rows[-1]["id"])
    op.drop_column("automation_runs", "condition_outcomes")
