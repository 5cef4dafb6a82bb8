"""The coupon contract the subscriptions side calls: check, price, redeem (table tests)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select, text

from shared.billing import catalogue
from shared.db import session_scope
from shared.errors import ValidationFailed
from shared.models import BillingCoupon, BillingPlan
from tests.billing_catalogue.conftest import add_coupon, add_plan

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("kind", "amount", "currency", "expected"),
    [
        ({"percent_off": 15}, 333, "USD", 50),  # 49.95 -> 50, half up
        ({"percent_off": 15}, 330, "USD", 50),  # 49.5 -> 50
        ({"percent_off": 15}, 329, "USD", 49),  # 49.35 -> 49
        ({"percent_off": 50}, 1, "USD", 1),  # 0.5 -> 1
        ({"percent_off": 33}, 1, "USD", 0),  # 0.33 -> 0
        ({"percent_off": 100}, 2900, "USD", 2900),
        ({"percent_off": 10}, 0, "USD", 0),
        ({"percent_off": 10}, -500, "USD", 0),  # a credit gets no discount
        ({"percent_off": 25}, 10**12, "JPY", 250_000_000_000),
        ({"amount_off": 500, "currency": "USD"}, 2900, "USD", 500),
        ({"amount_off": 5000, "currency": "USD"}, 2900, "USD", 2900),  # never above the amount
    ],
)
def test_discount_for(kind, amount, currency, expected):
    coupon = BillingCoupon(code="X", name="X", duration="once", **kind)
    assert catalogue.discount_for(coupon, amount, currency) == expected


def test_a_fixed_discount_in_another_currency_is_refused():
    coupon = BillingCoupon(code="X", name="X", amount_off=500, currency="EUR", duration="once")
    with pytest.raises(ValidationFailed) as refused:
        catalogue.discount_for(coupon, 2900, "USD")
    assert refused.value.details[0]["field"] == "coupon_code"


def _reason(session, code, plan, now):
    try:
        catalogue.redeemable_coupon(session, code, plan, now)
    except ValidationFailed as refused:
        (detail,) = refused.details
        assert detail["field"] == "coupon_code"
        return detail["reason"]
    return "ok"


def test_redeemable_coupon_as_time_moves_and_rules_bite():
    with session_scope() as session:
        usd, eur = add_plan(session), add_plan(session, currency="EUR")
        expiring = add_coupon(session, expires_at=T0 + dt.timedelta(days=1))
        limited = add_coupon(session, eligible_plan_ids=[usd.id])
        euros = add_coupon(session, percent_off=None, amount_off=100, currency="EUR")
        off = add_coupon(session, is_active=False)
        full = add_coupon(session, max_redemptions=2, times_redeemed=2)
        cases = [
            (expiring.code, usd, T0, "ok"),
            (expiring.code.upper(), usd, T0 + dt.timedelta(hours=23, minutes=59), "ok"),
            (expiring.code, usd, T0 + dt.timedelta(days=1), "expired"),
            (limited.code, usd, T0, "ok"),
            (limited.code, eur, T0, "ineligible_plan"),
            (euros.code, eur, T0, "ok"),
            (euros.code, usd, T0, "currency_mismatch"),
            (off.code, usd, T0, "inactive"),
            (full.code, usd, T0, "exhausted"),
            ("no-such-code", usd, T0, "unknown"),
            (f"  {limited.code} ", usd, T0, "ok"),
        ]
        got = [(code, plan, now, _reason(session, code, plan, now)) for code, plan, now, _ in cases]
        assert got == cases


def test_redeem_counts_up_to_the_limit_then_refuses():
    with session_scope() as session:
        coupon = add_coupon(session, max_redemptions=2)
        assert catalogue.redeem(session, coupon) == 1
        assert catalogue.redeem(session, coupon) == 2
        assert coupon.times_redeemed == 2
        with pytest.raises(ValidationFailed) as refused:
            catalogue.redeem(session, coupon)
        assert refused.value.details[0]["reason"] == "exhausted"
        unlimited = add_coupon(session)
        assert [catalogue.redeem(session, unlimited) for _ in range(3)] == [1, 2, 3]


def test_two_customers_racing_for_the_last_redemption_get_one_each_way():
    """The second UPDATE waits on the first's row lock, re-checks and matches nothing."""
    with session_scope() as session:
        coupon_id = add_coupon(session, max_redemptions=1).id
    first_locked, second_read, release = threading.Event(), threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def first():
        with session_scope() as session:
            catalogue.redeem(session, session.get(BillingCoupon, coupon_id))
            first_locked.set()
            release.wait(10)
        outcomes["first"] = "redeemed"

    def second():
        first_locked.wait(10)
        try:
            with session_scope() as session:
                coupon = session.get(BillingCoupon, coupon_id)  # reads times_redeemed = 0
                assert coupon.times_redeemed == 0
                second_read.set()
                catalogue.redeem(session, coupon)
            outcomes["second"] = "redeemed"
        except ValidationFailed as refused:
            outcomes["second"] = refused.details[0]["reason"]

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert second_read.wait(10)
    _wait_until_an_update_waits_on_a_lock()
    release.set()
    for thread in threads:
        thread.join(20)
    assert outcomes == {"first": "redeemed", "second": "exhausted"}
    with session_scope() as session:
        count = session.scalar(
            select(BillingCoupon.times_redeemed).where(BillingCoupon.id == coupon_id)
        )
    assert count == 1


def _wait_until_an_update_waits_on_a_lock() -> None:
    """Poll pg_locks (no sleep-and-hope) until the second UPDATE is queued on the row."""
    for _ in range(500):
        with session_scope() as session:
            waiting = session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting:
            return
        threading.Event().wait(0.01)
    raise AssertionError("the second redemption never waited on the first")


def test_plans_are_what_the_contract_receives():
    """redeemable_coupon takes the plan row the caller already loaded."""
    with session_scope() as session:
        plan = add_plan(session)
        coupon = add_coupon(session)
        assert catalogue.redeemable_coupon(session, coupon.code, plan, T0) is coupon
        assert isinstance(plan, BillingPlan)
