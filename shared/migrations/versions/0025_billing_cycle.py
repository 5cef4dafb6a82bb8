"""billing_cycle: one cycle invoice per subscription and period start

Revision ID: 0025_billing_cycle
Revises: 0024_admin_followups
Create Date: 2026-12-04 18:20:00

Renewals already claim subscriptions ``FOR UPDATE SKIP LOCKED`` and move the period end in
the same transaction as their invoice; this index makes a second renewal of one period
impossible whatever a future change to that code does (two schedulers, a retried batch).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025_billing_cycle"
down_revision: str | None = "0024_admin_followups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE UNIQUE INDEX uq_billing_invoices_cycle ON billing_invoices"
        " (subscription_id, period_start) WHERE reason = 'subscription_cycle'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX uq_billing_invoices_cycle")
