"""Bodies and answers of the payment routes: payment methods, refunds, provider webhooks."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, Field, StrictInt

from api.schemas.common import Input, ListQuery


class PaymentMethodCreate(Input):
    """A token the provider's client-side SDK made (Stripe: ``pm_...``); never card data."""

    token: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_\-]+$")


class PaymentMethodListQuery(ListQuery):
    pass


class PaymentMethodView(BaseModel):
    id: uuid.UUID
    provider: str
    provider_payment_method_id: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    is_default: bool
    created_at: dt.datetime


class RefundCreate(Input):
    """``amount`` in the invoice's minor units; omitted: everything still refundable.

    ``StrictInt`` as every amount (README): ``"1999"``, ``true`` or ``19.0`` is a 422, not a
    refund of 1999, 1 or 19 minor units."""

    amount: StrictInt | None = Field(None, ge=1, le=2**62)


class JobAccepted(BaseModel):
    job_id: uuid.UUID


class ProviderWebhookAck(BaseModel):
    event_id: str
    duplicate: bool
    applied: int
