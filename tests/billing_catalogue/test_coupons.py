"""Coupons over HTTP: their rules on create and update, and a workspace checking a code."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from shared.billing import catalogue
from shared.db import session_scope
from shared.models import BillingCoupon
from tests.billing_catalogue.conftest import code, plan_body

COUPONS = "/api/admin/billing/coupons"
VALIDATE = "/api/billing/coupons/validate"


def _later(days: int = 30) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).isoformat()


def _plan(root, **overrides) -> dict:
    resp = root.call("POST", "/api/admin/billing/plans", json=plan_body(**overrides))
    assert resp.status_code == 201, resp.text
    return resp.json


def _coupon(root, **fields) -> dict:
    body = {"code": code("cp"), "percent_off": 20} | fields
    resp = root.call("POST", COUPONS, json=body)
    assert resp.status_code == 201, resp.text
    return resp.json


def test_a_coupon_is_created_listed_updated_and_deleted(root):
    plan = _plan(root)
    coupon = _coupon(
        root,
        duration="repeating",
        duration_periods=3,
        expires_at=_later(),
        max_redemptions=10,
        eligible_plan_ids=[plan["id"], plan["id"]],
    )
    assert coupon["name"] == coupon["code"] and coupon["times_redeemed"] == 0
    assert coupon["eligible_plan_ids"] == [plan["id"]]
    listed = root.call("GET", f"{COUPONS}?limit=200&is_active=true").json["items"]
    assert coupon["id"] in {c["id"] for c in listed}
    resp = root.call(
        "PATCH", f"{COUPONS}/{coupon['id']}", json={"percent_off": 25, "name": "Spring"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json["percent_off"] == 25 and resp.json["name"] == "Spring"
    assert root.call("DELETE", f"{COUPONS}/{coupon['id']}").status_code == 204
    assert root.call("PATCH", f"{COUPONS}/{coupon['id']}", json={"name": "x"}).status_code == 404


def test_coupons_are_listed_newest_first_in_pages(root):
    made = [_coupon(root, is_active=False)["id"] for _ in range(3)]
    first = root.call("GET", f"{COUPONS}?limit=2&is_active=false").json
    second = root.call(
        "GET", f"{COUPONS}?limit=2&is_active=false&cursor={first['next_cursor']}"
    ).json
    seen = [c["id"] for c in first["items"] + second["items"]]
    assert seen[:3] == made[::-1]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"percent_off": 0}, ["percent_off"]),
        ({"percent_off": 101}, ["percent_off"]),
        ({"percent_off": 12.5}, ["percent_off"]),
        ({"percent_off": "10"}, ["percent_off"]),
        ({"percent_off": None, "amount_off": 500}, ["currency"]),
        ({"percent_off": None, "amount_off": 5.0, "currency": "USD"}, ["amount_off"]),
        ({"percent_off": None, "amount_off": 0, "currency": "USD"}, ["amount_off"]),
        ({"percent_off": None, "amount_off": 500, "currency": "ABC"}, ["currency"]),
        ({"percent_off": None}, ["percent_off"]),
        ({"amount_off": 500, "currency": "USD"}, ["amount_off"]),
        ({"currency": "USD"}, ["currency"]),
        ({"duration": "repeating"}, ["duration_periods"]),
        ({"duration": "forever", "duration_periods": 2}, ["duration_periods"]),
        ({"duration": "repeating", "duration_periods": 0}, ["duration_periods"]),
        ({"duration": "sometimes"}, ["duration"]),
        ({"expires_at": "2020-01-01T00:00:00Z"}, ["expires_at"]),
        ({"expires_at": "2999-01-01T00:00:00"}, ["expires_at"]),  # no time zone
        ({"max_redemptions": 0}, ["max_redemptions"]),
        ({"eligible_plan_ids": ["not-a-uuid"]}, ["eligible_plan_ids[0]"]),
        ({"code": ""}, ["code"]),
    ],
)
def test_bad_coupons_answer_422_naming_each_field(root, body, fields):
    resp = root.call("POST", COUPONS, json={"code": code("cp"), "percent_off": 20} | body)
    assert resp.status_code == 422, resp.text
    assert [d["field"] for d in resp.json["error"]["details"]] == fields


def test_eligible_plans_must_exist_and_match_an_amount_coupons_currency(root):
    usd, eur = _plan(root), _plan(root, currency="EUR")
    ghost = str(uuid.uuid4())
    resp = root.call(
        "POST",
        COUPONS,
        json={"code": code("cp"), "percent_off": 5, "eligible_plan_ids": [usd["id"], ghost]},
    )
    assert resp.status_code == 422
    (detail,) = resp.json["error"]["details"]
    assert detail["field"] == "eligible_plan_ids" and detail["message"] == f"unknown plans: {ghost}"
    resp = root.call(
        "POST",
        COUPONS,
        json={
            "code": code("cp"),
            "amount_off": 500,
            "currency": "USD",
            "eligible_plan_ids": [usd["id"], eur["id"]],
        },
    )
    assert resp.status_code == 422
    assert eur["id"] in resp.json["error"]["details"][0]["message"]
    assert usd["id"] not in resp.json["error"]["details"][0]["message"]


def test_a_coupon_code_is_unique_whatever_its_case(root):
    coupon = _coupon(root)
    resp = root.call("POST", COUPONS, json={"code": coupon["code"].upper(), "percent_off": 5})
    assert resp.status_code == 409


def test_an_update_is_checked_as_a_whole(root):
    coupon = _coupon(root)
    resp = root.call("PATCH", f"{COUPONS}/{coupon['id']}", json={"duration": "repeating"})
    assert resp.status_code == 422
    assert resp.json["error"]["details"][0]["field"] == "duration_periods"
    resp = root.call("PATCH", f"{COUPONS}/{coupon['id']}", json={"amount_off": 100})
    assert resp.status_code == 422  # both kinds now
    resp = root.call(
        "PATCH",
        f"{COUPONS}/{coupon['id']}",
        json={"percent_off": None, "amount_off": 100, "currency": "eur"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json["currency"] == "EUR" and resp.json["percent_off"] is None
    resp = root.call(
        "PATCH", f"{COUPONS}/{coupon['id']}", json={"expires_at": "2001-01-01T00:00:00Z"}
    )
    assert resp.status_code == 422
    resp = root.call("PATCH", f"{COUPONS}/{coupon['id']}", json={"duration": None})
    assert resp.status_code == 422  # null only clears what may be empty


def test_a_redeemed_coupons_discount_is_frozen_but_its_limits_are_not(root):
    coupon = _coupon(root, max_redemptions=5)
    with session_scope() as session:
        row = session.get(BillingCoupon, uuid.UUID(coupon["id"]))
        catalogue.redeem(session, row)
        catalogue.redeem(session, row)
    resp = root.call("PATCH", f"{COUPONS}/{coupon['id']}", json={"percent_off": 90})
    assert resp.status_code == 409
    assert resp.json["error"]["details"] == [
        {"field": "percent_off", "message": "fixed once redeemed"}
    ]
    resp = root.call("PATCH", f"{COUPONS}/{coupon['id']}", json={"max_redemptions": 1})
    assert resp.status_code == 422  # below the two made
    resp = root.call(
        "PATCH", f"{COUPONS}/{coupon['id']}", json={"max_redemptions": 2, "percent_off": 20}
    )
    assert resp.status_code == 200 and resp.json["times_redeemed"] == 2


# --- a workspace checking a code ----------------------------------------------------------


def test_a_workspace_gets_the_discount_on_a_plan(root, workspace):
    plan = _plan(root, price_amount=333)
    coupon = _coupon(root, percent_off=15, eligible_plan_ids=[plan["id"]])
    resp = workspace.call(
        "POST", VALIDATE, json={"code": coupon["code"].upper(), "plan_id": plan["id"]}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json["valid"] is True and resp.json["coupon"]["eligible_plan_ids"] == [plan["id"]]
    # 15 % of 333 = 49.95 -> 50 (half up), and the coupon is not redeemed
    assert resp.json["discount_amount"] == 50 and resp.json["amount_after_discount"] == 283
    assert resp.json["discount_display"] == "0.50 USD"
    assert root.call("GET", f"{COUPONS}?limit=200").json["items"][0]["times_redeemed"] == 0
    resp = workspace.call("POST", VALIDATE, json={"code": coupon["code"]})
    assert resp.status_code == 200 and resp.json["discount_amount"] is None


def _refusal(workspace, **body) -> tuple[str, str]:
    resp = workspace.call("POST", VALIDATE, json=body)
    assert resp.status_code == 422, resp.text
    (detail,) = resp.json["error"]["details"]
    return detail["field"], detail.get("reason")


def test_codes_that_cannot_be_used_are_refused_with_their_reason(root, workspace):
    usd, eur = _plan(root), _plan(root, currency="EUR")
    assert _refusal(workspace, code="NOPE-" + uuid.uuid4().hex) == ("code", "unknown")
    inactive = _coupon(root, is_active=False)
    assert _refusal(workspace, code=inactive["code"]) == ("code", "inactive")
    expiring = _coupon(root, expires_at=_later())
    with session_scope() as session:
        session.get(BillingCoupon, uuid.UUID(expiring["id"])).expires_at = dt.datetime.now(dt.UTC)
    assert _refusal(workspace, code=expiring["code"]) == ("code", "expired")
    used_up = _coupon(root, max_redemptions=1)
    with session_scope() as session:
        catalogue.redeem(session, session.get(BillingCoupon, uuid.UUID(used_up["id"])))
    assert _refusal(workspace, code=used_up["code"]) == ("code", "exhausted")
    for_usd = _coupon(root, eligible_plan_ids=[usd["id"]])
    assert _refusal(workspace, code=for_usd["code"], plan_id=eur["id"]) == (
        "code",
        "ineligible_plan",
    )
    dollars = _coupon(root, percent_off=None, amount_off=500, currency="USD")
    assert _refusal(workspace, code=dollars["code"], plan_id=eur["id"]) == (
        "code",
        "currency_mismatch",
    )
    assert _refusal(workspace, code=dollars["code"], plan_id=str(uuid.uuid4())) == ("plan_id", None)
    assert _refusal(workspace, code="") == ("code", None)


def test_validating_needs_billing_manage(root, workspace):
    coupon = _coupon(root)
    _, agent_token = workspace.create_agent(role="supervisor")
    resp = workspace.call("POST", VALIDATE, json={"code": coupon["code"]}, token=agent_token)
    assert resp.status_code == 403


def test_guessing_codes_is_bounded_per_workspace(root, workspace, other_workspace):
    from shared.billing.coupon_guesses import MAX_UNKNOWN_CODES

    real = _coupon(root)
    for n in range(MAX_UNKNOWN_CODES):
        assert _refusal(workspace, code=f"GUESS{n}") == ("code", "unknown")
        if n == 0:  # a code that exists never counts
            assert workspace.call("POST", VALIDATE, json={"code": real["code"]}).status_code == 200
    resp = workspace.call("POST", VALIDATE, json={"code": real["code"]})
    assert resp.status_code == 429 and resp.json["error"]["code"] == "rate_limited"
    assert int(resp.headers["Retry-After"]) > 0
    assert other_workspace.call("POST", VALIDATE, json={"code": real["code"]}).status_code == 200
