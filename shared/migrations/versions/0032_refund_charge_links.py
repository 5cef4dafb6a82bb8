"""a refund names the charge it returns, and why it was made

An invoice could hold two succeeded charges: an attempt whose success reached us after a
later attempt had paid. The second was only logged, so the customer paid twice. Such a
charge is now refunded automatically (``reason = 'duplicate_charge'``), and a refund must
then say which charge it returns: the refund path used to take "the" succeeded charge of
the invoice, and would have refunded the duplicate twice over. Existing refunds were all
asked for (``requested``) and return the invoice's newest succeeded charge, the one the
refund path chose for them. A refund made at the provider (Stripe's dashboard) is now
recorded too, as ``external``.

Revision ID: 0032_refund_charge_links
Revises: 0031_api_inbox_ids_per_tenant
Create Date: 2026-12-06 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0032_refund_charge_links"
down_revision: str | None = "0031_api_inbox_ids_per_tenant"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "billing_payments"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("charge_id", postgresql.UUID(as_uuid=True), nullable=True))
    op.add_column(TABLE, sa.Column("reason", sa.String(32), nullable=True))
    op.create_foreign_key(
        "fk_billing_payments_charge_id_billing_payments",
        TABLE,
        TABLE,
        ["charge_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_check_constraint(
        "ck_billing_payments_reason_known",
        TABLE,
        "reason IS NULL OR reason IN ('requested', 'duplicate_charge', 'external')",
    )
    op.create_index(
        "ix_billing_payments_charge_id",
        TABLE,
        ["charge_id"],
        postgresql_where=sa.text("charge_id IS NOT NULL"),
    )
    op.execute(
        """
        UPDATE billing_payments AS refund
           SET reason = 'requested',
               charge_id = (SELECT charge.id FROM billing_payments AS charge
                             WHERE charge.invoice_id = refund.invoice_id
                               AND charge.kind = 'charge' AND charge.status = 'succeeded'
                               AND charge.provider_reference IS NOT NULL
                             ORDER BY charge.settled_at DESC NULLS LAST
                             LIMIT 1)
         WHERE refund.kind = 'refund'
        """
    )


def downgrade() -> None:
    """Refunds of duplicate charges stay as plain refund rows (their reason is lost)."""
    op.drop_index("ix_billing_payments_charge_id", table_name=TABLE)
    op.drop_constraint("ck_billing_payments_reason_known", TABLE, type_="check")
    op.drop_constraint("fk_billing_payments_charge_id_billing_payments", TABLE, type_="foreignkey")
    op.drop_column(TABLE, "reason")
    op.drop_column(TABLE, "charge_id")
