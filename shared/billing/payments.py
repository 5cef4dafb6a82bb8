"""Charges and refunds: each attempt committed before the provider call, its outcome applied once.

A charge (``charge_invoice``): in one transaction, lock the invoice, reuse its ``pending``
charge row if a worker died holding one, else commit a new row keyed
``invoice:<id>:charge:<attempt>``; call the provider with that key; in a second transaction
apply the outcome. A worker killed between the provider's charge and our commit leaves the
row ``pending``; the retry sends the *same* key and the provider answers the charge it
already made, so nobody is charged twice.

Outcomes reach us twice, from the worker and from the provider's webhook, in any order;
:func:`apply_outcome` serialises them on the invoice row and applies each payment's
result once. A charge's success is final (a late failure changes nothing); a success after
a failure wins, because the money moved. A refund is the other way round: the provider may
fail a refund after it succeeded (``refund.failed``: the customer's bank sent it back), so a
refund's failure is final, reverses an earlier success on the invoice, and a success that
arrives after it is a stale event.

Two attempts may both succeed: the first's decline reached us, the dunning schedule made
a second that paid, and then the first went through after all (or the invoice was voided
meanwhile). The late success is refunded at once (``reason = 'duplicate_charge'``, the
refund naming its charge), outside the invoice's figures; an admin's refund names the
charge that paid.

Dunning: a declined charge counts an attempt and schedules the next one after the
hours of BILLING_CHARGE_RETRY_HOURS (``24,72,168``: four attempts in all); the
subscription is ``past_due`` meanwhile. When every retry has failed the invoice is
``uncollectible`` and the subscription ``cancelled``; its other open invoices are given up
with it, and an ended subscription's invoice is not dunned past its first decline. A
provider that is down is not a decline: the job raises, Dramatiq retries it with backoff,
the invoice stays open.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import idempotency
from shared.billing import invoices, refund_queue, usage
from shared.billing.providers import Outcome, get_provider
from shared.config import get_settings
from shared.db import session_scope
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.models.billing import (
    BillingAccount,
    BillingInvoice,
    BillingPayment,
    BillingPaymentMethod,
    BillingSubscription,
    BillingSubscriptionAddOn,
)

log = logging.getLogger(__name__)

#: The reason of a refund that returns a charge the invoice did not need (see _refund_duplicate).
DUPLICATE_CHARGE = "duplicate_charge"
#: Invoice states a refund may start from.
REFUNDABLE_STATUSES = ("paid", "partially_refunded")


def _external_key(provider: str, reference: str | None) -> str:
    """The key of a refund made at the provider (its dashboard), not by us."""
    return f"{provider}:refund:{reference}"


def made_outside(payment: BillingPayment) -> bool:
    """A refund recorded from the provider's events: we never send it (our key for it was
    never the provider's, so sending it would make a second refund of the same money)."""
    return payment.idempotency_key == _external_key(payment.provider, payment.provider_reference)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def retry_delays() -> list[dt.timedelta]:
    """The dunning schedule: the delay after the 1st, 2nd... failed attempt."""
    hours = get_settings().billing_charge_retry_hours.split(",")
    return [dt.timedelta(hours=float(h)) for h in hours if h.strip()]


@dataclass(frozen=True)
class Attempt:
    """A committed ``pending`` payment row and what the provider call needs."""

    payment_id: uuid.UUID
    idempotency_key: str
    amount: int
    currency: str
    customer_id: str
    payment_method: str
    metadata: dict[str, str]


def _lock_invoice(session: Session, invoice_id: uuid.UUID) -> BillingInvoice | None:
    return session.scalars(
        select(BillingInvoice).where(BillingInvoice.id == invoice_id).with_for_update()
    ).one_or_none()


def _count(session: Session, invoice_id: uuid.UUID, kind: str) -> int:
    return session.scalar(
        select(func.count())
        .select_from(BillingPayment)
        .where(BillingPayment.invoice_id == invoice_id, BillingPayment.kind == kind)
    )


def _pending(session: Session, invoice_id: uuid.UUID, kind: str) -> BillingPayment | None:
    return session.scalars(
        select(BillingPayment)
        .where(
            BillingPayment.invoice_id == invoice_id,
            BillingPayment.kind == kind,
            BillingPayment.status == "pending",
        )
        .order_by(BillingPayment.created_at)
        .limit(1)
    ).first()


def _metadata(invoice: BillingInvoice, payment: BillingPayment) -> dict[str, str]:
    return {
        "payment_id": str(payment.id),
        "invoice_id": str(invoice.id),
        "invoice_number": invoice.number,
        "tenant_id": str(invoice.tenant_id),
    }


def _default_method(session: Session, tenant_id: uuid.UUID) -> BillingPaymentMethod | None:
    return session.scalars(
        select(BillingPaymentMethod).where(
            BillingPaymentMethod.tenant_id == tenant_id, BillingPaymentMethod.is_default
        )
    ).first()


def begin_charge(session: Session, invoice_id: uuid.UUID, now: dt.datetime) -> Attempt | str:
    """Record the attempt to make (or find the one a dead worker left); else why there is none.

    Returns an :class:`Attempt` to send, or ``missing`` / ``settled`` / ``not_due`` /
    ``processing`` (the provider has the pending attempt: its webhook settles it) /
    ``failed`` (no payment method: counted as a declined attempt, without a provider call).
    """
    invoice = _lock_invoice(session, invoice_id)
    if invoice is None:
        return "missing"
    if invoice.status != "open" or invoice.total <= 0:
        return "settled"
    payment = _pending(session, invoice.id, "charge")
    account = session.get(BillingAccount, invoice.tenant_id)
    customer_id = account.provider_customer_id if account else None
    if payment is not None:
        if payment.provider_reference is not None:
            # The provider accepted it and is still processing it (a bank debit: days); its
            # webhook settles it. Not sent again: the provider keeps our key for 24 hours
            # only, so a later re-send would be a second charge under this same row.
            return "processing"
        method = session.get(BillingPaymentMethod, payment.payment_method_id)
        if method is None or customer_id is None:
            # NOTE: deleting a method with a pending charge is refused (409), so this is a
            # row whose method vanished some other way; the provider never saw it succeed.
            _settle_charge(
                session, invoice, payment, Outcome("failed", None, "no_payment_method"), now
            )
            return "failed"
    else:
        if invoice.next_charge_at is None or invoice.next_charge_at > now:
            return "not_due"
        method = _default_method(session, invoice.tenant_id)
        attempt = _count(session, invoice.id, "charge") + 1
        payment = BillingPayment(
            id=uuid.uuid4(),
            tenant_id=invoice.tenant_id,
            invoice_id=invoice.id,
            kind="charge",
            status="pending",
            amount=invoice.total,
            currency=invoice.currency,
            provider=get_provider().name,
            idempotency_key=f"invoice:{invoice.id}:charge:{attempt}",
            payment_method_id=method.id if method else None,
        )
        session.add(payment)
        session.flush()
        if method is None or customer_id is None:
            no_method = Outcome("failed", None, "no_payment_method", "No default payment method")
            _settle_charge(session, invoice, payment, no_method, now)
            return "failed"
    return Attempt(
        payment_id=payment.id,
        idempotency_key=payment.idempotency_key,
        amount=payment.amount,
        currency=payment.currency,
        customer_id=customer_id,
        payment_method=method.provider_payment_method_id,
        metadata=_metadata(invoice, payment),
    )


def charge_invoice(invoice_id: uuid.UUID, *, now: dt.datetime | None = None) -> str:
    """Charge an open, due invoice once; the outcome word (``paid``, ``declined``...).

    Raises :class:`~shared.billing.providers.ProviderUnavailable` when the provider is
    down: the pending row stays, and the retry reuses its key.
    """
    with session_scope() as session:
        attempt = begin_charge(session, invoice_id, now or utcnow())
    if isinstance(attempt, str):
        return attempt
    outcome = get_provider().charge(
        customer_id=attempt.customer_id,
        payment_method_id=attempt.payment_method,
        amount=attempt.amount,
        currency=attempt.currency,
        idempotency_key=attempt.idempotency_key,
        metadata=attempt.metadata,
    )
    with session_scope() as session:
        return apply_outcome(session, attempt.payment_id, outcome, now or utcnow())


def apply_outcome(
    session: Session, payment_id: uuid.UUID, outcome: Outcome, now: dt.datetime
) -> str:
    """Apply what the provider did with a payment, once (worker and webhook both call this)."""
    found = session.get(BillingPayment, payment_id)
    if found is None:
        return "missing"
    invoice = _lock_invoice(session, found.invoice_id)
    payment = session.scalars(
        select(BillingPayment)
        .where(BillingPayment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if outcome.reference and not payment.provider_reference:
        payment.provider_reference = outcome.reference
    if outcome.status == "pending" or invoice is None:
        return "pending"
    if payment.kind == "charge":
        return _settle_charge(session, invoice, payment, outcome, now)
    return _settle_refund(invoice, payment, outcome, now)


def _subscription(session: Session, invoice: BillingInvoice) -> BillingSubscription | None:
    if invoice.subscription_id is None:
        return None
    return session.scalars(
        select(BillingSubscription)
        .where(BillingSubscription.id == invoice.subscription_id)
        .with_for_update()
    ).one_or_none()


def _settle_charge(
    session: Session,
    invoice: BillingInvoice,
    payment: BillingPayment,
    outcome: Outcome,
    now: dt.datetime,
) -> str:
    if payment.status == "succeeded":
        return "unchanged"  # a success is final: a late or replayed failure changes nothing
    if outcome.status == "failed":
        if payment.status == "failed":
            return "unchanged"
        payment.status = "failed"
        payment.failure_code = (outcome.failure_code or "declined")[:64]
        payment.failure_message = outcome.failure_message
        payment.settled_at = now
        if invoice.status == "open":
            return _dun(session, invoice, payment.failure_code, now)
        return "declined"
    payment.status = "succeeded"
    payment.settled_at = now
    if invoice.status not in ("open", "uncollectible"):
        _refund_duplicate(session, invoice, payment)
        return "duplicate_refunded"
    invoice.status = "paid"
    invoice.amount_paid = payment.amount
    invoices.forget_pdf(invoice)
    invoice.paid_at = now
    invoice.next_charge_at = None
    invoice.last_charge_error = None
    subscription = _subscription(session, invoice)
    if (
        subscription is not None
        and subscription.status != "cancelled"
        and not _still_dunned(session, invoice)
    ):
        subscription.status = "active"
        subscription.past_due_since = None
    return "paid"


def _still_dunned(session: Session, paid: BillingInvoice) -> bool:
    """Whether another invoice of ``paid``'s subscription was declined and is still owed.

    Read under the subscription's lock (every settlement takes it), so of two invoices paid
    at once the second sees the first. Paying an add-on's invoice is not paying the renewal
    still being dunned: the subscription stays ``past_due`` (since its first decline).
    """
    return bool(
        session.scalar(
            select(
                exists().where(
                    BillingInvoice.subscription_id == paid.subscription_id,
                    BillingInvoice.id != paid.id,
                    BillingInvoice.status == "open",
                    BillingInvoice.charge_attempts > 0,
                )
            )
        )
    )


def _refund_duplicate(session: Session, invoice: BillingInvoice, charge: BillingPayment) -> None:
    """Give back a charge that succeeded after the invoice was paid (or voided) otherwise.

    Another attempt paid (its success reached us first), or nothing is owed any more: the
    customer paid twice. The refund is recorded beside the charge and sent after commit;
    it is not the invoice's money, so it never moves the invoice's figures.
    """
    log.warning(
        "charge %s of invoice %s (already %s) succeeded late; refunding %s %s",
        charge.id,
        invoice.id,
        invoice.status,
        charge.amount,
        charge.currency,
    )
    refund = BillingPayment(
        id=uuid.uuid4(),
        tenant_id=invoice.tenant_id,
        invoice_id=invoice.id,
        kind="refund",
        reason=DUPLICATE_CHARGE,
        charge_id=charge.id,
        status="pending",
        amount=charge.amount,
        currency=charge.currency,
        provider=charge.provider,
        idempotency_key=f"payment:{charge.id}:duplicate_refund",
    )
    session.add(refund)
    session.flush()
    refund_queue.QUEUE.enqueue_after_commit(session, [refund.id])


def _dun(session: Session, invoice: BillingInvoice, code: str, now: dt.datetime) -> str:
    """Count a declined attempt: schedule the next one, or give up after the last.

    An ended subscription's invoice is given up at its first decline: as Stripe does, a
    cancelled subscription's invoices are not collected any more (see _give_up_others).
    """
    invoice.charge_attempts += 1
    invoice.last_charge_error = code
    delays = retry_delays()
    subscription = _subscription(session, invoice)
    ended = (
        subscription is not None
        and subscription.status == "cancelled"
        and subscription.ended_at is not None
    )
    if invoice.charge_attempts <= len(delays) and not ended:
        invoice.next_charge_at = now + delays[invoice.charge_attempts - 1]
        if subscription is not None and subscription.status != "cancelled":
            subscription.status = "past_due"
            subscription.past_due_since = subscription.past_due_since or now
        return "declined"
    invoice.status = "uncollectible"
    invoice.next_charge_at = None
    invoices.forget_pdf(invoice)
    if subscription is not None and subscription.status != "cancelled":
        subscription.status = "cancelled"
        subscription.cancelled_at = subscription.cancelled_at or now
        subscription.ended_at = now
        _end_add_ons(session, subscription, now)
        _give_up_others(session, invoice, now)
    return "uncollectible"


def _give_up_others(session: Session, invoice: BillingInvoice, now: dt.datetime) -> None:
    """The subscription dunning just ended stops being charged for its other open invoices.

    An add-on's or an upgrade's invoice would otherwise go on being charged (and dunned
    for a week) after the customer's service ended. Rows a worker holds at this moment
    are skipped, not waited for (that worker may be waiting for the subscription's row,
    which this transaction holds): their decline finds the subscription ended and gives
    up then (:func:`_dun`); their success pays them, as any late success does.
    """
    others = (
        select(BillingInvoice.id)
        .where(
            BillingInvoice.subscription_id == invoice.subscription_id,
            BillingInvoice.id != invoice.id,
            BillingInvoice.status == "open",
        )
        .with_for_update(skip_locked=True)
    )
    given_up = session.execute(
        update(BillingInvoice)
        .where(BillingInvoice.id.in_(others.scalar_subquery()))
        .values(status="uncollectible", next_charge_at=None, pdf=None, pdf_rendered_at=None)
        .returning(BillingInvoice.id)
    ).scalars()
    for other in given_up:
        log.info("invoice %s given up with subscription %s", other, invoice.subscription_id)


def _end_add_ons(session: Session, subscription: BillingSubscription, now: dt.datetime) -> None:
    """A subscription ended by dunning ends its add-ons, as ``billing_cycle`` does at a
    period-end cancellation: left attached they kept raising the workspace's limits and
    blocked deleting the add-on or changing its currency."""
    session.execute(
        update(BillingSubscriptionAddOn)
        .where(
            BillingSubscriptionAddOn.subscription_id == subscription.id,
            BillingSubscriptionAddOn.detached_at.is_(None),
        )
        .values(detached_at=now)
    )
    usage.forget_limits(subscription.tenant_id)


def _settle_refund(
    invoice: BillingInvoice, payment: BillingPayment, outcome: Outcome, now: dt.datetime
) -> str:
    # A duplicate charge's refund settles its own row only: that money was never the
    # invoice's (see _refund_duplicate).
    duplicate = payment.reason == DUPLICATE_CHARGE
    if outcome.status == "failed":
        if payment.status == "failed":
            return "unchanged"
        if duplicate:
            log.error(
                "refund %s of duplicate charge %s failed (%s): %s %s is still owed to the customer",
                payment.id,
                payment.charge_id,
                outcome.failure_code,
                payment.amount,
                payment.currency,
            )
        elif payment.status == "succeeded":
            _unrefund(invoice, payment)
        payment.status = "failed"
        payment.failure_code = (outcome.failure_code or "refund_failed")[:64]
        payment.failure_message = outcome.failure_message
        payment.settled_at = now
        return "refund_failed"
    if payment.status != "pending":
        # Succeeded already, or failed: a failed refund never succeeds later at the
        # provider, so this success is an older event delivered late.
        return "unchanged"
    payment.status = "succeeded"
    payment.settled_at = now
    if duplicate:
        return "duplicate_refunded"
    invoice.amount_refunded = min(invoice.amount_paid, invoice.amount_refunded + payment.amount)
    fully = invoice.amount_refunded >= invoice.amount_paid
    invoice.status = "refunded" if fully else "partially_refunded"
    invoices.forget_pdf(invoice)
    return invoice.status


def _unrefund(invoice: BillingInvoice, payment: BillingPayment) -> None:
    """Take a refund that failed after it succeeded off the invoice: the money came back."""
    log.warning(
        "refund %s of invoice %s failed after it succeeded; %s %s is no longer refunded",
        payment.id,
        invoice.id,
        payment.amount,
        payment.currency,
    )
    invoice.amount_refunded = max(0, invoice.amount_refunded - payment.amount)
    if invoice.status in ("refunded", "partially_refunded"):
        invoice.status = "partially_refunded" if invoice.amount_refunded else "paid"
    invoices.forget_pdf(invoice)


# --- refunds -----------------------------------------------------------------------------


def _paying_charge(session: Session, invoice_id: uuid.UUID) -> BillingPayment | None:
    """The succeeded charge that paid the invoice: any other was refunded as a duplicate."""
    duplicates = select(BillingPayment.charge_id).where(
        BillingPayment.invoice_id == invoice_id,
        BillingPayment.reason == DUPLICATE_CHARGE,
        BillingPayment.charge_id.is_not(None),
    )
    return session.scalars(
        select(BillingPayment)
        .where(
            BillingPayment.invoice_id == invoice_id,
            BillingPayment.kind == "charge",
            BillingPayment.status == "succeeded",
            BillingPayment.provider_reference.is_not(None),
            BillingPayment.id.not_in(duplicates),
        )
        .order_by(BillingPayment.settled_at.desc())
        .limit(1)
    ).first()


def record_external_refund(
    session: Session, provider: str, outcome: Outcome, now: dt.datetime
) -> str:
    """Apply a refund made at the provider (Stripe's dashboard), found by its charge.

    Its events carry no payment id of ours, only the refund's and the payment intent's
    ids: the refund is recorded once (its key is the provider's refund id), on the charge
    it returns, and settles as any refund does, so the invoice says refunded and an
    admin can refund only what is left. ``missing`` when the charge is not one of ours.
    """
    if outcome.reference is None or outcome.charge_reference is None or not outcome.amount:
        return "missing"
    charge = session.scalars(
        select(BillingPayment).where(
            BillingPayment.provider == provider,
            BillingPayment.provider_reference == outcome.charge_reference,
            BillingPayment.kind == "charge",
        )
    ).first()
    if charge is None or outcome.currency != charge.currency:
        return "missing"
    if charge.status != "succeeded":
        # The provider refunds only money it collected: its success event has not reached
        # us yet (or was lost), and this refund is its proof. Applied as that event would be.
        apply_outcome(session, charge.id, Outcome("succeeded", outcome.charge_reference), now)
    invoice = _lock_invoice(session, charge.invoice_id)
    paying = _paying_charge(session, invoice.id)
    payment_id = session.execute(
        insert(BillingPayment)
        .values(
            id=uuid.uuid4(),
            tenant_id=invoice.tenant_id,
            invoice_id=invoice.id,
            kind="refund",
            reason="external"
            if paying is not None and paying.id == charge.id
            else DUPLICATE_CHARGE,
            charge_id=charge.id,
            status="pending",
            amount=outcome.amount,
            currency=charge.currency,
            provider=provider,
            provider_reference=outcome.reference,
            idempotency_key=_external_key(provider, outcome.reference),
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(BillingPayment.id)
    ).scalar()
    if payment_id is None:
        # Another event of the same refund recorded it first (maybe while this one waited
        # on its row): this event's status still applies to it, once, as any refund's does.
        payment_id = session.scalar(
            select(BillingPayment.id).where(
                BillingPayment.idempotency_key == _external_key(provider, outcome.reference)
            )
        )
        if payment_id is None:
            return "missing"
        return apply_outcome(session, payment_id, outcome, now)
    log.info("refund %s of invoice %s was made at %s", outcome.reference, invoice.id, provider)
    return apply_outcome(session, payment_id, outcome, now)


def refundable(session: Session, invoice: BillingInvoice) -> int:
    """What may still be refunded: paid, minus refunded, minus refunds in flight."""
    in_flight = session.scalar(
        select(func.coalesce(func.sum(BillingPayment.amount), 0)).where(
            BillingPayment.invoice_id == invoice.id,
            BillingPayment.kind == "refund",
            BillingPayment.status == "pending",
            BillingPayment.reason.is_distinct_from(DUPLICATE_CHARGE),
        )
    )
    return invoice.amount_paid - invoice.amount_refunded - int(in_flight)


def request_refund(
    session: Session, invoice_id: uuid.UUID, amount: int | None, client_key: str | None = None
) -> BillingPayment:
    """Record a refund (``amount`` or the rest) and hand it to ``refund_invoice`` after commit.

    404 for an unknown invoice; 409 when it was never paid or nothing is left; 422 naming
    ``amount`` when it is above the refundable amount (refunds in flight count). With the
    caller's ``Idempotency-Key`` (``client_key``) a repeat returns the first refund; the
    key with another ``amount`` is refused (422 naming ``Idempotency-Key``).
    """
    invoice = _lock_invoice(session, invoice_id)
    if invoice is None:
        raise NotFound("Invoice not found")
    key = None
    if client_key is not None:
        digest = hashlib.sha256(client_key.encode()).hexdigest()[:40]
        prefix = f"invoice:{invoice.id}:refund:client:{digest}"
        # The stored key ends with the request's fingerprint (no column for it): found by
        # its prefix, a first refund under another suffix was asked with other parameters.
        request = idempotency.fingerprint({"amount": amount})[:16]
        key = f"{prefix}:{request}"
        first = session.scalars(
            select(BillingPayment).where(
                BillingPayment.invoice_id == invoice.id,
                BillingPayment.idempotency_key.startswith(prefix),
            )
        ).first()
        if first is not None:
            if first.idempotency_key != key:
                raise ValidationFailed.field(
                    "Idempotency-Key", "already used for a different request"
                )
            return first
    if invoice.status not in REFUNDABLE_STATUSES:
        raise Conflict(f"Only a paid invoice can be refunded; this one is {invoice.status}")
    charge = _paying_charge(session, invoice.id)
    if charge is None:
        raise Conflict("This invoice has no provider charge to refund")
    left = refundable(session, invoice)
    if amount is None:
        if left <= 0:
            raise Conflict("Nothing is left to refund on this invoice")
        amount = left
    elif amount > left:
        raise ValidationFailed(
            f"amount: at most {left} can be refunded",
            details=[{"field": "amount", "message": f"above the refundable amount ({left})"}],
        )
    attempt = _count(session, invoice.id, "refund") + 1
    payment = BillingPayment(
        id=uuid.uuid4(),
        tenant_id=invoice.tenant_id,
        invoice_id=invoice.id,
        kind="refund",
        reason="requested",
        charge_id=charge.id,
        status="pending",
        amount=amount,
        currency=invoice.currency,
        provider=get_provider().name,
        idempotency_key=key or f"invoice:{invoice.id}:refund:{attempt}",
    )
    session.add(payment)
    session.flush()
    refund_queue.QUEUE.enqueue_after_commit(session, [payment.id])
    return payment


def refund_payment(payment_id: uuid.UUID, *, now: dt.datetime | None = None) -> str:
    """Send a pending refund to the provider with its key and apply the outcome once."""
    with session_scope() as session:
        payment = session.get(BillingPayment, payment_id)
        if payment is None or payment.kind != "refund":
            return "missing"
        if payment.status != "pending":
            return "settled"
        if made_outside(payment):
            return "external"  # the provider made it; only its events settle it
        if payment.provider_reference is not None:
            return "processing"  # accepted, pending there: its webhook settles it (as charges)
        invoice = session.get(BillingInvoice, payment.invoice_id)
        charge = (
            session.get(BillingPayment, payment.charge_id)
            if payment.charge_id is not None
            else _paying_charge(session, payment.invoice_id)
        )
        reference = charge.provider_reference if charge is not None else None
        key, amount, currency = payment.idempotency_key, payment.amount, invoice.currency
        metadata = _metadata(invoice, payment)
    if reference is None:
        outcome = Outcome("failed", None, "no_charge", "No succeeded charge to refund")
    else:
        outcome = get_provider().refund(
            charge_reference=reference,
            amount=amount,
            currency=currency,
            idempotency_key=key,
            metadata=metadata,
        )
    with session_scope() as session:
        return apply_outcome(session, payment_id, outcome, now or utcnow())


#: A pending refund older than this lost its message (or its worker): send it again.
STALE_REFUND_AFTER = dt.timedelta(minutes=10)


def redrive_stale_refunds(session: Session, *, limit: int = 500) -> int:
    """Re-send pending refunds whose message was lost; for the hourly billing scheduler job.

    A refund whose answer was lost is sent again with its key, which the provider answers
    as the same refund; its outcome is applied once. A refund the provider has (it answered
    ``pending``, or it was made in its dashboard) is left to its events: the provider keeps
    our key for 24 hours only, so a re-send could refund the money twice. (Charges need no
    such sweep: an open invoice whose ``next_charge_at`` passed is re-driven by
    ``billing_cycle``.)
    """
    ids = list(
        session.scalars(
            select(BillingPayment.id)
            .where(
                BillingPayment.kind == "refund",
                BillingPayment.status == "pending",
                BillingPayment.created_at < func.now() - STALE_REFUND_AFTER,
                # Not one the provider has (pending there, or made there): its webhook settles it.
                BillingPayment.provider_reference.is_(None),
            )
            .order_by(BillingPayment.created_at)
            .limit(limit)
        )
    )
    refund_queue.QUEUE.enqueue_after_commit(session, ids)
    return len(ids)
