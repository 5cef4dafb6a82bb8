"""A tenant's payment methods: provider tokens and display facts only, never card data.

Adding one makes sure the tenant has a customer at the provider (created with the key
``tenant:<id>:customer``, so a retried first add reuses it), attaches the token there and
keeps its id; the first method becomes the default. A provider that is down answers 503
and writes nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import activity
from shared.billing.providers import PaymentMethodRejected, ProviderUnavailable, get_provider
from shared.context import Ctx
from shared.errors import Conflict, DependencyUnavailable, ValidationFailed
from shared.models.billing import (
    BillingAccount,
    BillingPayment,
    BillingPaymentMethod,
    BillingSubscription,
)
from shared.pagination import Page, paginate
from shared.sql import tenant_row

ENTITY = "billing_payment_method"


def view(row: BillingPaymentMethod) -> dict[str, Any]:
    return {
        "id": row.id,
        "provider": row.provider,
        "provider_payment_method_id": row.provider_payment_method_id,
        "brand": row.brand,
        "last4": row.last4,
        "exp_month": row.exp_month,
        "exp_year": row.exp_year,
        "is_default": row.is_default,
        "created_at": row.created_at,
    }


def _unavailable(exc: ProviderUnavailable) -> DependencyUnavailable:
    return DependencyUnavailable("The payment provider is unavailable; try again shortly")


def list_methods(
    session: Session, ctx: Ctx, *, limit: int, cursor: str | None = None
) -> Page[BillingPaymentMethod]:
    query = select(BillingPaymentMethod).where(BillingPaymentMethod.tenant_id == ctx.tenant_id)
    return paginate(
        session,
        query,
        created_at=BillingPaymentMethod.created_at,
        id_column=BillingPaymentMethod.id,
        limit=limit,
        cursor=cursor,
    )


def _account(session: Session, tenant_id: uuid.UUID, provider: str) -> BillingAccount:
    """The tenant's billing account, locked (concurrent first adds make one customer)."""
    session.execute(
        insert(BillingAccount)
        .values(tenant_id=tenant_id, provider=provider)
        .on_conflict_do_nothing(index_elements=["tenant_id"])
    )
    account = session.scalars(
        select(BillingAccount)
        .where(BillingAccount.tenant_id == tenant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if account.provider != provider:  # the platform switched provider: a new customer there
        account.provider, account.provider_customer_id = provider, None
    return account


def add_method(session: Session, ctx: Ctx, token: str) -> BillingPaymentMethod:
    provider = get_provider()
    account = _account(session, ctx.tenant_id, provider.name)
    try:
        if not account.provider_customer_id:
            account.provider_customer_id = provider.create_customer(
                tenant_id=str(ctx.tenant_id),
                email=account.billing_email,
                idempotency_key=f"tenant:{ctx.tenant_id}:customer:{provider.name}",
            )
        info = provider.attach_payment_method(customer_id=account.provider_customer_id, token=token)
    except ProviderUnavailable as exc:
        raise _unavailable(exc) from exc
    except PaymentMethodRejected as exc:
        raise ValidationFailed.field("token", f"refused by the payment provider: {exc}") from exc
    known = session.scalar(
        select(
            exists().where(
                BillingPaymentMethod.tenant_id == ctx.tenant_id,
                BillingPaymentMethod.provider_payment_method_id == info.id,
            )
        )
    )
    if known:
        raise Conflict("This payment method is already added")
    has_default = session.scalar(
        select(
            exists().where(
                BillingPaymentMethod.tenant_id == ctx.tenant_id, BillingPaymentMethod.is_default
            )
        )
    )
    row = BillingPaymentMethod(
        tenant_id=ctx.tenant_id,
        provider=provider.name,
        provider_payment_method_id=info.id,
        brand=info.brand,
        last4=info.last4,
        exp_month=info.exp_month,
        exp_year=info.exp_year,
        is_default=not has_default,
    )
    session.add(row)
    session.flush()
    session.refresh(row)
    activity.record(session, ctx, "billing.payment_method_added", ENTITY, row.id, after=_audit(row))
    return row


def _audit(row: BillingPaymentMethod) -> dict[str, Any]:
    return {"brand": row.brand, "last4": row.last4, "is_default": row.is_default}


def delete_method(session: Session, ctx: Ctx, method_id: uuid.UUID) -> None:
    """Remove a method; 409 for the only one of a live paid subscription or one being charged."""
    # Lock the account first so two concurrent deletes cannot both see "another one left".
    session.scalars(
        select(BillingAccount).where(BillingAccount.tenant_id == ctx.tenant_id).with_for_update()
    ).one_or_none()
    row = tenant_row(
        session,
        BillingPaymentMethod,
        ctx.tenant_id,
        method_id,
        missing="Payment method not found",
        lock=True,
    )
    others = list(
        session.scalars(
            select(BillingPaymentMethod)
            .where(
                BillingPaymentMethod.tenant_id == ctx.tenant_id,
                BillingPaymentMethod.id != row.id,
            )
            .order_by(BillingPaymentMethod.created_at.desc(), BillingPaymentMethod.id.desc())
        )
    )
    if not others:
        paid_live = session.scalar(
            select(
                exists().where(
                    BillingSubscription.tenant_id == ctx.tenant_id,
                    BillingSubscription.status != "cancelled",
                    BillingSubscription.price_amount > 0,
                )
            )
        )
        if paid_live:
            raise Conflict(
                "This is the only payment method of a paid subscription; add another first"
            )
    charging = session.scalar(
        select(
            exists().where(
                BillingPayment.payment_method_id == row.id, BillingPayment.status == "pending"
            )
        )
    )
    if charging:
        raise Conflict("A charge on this payment method is in progress; try again shortly")
    try:
        get_provider().detach_payment_method(row.provider_payment_method_id)
    except ProviderUnavailable as exc:
        raise _unavailable(exc) from exc
    before = _audit(row)
    was_default = row.is_default
    session.delete(row)
    session.flush()
    if was_default and others:
        others[0].is_default = True
    activity.record(
        session, ctx, "billing.payment_method_deleted", ENTITY, method_id, before=before
    )
