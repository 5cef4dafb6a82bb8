"""Plans over HTTP: super admins manage them, workspaces see the active ones."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from shared.billing import analytics
from shared.db import session_scope
from shared.models import BillingInvoice, BillingInvoiceLine, BillingPlan
from tests.billing_catalogue.conftest import add_subscription, code, plan_body

PLANS = "/api/admin/billing/plans"
NOW = dt.datetime.now(dt.UTC)


def _create(root, **overrides) -> dict:
    resp = root.call("POST", PLANS, json=plan_body(**overrides))
    assert resp.status_code == 201, resp.text
    return resp.json


def test_a_plan_is_created_read_listed_and_updated(root):
    plan = _create(root, currency="usd", price_amount=4999, seat_limit=5, features={"sso": True})
    assert plan["currency"] == "USD" and plan["price_display"] == "49.99 USD"
    assert plan["seat_limit"] == 5 and plan["monthly_message_limit"] is None
    assert root.call("GET", f"{PLANS}/{plan['id']}").json == plan
    assert plan["id"] in {p["id"] for p in root.call("GET", PLANS).json}

    resp = root.call(
        "PATCH", f"{PLANS}/{plan['id']}", json={"price_amount": 5999, "seat_limit": None}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json["price_amount"] == 5999 and resp.json["seat_limit"] is None
    assert resp.json["features"] == {"sso": True}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price_amount", 19.99),
        ("price_amount", 20.0),
        ("price_amount", "2000"),
        ("price_amount", True),
        ("price_amount", -1),
        ("price_amount", 10**13),
        ("currency", "XYZ"),
        ("currency", "US"),
        ("currency", 840),
        ("billing_interval", "week"),
        ("trial_days", 1.5),
        ("seat_limit", -3),
        ("code", "no spaces"),
    ],
)
def test_bad_fields_answer_422_naming_the_field(root, field, value):
    resp = root.call("POST", PLANS, json=plan_body(**{field: value}))
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["code"] == "validation_error"
    assert [d["field"] for d in resp.json["error"]["details"]] == [field]


def test_a_patch_refuses_null_for_a_required_field_and_floats(root):
    plan = _create(root)
    for body in ({"price_amount": None}, {"price_amount": 1.5}, {"currency": "ZZZ"}):
        resp = root.call("PATCH", f"{PLANS}/{plan['id']}", json=body)
        assert resp.status_code == 422, resp.text
        assert resp.json["error"]["details"][0]["field"] == next(iter(body))


def test_codes_are_unique_whatever_their_case(root):
    plan = _create(root)
    resp = root.call("POST", PLANS, json=plan_body(code=plan["code"].upper()))
    assert resp.status_code == 409
    assert resp.json["error"]["details"] == [{"field": "code", "message": "already used"}]
    other = _create(root)
    resp = root.call("PATCH", f"{PLANS}/{other['id']}", json={"code": plan["code"]})
    assert resp.status_code == 409


def test_only_one_plan_is_the_default_trial(root):
    first = _create(root, is_default_trial=True)
    second = _create(root, is_default_trial=True)
    assert root.call("GET", f"{PLANS}/{first['id']}").json["is_default_trial"] is False
    assert root.call("GET", f"{PLANS}/{second['id']}").json["is_default_trial"] is True
    resp = root.call("PATCH", f"{PLANS}/{second['id']}", json={"is_active": False})
    assert resp.status_code == 422
    assert resp.json["error"]["details"][0]["field"] == "is_default_trial"
    # Unflagged again: workspaces registered by later tests in this process start no trial.
    resp = root.call("PATCH", f"{PLANS}/{second['id']}", json={"is_default_trial": False})
    assert resp.status_code == 200 and resp.json["is_default_trial"] is False


def test_a_plan_in_use_cannot_be_deleted_nor_change_currency_but_can_be_archived(root):
    plan = _create(root)
    with session_scope() as session:
        add_subscription(session, session.get(BillingPlan, uuid.UUID(plan["id"])), created_at=NOW)
    resp = root.call("DELETE", f"{PLANS}/{plan['id']}")
    assert resp.status_code == 409 and "archive" in resp.json["error"]["message"]
    resp = root.call("PATCH", f"{PLANS}/{plan['id']}", json={"currency": "EUR"})
    assert resp.status_code == 409
    assert resp.json["error"]["details"] == [{"field": "currency", "message": "fixed while in use"}]
    resp = root.call("PATCH", f"{PLANS}/{plan['id']}", json={"is_active": False, "price_amount": 1})
    assert resp.status_code == 200 and resp.json["is_active"] is False
    assert root.call("GET", f"{PLANS}/{plan['id']}").json["price_amount"] == 1


def test_a_plan_used_before_a_plan_change_cannot_be_deleted(root):
    old, new = _create(root, price_amount=1000), _create(root, price_amount=5000)
    with session_scope() as session:
        # As subscribe then change_plan leave it: on the new plan, its first (paid)
        # invoice for the old one.
        sub = add_subscription(
            session, session.get(BillingPlan, uuid.UUID(new["id"])), created_at=NOW
        )
        invoice = BillingInvoice(
            id=uuid.uuid4(),
            tenant_id=sub.tenant_id,
            subscription_id=sub.id,
            number=f"PLANS-{uuid.uuid4().hex[:10]}",
            status="paid",
            reason="subscription_create",
            currency="USD",
            subtotal=1000,
            total=1000,
            amount_paid=1000,
            amount_refunded=0,
            paid_at=NOW,
        )
        session.add(invoice)
        session.flush()
        session.add(
            BillingInvoiceLine(
                tenant_id=sub.tenant_id,
                invoice_id=invoice.id,
                position=1,
                kind="plan",
                description="Old plan",
                unit_amount=1000,
                amount=1000,
                plan_id=uuid.UUID(old["id"]),
            )
        )
    resp = root.call("DELETE", f"{PLANS}/{old['id']}")
    assert resp.status_code == 409 and "archive" in resp.json["error"]["message"]
    assert resp.json["error"]["details"] == [{"field": "id", "message": "kept by invoice history"}]
    with session_scope() as session:  # its revenue stays its own
        figures = analytics.revenue_by_plan(session, start=NOW - dt.timedelta(seconds=1))
    paid = {str(item["plan_id"]): item["paid"] for item in figures["items"]}
    assert paid[old["id"]] == 1000 and new["id"] not in paid


def test_an_unused_plan_is_deleted(root):
    plan = _create(root)
    assert root.call("DELETE", f"{PLANS}/{plan['id']}").status_code == 204
    assert root.call("GET", f"{PLANS}/{plan['id']}").status_code == 404
    assert root.call("DELETE", f"{PLANS}/{plan['id']}").status_code == 404
    assert root.call("PATCH", f"{PLANS}/{uuid.uuid4()}", json={"name": "x"}).status_code == 404


def test_deleting_a_plan_keeps_coupons_limited_to_it_limited(root):
    kept, gone = _create(root), _create(root)
    both = root.call(
        "POST",
        "/api/admin/billing/coupons",
        json={"code": code("cp"), "percent_off": 10, "eligible_plan_ids": [kept["id"], gone["id"]]},
    ).json
    only = root.call(
        "POST",
        "/api/admin/billing/coupons",
        json={"code": code("cp"), "percent_off": 10, "eligible_plan_ids": [gone["id"]]},
    ).json
    assert root.call("DELETE", f"{PLANS}/{gone['id']}").status_code == 204
    coupons = {
        c["id"]: c for c in root.call("GET", "/api/admin/billing/coupons?limit=200").json["items"]
    }
    assert coupons[both["id"]]["eligible_plan_ids"] == [kept["id"]]
    assert coupons[both["id"]]["is_active"] is True
    assert coupons[only["id"]]["eligible_plan_ids"] == []
    assert coupons[only["id"]]["is_active"] is False  # never widened to every plan


def test_tenant_credentials_are_refused_and_every_call_is_audited(root, workspace):
    resp = workspace.call("GET", PLANS)
    assert resp.status_code in (401, 403)
    resp = root.call("POST", PLANS, json=plan_body(), headers={"X-Request-ID": "billcat-audit-1"})
    assert resp.status_code == 201
    from tests.admin.conftest import audit_rows

    (row,) = audit_rows("billcat-audit-1")
    assert row.action == "Create a billing plan" and row.status == 201
    assert row.details["code"] == resp.json["code"]


def test_a_workspace_lists_active_plans_only_and_needs_billing_manage(root, workspace):
    active = _create(root, sort_order=-9000)
    archived = _create(root, is_active=False)
    resp = workspace.call("GET", "/api/billing/plans")
    assert resp.status_code == 200, resp.text
    ids = [p["id"] for p in resp.json]
    assert active["id"] in ids and archived["id"] not in ids
    assert "is_default_trial" not in resp.json[0]
    _, agent_token = workspace.create_agent(role="agent")
    resp = workspace.call("GET", "/api/billing/plans", token=agent_token)
    assert resp.status_code == 403 and resp.json["error"]["code"] == "forbidden"
