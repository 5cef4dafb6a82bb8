"""The workspace's subscription, invoices, add-ons and usage (Billing group)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from api.schemas.common import Input, ListQuery
from shared.schemas.base import View

CouponCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=63)]


class SubscribeBody(Input):
    plan_id: uuid.UUID
    coupon_code: CouponCode | None = None


class ChangePlanBody(Input):
    plan_id: uuid.UUID


class AttachAddOnBody(Input):
    add_on_id: uuid.UUID
    quantity: int = Field(1, ge=1, le=10_000)


class InvoiceQuery(ListQuery):
    status: (
        Literal["open", "paid", "void", "uncollectible", "refunded", "partially_refunded"] | None
    ) = None


class PlanBrief(View):
    id: uuid.UUID
    code: str
    name: str
    currency: str
    price_amount: int
    billing_interval: str
    seat_limit: int | None
    monthly_message_limit: int | None
    monthly_ai_reply_limit: int | None
    storage_limit_bytes: int | None


class SubscriptionView(View):
    id: uuid.UUID
    status: Literal["trialing", "active", "past_due", "cancelled"]
    plan_id: uuid.UUID
    plan: PlanBrief | None = None
    currency: str
    price_amount: int
    current_period_start: dt.datetime
    current_period_end: dt.datetime
    trial_ends_at: dt.datetime | None
    cancel_at_period_end: bool
    cancelled_at: dt.datetime | None
    ended_at: dt.datetime | None
    pending_plan_id: uuid.UUID | None
    coupon_id: uuid.UUID | None
    coupon_periods_left: int | None
    past_due_since: dt.datetime | None
    created_at: dt.datetime


class InvoiceLineView(View):
    position: int
    kind: str
    description: str
    quantity: int
    unit_amount: int
    amount: int
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    plan_id: uuid.UUID | None
    add_on_id: uuid.UUID | None


class InvoiceView(View):
    id: uuid.UUID
    number: str
    status: str
    reason: str
    subscription_id: uuid.UUID | None
    currency: str
    subtotal: int
    discount_amount: int
    tax_rate_bps: int
    tax_amount: int
    total: int
    amount_paid: int
    amount_refunded: int
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    paid_at: dt.datetime | None
    next_charge_at: dt.datetime | None
    charge_attempts: int
    created_at: dt.datetime
    lines: list[InvoiceLineView] = []


class SubscriptionChanged(View):
    subscription: SubscriptionView
    invoice: InvoiceView | None = Field(
        None, description="the invoice the change made (charged after commit), if any"
    )


class AttachedAddOnView(View):
    id: uuid.UUID
    add_on_id: uuid.UUID
    code: str
    name: str
    currency: str
    quantity: int
    price_amount: int
    extra_seats: int
    extra_monthly_messages: int
    extra_monthly_ai_replies: int
    extra_storage_bytes: int
    attached_at: dt.datetime
    detach_at_period_end: bool


class UsageCounts(View):
    seats: int
    messages: int
    ai_replies: int
    storage_bytes: int


class UsageLimits(View):
    seats: int | None
    messages: int | None
    ai_replies: int | None
    storage_bytes: int | None


class UsageView(View):
    month: dt.date = Field(description="the UTC calendar month counted (its first day)")
    usage: UsageCounts
    limits: UsageLimits = Field(description="null: unlimited")
    billing_enabled: bool = Field(description="false: no subscription, so no limits apply")
