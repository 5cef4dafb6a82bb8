"""Billing Admin: the platform catalogue (plans, coupons, add-ons) and revenue analytics.

Super-admin routes under /api/admin/billing, each audited (:func:`api.endpoint.audit_call`);
the logic is in :mod:`shared.billing.catalogue` and :mod:`shared.billing.analytics`.
"""

from __future__ import annotations

import datetime as dt

from api.endpoint import endpoint
from api.schemas.billing_analytics import (
    AnalyticsDashboard,
    ChurnView,
    MonthlyRevenueView,
    MrrView,
    RevenueByPlanQuery,
    RevenueByPlanView,
)
from api.schemas.billing_catalogue import (
    AddOnCreate,
    AddOnUpdate,
    AddOnView,
    CouponCreate,
    CouponListQuery,
    CouponUpdate,
    CouponView,
    PlanCreate,
    PlanUpdate,
    PlanView,
)
from api.schemas.common import Page
from shared.billing import analytics, catalogue

TAGS = ("Billing Admin",)


def admin(summary: str, **options):
    """``@endpoint`` for this group: a super-admin route, audited."""
    return endpoint(summary, super_admin=True, tags=TAGS, **options)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _audit(req, row, **extra) -> None:
    req.context.audit_details = {"id": str(row.id), "code": row.code, **extra}


def _changes(body) -> dict:
    return body.model_dump(exclude_unset=True)


def _jsonable(changes: dict) -> dict:
    return {
        name: value if isinstance(value, bool | int | str | None) else str(value)
        for name, value in changes.items()
    }


# --- plans ---------------------------------------------------------------------------------


class PlansResource:
    @admin("List all billing plans", response=list[PlanView], description="Archived ones too.")
    def on_get(self, req, resp, *, ctx):
        return [catalogue.plan_view(plan) for plan in catalogue.list_plans(req.context.db)]

    @admin(
        "Create a billing plan",
        errors=(409,),
        body=PlanCreate,
        response=PlanView,
        status=201,
        description="409 when the code is taken. `is_default_trial: true` makes it the plan"
        " new workspaces trial on (the previous default loses the flag).",
    )
    def on_post(self, req, resp, *, ctx, body: PlanCreate):
        plan = catalogue.create_plan(req.context.db, body.model_dump())
        _audit(req, plan)
        return catalogue.plan_view(plan)


class PlanResource:
    @admin("Get a billing plan by ID", response=PlanView)
    def on_get(self, req, resp, *, ctx, id):
        return catalogue.plan_view(catalogue.get_plan(req.context.db, id))

    @admin(
        "Update a billing plan",
        errors=(409,),
        body=PlanUpdate,
        response=PlanView,
        description="Price changes apply at each subscription's next renewal. Currency and"
        " interval cannot change while live subscriptions use the plan (409).",
    )
    def on_patch(self, req, resp, *, ctx, id, body: PlanUpdate):
        changes = _changes(body)
        plan = catalogue.update_plan(req.context.db, id, changes)
        _audit(req, plan, changes=_jsonable(changes))
        return catalogue.plan_view(plan)

    @admin(
        "Delete a billing plan",
        status=204,
        errors=(409,),
        description="409 while any subscription uses (or used) it: archive it with PATCH"
        " `is_active: false`. Coupons limited to it lose it; one left with no plan is"
        " deactivated.",
    )
    def on_delete(self, req, resp, *, ctx, id):
        req.context.audit_details = {"id": str(id)}
        catalogue.delete_plan(req.context.db, id)


# --- coupons -------------------------------------------------------------------------------


class CouponsResource:
    @admin(
        "List all coupons",
        query=CouponListQuery,
        response=Page[CouponView],
        description="Newest first; `is_active` filters.",
    )
    def on_get(self, req, resp, *, ctx, query: CouponListQuery):
        found = catalogue.list_coupons(req.context.db, **query.model_dump())
        return {
            "items": [catalogue.coupon_view(coupon) for coupon in found.items],
            "next_cursor": found.next_cursor,
        }

    @admin(
        "Create a coupon",
        errors=(409,),
        body=CouponCreate,
        response=CouponView,
        status=201,
        description="`percent_off` (1-100) or `amount_off` with its `currency`; `duration`"
        " `once`, `forever` or `repeating` with `duration_periods`; `eligible_plan_ids` must"
        " exist (and be priced in an amount coupon's currency). 409 when the code is taken.",
    )
    def on_post(self, req, resp, *, ctx, body: CouponCreate):
        coupon = catalogue.create_coupon(req.context.db, body.model_dump(), _now())
        _audit(req, coupon)
        return catalogue.coupon_view(coupon)


class CouponResource:
    @admin(
        "Update a coupon",
        errors=(409,),
        body=CouponUpdate,
        response=CouponView,
        description="The discount (kind, amount, currency, duration) is fixed once redeemed"
        " (409); name, expiry, limits, eligible plans and `is_active` can always change.",
    )
    def on_patch(self, req, resp, *, ctx, id, body: CouponUpdate):
        changes = _changes(body)
        coupon = catalogue.update_coupon(req.context.db, id, changes, _now())
        _audit(req, coupon, changes=_jsonable(changes))
        return catalogue.coupon_view(coupon)

    @admin(
        "Delete a coupon",
        status=204,
        description="Subscriptions holding it pay full price from their next renewal;"
        " PATCH `is_active: false` only stops new redemptions.",
    )
    def on_delete(self, req, resp, *, ctx, id):
        req.context.audit_details = {"id": str(id)}
        catalogue.delete_coupon(req.context.db, id)


# --- add-ons -------------------------------------------------------------------------------


class AddOnsResource:
    @admin("List all add-ons", response=list[AddOnView], description="Archived ones too.")
    def on_get(self, req, resp, *, ctx):
        return [catalogue.add_on_view(row) for row in catalogue.list_add_ons(req.context.db)]

    @admin(
        "Create an add-on",
        errors=(409,),
        body=AddOnCreate,
        response=AddOnView,
        status=201,
        description="409 when the code is taken.",
    )
    def on_post(self, req, resp, *, ctx, body: AddOnCreate):
        add_on = catalogue.create_add_on(req.context.db, body.model_dump())
        _audit(req, add_on)
        return catalogue.add_on_view(add_on)


class AddOnResource:
    @admin(
        "Update an add-on",
        errors=(409,),
        body=AddOnUpdate,
        response=AddOnView,
        description="Price changes apply at each attachment's next renewal; the currency is"
        " fixed while attached (409).",
    )
    def on_patch(self, req, resp, *, ctx, id, body: AddOnUpdate):
        changes = _changes(body)
        add_on = catalogue.update_add_on(req.context.db, id, changes)
        _audit(req, add_on, changes=_jsonable(changes))
        return catalogue.add_on_view(add_on)

    @admin(
        "Delete an add-on",
        status=204,
        errors=(409,),
        description="409 while attached to a subscription (or kept in one's history):"
        " archive it with PATCH `is_active: false`.",
    )
    def on_delete(self, req, resp, *, ctx, id):
        req.context.audit_details = {"id": str(id)}
        catalogue.delete_add_on(req.context.db, id)


# --- analytics -----------------------------------------------------------------------------


class AnalyticsResource:
    @admin(
        "Combined analytics dashboard",
        response=AnalyticsDashboard,
        description="MRR, revenue by plan (all time), monthly revenue and churn in one body.",
    )
    def on_get(self, req, resp, *, ctx):
        return analytics.dashboard(req.context.db, _now())


class MrrResource:
    @admin(
        "Monthly recurring revenue summary",
        response=MrrView,
        description="Active and past-due subscriptions' prices per month (yearly / 12), net"
        " of forever and repeating coupons, plus attached add-ons; per currency, never summed"
        " across currencies.",
    )
    def on_get(self, req, resp, *, ctx):
        return analytics.mrr(req.context.db, _now())


class RevenueByPlanResource:
    @admin(
        "Revenue breakdown by plan",
        query=RevenueByPlanQuery,
        response=RevenueByPlanView,
        description="Paid invoices minus refunds per plan and currency, by when they were"
        " paid (`from`/`to`, default all time).",
    )
    def on_get(self, req, resp, *, ctx, query: RevenueByPlanQuery):
        return analytics.revenue_by_plan(req.context.db, start=query.from_, end=query.to)


class RevenueMonthlyResource:
    @admin(
        "Monthly revenue over time (last 12 months)",
        response=MonthlyRevenueView,
        description="UTC calendar months, oldest first, the current one last; per currency:"
        " paid, refunded (when the refund settled) and net.",
    )
    def on_get(self, req, resp, *, ctx):
        return analytics.revenue_monthly(req.context.db, _now())


class ChurnResource:
    @admin(
        "Churn metrics for current month",
        response=ChurnView,
        description="Paid subscriptions ended this UTC month over those live at its start"
        " (basis points), and the MRR they took with them per currency.",
    )
    def on_get(self, req, resp, *, ctx):
        return analytics.churn(req.context.db, _now())


ROUTES = [
    ("/api/admin/billing/plans", PlansResource()),
    ("/api/admin/billing/plans/{id:uuid}", PlanResource()),
    ("/api/admin/billing/coupons", CouponsResource()),
    ("/api/admin/billing/coupons/{id:uuid}", CouponResource()),
    ("/api/admin/billing/add-ons", AddOnsResource()),
    ("/api/admin/billing/add-ons/{id:uuid}", AddOnResource()),
    ("/api/admin/billing/analytics", AnalyticsResource()),
    ("/api/admin/billing/analytics/mrr", MrrResource()),
    ("/api/admin/billing/analytics/revenue-by-plan", RevenueByPlanResource()),
    ("/api/admin/billing/analytics/revenue-monthly", RevenueMonthlyResource()),
    ("/api/admin/billing/analytics/churn", ChurnResource()),
]
