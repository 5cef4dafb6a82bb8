"""Add-ons over HTTP: managed by super admins, listed to workspaces, kept while attached."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from shared.db import session_scope
from shared.models import BillingAddOn, BillingPlan
from tests.billing_catalogue.conftest import add_subscription, attach, code

ADD_ONS = "/api/admin/billing/add-ons"
NOW = dt.datetime.now(dt.UTC)


def _create(root, **fields) -> dict:
    body = {"code": code("ao"), "name": "10 more seats", "currency": "EUR", "price_amount": 1500}
    resp = root.call("POST", ADD_ONS, json=body | fields)
    assert resp.status_code == 201, resp.text
    return resp.json


def _attached(add_on: dict, **fields) -> None:
    with session_scope() as session:
        plan = BillingPlan(
            id=uuid.uuid4(), code=code("p"), name="P", currency="EUR", price_amount=100
        )
        session.add(plan)
        session.flush()
        subscription = add_subscription(session, plan, created_at=NOW)
        attach(session, subscription, session.get(BillingAddOn, uuid.UUID(add_on["id"])), **fields)


def test_an_add_on_is_created_updated_listed_and_deleted(root, workspace):
    add_on = _create(root, extra_seats=10, extra_storage_bytes=5 * 2**30)
    assert add_on["price_display"] == "15.00 EUR" and add_on["extra_monthly_messages"] == 0
    resp = root.call(
        "PATCH", f"{ADD_ONS}/{add_on['id']}", json={"price_amount": 1200, "description": "x"}
    )
    assert resp.status_code == 200 and resp.json["price_amount"] == 1200
    archived = _create(root, is_active=False)
    admin_ids = {a["id"] for a in root.call("GET", ADD_ONS).json}
    assert {add_on["id"], archived["id"]} <= admin_ids
    public = workspace.call("GET", "/api/billing/add-ons")
    assert public.status_code == 200, public.text
    public_ids = {a["id"] for a in public.json}
    assert add_on["id"] in public_ids and archived["id"] not in public_ids
    assert "is_active" not in public.json[0]
    assert root.call("DELETE", f"{ADD_ONS}/{add_on['id']}").status_code == 204
    assert root.call("PATCH", f"{ADD_ONS}/{add_on['id']}", json={"name": "y"}).status_code == 404


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price_amount", 15.5),
        ("price_amount", "1500"),
        ("extra_seats", -1),
        ("currency", "EURO"),
        ("name", ""),
    ],
)
def test_bad_add_ons_answer_422_naming_the_field(root, field, value):
    resp = root.call(
        "POST",
        ADD_ONS,
        json={"code": code("ao"), "name": "n", "currency": "EUR", "price_amount": 1}
        | {field: value},
    )
    assert resp.status_code == 422
    assert [d["field"] for d in resp.json["error"]["details"]] == [field]


def test_an_attached_add_on_cannot_be_deleted_nor_change_currency(root):
    add_on = _create(root)
    _attached(add_on)
    resp = root.call("DELETE", f"{ADD_ONS}/{add_on['id']}")
    assert resp.status_code == 409 and "archive" in resp.json["error"]["message"]
    resp = root.call("PATCH", f"{ADD_ONS}/{add_on['id']}", json={"currency": "USD"})
    assert resp.status_code == 409
    resp = root.call(
        "PATCH", f"{ADD_ONS}/{add_on['id']}", json={"is_active": False, "currency": "EUR"}
    )
    assert resp.status_code == 200 and resp.json["is_active"] is False


def test_a_detached_add_on_in_history_is_archived_not_deleted(root):
    add_on = _create(root)
    _attached(add_on, detached_at=NOW)
    assert root.call("DELETE", f"{ADD_ONS}/{add_on['id']}").status_code == 409
    resp = root.call("PATCH", f"{ADD_ONS}/{add_on['id']}", json={"currency": "usd"})
    assert resp.status_code == 200 and resp.json["currency"] == "USD"
