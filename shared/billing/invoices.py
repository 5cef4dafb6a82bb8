"""Invoices: numbered, with lines, discount and tax in integer minor units, charged after commit.

An invoice is written whole in the caller's transaction: its number (from the platform's
counter, :func:`next_numbers`: the series has no gaps), its lines and its amounts. A total
of 0 is ``paid`` at once; any other total is ``open`` with ``next_charge_at = now`` and
handed to ``charge_invoice`` after commit (``charge_queue``), ``billing_cycle`` re-driving
it if that hand-off is lost.

Amounts: ``subtotal`` is the sum of the lines (credits are negative lines); the coupon's
discount applies to a positive subtotal; tax is ``(subtotal - discount) * rate_bps / 10000``
rounded half-up to the minor unit; ``total = subtotal - discount + tax``, never below 0
(a credit larger than the charges is not paid back).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.billing import catalogue, charge_queue
from shared.config import get_settings
from shared.context import Ctx
from shared.models.billing import (
    BillingAccount,
    BillingCoupon,
    BillingInvoice,
    BillingInvoiceCounter,
    BillingInvoiceLine,
    BillingSubscription,
)
from shared.pagination import Page, paginate

#: What an invoice number reads as: ``INV-000042``.
NUMBER_PREFIX = "INV-"


@dataclass(frozen=True, slots=True)
class LineSpec:
    """One line to write: ``amount`` is ``unit_amount * quantity`` unless given (proration)."""

    kind: str
    description: str
    unit_amount: int
    quantity: int = 1
    amount: int | None = None
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    plan_id: uuid.UUID | None = None
    add_on_id: uuid.UUID | None = None

    @property
    def total(self) -> int:
        return self.unit_amount * self.quantity if self.amount is None else self.amount


def half_up_div(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half-up, in integers (both non-negative)."""
    return (2 * numerator + denominator) // (2 * denominator)


def tax_rate_bps(session: Session, tenant_id: uuid.UUID) -> int:
    """The tenant's own rate (``BillingAccount.tax_rate_bps``) or the platform's."""
    own = session.scalar(
        select(BillingAccount.tax_rate_bps).where(BillingAccount.tenant_id == tenant_id)
    )
    return own if own is not None else get_settings().billing_tax_rate_bps


def create_invoice(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    subscription: BillingSubscription | None,
    reason: str,
    lines: list[LineSpec],
    coupon: BillingCoupon | None = None,
    now: dt.datetime,
    number: int | None = None,
    tax_rate: int | None = None,
) -> BillingInvoice:
    """Write an invoice and its lines; enqueue its charge after commit unless it is 0.

    ``number`` (from :func:`next_numbers`) and ``tax_rate`` (from :func:`tax_rates`) may be
    fetched beforehand for many invoices at once.
    """
    if subscription is None:
        raise ValueError("an invoice needs a subscription (its currency)")
    if number is None:
        (number,) = next_numbers(session, 1)
    if tax_rate is None:
        tax_rate = tax_rate_bps(session, tenant_id)
    built = build_invoice(
        tenant_id=tenant_id,
        subscription_id=subscription.id,
        currency=subscription.currency,
        reason=reason,
        lines=lines,
        coupon=coupon,
        now=now,
        number=number,
        tax_rate=tax_rate,
    )
    invoice = BillingInvoice(**built.invoice)
    session.add(invoice)
    session.add_all(BillingInvoiceLine(**line) for line in built.lines)
    if invoice.total:
        charge_queue.QUEUE.enqueue_after_commit(session, [invoice.id])
    return invoice


@dataclass(frozen=True, slots=True)
class Built:
    """An invoice's row and its lines' rows, as column values (nothing written yet)."""

    invoice: dict
    lines: list[dict]


def build_invoice(
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID,
    currency: str,
    reason: str,
    lines: list[LineSpec],
    coupon: BillingCoupon | None,
    now: dt.datetime,
    number: int,
    tax_rate: int,
) -> Built:
    """The amounts of an invoice (see the module's docstring), as rows to write."""
    subtotal = sum(line.total for line in lines)
    discount = catalogue.discount_for(coupon, subtotal, currency) if coupon and subtotal > 0 else 0
    taxable = max(0, subtotal - discount)
    tax = half_up_div(taxable * tax_rate, 10_000)
    total = taxable + tax
    periods = [line for line in lines if line.period_start is not None]
    invoice_id = uuid.uuid4()
    invoice = {
        "id": invoice_id,
        "tenant_id": tenant_id,
        "subscription_id": subscription_id,
        "number": format_number(number),
        "status": "paid" if total == 0 else "open",
        "reason": reason,
        "currency": currency,
        "subtotal": subtotal,
        "discount_amount": discount,
        "tax_rate_bps": tax_rate,
        "tax_amount": tax,
        "total": total,
        "amount_paid": 0,
        "amount_refunded": 0,
        "period_start": min((line.period_start for line in periods), default=None),
        "period_end": max((line.period_end for line in periods), default=None),
        "paid_at": now if total == 0 else None,
        "next_charge_at": None if total == 0 else now,
        "charge_attempts": 0,
    }
    if discount:
        lines = [*lines, LineSpec("discount", f"Coupon {coupon.code}", -discount)]
    rows = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "invoice_id": invoice_id,
            "position": position,
            "kind": spec.kind,
            "description": spec.description[:500],
            "quantity": spec.quantity,
            "unit_amount": spec.unit_amount,
            "amount": spec.total,
            "period_start": spec.period_start,
            "period_end": spec.period_end,
            "plan_id": spec.plan_id,
            "add_on_id": spec.add_on_id,
        }
        for position, spec in enumerate(lines, start=1)
    ]
    return Built(invoice, rows)


def forget_pdf(invoice: BillingInvoice) -> None:
    """Drop ``invoice``'s stored PDF: call it whenever its status or amounts change, so
    the next download renders what the invoice says now (``invoice_pdf``)."""
    invoice.pdf = None
    invoice.pdf_rendered_at = None


def next_numbers(session: Session, count: int) -> list[int]:
    """The next ``count`` invoice numbers, taken in the caller's transaction.

    NOTE: the counter's row stays locked until that transaction ends, so invoices are
    numbered one transaction at a time across the platform: the price of a series without
    gaps. Take the numbers as late as the transaction allows; the billing cycle takes a
    batch's at once.
    """
    if count <= 0:
        return []
    last = session.scalar(
        update(BillingInvoiceCounter)
        .values(last_number=BillingInvoiceCounter.last_number + count)
        .returning(BillingInvoiceCounter.last_number)
    )
    return list(range(last - count + 1, last + 1))


def format_number(number: int) -> str:
    return f"{NUMBER_PREFIX}{number:06d}"


def parse_number(number: str) -> int:
    return int(number.removeprefix(NUMBER_PREFIX))


def give_back_unused(session: Session, drawn: list[int], kept: dict[uuid.UUID, int]) -> None:
    """Close the gaps a batch leaves when it writes fewer invoices than it drew numbers for.

    ``drawn`` are the last numbers taken (:func:`next_numbers`, this transaction still
    holding the counter); ``kept`` maps each invoice written to its number among them.
    Those invoices take the first numbers, in their order, and the rest go back.
    NOTE: one UPDATE a renumbered invoice, lowest first, so no two rows ever hold one
    number (the unique index is checked row by row); a batch's invoices only.
    """
    unused = len(drawn) - len(kept)
    if unused <= 0:
        return
    for target, (invoice_id, number) in zip(
        drawn, sorted(kept.items(), key=lambda item: item[1]), strict=False
    ):
        if number != target:
            session.execute(
                update(BillingInvoice)
                .where(BillingInvoice.id == invoice_id)
                .values(number=format_number(target))
            )
    session.execute(
        update(BillingInvoiceCounter).values(last_number=BillingInvoiceCounter.last_number - unused)
    )


def tax_rates(session: Session, tenant_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Each tenant's tax rate (its own or the platform's), in one query."""
    platform = get_settings().billing_tax_rate_bps
    own = dict(
        session.execute(
            select(BillingAccount.tenant_id, BillingAccount.tax_rate_bps).where(
                BillingAccount.tenant_id.in_(tenant_ids), BillingAccount.tax_rate_bps.is_not(None)
            )
        ).all()
    )
    return {tenant_id: own.get(tenant_id, platform) for tenant_id in tenant_ids}


def list_invoices(
    session: Session, ctx: Ctx, *, status: str | None, limit: int, cursor: str | None
) -> Page[BillingInvoice]:
    """The tenant's own invoices, newest first."""
    query = select(BillingInvoice).where(BillingInvoice.tenant_id == ctx.tenant_id)
    if status:
        query = query.where(BillingInvoice.status == status)
    return paginate(
        session,
        query,
        created_at=BillingInvoice.created_at,
        id_column=BillingInvoice.id,
        limit=limit,
        cursor=cursor,
    )


def lines_of(session: Session, tenant_id: uuid.UUID, invoice_ids: list[uuid.UUID]):
    """``{invoice_id: [line, ...]}`` in position order, one query for a page."""
    found: dict[uuid.UUID, list[BillingInvoiceLine]] = {i: [] for i in invoice_ids}
    if not invoice_ids:
        return found
    rows = session.scalars(
        select(BillingInvoiceLine)
        .where(
            BillingInvoiceLine.tenant_id == tenant_id,
            BillingInvoiceLine.invoice_id.in_(invoice_ids),
        )
        .order_by(BillingInvoiceLine.invoice_id, BillingInvoiceLine.position)
    )
    for line in rows:
        found[line.invoice_id].append(line)
    return found
