"""``billing_cycle``: what happens at each subscription's period end, and charges re-driven.

At a period end (``current_period_end <= now``):
- ``cancel_at_period_end`` -> ``cancelled`` (its add-ons end with it);
- a trial -> ``active`` on its plan with the first invoice, or ``cancelled`` when the plan
  has a price and the workspace has no payment method;
- otherwise a renewal: the next period, at the plan's *current* price (a pending downgrade
  applied first), add-ons detached at the period end ended and the others renewed at their
  current price, the coupon applied while it has periods left and fits the plan (else it
  is dropped), one ``subscription_cycle`` invoice (charged after commit).

A ``past_due`` subscription renews like an ``active`` one (it keeps its status): dunning of
the earlier invoice is ``charge_invoice``'s, independent of the calendar.

Batches of :data:`BATCH` rows are claimed ``FOR UPDATE SKIP LOCKED`` in period-end order
and committed one at a time (a row another run held when skipped is that run's, or the
next run's if that run rolled back), so two schedulers share the due rows and never renew
one twice: a renewal moves the period end forward in the same transaction that writes its
invoice, and the unique index ``uq_billing_invoices_cycle`` (one cycle invoice per
subscription and period start) makes a second renewal of the same period impossible.
Suspended workspaces wait (API.md: scheduler jobs skip them); they renew on the first run
after reactivation.

PERF: a batch is read with three queries and written with one statement per table
(``unnest`` of arrays: no per-row round trips, no ORM unit of work), so a batch of 500
costs a handful of round trips; see ``bench/billing_cycle.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text, tuple_
from sqlalchemy.orm import Session

from shared.billing import catalogue, charge_queue, invoices, periods, usage
from shared.billing.invoices import LineSpec
from shared.models import Tenant
from shared.models.billing import (
    BillingAddOn,
    BillingCoupon,
    BillingInvoice,
    BillingPaymentMethod,
    BillingPlan,
    BillingSubscription,
    BillingSubscriptionAddOn,
)

log = logging.getLogger(__name__)

#: Subscriptions renewed per transaction.
BATCH = 500
#: An open invoice is re-driven once its charge is this late (the fast path had its chance).
REDRIVE_AFTER = dt.timedelta(minutes=5)


@dataclass
class Outcome:
    renewed: int = 0
    trials_converted: int = 0
    cancelled: int = 0
    invoices: int = 0
    redriven: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "renewed": self.renewed,
            "trials_converted": self.trials_converted,
            "cancelled": self.cancelled,
            "invoices": self.invoices,
            "redriven": self.redriven,
            "batches": self.batches,
        }


_SUBSCRIPTIONS = BillingSubscription.__table__
_ATTACHED = BillingSubscriptionAddOn.__table__


def _claim(session: Session, now: dt.datetime, batch: int, after: tuple | None = None) -> list[Any]:
    """The next ``batch`` due subscriptions, locked; ``after`` is the last one of the
    previous batch. PERF: the keyset skips the index entries earlier batches left dead
    (their rows moved to the next period) instead of walking them again per batch."""
    s = _SUBSCRIPTIONS.c
    keyset = [] if after is None else [tuple_(s.current_period_end, s.id) > after]
    return session.execute(
        select(
            s.id,
            s.tenant_id,
            s.plan_id,
            s.status,
            s.current_period_end,
            s.cancel_at_period_end,
            s.cancelled_at,
            s.pending_plan_id,
            s.coupon_id,
            s.coupon_periods_left,
        )
        .join(Tenant, Tenant.id == s.tenant_id)
        .where(
            s.status != "cancelled",
            s.current_period_end <= now,
            Tenant.status == "active",
            *keyset,
        )
        .order_by(s.current_period_end, s.id)
        .limit(batch)
        .with_for_update(of=_SUBSCRIPTIONS, skip_locked=True)
    ).all()


def run(
    session: Session,
    *,
    now: dt.datetime | None = None,
    batch: int = BATCH,
    max_batches: int | None = None,
) -> Outcome:
    """Apply every due period end at ``now`` (default: the database's now), batch by batch."""
    now = now or session.scalar(select(func.now()))
    outcome = Outcome()
    cache = _Catalogue(session)
    after = None
    while max_batches is None or outcome.batches < max_batches:
        due = _claim(session, now, batch, after)
        if not due:
            break
        after = (due[-1].current_period_end, due[-1].id)
        _apply_batch(session, due, now, cache, outcome)
        session.commit()
        outcome.batches += 1
    outcome.redriven = redrive_charges(session, now=now)
    session.commit()
    return outcome


def redrive_charges(session: Session, *, now: dt.datetime, limit: int = 5000) -> int:
    """Hand open invoices whose charge is overdue to ``charge_invoice`` again.

    A suspended workspace's charges wait, as its renewals do (scheduler jobs skip it): its card is
    not charged, nor dunned to a cancellation, until it is reactivated."""
    late = list(
        session.scalars(
            select(BillingInvoice.id)
            .join(Tenant, Tenant.id == BillingInvoice.tenant_id)
            .where(
                BillingInvoice.status == "open",
                BillingInvoice.next_charge_at <= now - REDRIVE_AFTER,
                Tenant.status == "active",
            )
            .order_by(BillingInvoice.next_charge_at)
            .limit(limit)
            .with_for_update(of=BillingInvoice, skip_locked=True)
        )
    )
    charge_queue.QUEUE.enqueue_after_commit(session, late)
    return len(late)


class _Catalogue:
    """Plans and coupons read once per run (they are few)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.plans: dict[uuid.UUID, BillingPlan] = {}
        self.coupons: dict[uuid.UUID, BillingCoupon | None] = {}

    def plan(self, plan_id: uuid.UUID) -> BillingPlan:
        if plan_id not in self.plans:
            self.plans[plan_id] = self.session.get(BillingPlan, plan_id)
        return self.plans[plan_id]

    def coupon(self, coupon_id: uuid.UUID) -> BillingCoupon | None:
        if coupon_id not in self.coupons:
            self.coupons[coupon_id] = self.session.get(BillingCoupon, coupon_id)
        return self.coupons[coupon_id]


def _add_ons_of(session: Session, subscription_ids: list[uuid.UUID]) -> dict[uuid.UUID, list]:
    found: dict[uuid.UUID, list] = defaultdict(list)
    a = _ATTACHED.c
    rows = session.execute(
        select(
            a.id,
            a.subscription_id,
            a.quantity,
            a.detach_at_period_end,
            BillingAddOn.id.label("add_on_id"),
            BillingAddOn.name,
            BillingAddOn.price_amount,
        )
        .join(BillingAddOn, BillingAddOn.id == a.add_on_id)
        .where(a.subscription_id.in_(subscription_ids), a.detached_at.is_(None))
        .order_by(a.attached_at, a.id)
        .with_for_update(of=_ATTACHED)
    )
    for row in rows:
        found[row.subscription_id].append(row)
    return found


def _tenants_with_payment_method(session: Session, tenant_ids: list[uuid.UUID]) -> set:
    return set(
        session.scalars(
            select(BillingPaymentMethod.tenant_id).where(
                BillingPaymentMethod.tenant_id.in_(tenant_ids),
                BillingPaymentMethod.is_default.is_(True),
            )
        )
    )


def _invoices(row: Any, has_method: bool, cache: _Catalogue) -> bool:
    """Whether this period end writes an invoice (not a cancellation)."""
    if row.cancel_at_period_end:
        return False
    plan = cache.plan(row.pending_plan_id or row.plan_id)
    return not (row.status == "trialing" and plan.price_amount > 0 and not has_method)


@dataclass
class _Writes:
    """What a batch writes, as rows of column values."""

    subscriptions: list[dict]
    add_ons: list[dict]
    invoices: list[dict]
    lines: list[dict]


def _apply_batch(
    session: Session, due: list[Any], now: dt.datetime, cache: _Catalogue, outcome: Outcome
) -> None:
    add_ons = _add_ons_of(session, [row.id for row in due])
    methods = _tenants_with_payment_method(session, [row.tenant_id for row in due])
    invoiced = [row for row in due if _invoices(row, row.tenant_id in methods, cache)]
    drawn = invoices.next_numbers(session, len(invoiced))
    numbers = iter(drawn)
    rates = invoices.tax_rates(session, [row.tenant_id for row in invoiced])
    writes = _Writes([], [], [], [])
    for row in due:
        _apply_one(
            row,
            add_ons.get(row.id, []),
            row.tenant_id in methods,
            now,
            cache,
            outcome,
            numbers,
            rates,
            writes,
        )
        usage.forget_limits(row.tenant_id)
    written = _write(session, writes)
    outcome.invoices -= len(writes.invoices) - len(written)
    invoices.give_back_unused(
        session,
        drawn,
        {
            invoice["id"]: invoices.parse_number(invoice["number"])
            for invoice in writes.invoices
            if invoice["id"] in written
        },
    )
    charge_queue.QUEUE.enqueue_after_commit(
        session,
        [
            invoice["id"]
            for invoice in writes.invoices
            if invoice["total"] and invoice["id"] in written
        ],
    )


def _end(row: Any, attached: list, now: dt.datetime, outcome: Outcome, writes: _Writes) -> None:
    end = row.current_period_end
    writes.subscriptions.append(
        _subscription_values(
            row, status="cancelled", ended_at=end, cancelled_at=row.cancelled_at or now
        )
    )
    writes.add_ons += [{"id": a.id, "detached_at": end, "price_amount": None} for a in attached]
    outcome.cancelled += 1


def _subscription_values(row: Any, **changes: Any) -> dict:
    """The columns a period end may change, unchanged unless ``changes`` says."""
    return {
        "id": row.id,
        "plan_id": row.plan_id,
        "status": row.status,
        "price_amount": None,
        "currency": None,
        "current_period_start": None,
        "current_period_end": None,
        "pending_plan_id": row.pending_plan_id,
        "coupon_id": row.coupon_id,
        "coupon_periods_left": row.coupon_periods_left,
        "ended_at": None,
        "cancelled_at": row.cancelled_at,
    } | changes


def _apply_one(
    row: Any,
    attached: list,
    has_method: bool,
    now: dt.datetime,
    cache: _Catalogue,
    outcome: Outcome,
    numbers: Iterator[int],
    rates: dict[uuid.UUID, int],
    writes: _Writes,
) -> None:
    end = row.current_period_end
    if not _invoices(row, has_method, cache):
        _end(row, attached, now, outcome, writes)
        return
    plan = cache.plan(row.pending_plan_id or row.plan_id)
    trial = row.status == "trialing"
    kept = []
    for add_on in attached:
        if add_on.detach_at_period_end:
            writes.add_ons.append({"id": add_on.id, "detached_at": end, "price_amount": None})
        else:  # renewed at the add-on's current price
            writes.add_ons.append(
                {"id": add_on.id, "detached_at": None, "price_amount": add_on.price_amount}
            )
            kept.append(add_on)
    new_end = periods.period_end(end, plan.billing_interval)
    coupon, coupon_id, periods_left = _coupon_for_period(row, plan, cache)
    writes.subscriptions.append(
        _subscription_values(
            row,
            plan_id=plan.id,
            status="active" if trial else row.status,
            price_amount=plan.price_amount,
            currency=plan.currency,
            current_period_start=end,
            current_period_end=new_end,
            pending_plan_id=None,
            coupon_id=coupon_id,
            coupon_periods_left=periods_left,
        )
    )
    if trial:
        outcome.trials_converted += 1
    else:
        outcome.renewed += 1
    lines = [
        LineSpec(
            "plan",
            f"{plan.name} ({plan.billing_interval}ly)",
            plan.price_amount,
            period_start=end,
            period_end=new_end,
            plan_id=plan.id,
        )
    ]
    lines += [
        LineSpec(
            "add_on",
            add_on.name,
            add_on.price_amount,
            quantity=add_on.quantity,
            period_start=end,
            period_end=new_end,
            add_on_id=add_on.add_on_id,
        )
        for add_on in kept
    ]
    built = invoices.build_invoice(
        tenant_id=row.tenant_id,
        subscription_id=row.id,
        currency=plan.currency,
        reason="subscription_cycle",
        lines=lines,
        coupon=coupon,
        now=now,
        number=next(numbers),
        tax_rate=rates[row.tenant_id],
    )
    writes.invoices.append(built.invoice)
    writes.lines += built.lines
    outcome.invoices += 1


def _coupon_for_period(
    row: Any, plan: BillingPlan, cache: _Catalogue
) -> tuple[BillingCoupon | None, uuid.UUID | None, int | None]:
    """The coupon discounting the period starting now on ``plan``, and the subscription's
    coupon columns after counting its periods down.

    A coupon that does not fit the renewed plan (the subscription moved to a plan it
    excludes, or to another currency than its amount's) is dropped, as a used-up one is:
    it was sold for the plans it names, and ``discount_for`` refuses a foreign currency.
    """
    if row.coupon_id is None:
        return None, None, None
    coupon = cache.coupon(row.coupon_id)
    left = row.coupon_periods_left
    if coupon is None or (left is not None and left <= 0):
        return None, None, None
    if catalogue.misfit(coupon, plan) is not None:
        return None, None, None
    return coupon, row.coupon_id, None if left is None else left - 1


# --- set-based writes: one statement per table and batch ----------------------------------

_UPDATE_SUBSCRIPTIONS = text(
    """
    UPDATE billing_subscriptions AS s SET
        plan_id = v.plan_id,
        status = v.status,
        price_amount = coalesce(v.price_amount, s.price_amount),
        currency = coalesce(v.currency, s.currency),
        current_period_start = coalesce(v.current_period_start, s.current_period_start),
        current_period_end = coalesce(v.current_period_end, s.current_period_end),
        pending_plan_id = v.pending_plan_id,
        coupon_id = v.coupon_id,
        coupon_periods_left = v.coupon_periods_left,
        ended_at = coalesce(v.ended_at, s.ended_at),
        cancelled_at = v.cancelled_at,
        updated_at = now()
    FROM unnest(CAST(:id AS uuid[]), CAST(:plan_id AS uuid[]), CAST(:status AS text[]),
                CAST(:price_amount AS bigint[]), CAST(:currency AS text[]),
                CAST(:current_period_start AS timestamptz[]),
                CAST(:current_period_end AS timestamptz[]),
                CAST(:pending_plan_id AS uuid[]), CAST(:coupon_id AS uuid[]),
                CAST(:coupon_periods_left AS int[]), CAST(:ended_at AS timestamptz[]),
                CAST(:cancelled_at AS timestamptz[]))
         AS v(id, plan_id, status, price_amount, currency, current_period_start,
              current_period_end, pending_plan_id, coupon_id, coupon_periods_left, ended_at,
              cancelled_at)
    WHERE s.id = v.id
    """
)

_UPDATE_ADD_ONS = text(
    """
    UPDATE billing_subscription_add_ons AS a SET
        detached_at = v.detached_at,
        price_amount = coalesce(v.price_amount, a.price_amount)
    FROM unnest(CAST(:id AS uuid[]), CAST(:detached_at AS timestamptz[]),
                CAST(:price_amount AS bigint[])) AS v(id, detached_at, price_amount)
    WHERE a.id = v.id
    """
)

_INVOICE_COLUMNS = (
    ("id", "uuid"),
    ("tenant_id", "uuid"),
    ("subscription_id", "uuid"),
    ("number", "text"),
    ("status", "text"),
    ("reason", "text"),
    ("currency", "text"),
    ("subtotal", "bigint"),
    ("discount_amount", "bigint"),
    ("tax_rate_bps", "int"),
    ("tax_amount", "bigint"),
    ("total", "bigint"),
    ("amount_paid", "bigint"),
    ("amount_refunded", "bigint"),
    ("period_start", "timestamptz"),
    ("period_end", "timestamptz"),
    ("paid_at", "timestamptz"),
    ("next_charge_at", "timestamptz"),
    ("charge_attempts", "int"),
)
_LINE_COLUMNS = (
    ("id", "uuid"),
    ("tenant_id", "uuid"),
    ("invoice_id", "uuid"),
    ("position", "int"),
    ("kind", "text"),
    ("description", "text"),
    ("quantity", "int"),
    ("unit_amount", "bigint"),
    ("amount", "bigint"),
    ("period_start", "timestamptz"),
    ("period_end", "timestamptz"),
    ("plan_id", "uuid"),
    ("add_on_id", "uuid"),
)


def _insert_unnest(table: str, columns: tuple[tuple[str, str], ...], tail: str = ""):
    names = ", ".join(name for name, _ in columns)
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in columns)
    return text(f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {tail}")  # noqa: S608


#: NOTE: a period already invoiced (it can only be a row written by hand or by a bug: the
#: claim holds the subscription) keeps its invoice; the batch goes on instead of failing
#: every hour on that one row.
_INSERT_INVOICES = _insert_unnest(
    "billing_invoices",
    _INVOICE_COLUMNS,
    "ON CONFLICT (subscription_id, period_start) WHERE reason = 'subscription_cycle'"
    " DO NOTHING RETURNING id",
)
_INSERT_LINES = _insert_unnest("billing_invoice_lines", _LINE_COLUMNS)


def _columns(rows: list[dict]) -> dict[str, list]:
    """Rows of column values -> one array per column (the parameters of an unnest)."""
    return {name: [row[name] for row in rows] for name in rows[0]}


def _write(session: Session, writes: _Writes) -> set[uuid.UUID]:
    """Write a batch; return the ids of the invoices written."""
    if writes.subscriptions:
        session.execute(_UPDATE_SUBSCRIPTIONS, _columns(writes.subscriptions))
    if writes.add_ons:
        session.execute(_UPDATE_ADD_ONS, _columns(writes.add_ons))
    if not writes.invoices:
        return set()
    written = set(session.scalars(_INSERT_INVOICES, _columns(writes.invoices)))
    if len(written) < len(writes.invoices):
        log.error(
            "billing_cycle: %d period(s) had a cycle invoice already; kept it",
            len(writes.invoices) - len(written),
        )
    lines = [line for line in writes.lines if line["invoice_id"] in written]
    if lines:
        session.execute(_INSERT_LINES, _columns(lines))
    return written
