"""billing: the platform's catalogue, each tenant's subscription, invoices and payments

Revision ID: 0023_billing
Revises: 0022_automation_stats
Create Date: 2026-12-04 18:00:52

Money is integer minor units beside an ISO 4217 currency. ``billing_invoice_number_seq``
numbers invoices (``INV-000001``) across the platform. ``billing_payments`` rows are
committed before each provider call; their unique ``idempotency_key`` is what the provider
sees, so a retried charge or refund can never move money twice.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0023_billing"
down_revision: str | None = "0022_automation_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE billing_invoice_number_seq")
    op.create_table(
        "billing_add_ons",
        sa.Column("code", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("extra_seats", sa.Integer(), nullable=False),
        sa.Column("extra_monthly_messages", sa.BigInteger(), nullable=False),
        sa.Column("extra_monthly_ai_replies", sa.BigInteger(), nullable=False),
        sa.Column("extra_storage_bytes", sa.BigInteger(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("price_amount >= 0", name=op.f("ck_billing_add_ons_price_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_add_ons")),
    )
    op.create_index(
        "uq_billing_add_ons_code",
        "billing_add_ons",
        [sa.literal_column("lower(code)")],
        unique=True,
    )
    op.create_table(
        "billing_coupons",
        sa.Column("code", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("percent_off", sa.Integer(), nullable=True),
        sa.Column("amount_off", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("duration", sa.String(length=16), nullable=False),
        sa.Column("duration_periods", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("times_redeemed", sa.Integer(), nullable=False),
        sa.Column("eligible_plan_ids", postgresql.ARRAY(sa.UUID()), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "duration IN ('once', 'repeating', 'forever')",
            name=op.f("ck_billing_coupons_duration_known"),
        ),
        sa.CheckConstraint(
            "(percent_off IS NULL) <> (amount_off IS NULL)",
            name=op.f("ck_billing_coupons_one_kind_of_discount"),
        ),
        sa.CheckConstraint(
            "amount_off IS NULL OR amount_off > 0", name=op.f("ck_billing_coupons_amount_positive")
        ),
        sa.CheckConstraint(
            "percent_off IS NULL OR percent_off BETWEEN 1 AND 100",
            name=op.f("ck_billing_coupons_percent"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_coupons")),
    )
    op.create_index(
        "uq_billing_coupons_code",
        "billing_coupons",
        [sa.literal_column("lower(code)")],
        unique=True,
    )
    op.create_table(
        "billing_plans",
        sa.Column("code", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("billing_interval", sa.String(length=8), nullable=False),
        sa.Column("trial_days", sa.Integer(), nullable=False),
        sa.Column("seat_limit", sa.Integer(), nullable=True),
        sa.Column("monthly_message_limit", sa.BigInteger(), nullable=True),
        sa.Column("monthly_ai_reply_limit", sa.BigInteger(), nullable=True),
        sa.Column("storage_limit_bytes", sa.BigInteger(), nullable=True),
        sa.Column("features", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_default_trial", sa.Boolean(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "billing_interval IN ('month', 'year')", name=op.f("ck_billing_plans_interval_known")
        ),
        sa.CheckConstraint("price_amount >= 0", name=op.f("ck_billing_plans_price_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_plans")),
    )
    op.create_index(
        "uq_billing_plans_code", "billing_plans", [sa.literal_column("lower(code)")], unique=True
    )
    op.create_table(
        "billing_provider_events",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("provider", "event_id", name=op.f("pk_billing_provider_events")),
    )
    op.create_table(
        "billing_accounts",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_customer_id", sa.String(length=255), nullable=True),
        sa.Column("billing_email", sa.String(length=254), nullable=True),
        sa.Column("tax_rate_bps", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_accounts_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_billing_accounts")),
    )
    op.create_table(
        "billing_payment_methods",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_payment_method_id", sa.String(length=255), nullable=False),
        sa.Column("brand", sa.String(length=32), nullable=True),
        sa.Column("last4", sa.String(length=4), nullable=True),
        sa.Column("exp_month", sa.Integer(), nullable=True),
        sa.Column("exp_year", sa.Integer(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_payment_methods_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_payment_methods")),
    )
    op.create_index(
        "uq_billing_payment_methods_default",
        "billing_payment_methods",
        ["tenant_id"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.create_index(
        "uq_billing_payment_methods_token",
        "billing_payment_methods",
        ["tenant_id", "provider_payment_method_id"],
        unique=True,
    )
    op.create_table(
        "billing_subscriptions",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("plan_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("current_period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trial_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_plan_id", sa.UUID(), nullable=True),
        sa.Column("coupon_id", sa.UUID(), nullable=True),
        sa.Column("coupon_periods_left", sa.Integer(), nullable=True),
        sa.Column("past_due_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('trialing', 'active', 'past_due', 'cancelled')",
            name=op.f("ck_billing_subscriptions_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["coupon_id"],
            ["billing_coupons.id"],
            name=op.f("fk_billing_subscriptions_coupon_id_billing_coupons"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["pending_plan_id"],
            ["billing_plans.id"],
            name=op.f("fk_billing_subscriptions_pending_plan_id_billing_plans"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["billing_plans.id"],
            name=op.f("fk_billing_subscriptions_plan_id_billing_plans"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_subscriptions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_subscriptions")),
    )
    op.create_index(
        "ix_billing_subscriptions_period_end",
        "billing_subscriptions",
        ["current_period_end"],
        unique=False,
        postgresql_where=sa.text("status <> 'cancelled'"),
    )
    op.create_index(
        "uq_billing_subscriptions_live",
        "billing_subscriptions",
        ["tenant_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'cancelled'"),
    )
    op.create_table(
        "billing_usage",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.Column("ai_replies", sa.BigInteger(), nullable=False),
        sa.Column("storage_bytes", sa.BigInteger(), nullable=False),
        sa.Column("conversations", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_usage_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "month", name=op.f("pk_billing_usage")),
    )
    op.create_table(
        "billing_invoices",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("subscription_id", sa.UUID(), nullable=True),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("discount_amount", sa.BigInteger(), nullable=False),
        sa.Column("tax_rate_bps", sa.Integer(), nullable=False),
        sa.Column("tax_amount", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid", sa.BigInteger(), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_charge_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("charge_attempts", sa.Integer(), nullable=False),
        sa.Column("last_charge_error", sa.Text(), nullable=True),
        sa.Column("pdf", sa.LargeBinary(), nullable=True),
        sa.Column("pdf_rendered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('open', 'paid', 'void', 'uncollectible', 'refunded', 'partially_refunded')",
            name=op.f("ck_billing_invoices_status_known"),
        ),
        sa.CheckConstraint(
            "amount_refunded BETWEEN 0 AND amount_paid",
            name=op.f("ck_billing_invoices_refund_within_paid"),
        ),
        sa.CheckConstraint(
            "total >= 0 AND amount_paid >= 0", name=op.f("ck_billing_invoices_amounts_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["billing_subscriptions.id"],
            name=op.f("fk_billing_invoices_subscription_id_billing_subscriptions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_invoices_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_invoices")),
    )
    op.create_index(
        "ix_billing_invoices_due_charge",
        "billing_invoices",
        ["next_charge_at"],
        unique=False,
        postgresql_where=sa.text("status = 'open' AND next_charge_at IS NOT NULL"),
    )
    op.create_index(
        "ix_billing_invoices_tenant",
        "billing_invoices",
        ["tenant_id", "created_at", "id"],
        unique=False,
    )
    op.create_index("uq_billing_invoices_number", "billing_invoices", ["number"], unique=True)
    op.create_table(
        "billing_subscription_add_ons",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("subscription_id", sa.UUID(), nullable=False),
        sa.Column("add_on_id", sa.UUID(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column(
            "attached_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("detach_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("detached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.CheckConstraint(
            "quantity > 0", name=op.f("ck_billing_subscription_add_ons_quantity_positive")
        ),
        sa.ForeignKeyConstraint(
            ["add_on_id"],
            ["billing_add_ons.id"],
            name=op.f("fk_billing_subscription_add_ons_add_on_id_billing_add_ons"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["billing_subscriptions.id"],
            name=op.f("fk_billing_subscription_add_ons_subscription_id_billing_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_subscription_add_ons_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_subscription_add_ons")),
    )
    op.create_index(
        "uq_billing_subscription_add_ons_attached",
        "billing_subscription_add_ons",
        ["subscription_id", "add_on_id"],
        unique=True,
        postgresql_where=sa.text("detached_at IS NULL"),
    )
    op.create_table(
        "billing_invoice_lines",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("invoice_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("plan_id", sa.UUID(), nullable=True),
        sa.Column("add_on_id", sa.UUID(), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["add_on_id"],
            ["billing_add_ons.id"],
            name=op.f("fk_billing_invoice_lines_add_on_id_billing_add_ons"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["billing_invoices.id"],
            name=op.f("fk_billing_invoice_lines_invoice_id_billing_invoices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["billing_plans.id"],
            name=op.f("fk_billing_invoice_lines_plan_id_billing_plans"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_invoice_lines_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_invoice_lines")),
    )
    op.create_index(
        "ix_billing_invoice_lines_invoice",
        "billing_invoice_lines",
        ["invoice_id", "position"],
        unique=False,
    )
    op.create_table(
        "billing_payments",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("invoice_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("provider_reference", sa.String(length=255), nullable=True),
        sa.Column("payment_method_id", sa.UUID(), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('charge', 'refund')", name=op.f("ck_billing_payments_kind_known")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')",
            name=op.f("ck_billing_payments_status_known"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_billing_payments_amount_positive")),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["billing_invoices.id"],
            name=op.f("fk_billing_payments_invoice_id_billing_invoices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["payment_method_id"],
            ["billing_payment_methods.id"],
            name=op.f("fk_billing_payments_payment_method_id_billing_payment_methods"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_payments_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_payments")),
    )
    op.create_index(
        "ix_billing_payments_invoice",
        "billing_payments",
        ["invoice_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_billing_payments_reference",
        "billing_payments",
        ["provider", "provider_reference"],
        unique=False,
    )
    op.create_index(
        "uq_billing_payments_idempotency_key", "billing_payments", ["idempotency_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_billing_payments_idempotency_key", table_name="billing_payments")
    op.drop_index("ix_billing_payments_reference", table_name="billing_payments")
    op.drop_index("ix_billing_payments_invoice", table_name="billing_payments")
    op.drop_table("billing_payments")
    op.drop_index("ix_billing_invoice_lines_invoice", table_name="billing_invoice_lines")
    op.drop_table("billing_invoice_lines")
    op.drop_index(
        "uq_billing_subscription_add_ons_attached",
        table_name="billing_subscription_add_ons",
        postgresql_where=sa.text("detached_at IS NULL"),
    )
    op.drop_table("billing_subscription_add_ons")
    op.drop_index("uq_billing_invoices_number", table_name="billing_invoices")
    op.drop_index("ix_billing_invoices_tenant", table_name="billing_invoices")
    op.drop_index(
        "ix_billing_invoices_due_charge",
        table_name="billing_invoices",
        postgresql_where=sa.text("status = 'open' AND next_charge_at IS NOT NULL"),
    )
    op.drop_table("billing_invoices")
    op.drop_table("billing_usage")
    op.drop_index(
        "uq_billing_subscriptions_live",
        table_name="billing_subscriptions",
        postgresql_where=sa.text("status <> 'cancelled'"),
    )
    op.drop_index(
        "ix_billing_subscriptions_period_end",
        table_name="billing_subscriptions",
        postgresql_where=sa.text("status <> 'cancelled'"),
    )
    op.drop_table("billing_subscriptions")
    op.drop_index("uq_billing_payment_methods_token", table_name="billing_payment_methods")
    op.drop_index(
        "uq_billing_payment_methods_default",
        table_name="billing_payment_methods",
        postgresql_where=sa.text("is_default"),
    )
    op.drop_table("billing_payment_methods")
    op.drop_table("billing_accounts")
    op.drop_table("billing_provider_events")
    op.drop_index("uq_billing_plans_code", table_name="billing_plans")
    op.drop_table("billing_plans")
    op.drop_index("uq_billing_coupons_code", table_name="billing_coupons")
    op.drop_table("billing_coupons")
    op.drop_index("uq_billing_add_ons_code", table_name="billing_add_ons")
    op.drop_table("billing_add_ons")
    op.execute("DROP SEQUENCE billing_invoice_number_seq")
