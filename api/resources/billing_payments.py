"""Payments: payment methods, invoice PDFs, Stripe's webhooks and the super-admin refund."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.request_parts import idempotency_key, raw_body
from api.schemas.billing_payments import (
    JobAccepted,
    PaymentMethodCreate,
    PaymentMethodListQuery,
    PaymentMethodView,
    ProviderWebhookAck,
    RefundCreate,
)
from api.schemas.common import Page
from shared.billing import invoice_pdf, payment_methods, payments, provider_events

# NOTE: importing the actors installs the after-commit enqueuers of charges and refunds.
from workers.actors import billing as _billing_actors  # noqa: F401

TAGS = ("Billing",)
ADMIN_TAGS = ("Billing Admin",)


class PaymentMethodsResource:
    @endpoint(
        "List payment methods",
        permission="billing.manage",
        query=PaymentMethodListQuery,
        response=Page[PaymentMethodView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: PaymentMethodListQuery):
        page = payment_methods.list_methods(req.context.db, ctx, **query.model_dump())
        items = [payment_methods.view(row) for row in page.items]
        return Plain({"items": items, "next_cursor": page.next_cursor})

    @endpoint(
        "Add a payment method",
        permission="billing.manage",
        body=PaymentMethodCreate,
        response=PaymentMethodView,
        status=201,
        errors=(409, 503),
        description=(
            "`token` is the provider's payment-method id made by its client-side SDK (Stripe:"
            " `pm_...`); it is attached to the workspace's customer there. The first method"
            " becomes the default. 422 when the provider refuses the token, 409 when it is"
            " already added, 503 `dependency_unavailable` when the provider is down."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, body: PaymentMethodCreate):
        row = payment_methods.add_method(req.context.db, ctx, body.token)
        return Plain(payment_methods.view(row))


class PaymentMethodResource:
    @endpoint(
        "Delete a payment method",
        permission="billing.manage",
        status=204,
        errors=(409, 503),
        description=(
            "409 for the only method of a live paid subscription, or one with a charge in"
            " progress. Deleting the default makes the newest remaining method the default."
        ),
        tags=TAGS,
    )
    def on_delete(self, req, resp, *, ctx, id):
        payment_methods.delete_method(req.context.db, ctx, id)


class InvoicePdfResource:
    @endpoint(
        "Download invoice PDF",
        permission="billing.manage",
        produces="application/pdf",
        description="Rendered on the first request, then stored and served as stored.",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id):
        document = invoice_pdf.invoice_pdf(req.context.db, ctx.tenant_id, id)
        resp.content_type = "application/pdf"
        resp.set_header("Content-Disposition", f'inline; filename="invoice-{id}.pdf"')
        resp.data = document


class StripeWebhookResource:
    @endpoint(
        "Receive Stripe webhook events",
        public=True,
        response=ProviderWebhookAck,
        accepts=("application/json",),
        description=(
            "Verified with `Stripe-Signature` (`t=<unix>,v1=<HMAC-SHA256 hex of"
            ' "<t>.<raw body>">`, STRIPE_WEBHOOK_SECRET, 5 minutes tolerance); 400 otherwise.'
            " Applies `payment_intent.succeeded|payment_failed`, `charge.refunded` and"
            " `refund.*` once per event id; a replay answers `duplicate: true`. A refund made"
            " in Stripe's dashboard is recorded on the charge it returns and applied to its"
            " invoice."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp):
        receipt = provider_events.receive_stripe(
            req.context.db, raw_body(req), req.get_header("Stripe-Signature")
        )
        return Plain(receipt.as_dict())


class InvoiceRefundResource:
    @endpoint(
        "Refund an invoice",
        super_admin=True,
        body=RefundCreate,
        response=JobAccepted,
        status=202,
        errors=(404, 409),
        description=(
            "Refunds `amount` (minor units; omitted: the rest) through the payment provider"
            " in `refund_invoice`; the invoice becomes `refunded` or `partially_refunded`."
            " 422 above the refundable amount (paid, minus refunded, minus refunds in"
            " flight); 409 for an invoice that is not paid. `Idempotency-Key`: a repeat"
            " answers the first refund's job; the key with another `amount` answers 422."
            " `job_id` is the refund's payment id."
        ),
        tags=ADMIN_TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: RefundCreate):
        payment = payments.request_refund(req.context.db, id, body.amount, idempotency_key(req))
        req.context.audit_details = {"invoice_id": str(id), "amount": payment.amount}
        return {"job_id": payment.id}


ROUTES = [
    ("/api/billing/payment-methods", PaymentMethodsResource()),
    ("/api/billing/payment-methods/{id:uuid}", PaymentMethodResource()),
    ("/api/billing/invoices/{id:uuid}/pdf", InvoicePdfResource()),
    ("/api/billing/webhooks/stripe", StripeWebhookResource()),
    ("/api/admin/billing/invoices/{id:uuid}/refund", InvoiceRefundResource()),
]
