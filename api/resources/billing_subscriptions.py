"""The workspace's subscription, its add-ons, invoices and usage (admin · billing.manage)."""

from __future__ import annotations

from api.endpoint import endpoint
from api.request_parts import idempotency_key
from api.schemas.billing_subscriptions import (
    AttachAddOnBody,
    AttachedAddOnView,
    ChangePlanBody,
    InvoiceLineView,
    InvoiceQuery,
    InvoiceView,
    PlanBrief,
    SubscribeBody,
    SubscriptionChanged,
    SubscriptionView,
    UsageView,
)
from api.schemas.common import Page
from shared import idempotency
from shared.billing import invoices, subscriptions, usage

TAGS = ("Billing",)
PERMISSION = "billing.manage"


def _subscription(session, subscription) -> dict:
    plan = subscriptions.plan_of(session, subscription.plan_id)
    return SubscriptionView.data(subscription) | {"plan": PlanBrief.data(plan)}


def _invoice(session, invoice) -> dict:
    lines = invoices.lines_of(session, invoice.tenant_id, [invoice.id])[invoice.id]
    return InvoiceView.data(invoice) | {"lines": [_line(x) for x in lines]}


def _line(line) -> dict:
    return InvoiceLineView.data(line)


def _changed(session, changed: subscriptions.Changed) -> dict:
    session.flush()
    return {
        "subscription": _subscription(session, changed.subscription),
        "invoice": _invoice(session, changed.invoice) if changed.invoice else None,
    }


IDEMPOTENT = (
    " `Idempotency-Key` (up to 255 characters, per API key or user): a repeat within 24 h"
    " returns the first response and charges nothing again (409 while the first is still"
    " running); the key with another body answers 422."
)


def _idempotent(req, ctx, route: str, body):
    # NOTE: area "billing": the keys' names as they were when billing had its own module.
    return idempotency.claim_or_replay(
        req.context.db, ctx, "billing", route, idempotency_key(req), body.model_dump(mode="json")
    )


class SubscriptionResource:
    @endpoint(
        "Get current subscription and plan",
        permission=PERMISSION,
        response=SubscriptionView,
        errors=(404,),
        tags=TAGS,
        description="The live subscription, else the latest cancelled one; 404 when none.",
    )
    def on_get(self, req, resp, *, ctx):
        session = req.context.db
        return _subscription(session, subscriptions.current_subscription(session, ctx))

    @endpoint(
        "Subscribe to a plan",
        permission=PERMISSION,
        body=SubscribeBody,
        response=SubscriptionChanged,
        status=201,
        errors=(409, 429),
        tags=TAGS,
        description=(
            "Ends a trial (or starts anew) on the plan with a first invoice, charged after"
            " commit. 409 while a paid subscription is live; 422 naming `payment_method`"
            " when a paid plan has no default payment method, `coupon_code` for a coupon"
            " that cannot be redeemed; 429 after 20 unknown coupon codes in 10 minutes"
            " (counted with `/api/billing/coupons/validate`)." + IDEMPOTENT
        ),
    )
    def on_post(self, req, resp, *, ctx, body: SubscribeBody):
        session = req.context.db
        claim, first = _idempotent(req, ctx, "subscribe", body)
        if first is not None:
            return first
        changed = subscriptions.subscribe(
            session, ctx, plan_id=body.plan_id, coupon_code=body.coupon_code
        )
        return idempotency.remember(session, claim, _changed(session, changed))


class ChangePlanResource:
    @endpoint(
        "Upgrade or downgrade subscription plan",
        permission=PERMISSION,
        body=ChangePlanBody,
        response=SubscriptionChanged,
        errors=(409,),
        tags=TAGS,
        description=(
            "An upgrade applies now with a prorated invoice (credit for the unused time at"
            " the old price, the rest of the period at the new); a downgrade is stored as"
            " `pending_plan_id` and applied at the period end. 409 without a live subscription."
            + IDEMPOTENT
        ),
    )
    def on_post(self, req, resp, *, ctx, body: ChangePlanBody):
        session = req.context.db
        claim, first = _idempotent(req, ctx, "change-plan", body)
        if first is not None:
            return first
        changed = subscriptions.change_plan(session, ctx, plan_id=body.plan_id)
        return idempotency.remember(session, claim, _changed(session, changed))


class CancelResource:
    @endpoint(
        "Cancel subscription",
        permission=PERMISSION,
        response=SubscriptionView,
        errors=(409,),
        tags=TAGS,
        description="Sets `cancel_at_period_end`; `billing_cycle` ends it at the period end.",
    )
    def on_post(self, req, resp, *, ctx):
        session = req.context.db
        return _subscription(session, subscriptions.cancel(session, ctx))


def _attached(row, add_on) -> dict:
    return {
        "id": row.id,
        "add_on_id": add_on.id,
        "code": add_on.code,
        "name": add_on.name,
        "currency": add_on.currency,
        "quantity": row.quantity,
        "price_amount": row.price_amount,
        "extra_seats": add_on.extra_seats,
        "extra_monthly_messages": add_on.extra_monthly_messages,
        "extra_monthly_ai_replies": add_on.extra_monthly_ai_replies,
        "extra_storage_bytes": add_on.extra_storage_bytes,
        "attached_at": row.attached_at,
        "detach_at_period_end": row.detach_at_period_end,
    }


class SubscriptionAddOnsResource:
    @endpoint(
        "List attached add-ons",
        permission=PERMISSION,
        response=list[AttachedAddOnView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx):
        return [_attached(*pair) for pair in subscriptions.attached_add_ons(req.context.db, ctx)]

    @endpoint(
        "Attach an add-on to subscription",
        permission=PERMISSION,
        body=AttachAddOnBody,
        response=SubscriptionChanged,
        status=201,
        errors=(409,),
        tags=TAGS,
        description=(
            "Charges the rest of the current period (prorated) after commit. 409 when it is"
            " attached already or the subscription is a trial." + IDEMPOTENT
        ),
    )
    def on_post(self, req, resp, *, ctx, body: AttachAddOnBody):
        session = req.context.db
        claim, first = _idempotent(req, ctx, "add-on", body)
        if first is not None:
            return first
        changed = subscriptions.attach_add_on(
            session, ctx, add_on_id=body.add_on_id, quantity=body.quantity
        )
        return idempotency.remember(session, claim, _changed(session, changed))


class SubscriptionAddOnResource:
    @endpoint(
        "Detach an add-on from subscription",
        permission=PERMISSION,
        status=204,
        tags=TAGS,
        description="`{id}` is the add-on's id; it stays usable until the period end.",
    )
    def on_delete(self, req, resp, *, ctx, id):
        subscriptions.detach_add_on(req.context.db, ctx, id)


class InvoicesResource:
    @endpoint(
        "List invoices",
        permission=PERMISSION,
        query=InvoiceQuery,
        response=Page[InvoiceView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: InvoiceQuery):
        session = req.context.db
        page = invoices.list_invoices(
            session, ctx, status=query.status, limit=query.limit, cursor=query.cursor
        )
        lines = invoices.lines_of(session, ctx.tenant_id, [i.id for i in page.items])
        items = [
            InvoiceView.data(i) | {"lines": [_line(x) for x in lines[i.id]]} for i in page.items
        ]
        return {"items": items, "next_cursor": page.next_cursor}


class UsageResource:
    @endpoint(
        "Get current month's usage",
        permission=PERMISSION,
        response=UsageView,
        tags=TAGS,
        description="This UTC month's usage beside the plan's limits (null: unlimited).",
    )
    def on_get(self, req, resp, *, ctx):
        return usage.current_usage(req.context.db, ctx.tenant_id)


ROUTES = [
    ("/api/billing/subscription", SubscriptionResource()),
    ("/api/billing/subscription/change-plan", ChangePlanResource()),
    ("/api/billing/subscription/cancel", CancelResource()),
    ("/api/billing/subscription/add-ons", SubscriptionAddOnsResource()),
    ("/api/billing/subscription/add-ons/{id:uuid}", SubscriptionAddOnResource()),
    ("/api/billing/invoices", InvoicesResource()),
    ("/api/billing/usage", UsageResource()),
]
