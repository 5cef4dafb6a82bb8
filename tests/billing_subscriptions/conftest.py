"""Billing rows for the subscription tests: plans, coupons, add-ons and payment methods.

The catalogue's routes (billcat) and payment methods (billpay) are other parts of billing,
so these tests insert those rows directly; everything under test goes through the API or
the scheduler's functions. Time is moved, not slept: ``subscriptions.*`` and ``cycle.run``
take the instant to act at (``now``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from shared.billing import charge_queue, usage
from shared.db import session_scope
from shared.models.billing import (
    BillingAddOn,
    BillingCoupon,
    BillingInvoice,
    BillingInvoiceLine,
    BillingPaymentMethod,
    BillingPlan,
    BillingSubscription,
)

_n = itertools.count(1)
UTC = dt.UTC


def make_plan(price: int = 1000, *, interval: str = "month", **fields: Any) -> uuid.UUID:
    n = next(_n)
    with session_scope() as session:
        plan = BillingPlan(
            code=f"plan-{n}-{uuid.uuid4().hex[:6]}",
            name=f"Plan {n}",
            currency=fields.pop("currency", "USD"),
            price_amount=price,
            billing_interval=interval,
            trial_days=fields.pop("trial_days", 0),
            features={},
            is_active=True,
            is_default_trial=fields.pop("is_default_trial", False),
            sort_order=0,
            **fields,
        )
        session.add(plan)
        session.flush()
        return plan.id


def on_plan(workspace, **limits) -> uuid.UUID:
    """Subscribe ``workspace`` to a free plan with ``limits`` (no payment method needed)."""
    plan = make_plan(0, **limits)
    resp = workspace.call("POST", "/api/billing/subscription", json={"plan_id": str(plan)})
    assert resp.status_code == 201, resp.text
    return plan


def make_coupon(**fields: Any) -> str:
    code = f"SAVE{next(_n)}{uuid.uuid4().hex[:4]}".upper()
    with session_scope() as session:
        session.add(
            BillingCoupon(
                code=code,
                name=code,
                times_redeemed=0,
                eligible_plan_ids=fields.pop("eligible_plan_ids", []),
                is_active=True,
                **(
                    {"duration": "once"}
                    | ({} if "amount_off" in fields else {"percent_off": 10})
                    | fields
                ),
            )
        )
    return code


def make_add_on(price: int = 500, **fields: Any) -> uuid.UUID:
    n = next(_n)
    with session_scope() as session:
        add_on = BillingAddOn(
            code=f"addon-{n}-{uuid.uuid4().hex[:6]}",
            name=f"Add-on {n}",
            currency=fields.pop("currency", "USD"),
            price_amount=price,
            is_active=True,
            **(
                {
                    "extra_seats": 0,
                    "extra_monthly_messages": 0,
                    "extra_monthly_ai_replies": 0,
                    "extra_storage_bytes": 0,
                }
                | fields
            ),
        )
        session.add(add_on)
        session.flush()
        return add_on.id


def add_payment_method(tenant_id: str | uuid.UUID) -> None:
    with session_scope() as session:
        session.add(
            BillingPaymentMethod(
                tenant_id=uuid.UUID(str(tenant_id)),
                provider="fake",
                provider_payment_method_id=f"pm_{uuid.uuid4().hex}",
                brand="visa",
                last4="4242",
                is_default=True,
            )
        )


def subscription_of(tenant_id) -> BillingSubscription | None:
    with session_scope() as session:
        return session.scalar(
            select(BillingSubscription)
            .where(BillingSubscription.tenant_id == uuid.UUID(str(tenant_id)))
            .order_by(
                (BillingSubscription.status != "cancelled").desc(),
                BillingSubscription.created_at.desc(),
            )
            .limit(1)
        )


def invoices_of(tenant_id, reason: str | None = None) -> list[BillingInvoice]:
    with session_scope() as session:
        query = select(BillingInvoice).where(BillingInvoice.tenant_id == uuid.UUID(str(tenant_id)))
        if reason:
            query = query.where(BillingInvoice.reason == reason)
        return list(session.scalars(query.order_by(BillingInvoice.number)))


def lines_of(invoice_id) -> list[tuple[str, int]]:
    with session_scope() as session:
        return [
            (line.kind, line.amount)
            for line in session.scalars(
                select(BillingInvoiceLine)
                .where(BillingInvoiceLine.invoice_id == invoice_id)
                .order_by(BillingInvoiceLine.position)
            )
        ]


@pytest.fixture(scope="package", autouse=True)
def trial_plan(database):
    """The platform's trial plan (unlimited), so every registration here starts a trial;
    unflagged afterwards, so other directories' workspaces start none."""
    plan_id = make_plan(4900, is_default_trial=True, trial_days=14)
    yield plan_id
    with session_scope() as session:
        plan = session.get(BillingPlan, plan_id)
        plan.is_default_trial = False


@pytest.fixture(autouse=True)
def fresh_limits():
    """Limits are cached per process; each test starts from the database."""
    usage._cache.clear()
    yield
    usage._cache.clear()


class Charges:
    """The ``charge_invoice`` hand-off, recorded: what would be charged, after commit."""

    def __init__(self) -> None:
        self.sent: list[uuid.UUID] = []

    def __call__(self, ids) -> None:
        self.sent.extend(ids)


@pytest.fixture
def charges():
    recorder = Charges()
    previous = charge_queue.QUEUE.enqueuer
    charge_queue.set_enqueuer(recorder)
    yield recorder
    charge_queue.set_enqueuer(previous)


@pytest.fixture
def other_workspace(client):
    from tests.workspaces import register

    return register(client)
