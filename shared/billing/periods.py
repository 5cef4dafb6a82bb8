"""Billing periods and proration in exact integer arithmetic.

A period runs from its start to the same day-of-month one interval later, clamped to the
month's last day (Jan 31 + 1 month = Feb 28/29; the next period starts there, so the day
drifts to the 28th and stays). Proration counts whole seconds: for a price ``p`` over a
period of ``P`` seconds with ``r`` seconds left, the amount is ``p * r / P`` rounded
half-up to the minor unit (so a credit and a charge for the same price and time cancel
exactly, and no amount is ever more than the full price).
"""

from __future__ import annotations

import calendar
import datetime as dt

from shared.billing.invoices import half_up_div


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period_end(start: dt.datetime, interval: str) -> dt.datetime:
    """The end of the period starting at ``start`` for a ``month`` or ``year`` interval."""
    return add_months(start, 12 if interval == "year" else 1)


def seconds(start: dt.datetime, end: dt.datetime) -> int:
    delta = end - start
    return delta.days * 86_400 + delta.seconds


def prorate(price: int, *, start: dt.datetime, end: dt.datetime, now: dt.datetime) -> int:
    """The part of ``price`` for the time left in ``[start, end)`` at ``now``."""
    total = seconds(start, end)
    left = max(0, min(total, seconds(now, end)))
    if total <= 0 or price <= 0:
        return 0
    return half_up_div(price * left, total)
