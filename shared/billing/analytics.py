"""The platform's revenue figures, computed from subscriptions, invoices and payments.

Figures are per currency and never summed across currencies. Months are UTC calendar
months. Normalising to a month divides a yearly amount by 12 once per currency and
rounds half up (``(x + 6) // 12``), so the figure never drifts with the number of
subscriptions. Rates are basis points rounded half up.

- MRR: ``active`` and ``past_due`` subscriptions (trials pay nothing yet) at the price they
  renewed at, minus coupons that will still apply at the next renewal (``forever``, or
  ``repeating`` with periods left, on a plan it applies to; a ``once`` coupon is not
  recurring), plus attached add-ons that are not detaching. The coupon is priced as the
  renewal invoice prices it (:func:`shared.billing.catalogue.discount_for` on the
  subtotal): on the plan's price plus those add-ons, per subscription, never above that sum.
- Revenue by plan: what paid invoices collected minus what was refunded of them, per plan.
  An invoice belongs to the plan of its first positive plan line (a plan change: the new
  plan), else to its subscription's plan.
- Monthly revenue: collected by the month an invoice was paid; refunds by the month the
  refund settled at the provider (``billing_payments``); a duplicate charge's refund is
  neither, as that charge never counted as paid.
- Churn: of the paid subscriptions live at the month's start (created, and out of trial,
  before it; not ended), how many ended since; revenue churn weighs them by list-price MRR.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.billing.currency import format_amount

#: Statuses that pay: trials are not revenue yet.
_PAYING = ("active", "past_due")


def month_start(moment: dt.datetime) -> dt.datetime:
    """The first instant of ``moment``'s UTC month."""
    moment = moment.astimezone(dt.UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(start: dt.datetime, months: int) -> dt.datetime:
    """``start`` (a month start) moved by ``months`` calendar months."""
    index = start.year * 12 + start.month - 1 + months
    return start.replace(year=index // 12, month=index % 12 + 1)


def _per_month(monthly: int, yearly: int) -> int:
    return monthly + (yearly + 6) // 12


def _bps(part: int, whole: int) -> int:
    return (part * 20_000 + whole) // (2 * whole) if whole else 0


_MRR = text("""
    SELECT s.currency,
           count(*) AS subscriptions,
           sum(CASE WHEN p.billing_interval = 'year' THEN 0 ELSE s.price_amount END) AS m_price,
           sum(CASE WHEN p.billing_interval = 'year' THEN s.price_amount ELSE 0 END) AS y_price,
           sum(CASE WHEN p.billing_interval = 'year' THEN 0 ELSE x.add_ons END) AS m_add_ons,
           sum(CASE WHEN p.billing_interval = 'year' THEN x.add_ons ELSE 0 END) AS y_add_ons,
           sum(CASE WHEN p.billing_interval = 'year' THEN 0 ELSE d.discount END) AS m_discount,
           sum(CASE WHEN p.billing_interval = 'year' THEN d.discount ELSE 0 END) AS y_discount
      FROM billing_subscriptions s
      JOIN billing_plans p ON p.id = s.plan_id
      LEFT JOIN billing_coupons c ON c.id = s.coupon_id
           AND (c.duration = 'forever'
                OR (c.duration = 'repeating' AND coalesce(s.coupon_periods_left, 0) > 0))
           -- The renewal drops a coupon that excludes its plan (catalogue.misfit).
           AND (coalesce(cardinality(c.eligible_plan_ids), 0) = 0
                OR coalesce(s.pending_plan_id, s.plan_id) = ANY(c.eligible_plan_ids))
      LEFT JOIN (SELECT a.subscription_id, sum(a.price_amount * a.quantity) AS amount
                   FROM billing_subscription_add_ons a
                  WHERE a.detached_at IS NULL AND NOT a.detach_at_period_end
                  GROUP BY a.subscription_id) ao ON ao.subscription_id = s.id
      CROSS JOIN LATERAL (SELECT coalesce(ao.amount, 0) AS add_ons) x
      -- The renewal invoice discounts its subtotal: the plan and the renewed add-ons.
      CROSS JOIN LATERAL (SELECT s.price_amount + x.add_ons AS subtotal) t
      CROSS JOIN LATERAL (
           SELECT CASE
                    WHEN c.id IS NULL OR t.subtotal <= 0 THEN 0
                    WHEN c.percent_off IS NOT NULL
                      THEN least(t.subtotal, (t.subtotal * c.percent_off + 50) / 100)
                    WHEN c.currency = s.currency THEN least(t.subtotal, c.amount_off)
                    ELSE 0
                  END AS discount
      ) d
     WHERE s.status IN ('active', 'past_due')
     GROUP BY s.currency
""")

_STATUS_COUNTS = text("SELECT status, count(*) FROM billing_subscriptions GROUP BY status")


def mrr(session: Session, now: dt.datetime) -> dict[str, Any]:
    """Monthly recurring revenue per currency (see the module docstring)."""
    currencies = []
    for row in sorted(session.execute(_MRR), key=lambda row: row.currency):
        entry = {
            "currency": row.currency,
            "subscriptions": row.subscriptions,
            "plan_mrr": _per_month(int(row.m_price), int(row.y_price)),
            "discounts": _per_month(int(row.m_discount), int(row.y_discount)),
            "add_on_mrr": _per_month(int(row.m_add_ons), int(row.y_add_ons)),
        }
        entry["mrr"] = entry["plan_mrr"] - entry["discounts"] + entry["add_on_mrr"]
        entry["mrr_display"] = format_amount(entry["mrr"], row.currency)
        currencies.append(entry)
    counts = {status: 0 for status in ("trialing", "active", "past_due", "cancelled")}
    counts |= {status: n for status, n in session.execute(_STATUS_COUNTS)}
    return {"as_of": now, "subscriptions": counts, "currencies": currencies}


_REVENUE_BY_PLAN = text("""
    SELECT coalesce(o.plan_id, s.plan_id) AS plan_id, i.currency,
           count(*) AS invoices,
           sum(i.amount_paid) AS paid,
           sum(i.amount_refunded) AS refunded
      FROM billing_invoices i
      LEFT JOIN (SELECT l.invoice_id, l.plan_id
                   FROM billing_invoice_lines l
                  WHERE l.plan_id IS NOT NULL AND l.amount > 0
                    AND NOT EXISTS (
                        SELECT 1 FROM billing_invoice_lines e
                         WHERE e.invoice_id = l.invoice_id
                           AND e.plan_id IS NOT NULL AND e.amount > 0
                           AND (e.position, e.id) < (l.position, l.id))
                ) o ON o.invoice_id = i.id
      LEFT JOIN billing_subscriptions s ON s.id = i.subscription_id
     WHERE i.amount_paid > 0
       AND i.paid_at IS NOT NULL
       AND (CAST(:start AS timestamptz) IS NULL OR i.paid_at >= :start)
       AND (CAST(:end AS timestamptz) IS NULL OR i.paid_at < :end)
     GROUP BY 1, 2
""")

_PLAN_NAMES = text("SELECT id, code, name FROM billing_plans WHERE id = ANY(:ids)")


def revenue_by_plan(
    session: Session, *, start: dt.datetime | None = None, end: dt.datetime | None = None
) -> dict[str, Any]:
    """Collected minus refunded per plan and currency, for invoices paid in [start, end)."""
    # PERF: the first plan line per invoice is a hash anti-join (no sort of every line),
    # grouping is by ids only, and names are joined on the few groups after.
    rows = session.execute(_REVENUE_BY_PLAN, {"start": start, "end": end}).all()
    ids = [row.plan_id for row in rows if row.plan_id is not None]
    names = {row.id: row for row in session.execute(_PLAN_NAMES, {"ids": ids})} if ids else {}
    items = []
    for row in rows:
        revenue = int(row.paid) - int(row.refunded)
        plan = names.get(row.plan_id)
        items.append(
            {
                "plan_id": row.plan_id,
                "plan_code": plan.code if plan else None,
                "plan_name": plan.name if plan else None,
                "currency": row.currency,
                "invoices": row.invoices,
                "paid": int(row.paid),
                "refunded": int(row.refunded),
                "revenue": revenue,
                "revenue_display": format_amount(revenue, row.currency),
            }
        )
    items.sort(key=lambda item: (item["currency"], -item["revenue"], item["plan_code"] or ""))
    return {"paid_from": start, "paid_to": end, "items": items}


_PAID_BY_MONTH = text("""
    SELECT date_trunc('month', paid_at AT TIME ZONE 'UTC') AS month, currency,
           sum(amount_paid) AS amount
      FROM billing_invoices
     WHERE amount_paid > 0 AND paid_at >= :start AND paid_at < :end
     GROUP BY 1, 2
""")

_REFUNDED_BY_MONTH = text("""
    SELECT date_trunc('month', coalesce(settled_at, updated_at) AT TIME ZONE 'UTC') AS month,
           currency, sum(amount) AS amount
      FROM billing_payments
     WHERE kind = 'refund' AND status = 'succeeded'
       AND reason IS DISTINCT FROM 'duplicate_charge'
       AND coalesce(settled_at, updated_at) >= :start
       AND coalesce(settled_at, updated_at) < :end
     GROUP BY 1, 2
""")


def _month_key(moment: dt.datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def revenue_monthly(session: Session, now: dt.datetime) -> dict[str, Any]:
    """Collected, refunded and net per currency for the last 12 UTC months (this one last)."""
    current = month_start(now)
    first, end = add_months(current, -11), add_months(current, 1)
    months = [_month_key(add_months(first, n)) for n in range(12)]
    window = {"start": first, "end": end}
    totals: dict[str, dict[str, list[int]]] = {}
    for kind, query in (("paid", _PAID_BY_MONTH), ("refunded", _REFUNDED_BY_MONTH)):
        for row in session.execute(query, window):
            series = totals.setdefault(row.currency, {"paid": [0] * 12, "refunded": [0] * 12})
            series[kind][months.index(_month_key(row.month))] += int(row.amount)
    currencies = []
    for code in sorted(totals):
        paid, refunded = totals[code]["paid"], totals[code]["refunded"]
        points = [
            {"month": month, "paid": p, "refunded": r, "net": p - r}
            for month, p, r in zip(months, paid, refunded, strict=True)
        ]
        currencies.append(
            {"currency": code, "total_net": sum(paid) - sum(refunded), "months": points}
        )
    return {"months": months, "currencies": currencies}


_CHURN = text("""
    WITH subs AS (
        SELECT s.currency,
               CASE WHEN p.billing_interval = 'year' THEN 0 ELSE s.price_amount END AS m_price,
               CASE WHEN p.billing_interval = 'year' THEN s.price_amount ELSE 0 END AS y_price,
               s.status = 'cancelled'
                 AND coalesce(s.ended_at, s.updated_at) < :end AS churned
          FROM billing_subscriptions s
          JOIN billing_plans p ON p.id = s.plan_id
         WHERE s.created_at < :start
           AND coalesce(s.trial_ends_at, s.created_at) < :start
           AND (s.status <> 'cancelled' OR coalesce(s.ended_at, s.updated_at) >= :start)
    )
    SELECT currency,
           count(*) AS live,
           count(*) FILTER (WHERE churned) AS churned,
           sum(m_price) AS m_live, sum(y_price) AS y_live,
           coalesce(sum(m_price) FILTER (WHERE churned), 0) AS m_lost,
           coalesce(sum(y_price) FILTER (WHERE churned), 0) AS y_lost
      FROM subs
     GROUP BY currency
""")


def churn(session: Session, now: dt.datetime) -> dict[str, Any]:
    """This UTC month's churn: subscriptions and list-price MRR lost (module docstring)."""
    start = month_start(now)
    params = {"start": start, "end": add_months(start, 1)}
    live = churned = 0
    revenue = []
    for row in session.execute(_CHURN, params).all():
        live += row.live
        churned += row.churned
        at_start = _per_month(int(row.m_live), int(row.y_live))
        lost = _per_month(int(row.m_lost), int(row.y_lost))
        revenue.append(
            {
                "currency": row.currency,
                "mrr_at_start": at_start,
                "mrr_lost": lost,
                "rate_bps": _bps(lost, at_start),
            }
        )
    revenue.sort(key=lambda entry: entry["currency"])
    return {
        "month": _month_key(start),
        "month_start": start,
        "live_at_start": live,
        "cancelled": churned,
        "rate_bps": _bps(churned, live),
        "revenue": revenue,
    }


def dashboard(session: Session, now: dt.datetime) -> dict[str, Any]:
    """The four figures in one body (revenue by plan over all time)."""
    return {
        "mrr": mrr(session, now),
        "revenue_by_plan": revenue_by_plan(session),
        "revenue_monthly": revenue_monthly(session, now),
        "churn": churn(session, now),
    }
