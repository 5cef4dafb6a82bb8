"""A tenant's billing in tests: a plan, a subscription and invoices inserted as rows.

Invoices are normally made by ``shared.billing.invoices.create_invoice`` (subscriptions'
work); these tests need only rows in the shape it writes, so they insert them directly.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select

from shared.billing.invoices import format_number, next_numbers
from shared.db import session_scope
from shared.models.billing import (
    BillingInvoice,
    BillingInvoiceLine,
    BillingPayment,
    BillingPlan,
    BillingSubscription,
)
from tests.peers.stripe_fake import FakeStripe
from tests.waiting import wait_until
from tests.workspaces import Workspace


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Billing:
    """One workspace's billing: payment methods over HTTP, invoices as rows, reads as rows."""

    def __init__(self, ws: Workspace, stripe: FakeStripe):
        self.ws = ws
        self.stripe = stripe
        self.tenant_id = uuid.UUID(ws.tenant["id"])

    def add_method(self, pm: str = "pm_card_visa", status: int = 201) -> dict[str, Any]:
        resp = self.ws.call("POST", "/api/billing/payment-methods", json={"token": pm})
        assert resp.status_code == status, resp.text
        return resp.json

    def subscription(self, price: int = 4900, status: str = "active") -> uuid.UUID:
        now = utcnow()
        with session_scope() as session:
            plan = BillingPlan(
                code=f"pro-{uuid.uuid4().hex[:8]}",
                name="Pro",
                currency="USD",
                price_amount=price,
            )
            session.add(plan)
            session.flush()
            sub = BillingSubscription(
                tenant_id=self.tenant_id,
                plan_id=plan.id,
                status=status,
                currency="USD",
                price_amount=price,
                current_period_start=now,
                current_period_end=now + dt.timedelta(days=30),
            )
            session.add(sub)
            session.flush()
            return sub.id

    def invoice(
        self,
        total: int = 4900,
        *,
        subscription_id: uuid.UUID | None = None,
        currency: str = "USD",
        next_charge_at: dt.datetime | None = None,
        **fields: Any,
    ) -> uuid.UUID:
        """An open invoice due now (one plan line), as ``create_invoice`` leaves it."""
        now = utcnow()
        with session_scope() as session:
            (number,) = next_numbers(session, 1)
            invoice = BillingInvoice(
                tenant_id=self.tenant_id,
                subscription_id=subscription_id,
                number=format_number(number),
                status="open",
                reason="subscription_create",
                currency=currency,
                subtotal=total,
                total=total,
                period_start=now,
                period_end=now + dt.timedelta(days=30),
                next_charge_at=next_charge_at or now,
                **fields,
            )
            session.add(invoice)
            session.flush()
            session.add(
                BillingInvoiceLine(
                    tenant_id=self.tenant_id,
                    invoice_id=invoice.id,
                    position=0,
                    kind="plan",
                    description="Pro plan, monthly",
                    unit_amount=total,
                    amount=total,
                )
            )
            return invoice.id

    def row(self, invoice_id: uuid.UUID) -> BillingInvoice:
        with session_scope() as session:
            row = session.get(BillingInvoice, invoice_id)
            session.expunge(row)
            return row

    def sub(self, subscription_id: uuid.UUID) -> BillingSubscription:
        with session_scope() as session:
            row = session.get(BillingSubscription, subscription_id)
            session.expunge(row)
            return row

    def payments(self, invoice_id: uuid.UUID, kind: str | None = None) -> list[BillingPayment]:
        with session_scope() as session:
            query = select(BillingPayment).where(BillingPayment.invoice_id == invoice_id)
            if kind:
                query = query.where(BillingPayment.kind == kind)
            rows = list(session.scalars(query.order_by(BillingPayment.created_at)))
            session.expunge_all()
            return rows

    def wait_until_refunds(self, invoice_id: uuid.UUID, count: int) -> list[BillingPayment]:
        return wait_until(
            lambda: len(rows := self.payments(invoice_id, "refund")) == count and rows,
            f"{count} refunds",
        )

    def wait_refund_status(self, payment_id: uuid.UUID, status: str) -> BillingPayment:
        def settled():
            with session_scope() as session:
                row = session.get(BillingPayment, payment_id)
                session.expunge(row)
                return row.status == status and row

        return wait_until(settled, f"refund {status}")

    def wait_status(self, invoice_id: uuid.UUID, status: str, timeout: float = 20.0):
        return wait_until(
            lambda: (row := self.row(invoice_id)).status == status and row,
            f"invoice {status}",
            timeout,
        )

    def post_event(self, event: dict[str, Any], **sign: Any):
        body, headers = self.stripe.signed(event, **sign)
        return self.ws.client.simulate_post(
            "/api/billing/webhooks/stripe", body=body, headers=headers
        )
