"""Billing Admin analytics: MRR, revenue by plan, monthly revenue, churn.

Every money figure is integer minor units of the ``currency`` beside it; figures in
different currencies are listed side by side, never added together. Rates are integer
basis points (``2500`` = 25 %), so no float ever carries a figure.
"""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import Field

from api.schemas.common import Instant, Query
from shared.schemas.base import View


class CurrencyMrr(View):
    currency: str
    subscriptions: int = Field(description="active and past-due subscriptions billed in it")
    plan_mrr: int = Field(description="their plans' prices per month (yearly / 12)")
    discounts: int = Field(description="forever and still-repeating coupons, per month")
    add_on_mrr: int = Field(description="attached add-ons not detaching, per month")
    mrr: int = Field(description="plan_mrr - discounts + add_on_mrr")
    mrr_display: str


class MrrView(View):
    as_of: dt.datetime
    subscriptions: dict[str, int] = Field(description="count per status")
    currencies: list[CurrencyMrr]


class RevenueByPlanQuery(Query):
    from_: Instant | None = Field(None, alias="from", description="paid at or after")
    to: Instant | None = Field(None, description="paid before")


class PlanRevenue(View):
    plan_id: uuid.UUID | None = Field(description="null: a plan deleted since")
    plan_code: str | None
    plan_name: str | None
    currency: str
    invoices: int
    paid: int
    refunded: int
    revenue: int = Field(description="paid - refunded")
    revenue_display: str


class RevenueByPlanView(View):
    paid_from: dt.datetime | None = Field(description="the `from` asked for; null: all time")
    paid_to: dt.datetime | None = Field(description="the `to` asked for; null: up to now")
    items: list[PlanRevenue]


class MonthRevenue(View):
    month: str = Field(description="YYYY-MM (UTC)")
    paid: int
    refunded: int
    net: int


class CurrencyRevenueSeries(View):
    currency: str
    total_net: int
    months: list[MonthRevenue]


class MonthlyRevenueView(View):
    months: list[str] = Field(description="the 12 UTC months covered, oldest first")
    currencies: list[CurrencyRevenueSeries]


class CurrencyChurn(View):
    currency: str
    mrr_at_start: int
    mrr_lost: int
    rate_bps: int


class ChurnView(View):
    month: str = Field(description="the current UTC month, YYYY-MM")
    month_start: dt.datetime
    live_at_start: int = Field(description="paid (not trialing) subscriptions live then")
    cancelled: int = Field(description="of those, ended since")
    rate_bps: int = Field(description="cancelled / live_at_start, basis points, half up")
    revenue: list[CurrencyChurn] = Field(description="revenue churn at list price")


class AnalyticsDashboard(View):
    mrr: MrrView
    revenue_by_plan: RevenueByPlanView
    revenue_monthly: MonthlyRevenueView
    churn: ChurnView
