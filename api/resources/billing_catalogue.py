"""Billing (tenant side of the catalogue): the plans and add-ons on offer, coupon checks."""

from __future__ import annotations

import datetime as dt

from api.endpoint import endpoint
from api.schemas.billing_catalogue import (
    CouponValidate,
    CouponValidation,
    PublicAddOnView,
    PublicPlanView,
)
from shared.billing import catalogue

TAGS = ("Billing",)
MANAGE = "billing.manage"


class PlansResource:
    @endpoint(
        "List available billing plans",
        permission=MANAGE,
        response=list[PublicPlanView],
        description="Active plans only, in display order.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx):
        plans = catalogue.list_plans(req.context.db, active_only=True)
        return [catalogue.plan_view(plan) for plan in plans]


class AddOnsResource:
    @endpoint(
        "List available add-ons",
        permission=MANAGE,
        response=list[PublicAddOnView],
        description="Active add-ons only.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx):
        add_ons = catalogue.list_add_ons(req.context.db, active_only=True)
        return [catalogue.add_on_view(add_on) for add_on in add_ons]


class CouponValidateResource:
    @endpoint(
        "Validate a coupon code",
        permission=MANAGE,
        body=CouponValidate,
        response=CouponValidation,
        description="Returns the coupon's terms and eligible plans and, with `plan_id`, the"
        " discount on that plan's price. Does not redeem. A code that cannot be used answers"
        " 422 naming `code` with a `reason` (`unknown`, `inactive`, `expired`, `exhausted`,"
        " `free_plan`, `ineligible_plan`, `currency_mismatch`). 429 after 20 unknown codes in"
        " 10 minutes.",
        errors=(429,),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: CouponValidate):
        now = dt.datetime.now(dt.UTC)
        return catalogue.check_code(req.context.db, ctx.tenant_id, body.code, body.plan_id, now)


ROUTES = [
    ("/api/billing/plans", PlansResource()),
    ("/api/billing/add-ons", AddOnsResource()),
    ("/api/billing/coupons/validate", CouponValidateResource()),
]
