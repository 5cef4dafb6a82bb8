"""Invoice numbers run without gaps: a number is only ever taken by an invoice that is kept.

Tax authorities (the EU's VAT rules among them) ask for one unbroken series, and an
auditor asks about every missing number. A PostgreSQL sequence leaves gaps: a
transaction that rolls back keeps the numbers it drew, and a crash skips the ones the
sequence had logged ahead.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from shared.billing import subscriptions
from shared.billing.invoices import LineSpec, create_invoice, parse_number
from shared.db import session_scope
from shared.models.billing import BillingInvoice
from tests.billing_subscriptions.conftest import make_plan
from tests.billing_subscriptions.test_cycle import SECOND, month, run_cycle, subscribe
from tests.workspaces import register


class Abandoned(Exception):
    """Stands for whatever makes a request fail after its invoice was written."""


def counted_numbers() -> list[int]:
    """Every number the counter gave (other tests insert rows numbered their own way)."""
    with session_scope() as session:
        numbers = session.scalars(
            select(BillingInvoice.number).where(BillingInvoice.number.regexp_match("^INV-[0-9]+$"))
        )
        return sorted(parse_number(number) for number in numbers)


def numbers_after(floor: int) -> list[int]:
    return [number for number in counted_numbers() if number > floor]


def highest_number() -> int:
    return max(counted_numbers(), default=0)


def add_invoice(session, tenant: uuid.UUID, *, amount: int = 500, cycle_of: int | None = None):
    """An invoice of ``tenant`` written in ``session``: a plan change's, or with ``cycle_of``
    the cycle invoice of that month's period."""
    if cycle_of is None:
        reason, line = "plan_change", LineSpec("plan", "by hand", amount)
        now = session.scalar(select(func.now()))
    else:
        reason, now = "subscription_cycle", month(cycle_of)
        line = LineSpec("plan", "by hand", amount, period_start=now, period_end=month(cycle_of + 1))
    create_invoice(
        session,
        tenant_id=tenant,
        subscription=subscriptions.live_subscription(session, tenant),
        reason=reason,
        lines=[line],
        now=now,
    )


def test_an_invoice_rolled_back_gives_its_number_back(client, charges):
    tenant = uuid.UUID(register(client).tenant["id"])
    subscribe(tenant, make_plan(1000))
    before = highest_number()
    with pytest.raises(Abandoned), session_scope() as session:
        add_invoice(session, tenant, amount=300)
        raise Abandoned
    with session_scope() as session:
        add_invoice(session, tenant)
    assert numbers_after(before) == [before + 1]


def test_a_cycle_batch_with_a_period_invoiced_already_leaves_no_gap(client, charges):
    plan = make_plan(1000)
    tenants = [uuid.UUID(register(client).tenant["id"]) for _ in range(3)]
    for tenant in tenants:
        subscribe(tenant, plan)
    with session_scope() as session:  # a cycle invoice written by hand (or a bug)
        add_invoice(session, tenants[1], amount=777, cycle_of=1)
    before = highest_number()
    run_cycle(month(1) + SECOND)
    with session_scope() as session:
        add_invoice(session, tenants[0])
    written = numbers_after(before)
    assert len(written) >= 3  # two renewals (others' rows may be due too) and the last one
    assert written == list(range(before + 1, before + 1 + len(written)))
