"""Billing catalogue fixtures: a super admin, catalogue rows, tenants and subscriptions."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import text

from shared.db import session_scope
from shared.models import (
    BillingAddOn,
    BillingCoupon,
    BillingPlan,
    BillingSubscription,
    BillingSubscriptionAddOn,
    Tenant,
)
from tests.admin.conftest import create_super_admin, login


@pytest.fixture(scope="module")
def root(app):
    """A super admin, logged in over HTTP (one per module: argon2 is slow on purpose)."""
    import falcon.testing

    return login(falcon.testing.TestClient(app), create_super_admin())


def code(prefix: str = "c") -> str:
    """A catalogue code no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def plan_body(**overrides) -> dict:
    return {
        "code": code("plan"),
        "name": "Team",
        "currency": "USD",
        "price_amount": 2900,
    } | overrides


@pytest.fixture
def empty_billing():
    """No subscriptions, invoices or catalogue rows: analytics see only a test's fixtures."""
    with session_scope() as session:
        session.execute(
            text(
                "TRUNCATE billing_payments, billing_invoice_lines, billing_invoices,"
                " billing_subscription_add_ons, billing_subscriptions, billing_coupons,"
                " billing_add_ons, billing_plans CASCADE"
            )
        )


def add_plan(session, **fields) -> BillingPlan:
    plan = BillingPlan(
        id=uuid.uuid4(),
        **(
            {"code": code("plan"), "name": "Plan", "currency": "USD", "price_amount": 1000} | fields
        ),
    )
    session.add(plan)
    session.flush()
    return plan


def add_coupon(session, **fields) -> BillingCoupon:
    coupon = BillingCoupon(
        id=uuid.uuid4(),
        **({"code": code("cp"), "name": "Coupon", "percent_off": 10, "duration": "once"} | fields),
    )
    session.add(coupon)
    session.flush()
    return coupon


def add_add_on(session, **fields) -> BillingAddOn:
    add_on = BillingAddOn(
        id=uuid.uuid4(),
        **({"code": code("ao"), "name": "Extra", "currency": "USD", "price_amount": 500} | fields),
    )
    session.add(add_on)
    session.flush()
    return add_on


def add_tenant(session) -> Tenant:
    tenant = Tenant(id=uuid.uuid4(), name="Fixture Co", slug=code("t"))
    session.add(tenant)
    session.flush()
    return tenant


def add_subscription(
    session, plan: BillingPlan, *, status: str = "active", created_at: dt.datetime, **fields
) -> BillingSubscription:
    """A subscription of a new tenant, as the subscriptions module would have left it."""
    tenant = add_tenant(session)
    subscription = BillingSubscription(
        id=uuid.uuid4(),
        tenant_id=tenant.id,
        plan_id=plan.id,
        status=status,
        currency=plan.currency,
        price_amount=fields.pop("price_amount", plan.price_amount),
        current_period_start=fields.pop("current_period_start", created_at),
        current_period_end=fields.pop("current_period_end", created_at + dt.timedelta(days=30)),
        created_at=created_at,
        **fields,
    )
    session.add(subscription)
    session.flush()
    return subscription


def attach(session, subscription, add_on, **fields) -> BillingSubscriptionAddOn:
    row = BillingSubscriptionAddOn(
        id=uuid.uuid4(),
        tenant_id=subscription.tenant_id,
        subscription_id=subscription.id,
        add_on_id=add_on.id,
        price_amount=fields.pop("price_amount", add_on.price_amount),
        **fields,
    )
    session.add(row)
    session.flush()
    return row
