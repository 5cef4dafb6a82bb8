"""Billing end to end: a workspace subscribes over HTTP, the real worker charges the first
invoice at the fake Stripe, an upgrade's prorated invoice is charged the same way, and a
refund by a super admin goes back through the worker."""

from __future__ import annotations

from sqlalchemy import select

from shared.db import session_scope
from shared.models.billing import BillingInvoice
from tests.billing_subscriptions.conftest import make_plan


def _invoices(tenant_id) -> list[BillingInvoice]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(BillingInvoice)
                .where(BillingInvoice.tenant_id == tenant_id)
                .order_by(BillingInvoice.created_at)
            )
        )


def test_subscribe_upgrade_and_refund_through_the_worker(billing, worker, root):
    import workers.actors.billing  # noqa: F401  (installs the charge and refund enqueuers)

    ws = billing.ws
    small, large = make_plan(2900), make_plan(9900)
    billing.add_method("pm_card_visa")
    resp = ws.call("POST", "/api/billing/subscription", json={"plan_id": str(small)})
    assert resp.status_code == 201, resp.text
    [first] = _invoices(billing.tenant_id)
    assert first.reason == "subscription_create" and first.total == 2900
    billing.wait_status(first.id, "paid")
    assert ws.call("GET", "/api/billing/subscription").json["status"] == "active"

    resp = ws.call("POST", "/api/billing/subscription/change-plan", json={"plan_id": str(large)})
    assert resp.status_code == 200, resp.text
    upgrade = _invoices(billing.tenant_id)[-1]
    assert upgrade.reason == "plan_change" and 0 < upgrade.total <= 9900 - 2900 + 1
    billing.wait_status(upgrade.id, "paid")
    charged = [c["amount"] for c in billing.stripe.charges]
    assert charged == [2900, upgrade.total]  # each invoice charged once

    listed = ws.call("GET", "/api/billing/invoices").json["items"]
    assert {i["status"] for i in listed} == {"paid"} and len(listed) == 2
    pdf = ws.call("GET", f"/api/billing/invoices/{first.id}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    resp = root.call("POST", f"/api/admin/billing/invoices/{first.id}/refund", json={"amount": 900})
    assert resp.status_code == 202, resp.text
    billing.wait_status(first.id, "partially_refunded")
    resp = root.call(
        "POST", f"/api/admin/billing/invoices/{first.id}/refund", json={"amount": 2001}
    )
    assert resp.status_code == 422  # only 2,000 left to refund
