"""Payment methods over HTTP against the fake Stripe: tokens only, defaults, 409s, 503."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from shared.db import session_scope
from shared.models.billing import BillingAccount, BillingPaymentMethod


def _count(tenant_id) -> int:
    with session_scope() as session:
        return session.scalar(
            select(func.count())
            .select_from(BillingPaymentMethod)
            .where(BillingPaymentMethod.tenant_id == tenant_id)
        )


def test_the_first_method_is_the_default_and_only_ids_are_kept(billing):
    first = billing.add_method("pm_card_visa")
    second = billing.add_method("pm_card_mastercard")
    assert first["is_default"] is True and second["is_default"] is False
    assert first["provider"] == "stripe" and first["provider_payment_method_id"] == "pm_card_visa"
    assert len(first["last4"]) == 4 and first["brand"] == "visa"
    listed = billing.ws.call("GET", "/api/billing/payment-methods").json
    assert [m["id"] for m in listed["items"]] == [second["id"], first["id"]]
    assert listed["next_cursor"] is None
    # One customer at the provider, attached both methods.
    with session_scope() as session:
        account = session.get(BillingAccount, billing.tenant_id)
        assert account.provider_customer_id.startswith("cus_")
    attached = {pm: m["customer"] for pm, m in billing.stripe.methods.items()}
    assert attached["pm_card_visa"] == attached["pm_card_mastercard"]
    assert attached["pm_card_visa"] == account.provider_customer_id
    created = [c for c in billing.stripe.calls if c[1] == "/v1/customers"]
    assert len(created) == 1


def test_a_token_the_provider_refuses_is_422_and_a_repeat_is_409(billing):
    resp = billing.ws.call(
        "POST", "/api/billing/payment-methods", json={"token": "pm_invalid_token"}
    )
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "token"
    billing.add_method("pm_card_visa")
    billing.add_method("pm_card_visa", status=409)
    for bad in ({}, {"token": ""}, {"token": "pm card"}, {"token": 5}, {"token": "x" * 300}):
        resp = billing.ws.call("POST", "/api/billing/payment-methods", json=bad)
        assert resp.status_code == 422, (bad, resp.text)
    assert _count(billing.tenant_id) == 1


def test_provider_down_is_503_and_writes_nothing(billing):
    billing.stripe.down = True
    resp = billing.ws.call("POST", "/api/billing/payment-methods", json={"token": "pm_card_visa"})
    assert resp.status_code == 503, resp.text
    assert resp.json["error"]["code"] == "dependency_unavailable"
    billing.stripe.down = False
    billing.stripe.fail_next(1)  # a 5xx is "down" too
    resp = billing.ws.call("POST", "/api/billing/payment-methods", json={"token": "pm_card_visa"})
    assert resp.status_code == 503, resp.text
    assert _count(billing.tenant_id) == 0
    assert billing.add_method("pm_card_visa")["is_default"] is True


def test_the_only_method_of_a_paid_subscription_cannot_be_deleted(billing):
    only = billing.add_method("pm_card_visa")
    billing.subscription(price=4900, status="active")
    resp = billing.ws.call("DELETE", f"/api/billing/payment-methods/{only['id']}")
    assert resp.status_code == 409, resp.text
    other = billing.add_method("pm_card_amex")
    resp = billing.ws.call("DELETE", f"/api/billing/payment-methods/{only['id']}")
    assert resp.status_code == 204, resp.text
    listed = billing.ws.call("GET", "/api/billing/payment-methods").json["items"]
    assert [(m["id"], m["is_default"]) for m in listed] == [(other["id"], True)]
    assert "pm_card_visa" not in billing.stripe.methods  # detached at the provider


def test_without_a_paid_subscription_the_last_method_can_go(billing):
    only = billing.add_method("pm_card_visa")
    billing.subscription(price=0, status="trialing")
    resp = billing.ws.call("DELETE", f"/api/billing/payment-methods/{only['id']}")
    assert resp.status_code == 204, resp.text
    assert _count(billing.tenant_id) == 0


def test_another_tenants_method_is_404(billing, other_workspace):
    mine = billing.add_method("pm_card_visa")
    resp = other_workspace.call("DELETE", f"/api/billing/payment-methods/{mine['id']}")
    assert resp.status_code == 404
    resp = billing.ws.call("DELETE", f"/api/billing/payment-methods/{uuid.uuid4()}")
    assert resp.status_code == 404
    assert other_workspace.call("GET", "/api/billing/payment-methods").json["items"] == []
    assert _count(billing.tenant_id) == 1


def test_an_agent_without_billing_manage_is_refused(billing):
    _, token = billing.ws.create_agent("agent")
    resp = billing.ws.call("GET", "/api/billing/payment-methods", token=token)
    assert resp.status_code == 403
