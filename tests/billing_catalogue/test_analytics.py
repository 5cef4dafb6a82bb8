"""Revenue analytics against hand-computed fixtures (rows inserted directly).

The clock is fixed at 2026-03-15 12:00 UTC: "this month" is March 2026 and the 12 months
run from April 2025. Every expected figure below is worked out by hand in its comment.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import pytest

from shared.billing import analytics
from shared.db import session_scope
from shared.models import BillingInvoice, BillingInvoiceLine, BillingPayment
from tests.billing_catalogue.conftest import (
    add_add_on,
    add_coupon,
    add_plan,
    add_subscription,
    attach,
)

NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.UTC)
_numbers = itertools.count(1)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def invoice(session, subscription, *, paid_at, paid, refunded=0, lines=(), currency=None):
    """A settled invoice of ``subscription``; ``lines`` are (plan_id, add_on_id, amount)."""
    row = BillingInvoice(
        id=uuid.uuid4(),
        tenant_id=subscription.tenant_id,
        subscription_id=subscription.id,
        number=f"BILLCAT-{next(_numbers):06d}-{uuid.uuid4().hex[:6]}",
        status="paid" if paid and not refunded else ("open" if not paid else "partially_refunded"),
        reason="subscription_cycle",
        currency=currency or subscription.currency,
        subtotal=paid,
        total=paid,
        amount_paid=paid,
        amount_refunded=refunded,
        paid_at=at(paid_at) if paid_at else None,
    )
    session.add(row)
    session.flush()
    for position, (plan_id, add_on_id, amount) in enumerate(lines):
        session.add(
            BillingInvoiceLine(
                tenant_id=row.tenant_id,
                invoice_id=row.id,
                position=position,
                kind="plan" if plan_id else "add_on",
                description="line",
                unit_amount=amount,
                amount=amount,
                plan_id=plan_id,
                add_on_id=add_on_id,
            )
        )
    session.flush()
    return row


def plan_line(plan, amount: int) -> tuple:
    return (plan.id, None, amount)


def payment(session, inv, *, kind, status, amount, settled_at):
    session.add(
        BillingPayment(
            tenant_id=inv.tenant_id,
            invoice_id=inv.id,
            kind=kind,
            status=status,
            amount=amount,
            currency=inv.currency,
            provider="fake",
            idempotency_key=f"billcat:{uuid.uuid4()}",
            settled_at=at(settled_at),
        )
    )


@pytest.fixture
def books(empty_billing):
    """The platform's billing rows; returns the plans by name."""
    with session_scope() as session:
        team = add_plan(session, code="team", name="Team", price_amount=2900)
        yearly = add_plan(session, code="team-yearly", billing_interval="year", price_amount=30000)
        eu = add_plan(session, code="eu", name="EU", currency="EUR", price_amount=1999)
        forever10 = add_coupon(session, percent_off=10, duration="forever")
        half = add_coupon(session, percent_off=50, duration="repeating", duration_periods=3)
        once20 = add_coupon(session, percent_off=20, duration="once")
        off500 = add_coupon(
            session, percent_off=None, amount_off=500, currency="USD", duration="forever"
        )
        seats, storage, extra = (
            add_add_on(session, price_amount=500),
            add_add_on(session, price_amount=700),
            add_add_on(session, price_amount=1200),
        )
        jan = at("2026-01-10T00:00:00")

        def sub(plan, **fields):
            return add_subscription(
                session, plan, created_at=fields.pop("created_at", jan), **fields
            )

        s1 = sub(team)  # 2900
        sub(team, status="past_due", price_amount=2500, coupon_id=forever10.id)  # 2500 - 250
        s3 = sub(yearly, coupon_id=half.id, coupon_periods_left=2)  # 30000/y - 15000/y
        s4 = sub(yearly, price_amount=30006)  # 30006/y
        s5 = sub(team, coupon_id=once20.id)  # 2900, a once coupon does not recur
        s6 = sub(team, coupon_id=half.id, coupon_periods_left=0)  # 2900, repeating: used up
        sub(team, coupon_id=off500.id)  # 2900 - 500
        sub(
            team,
            status="trialing",
            created_at=at("2026-03-06T00:00:00"),
            trial_ends_at=at("2026-03-20T00:00:00"),
        )  # no revenue yet
        sub(team, status="cancelled", ended_at=at("2026-02-20T00:00:00"))  # gone before March
        s10 = sub(eu, coupon_id=forever10.id)  # 1999 - 200 (199.9 half up)
        sub(
            team,
            status="cancelled",
            created_at=at("2026-01-05T00:00:00"),
            ended_at=at("2026-03-10T00:00:00"),
        )  # churned in March
        sub(
            yearly,
            status="cancelled",
            created_at=at("2025-06-01T00:00:00"),
            ended_at=at("2026-03-02T00:00:00"),
        )  # churned in March, 30000/y
        sub(
            team,
            status="cancelled",
            created_at=at("2026-02-20T00:00:00"),
            trial_ends_at=at("2026-03-06T00:00:00"),
            ended_at=at("2026-03-06T00:00:00"),
        )  # a trial that never paid: not churn
        sub(team, created_at=at("2026-03-03T00:00:00"))  # new in March: not in churn's base
        s15 = sub(
            eu,
            status="cancelled",
            created_at=at("2026-01-01T00:00:00"),
            ended_at=at("2026-03-05T00:00:00"),
        )  # churned in March, EUR
        attach(session, s5, seats, quantity=2)  # 2 x 500 a month
        attach(session, s5, storage, detach_at_period_end=True)  # leaving: not recurring
        attach(
            session, s5, storage, detached_at=at("2026-02-01T00:00:00"), detach_at_period_end=True
        )  # gone
        attach(session, s4, extra)  # 1200 a year

        invoice(
            session, s1, paid_at="2026-03-02T00:00:00", paid=3480, lines=[plan_line(team, 2900)]
        )
        i2 = invoice(
            session,
            s1,
            paid_at="2026-02-02T00:00:00",
            paid=3480,
            refunded=1000,
            lines=[plan_line(team, 2900)],
        )
        invoice(
            session, s3, paid_at="2025-04-10T00:00:00", paid=15000, lines=[plan_line(yearly, 15000)]
        )
        # a plan change: the credit names the old plan, the charge the new one
        invoice(
            session,
            s5,
            paid_at="2026-01-15T00:00:00",
            paid=4000,
            lines=[plan_line(team, -1000), plan_line(yearly, 5000)],
        )
        # two positive plan lines: the first one (team) owns it
        invoice(
            session,
            s6,
            paid_at="2026-01-20T00:00:00",
            paid=100,
            lines=[plan_line(team, 60), plan_line(yearly, 40)],
        )
        # an add-on invoice: no plan line, so the subscription's plan (team)
        invoice(
            session, s5, paid_at="2026-03-10T00:00:00", paid=1000, lines=[(None, seats.id, 1000)]
        )
        invoice(session, s10, paid_at="2026-02-01T00:00:00", paid=1799, lines=[plan_line(eu, 1999)])
        invoice(session, s1, paid_at=None, paid=0, lines=[plan_line(team, 2900)])  # open
        invoice(
            session, s1, paid_at="2025-03-31T23:59:59", paid=3480, lines=[plan_line(team, 2900)]
        )
        i9 = invoice(
            session,
            s15,
            paid_at="2026-03-01T00:00:00",
            paid=1999,
            refunded=1999,
            lines=[plan_line(eu, 1999)],
        )
        payment(
            session,
            i2,
            kind="refund",
            status="succeeded",
            amount=1000,
            settled_at="2026-03-05T00:00:00",
        )
        payment(
            session,
            i2,
            kind="refund",
            status="failed",
            amount=480,
            settled_at="2026-03-05T00:00:00",
        )
        payment(
            session,
            i2,
            kind="charge",
            status="succeeded",
            amount=3480,
            settled_at="2026-02-02T00:00:00",
        )
        payment(
            session,
            i9,
            kind="refund",
            status="succeeded",
            amount=1999,
            settled_at="2026-03-06T00:00:00",
        )
        return {"team": team.id, "yearly": yearly.id, "eu": eu.id}


def test_mrr(books):
    with session_scope() as session:
        figures = analytics.mrr(session, NOW)
    assert figures["subscriptions"] == {"trialing": 1, "active": 8, "past_due": 1, "cancelled": 5}
    assert figures["currencies"] == [
        # 1999 - 200 (10 % of 1999 = 199.9 -> 200)
        {
            "currency": "EUR",
            "subscriptions": 1,
            "plan_mrr": 1999,
            "discounts": 200,
            "add_on_mrr": 0,
            "mrr": 1799,
            "mrr_display": "17.99 EUR",
        },
        # plans: 6 monthly (2900 x 5 + 2500 = 17000) + yearly (30000 + 30006) / 12 = 5000.5 -> 5001
        # discounts: 250 + 500 monthly + 15000 / 12 = 1250 -> 2000
        # add-ons: 2 x 500 monthly + 1200 / 12 = 100 -> 1100
        {
            "currency": "USD",
            "subscriptions": 8,
            "plan_mrr": 22001,
            "discounts": 2000,
            "add_on_mrr": 1100,
            "mrr": 21101,
            "mrr_display": "211.01 USD",
        },
    ]


def test_revenue_by_plan(books):
    with session_scope() as session:
        figures = analytics.revenue_by_plan(session)
        march = analytics.revenue_by_plan(
            session, start=at("2026-03-01T00:00:00"), end=at("2026-04-01T00:00:00")
        )
    rows = [
        (i["plan_id"], i["currency"], i["invoices"], i["paid"], i["refunded"], i["revenue"])
        for i in figures["items"]
    ]
    assert rows == [
        (books["eu"], "EUR", 2, 1799 + 1999, 1999, 1799),
        (books["yearly"], "USD", 2, 15000 + 4000, 0, 19000),
        # 3480 x 3 (one before the 12 months, still all-time revenue), the add-on's 1000
        # and the two-plan-line invoice's 100
        (books["team"], "USD", 5, 3480 * 3 + 1000 + 100, 1000, 10540),
    ]
    assert figures["items"][1]["plan_code"] == "team-yearly"
    assert figures["items"][1]["revenue_display"] == "190.00 USD"
    rows = [(i["plan_id"], i["paid"], i["revenue"]) for i in march["items"]]
    assert rows == [(books["eu"], 1999, 0), (books["team"], 3480 + 1000, 4480)]


def test_revenue_monthly(books):
    with session_scope() as session:
        figures = analytics.revenue_monthly(session, NOW)
    assert figures["months"] == [
        "2025-04",
        "2025-05",
        "2025-06",
        "2025-07",
        "2025-08",
        "2025-09",
        "2025-10",
        "2025-11",
        "2025-12",
        "2026-01",
        "2026-02",
        "2026-03",
    ]
    eur, usd = figures["currencies"]

    def nonzero(series):
        return {
            m["month"]: (m["paid"], m["refunded"], m["net"])
            for m in series["months"]
            if m["paid"] or m["refunded"]
        }

    assert nonzero(usd) == {
        "2025-04": (15000, 0, 15000),
        "2026-01": (4000 + 100, 0, 4100),
        "2026-02": (3480, 0, 3480),
        "2026-03": (3480 + 1000, 1000, 3480),  # February's invoice refunded in March
    }
    assert usd["total_net"] == 15000 + 4100 + 3480 + 3480
    assert nonzero(eur) == {"2026-02": (1799, 0, 1799), "2026-03": (1999, 1999, 0)}
    assert eur["total_net"] == 1799 and len(eur["months"]) == 12


def test_churn(books):
    with session_scope() as session:
        figures = analytics.churn(session, NOW)
    assert figures["month"] == "2026-03" and figures["month_start"] == at("2026-03-01T00:00:00")
    # live on 1 March: 9 USD (7 paying now + 2 churned since) and 2 EUR; 3 of them ended
    assert (figures["live_at_start"], figures["cancelled"]) == (11, 3)
    assert figures["rate_bps"] == 2727  # 3 / 11 = 27.27 %
    assert figures["revenue"] == [
        {"currency": "EUR", "mrr_at_start": 3998, "mrr_lost": 1999, "rate_bps": 5000},
        # at start: 2900 x 5 + 2500 = 17000 + (30000 + 30006 + 30000) / 12 = 7500.5 -> 7501
        # lost: 2900 + 30000 / 12 = 2500 -> 5400; 5400 / 24501 = 22.0399 % -> 2204
        {"currency": "USD", "mrr_at_start": 24501, "mrr_lost": 5400, "rate_bps": 2204},
    ]


def test_a_month_with_no_paid_subscriptions_has_no_churn(empty_billing):
    with session_scope() as session:
        figures = analytics.churn(session, NOW)
        assert analytics.mrr(session, NOW)["currencies"] == []
        assert analytics.revenue_monthly(session, NOW)["currencies"] == []
    assert (figures["live_at_start"], figures["cancelled"], figures["rate_bps"]) == (0, 0, 0)


def test_the_endpoints_answer_the_same_figures(books, root, workspace):
    mrr = root.call("GET", "/api/admin/billing/analytics/mrr")
    assert mrr.status_code == 200, mrr.text
    assert [c["mrr"] for c in mrr.json["currencies"]] == [1799, 21101]
    by_plan = root.call(
        "GET",
        "/api/admin/billing/analytics/revenue-by-plan",
        params={"from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"},
    )
    assert by_plan.status_code == 200, by_plan.text
    assert [i["revenue"] for i in by_plan.json["items"]] == [0, 4480]
    assert (
        root.call(
            "GET", "/api/admin/billing/analytics/revenue-by-plan", params={"from": "yesterday"}
        ).status_code
        == 400
    )
    monthly = root.call("GET", "/api/admin/billing/analytics/revenue-monthly")
    assert monthly.status_code == 200 and len(monthly.json["months"]) == 12
    today = dt.datetime.now(dt.UTC)
    assert monthly.json["months"][-1] == f"{today.year:04d}-{today.month:02d}"
    churn = root.call("GET", "/api/admin/billing/analytics/churn")
    assert churn.status_code == 200 and churn.json["month"] == monthly.json["months"][-1]
    combined = root.call("GET", "/api/admin/billing/analytics")
    assert combined.status_code == 200, combined.text
    assert combined.json["mrr"]["currencies"] == mrr.json["currencies"]
    assert combined.json["revenue_by_plan"]["paid_from"] is None
    assert len(combined.json["revenue_by_plan"]["items"]) == 3
    assert workspace.call("GET", "/api/admin/billing/analytics").status_code in (401, 403)
