"""An invoice as a PDF (fpdf2), rendered on its first download and kept on the row until
the invoice's status or amounts change (``invoices.forget_pdf``), then rendered again.

Rendering is pure: the same invoice renders the same document (fpdf2's creation date is
pinned to the invoice's), so two first downloads racing store equal bytes and the loser's
write changes nothing. Core fonts only (no font files to ship): text outside Latin-1 is
shown with ``?`` rather than failing.
"""

from __future__ import annotations

import datetime as dt
import uuid

from fpdf import FPDF
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.billing import currency
from shared.models import Tenant
from shared.models.billing import BillingAccount, BillingInvoice, BillingInvoiceLine
from shared.sql import tenant_row


def money(amount: int, currency_code: str) -> str:
    """``123456, "EUR"`` -> ``"1,234.56 EUR"`` (integer arithmetic, no floats)."""
    return currency.format_amount(amount, currency_code.upper())


def _latin1(text: str | None) -> str:
    return (text or "").encode("latin-1", "replace").decode("latin-1")


def _day(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else "-"


def render(
    invoice: BillingInvoice,
    lines: list[BillingInvoiceLine],
    tenant_name: str,
    billing_email: str | None,
) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_creation_date(invoice.created_at)
    pdf.set_title(f"Invoice {invoice.number}")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, f"Invoice {_latin1(invoice.number)}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    facts = [
        ("Billed to", tenant_name),
        ("Email", billing_email or "-"),
        ("Issued", _day(invoice.created_at)),
        ("Period", f"{_day(invoice.period_start)} to {_day(invoice.period_end)}"),
        ("Status", invoice.status),
    ]
    for label, value in facts:
        pdf.cell(30, 6, label)
        pdf.cell(0, 6, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(110, 7, "Description", border="B")
    pdf.cell(20, 7, "Qty", border="B", align="R")
    pdf.cell(0, 7, "Amount", border="B", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for line in lines:
        pdf.cell(110, 6, _latin1(line.description)[:70])
        pdf.cell(20, 6, str(line.quantity), align="R")
        pdf.cell(
            0, 6, money(line.amount, invoice.currency), align="R", new_x="LMARGIN", new_y="NEXT"
        )
    pdf.ln(2)
    totals = [
        ("Subtotal", invoice.subtotal),
        ("Discount", -invoice.discount_amount),
        (f"Tax ({invoice.tax_rate_bps / 100:.2f} %)", invoice.tax_amount),
        ("Total", invoice.total),
        ("Paid", invoice.amount_paid),
    ]
    if invoice.amount_refunded:
        totals.append(("Refunded", -invoice.amount_refunded))
    for label, value in totals:
        pdf.set_font("Helvetica", "B" if label == "Total" else "", 10)
        pdf.cell(130, 6, label, align="R")
        pdf.cell(0, 6, money(value, invoice.currency), align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def invoice_pdf(session: Session, tenant_id: uuid.UUID, invoice_id: uuid.UUID) -> bytes:
    """The tenant's invoice PDF: the stored one, or rendered now and stored (404 otherwise)."""
    invoice = tenant_row(
        session, BillingInvoice, tenant_id, invoice_id, missing="Invoice not found"
    )
    stored = session.scalar(select(BillingInvoice.pdf).where(BillingInvoice.id == invoice.id))
    if stored is not None:
        return stored
    lines = list(
        session.scalars(
            select(BillingInvoiceLine)
            .where(BillingInvoiceLine.invoice_id == invoice.id)
            .order_by(BillingInvoiceLine.position)
        )
    )
    tenant = session.get(Tenant, tenant_id)
    account = session.get(BillingAccount, tenant_id)
    document = render(
        invoice, lines, tenant.name if tenant else "", account and account.billing_email
    )
    # Stored only if the invoice still says what was rendered: a payment or refund settling
    # meanwhile cleared the PDF (``invoices.forget_pdf``) and must not get the old one back.
    session.execute(
        update(BillingInvoice)
        .where(
            BillingInvoice.id == invoice.id,
            BillingInvoice.pdf.is_(None),
            BillingInvoice.status == invoice.status,
            BillingInvoice.amount_paid == invoice.amount_paid,
            BillingInvoice.amount_refunded == invoice.amount_refunded,
        )
        .values(pdf=document, pdf_rendered_at=dt.datetime.now(dt.UTC))
    )
    return document
