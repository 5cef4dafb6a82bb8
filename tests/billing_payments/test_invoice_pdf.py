"""Invoice PDFs: rendered with fpdf2 on the first download, stored, served as stored until
the invoice's status or amounts change."""

from __future__ import annotations

import re
import uuid
import zlib

from sqlalchemy import select

from shared.billing import payments
from shared.billing.invoice_pdf import money
from shared.db import session_scope
from shared.models.billing import BillingInvoice


def _stored(invoice_id):
    with session_scope() as session:
        return session.execute(
            select(BillingInvoice.pdf, BillingInvoice.pdf_rendered_at).where(
                BillingInvoice.id == invoice_id
            )
        ).one()


def test_rendered_on_first_request_then_served_as_stored(billing):
    invoice = billing.invoice(123456, currency="EUR")
    assert _stored(invoice) == (None, None)
    first = billing.ws.call("GET", f"/api/billing/invoices/{invoice}/pdf")
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/pdf"
    assert first.content.startswith(b"%PDF-") and first.content.rstrip().endswith(b"%%EOF")
    pdf, rendered_at = _stored(invoice)
    assert pdf == first.content and rendered_at is not None
    again = billing.ws.call("GET", f"/api/billing/invoices/{invoice}/pdf")
    assert again.content == first.content
    assert _stored(invoice)[1] == rendered_at  # not rendered twice


def _shown(pdf: bytes) -> list[bytes]:
    """The PDF's status and amounts, from its page contents (fpdf2 deflates them)."""
    text = b""
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            text += zlib.decompress(stream)
        except zlib.error:
            text += stream
    return re.findall(rb"\(([a-z_]+|-?[0-9.]+ USD)\)", text)


def test_a_pdf_stored_while_open_shows_the_payment_and_refunds_later(billing, root, worker):
    billing.add_method("pm_card_visa")
    invoice = billing.invoice(4900)

    def shown() -> list[bytes]:
        pdf = billing.ws.call("GET", f"/api/billing/invoices/{invoice}/pdf").content
        assert _stored(invoice)[0] == pdf  # stored, for the invoice as it is now
        return _shown(pdf)

    # status; line, subtotal, discount, tax, total, paid (then refunded)
    billed = [b"49.00 USD", b"49.00 USD", b"0.00 USD", b"0.00 USD", b"49.00 USD"]
    assert shown() == [b"open", *billed, b"0.00 USD"]
    assert payments.charge_invoice(invoice) == "paid"
    assert shown() == [b"paid", *billed, b"49.00 USD"]
    resp = root.call("POST", f"/api/admin/billing/invoices/{invoice}/refund", json={"amount": 900})
    assert resp.status_code == 202, resp.text
    billing.wait_status(invoice, "partially_refunded")
    assert shown() == [b"partially_refunded", *billed, b"49.00 USD", b"-9.00 USD"]


def test_another_tenants_invoice_is_404(billing, other_workspace):
    invoice = billing.invoice(100)
    resp = other_workspace.call("GET", f"/api/billing/invoices/{invoice}/pdf")
    assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"
    assert billing.ws.call("GET", f"/api/billing/invoices/{uuid.uuid4()}/pdf").status_code == 404
    assert _stored(invoice) == (None, None)


def test_names_outside_latin1_still_render(billing):
    with session_scope() as session:
        from shared.models import Tenant

        session.get(Tenant, billing.tenant_id).name = "Ünïcode 東京 Café ✓"
    invoice = billing.invoice(5000)
    resp = billing.ws.call("GET", f"/api/billing/invoices/{invoice}/pdf")
    assert resp.status_code == 200 and resp.content.startswith(b"%PDF-")


def test_money_is_formatted_by_the_currency_exponent():
    assert money(123456, "EUR") == "1,234.56 EUR"
    assert money(5, "usd") == "0.05 USD"
    assert money(1500, "JPY") == "1,500 JPY"
    assert money(1234, "KWD") == "1.234 KWD"
    assert money(-250, "USD") == "-2.50 USD"
