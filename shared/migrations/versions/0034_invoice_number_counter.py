"""invoice numbers from a counter row instead of a sequence: no gaps

A sequence keeps the numbers a rolled-back transaction drew and skips the ones it had
logged ahead when the server crashes, so ``INV-`` numbers had holes an auditor asks
about (the EU's VAT rules, among others, want one unbroken series). The counter row
``billing_invoice_counter`` is updated in the invoice's own transaction: a rollback
gives its numbers back.

Backfill: the counter starts at the highest number taken, whether by an invoice or by
the sequence (a number it gave a transaction that rolled back is never reused either).
The downgrade puts the sequence back just after the counter (or the highest invoice).

Revision ID: 0034_invoice_number_counter
Revises: 0033_rule_activated_at
Create Date: 2026-12-07 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0034_invoice_number_counter"
down_revision: str | None = "0033_rule_activated_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEED = """
INSERT INTO billing_invoice_counter (singleton, last_number)
SELECT true, greatest(
    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM billing_invoice_number_seq),
    (SELECT coalesce(max(substring(number FROM 5)::bigint), 0) FROM billing_invoices
      WHERE number ~ '^INV-[0-9]{1,18}$'))
"""
SEQUENCE_AFTER_COUNTER = """
SELECT setval('billing_invoice_number_seq', greatest(last_number,
    (SELECT coalesce(max(substring(number FROM 5)::bigint), 0) FROM billing_invoices
      WHERE number ~ '^INV-[0-9]{1,18}$')) + 1, false)
  FROM billing_invoice_counter
"""


def upgrade() -> None:
    op.create_table(
        "billing_invoice_counter",
        sa.Column("singleton", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("last_number", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("singleton", name=op.f("ck_billing_invoice_counter_one_row")),
        sa.PrimaryKeyConstraint("singleton", name=op.f("pk_billing_invoice_counter")),
    )
    op.execute(SEED)
    op.execute("DROP SEQUENCE billing_invoice_number_seq")


def downgrade() -> None:
    op.execute("CREATE SEQUENCE billing_invoice_number_seq")
    op.execute(SEQUENCE_AFTER_COUNTER)
    op.drop_table("billing_invoice_counter")
