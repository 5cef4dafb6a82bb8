"""Billing: the platform's catalogue (plans, coupons, add-ons) and each tenant's account.

Money is always an integer amount in minor units (cents) beside an ISO 4217 ``currency``;
no column holds a float. The catalogue is platform-wide (no ``tenant_id``) and managed by
super admins; everything a tenant owns carries its ``tenant_id``.

A subscription keeps the price it was renewed at (``price_amount``), so a plan's price change
reaches it at its next renewal. An invoice is its own outbox: an ``open`` invoice with a
``next_charge_at`` is charged by ``charge_invoice`` (fast path after commit) or re-driven by
``billing_cycle``. Each attempt at the payment provider is a ``billing_payments`` row committed
*before* the provider call, whose ``idempotency_key`` the provider sees: a worker killed
between the provider's charge and our commit retries with the same key and cannot charge twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, Timestamps, UUIDPrimaryKey

#: ``billing_subscriptions.status`` values (API.md, Billing).
SUBSCRIPTION_STATUSES = ("trialing", "active", "past_due", "cancelled")
#: ``billing_invoices.status`` values.
INVOICE_STATUSES = ("open", "paid", "void", "uncollectible", "refunded", "partially_refunded")


def _tenant_fk() -> Any:
    return ForeignKey("tenants.id", ondelete="CASCADE")


class BillingPlan(UUIDPrimaryKey, Timestamps, Base):
    """A plan of the catalogue; a limit of ``None`` means unlimited."""

    __tablename__ = "billing_plans"
    __table_args__ = (
        Index("uq_billing_plans_code", func.lower(text("code")), unique=True),
        CheckConstraint("price_amount >= 0", name="price_not_negative"),
        CheckConstraint("billing_interval IN ('month', 'year')", name="interval_known"),
    )

    code: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(String(3))
    price_amount: Mapped[int] = mapped_column(BigInteger)
    billing_interval: Mapped[str] = mapped_column(String(8), default="month")
    trial_days: Mapped[int] = mapped_column(Integer, default=0)
    seat_limit: Mapped[int | None] = mapped_column(Integer)
    monthly_message_limit: Mapped[int | None] = mapped_column(BigInteger)
    monthly_ai_reply_limit: Mapped[int | None] = mapped_column(BigInteger)
    storage_limit_bytes: Mapped[int | None] = mapped_column(BigInteger)
    features: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: The plan a new workspace's trial runs on (at most one).
    is_default_trial: Mapped[bool] = mapped_column(Boolean, default=False)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)


class BillingCoupon(UUIDPrimaryKey, Timestamps, Base):
    """A discount: ``percent_off`` or ``amount_off`` (in ``currency``), for a duration."""

    __tablename__ = "billing_coupons"
    __table_args__ = (
        Index("uq_billing_coupons_code", func.lower(text("code")), unique=True),
        CheckConstraint(
            "(percent_off IS NULL) <> (amount_off IS NULL)", name="one_kind_of_discount"
        ),
        CheckConstraint("percent_off IS NULL OR percent_off BETWEEN 1 AND 100", name="percent"),
        CheckConstraint("amount_off IS NULL OR amount_off > 0", name="amount_positive"),
        CheckConstraint("duration IN ('once', 'repeating', 'forever')", name="duration_known"),
    )

    code: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(200))
    percent_off: Mapped[int | None] = mapped_column(Integer)
    amount_off: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    duration: Mapped[str] = mapped_column(String(16), default="once")
    #: For ``repeating``: how many billing periods the discount applies to.
    duration_periods: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[dt.datetime | None]
    max_redemptions: Mapped[int | None] = mapped_column(Integer)
    times_redeemed: Mapped[int] = mapped_column(Integer, default=0)
    #: Plans it applies to; empty means every plan.
    eligible_plan_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), default=list
    )
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class BillingAddOn(UUIDPrimaryKey, Timestamps, Base):
    """An extra bought beside a plan; its ``extra_*`` raise the plan's limits."""

    __tablename__ = "billing_add_ons"
    __table_args__ = (
        Index("uq_billing_add_ons_code", func.lower(text("code")), unique=True),
        CheckConstraint("price_amount >= 0", name="price_not_negative"),
    )

    code: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(String(3))
    price_amount: Mapped[int] = mapped_column(BigInteger)
    extra_seats: Mapped[int] = mapped_column(Integer, default=0)
    extra_monthly_messages: Mapped[int] = mapped_column(BigInteger, default=0)
    extra_monthly_ai_replies: Mapped[int] = mapped_column(BigInteger, default=0)
    extra_storage_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class BillingAccount(Timestamps, Base):
    """A tenant's identity at the payment provider and its billing details."""

    __tablename__ = "billing_accounts"

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant_fk(), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_customer_id: Mapped[str | None] = mapped_column(String(255))
    billing_email: Mapped[str | None] = mapped_column(String(254))
    #: Overrides the platform's tax rate (basis points: 2000 = 20 %).
    tax_rate_bps: Mapped[int | None] = mapped_column(Integer)


class BillingSubscription(UUIDPrimaryKey, Timestamps, Base):
    """A tenant's subscription; at most one per tenant is not ``cancelled``."""

    __tablename__ = "billing_subscriptions"
    __table_args__ = (
        Index(
            "uq_billing_subscriptions_live",
            "tenant_id",
            unique=True,
            postgresql_where=text("status <> 'cancelled'"),
        ),
        Index(
            "ix_billing_subscriptions_period_end",
            "current_period_end",
            postgresql_where=text("status <> 'cancelled'"),
        ),
        CheckConstraint(
            "status IN ('trialing', 'active', 'past_due', 'cancelled')", name="status_known"
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant_fk())
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_plans.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    #: The plan's price when this period started (a price change waits for the renewal).
    price_amount: Mapped[int] = mapped_column(BigInteger)
    current_period_start: Mapped[dt.datetime]
    current_period_end: Mapped[dt.datetime]
    trial_ends_at: Mapped[dt.datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    cancelled_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    #: A downgrade waiting for the period end.
    pending_plan_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_plans.id", ondelete="RESTRICT")
    )
    coupon_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_coupons.id", ondelete="SET NULL")
    )
    #: Periods the coupon still applies to (``None``: forever, or no coupon).
    coupon_periods_left: Mapped[int | None] = mapped_column(Integer)
    past_due_since: Mapped[dt.datetime | None]


class BillingSubscriptionAddOn(UUIDPrimaryKey, Base):
    """An add-on attached to a subscription, at the price it was attached or renewed at."""

    __tablename__ = "billing_subscription_add_ons"
    __table_args__ = (
        Index(
            "uq_billing_subscription_add_ons_attached",
            "subscription_id",
            "add_on_id",
            unique=True,
            postgresql_where=text("detached_at IS NULL"),
        ),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant_fk())
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_subscriptions.id", ondelete="CASCADE")
    )
    add_on_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_add_ons.id", ondelete="RESTRICT")
    )
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    price_amount: Mapped[int] = mapped_column(BigInteger)
    attached_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    #: Set by a detach; ``billing_cycle`` ends it at the period end.
    detach_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    detached_at: Mapped[dt.datetime | None]


class BillingPaymentMethod(UUIDPrimaryKey, Base):
    """A card or account kept by the provider; only its token and display facts are stored."""

    __tablename__ = "billing_payment_methods"
    __table_args__ = (
        Index(
            "uq_billing_payment_methods_token",
            "tenant_id",
            "provider_payment_method_id",
            unique=True,
        ),
        Index(
            "uq_billing_payment_methods_default",
            "tenant_id",
            unique=True,
            postgresql_where=text("is_default"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant_fk())
    provider: Mapped[str] = mapped_column(String(32))
    provider_payment_method_id: Mapped[str] = mapped_column(String(255))
    brand: Mapped[str | None] = mapped_column(String(32))
    last4: Mapped[str | None] = mapped_column(String(4))
    exp_month: Mapped[int | None] = mapped_column(Integer)
    exp_year: Mapped[int | None] = mapped_column(Integer)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class BillingInvoice(UUIDPrimaryKey, Timestamps, Base):
    """An invoice and its charge state (it is the outbox of its own ``charge_invoice``)."""

    __tablename__ = "billing_invoices"
    __table_args__ = (
        Index("uq_billing_invoices_number", "number", unique=True),
        Index("ix_billing_invoices_tenant", "tenant_id", "created_at", "id"),
        # One renewal invoice per subscription and period (migration 0025_billing_cycle).
        Index(
            "uq_billing_invoices_cycle",
            "subscription_id",
            "period_start",
            unique=True,
            postgresql_where=text("reason = 'subscription_cycle'"),
        ),
        Index(
            "ix_billing_invoices_due_charge",
            "next_charge_at",
            postgresql_where=text("status = 'open' AND next_charge_at IS NOT NULL"),
        ),
        CheckConstraint(
            "status IN ('open', 'paid', 'void', 'uncollectible', 'refunded', 'partially_refunded')",
            name="status_known",
        ),
        CheckConstraint("total >= 0 AND amount_paid >= 0", name="amounts_not_negative"),
        CheckConstraint("amount_refunded BETWEEN 0 AND amount_paid", name="refund_within_paid"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant_fk())
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_subscriptions.id", ondelete="SET NULL")
    )
    #: Human-facing and gap-free per platform (``INV-000042``), from a sequence.
    number: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(24), default="open")
    #: Why it exists: ``subscription_create``, ``subscription_cycle``, ``plan_change``, ``add_on``.
    reason: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int] = mapped_column(BigInteger)
    discount_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_rate_bps: Mapped[int] = mapped_column(Integer, default=0)
    tax_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger)
    amount_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    period_start: Mapped[dt.datetime | None]
    period_end: Mapped[dt.datetime | None]
    paid_at: Mapped[dt.datetime | None]
    #: When ``charge_invoice`` should (next) try; ``None`` once settled or given up.
    next_charge_at: Mapped[dt.datetime | None]
    charge_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_charge_error: Mapped[str | None] = mapped_column(Text)
    #: The PDF, rendered on its first download and kept.
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    pdf_rendered_at: Mapped[dt.datetime | None]


class BillingInvoiceLine(UUIDPrimaryKey, Base):
    """One line of an invoice; credits (proration of unused time) are negative amounts."""

    __tablename__ = "billing_invoice_lines"
    __table_args__ = (Index("ix_billing_invoice_lines_invoice", "invoice_id", "position"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant_fk())
    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_invoices.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    #: ``plan``, ``add_on``, ``proration_credit``, ``proration_charge``, ``discount``.
    kind: Mapped[str] = mapped_column(String(24))
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    period_start: Mapped[dt.datetime | None]
    period_end: Mapped[dt.datetime | None]
    plan_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_plans.id", ondelete="SET NULL")
    )
    add_on_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_add_ons.id", ondelete="SET NULL")
    )


class BillingPayment(UUIDPrimaryKey, Timestamps, Base):
    """One charge or refund attempt at the provider, committed before the provider call."""

    __tablename__ = "billing_payments"
    __table_args__ = (
        Index("uq_billing_payments_idempotency_key", "idempotency_key", unique=True),
        Index("ix_billing_payments_invoice", "invoice_id", "created_at"),
        Index("ix_billing_payments_reference", "provider", "provider_reference"),
        CheckConstraint("kind IN ('charge', 'refund')", name="kind_known"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "reason IS NULL OR reason IN ('requested', 'duplicate_charge', 'external')",
            name="reason_known",
        ),
        Index(
            "ix_billing_payments_charge_id",
            "charge_id",
            postgresql_where=text("charge_id IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant_fk())
    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_invoices.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(8))
    #: A refund's charge: the money it returns (migration 0032_refund_charge_links).
    charge_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_payments.id", ondelete="SET NULL")
    )
    #: Why a refund was made: ``requested`` (an admin's), ``duplicate_charge`` (a charge
    #: that succeeded after another had paid the invoice; not the invoice's money) or
    #: ``external`` (made at the provider, e.g. in Stripe's dashboard).
    reason: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    provider: Mapped[str] = mapped_column(String(32))
    #: What the provider sees; the same key on a retry is the same charge there.
    idempotency_key: Mapped[str] = mapped_column(String(255))
    #: The provider's id (payment intent, refund) once known.
    provider_reference: Mapped[str | None] = mapped_column(String(255))
    payment_method_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_payment_methods.id", ondelete="SET NULL")
    )
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(Text)
    settled_at: Mapped[dt.datetime | None]


class BillingInvoiceCounter(Base):
    """The last invoice number taken, across the platform (``INV-000042``): one row.

    Not a sequence: a sequence keeps the numbers a rolled-back transaction drew, and skips
    the ones it had logged ahead when the server crashes; invoices must run without gaps.
    ``shared.billing.invoices.next_numbers`` takes numbers by updating this row in the
    invoice's own transaction, so they come back with a rollback.
    """

    __tablename__ = "billing_invoice_counter"
    __table_args__ = (CheckConstraint("singleton", name="one_row"),)

    singleton: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=text("true"))
    last_number: Mapped[int] = mapped_column(BigInteger)


class BillingProviderEvent(Base):
    """A provider webhook received, kept by its id so a replay is applied once."""

    __tablename__ = "billing_provider_events"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    processed_at: Mapped[dt.datetime | None]


class BillingUsage(Base):
    """A tenant's counters for one calendar month (UTC), kept by ``rollup_usage``."""

    __tablename__ = "billing_usage"

    tenant_id: Mapped[uuid.UUID] = mapped_column(_tenant_fk(), primary_key=True)
    month: Mapped[dt.date] = mapped_column(primary_key=True)
    seats: Mapped[int] = mapped_column(Integer, default=0)
    messages: Mapped[int] = mapped_column(BigInteger, default=0)
    ai_replies: Mapped[int] = mapped_column(BigInteger, default=0)
    storage_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    conversations: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
