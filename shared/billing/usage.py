"""Usage against plan limits: the checks on the write paths they limit, and ``rollup_usage``.

A workspace's limits are its subscription's plan's (``None``: unlimited) raised by its
attached add-ons' ``extra_*`` (times their quantity). They come from the newest subscription,
live or not (a cancelled workspace keeps its last plan's limits); a workspace that never had
one (a self-hosted install without a trial plan) has none.

How exact each check is:
- seats (agent create/invite, super-admin reactivation) and storage (media upload) count
  committed rows under a per-tenant advisory lock: exact under concurrency;
- monthly messages and AI replies use a Redis counter per tenant and UTC month, whose
  slots are reserved with atomic ``INCRBY`` (never past the limit), so concurrent sends in
  any number of processes never pass it. PERF: far from the limit a process reserves a
  lease of up to :data:`LEASE_MAX` slots (at most 1/:data:`LEASE_SHARE` of what is left)
  and hands them out without I/O; within :data:`LEASE_SHARE` slots of the limit each send
  reserves its own (exact). A rolled-back send gives its slot back to its process's lease.
  Slots leased but unused count as used (a workspace may be refused up to the sum of the
  processes' leases early, only while the limit is far, which it then is not) until
  ``rollup_usage`` (hourly) resets the counter to the committed count; a send rolled back
  only to a savepoint, or a process killed with a lease, over-counts until then. Sends in
  flight during a reset, or leases held across it, may pass the limit by that many (each
  lease is at most 1/16 of what was left when it was taken).
While Redis is unreachable, messages and AI replies are not limited (logged; they are
still counted by the rollup): the inbox keeps working. Limits are cached per process for
:data:`LIMITS_TTL_SECONDS` (changes made in this process take effect at once; elsewhere
within the TTL).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
import uuid
from dataclasses import dataclass

import redis
from sqlalchemy import Numeric, cast, func, select, text
from sqlalchemy.orm import Session

from shared import db
from shared.errors import PlanLimitReached
from shared.models import MediaFile, Message, User
from shared.models.ai import AiUsageDaily
from shared.models.billing import (
    BillingAddOn,
    BillingPlan,
    BillingSubscription,
    BillingSubscriptionAddOn,
)
from shared.redis_client import get_redis, key
from shared.sql import lock_key

log = logging.getLogger(__name__)

LIMITS_TTL_SECONDS = 30.0
#: Redis counters outlive their month by a few days (then they are not read any more).
COUNTER_TTL_SECONDS = 40 * 86_400


@dataclass(frozen=True, slots=True)
class Limits:
    """Effective limits (plan + add-ons); ``None`` is unlimited."""

    seats: int | None
    messages: int | None
    ai_replies: int | None
    storage_bytes: int | None

    def as_dict(self) -> dict[str, int | None]:
        return {
            "seats": self.seats,
            "messages": self.messages,
            "ai_replies": self.ai_replies,
            "storage_bytes": self.storage_bytes,
        }


_cache: dict[uuid.UUID, tuple[float, Limits | None]] = {}
_cache_lock = threading.Lock()


def forget_limits(tenant_id: uuid.UUID) -> None:
    """Drop this process's cached limits of ``tenant_id`` (its plan or add-ons changed)."""
    with _cache_lock:
        _cache.pop(tenant_id, None)


def limits_for(session: Session, tenant_id: uuid.UUID) -> Limits | None:
    """The tenant's limits, cached for :data:`LIMITS_TTL_SECONDS`; None without billing."""
    found = _cache.get(tenant_id)
    now = time.monotonic()
    if found is not None and found[0] > now:
        return found[1]
    limits = load_limits(session, tenant_id)
    with _cache_lock:
        _cache[tenant_id] = (now + LIMITS_TTL_SECONDS, limits)
    return limits


def load_limits(session: Session, tenant_id: uuid.UUID) -> Limits | None:
    row = session.execute(
        select(
            BillingSubscription.id,
            BillingPlan.seat_limit,
            BillingPlan.monthly_message_limit,
            BillingPlan.monthly_ai_reply_limit,
            BillingPlan.storage_limit_bytes,
        )
        .join(BillingPlan, BillingPlan.id == BillingSubscription.plan_id)
        .where(BillingSubscription.tenant_id == tenant_id)
        .order_by(
            (BillingSubscription.status != "cancelled").desc(),
            BillingSubscription.created_at.desc(),
        )
        .limit(1)
    ).one_or_none()
    if row is None:
        return None
    # NOTE: numeric, not the columns' int/bigint: a million extra seats times a quantity
    # of 10,000 overflowed, and every limit check of the workspace failed with it.
    quantity = cast(BillingSubscriptionAddOn.quantity, Numeric)
    extras = session.execute(
        select(
            *(
                func.coalesce(func.sum(cast(column, Numeric) * quantity), 0)
                for column in (
                    BillingAddOn.extra_seats,
                    BillingAddOn.extra_monthly_messages,
                    BillingAddOn.extra_monthly_ai_replies,
                    BillingAddOn.extra_storage_bytes,
                )
            )
        )
        .select_from(BillingSubscriptionAddOn)
        .join(BillingAddOn, BillingAddOn.id == BillingSubscriptionAddOn.add_on_id)
        .where(
            BillingSubscriptionAddOn.subscription_id == row[0],
            BillingSubscriptionAddOn.detached_at.is_(None),
        )
    ).one()

    def plus(limit: int | None, extra: int) -> int | None:
        return None if limit is None else limit + int(extra)

    return Limits(*(plus(limit, extra) for limit, extra in zip(row[1:], extras, strict=True)))


def month_of(moment: dt.datetime) -> dt.date:
    return moment.astimezone(dt.UTC).date().replace(day=1)


def _month_start(month: dt.date) -> dt.datetime:
    return dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)


def _next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _counter_key(tenant_id: uuid.UUID, month: dt.date, what: str) -> str:
    return key("billing", "usage", str(tenant_id), month.strftime("%Y-%m"), what)


# --- counted usage (messages, AI replies) -------------------------------------------------


def count_messages(session: Session, tenant_id: uuid.UUID, month: dt.date) -> int:
    return session.scalar(
        select(func.count())
        .select_from(Message)
        .where(
            Message.tenant_id == tenant_id,
            Message.direction == "outbound",
            Message.created_at >= _month_start(month),
            Message.created_at < _month_start(_next_month(month)),
        )
    )


def count_ai_replies(session: Session, tenant_id: uuid.UUID, month: dt.date) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(AiUsageDaily.replies), 0)).where(
                AiUsageDaily.tenant_id == tenant_id,
                AiUsageDaily.day >= month,
                AiUsageDaily.day < _next_month(month),
            )
        )
    )


_COUNTERS = {"messages": count_messages, "ai_replies": count_ai_replies}


#: Slots a process reserves at once far from the limit (one Redis call per lease, not per
#: send); a lease is at most 1/LEASE_SHARE of what is left, so within LEASE_SHARE slots of
#: the limit every send asks Redis alone (exact).
LEASE_MAX = 64
LEASE_SHARE = 16

#: ``counter key -> slots this process reserved in Redis and has not used yet``.
_leases: dict[str, int] = {}
#: ``counter key -> the counter's value at this process's last Redis call``.
_last_seen: dict[str, int] = {}
_lease_lock = threading.Lock()


def _take_local(name: str) -> bool:
    with _lease_lock:
        held = _leases.get(name, 0)
        if held <= 0:
            return False
        _leases[name] = held - 1
        return True


def _give_back(name: str) -> None:
    """A rolled-back send's slot goes back to this process's lease (no I/O)."""
    with _lease_lock:
        _leases[name] = _leases.get(name, 0) + 1


def _reserve(session: Session, tenant_id: uuid.UUID, what: str, limit: int) -> None:
    """Take one slot of ``what`` this month or raise 402; given back if the transaction rolls
    back. PERF: far from the limit a slot comes from this process's lease, without I/O."""
    month = month_of(dt.datetime.now(dt.UTC))
    name = _counter_key(tenant_id, month, what)
    if not _take_local(name):
        try:
            _lease(session, name, tenant_id, month, what, limit)
        except redis.RedisError:
            # NOTE: a counter that cannot be read must not stop the inbox: the send goes on
            # unlimited and counted (the rollup recounts it), and the outage is logged.
            log.warning(
                "plan limit of %s not checked for %s: Redis is unavailable", what, tenant_id
            )
            return
    db.after_rollback(session, functools.partial(_give_back, name))


def _lease(
    session: Session, name: str, tenant_id: uuid.UUID, month: dt.date, what: str, limit: int
) -> None:
    """Reserve one slot in Redis, plus a lease for later sends when the limit is far."""
    seen = _last_seen.get(name)
    size = 1 if seen is None else max(1, min(LEASE_MAX, (limit - seen) // LEASE_SHARE))
    client = get_redis()
    seeded = False
    if seen is None and not client.exists(name):
        # First use this month: the counter starts at what is committed, counted before
        # any slot is taken, so a send that reserves and commits meanwhile is not counted
        # twice (seeding after our own INCRBY counted it: a concurrent burst was refused
        # one slot early). Of concurrent seeders the first SET wins.
        seed = _COUNTERS[what](session, tenant_id, month)
        client.set(name, seed, nx=True, ex=COUNTER_TTL_SECONDS)
        seeded = True
    # NOTE: EXISTS with the INCRBY, atomically: only a counter that was gone (Redis lost
    # it since this process saw it) is seeded again. Judged by ``total == size`` alone, a
    # counter another process had just seeded at 0 looked lost too, and the committed
    # sends added again were then counted twice (a burst refused a slot early).
    existed, total = client.pipeline(transaction=True).exists(name).incrby(name, size).execute()
    if not existed and not seeded:
        seed = _COUNTERS[what](session, tenant_id, month)
        total = client.incrby(name, seed) if seed else total
        client.expire(name, COUNTER_TTL_SECONDS)
    granted = min(size, limit - (total - size))
    if granted < size:
        client.decrby(name, size - max(granted, 0))  # never hold slots past the limit
    with _lease_lock:
        if len(_last_seen) > 100_000:  # old months' keys
            _last_seen.clear()
            _leases.clear()
        _last_seen[name] = total - size + max(granted, 0)
        if granted > 1:
            _leases[name] = _leases.get(name, 0) + granted - 1
    if granted <= 0:
        raise PlanLimitReached(what, value=limit, usage=total - size)


def check_message_send(session: Session, tenant_id: uuid.UUID) -> None:
    """Reserve one outgoing message of the month, or 402 ``plan_limit_reached``."""
    limits = limits_for(session, tenant_id)
    if limits is None or limits.messages is None:
        return
    _reserve(session, tenant_id, "messages", limits.messages)


def ai_reply_allowed(session: Session, tenant_id: uuid.UUID) -> bool:
    """Reserve one AI reply of the month; False (hand off to a human) when the plan is spent."""
    limits = limits_for(session, tenant_id)
    if limits is None or limits.ai_replies is None:
        return True
    try:
        _reserve(session, tenant_id, "ai_replies", limits.ai_replies)
    except PlanLimitReached:
        return False
    return True


def check_ai_replies_left(session: Session, tenant_id: uuid.UUID) -> None:
    """402 ``plan_limit_reached`` when the month's AI replies are spent; takes no slot.

    For an agent's test answer (``POST /api/ai-agents/{id}/test``): it is not a reply to a
    customer, so it uses none of the plan's replies, but a workspace past its plan gets no
    more model calls through it. The count is the live counter's (reservations included)
    when this month has one, else the committed replies.
    """
    limits = limits_for(session, tenant_id)
    if limits is None or limits.ai_replies is None:
        return
    month = month_of(dt.datetime.now(dt.UTC))
    try:
        live = get_redis().get(_counter_key(tenant_id, month, "ai_replies"))
    except redis.RedisError:
        live = None  # NOTE: as _reserve does, an unreadable counter never stops the work
    used = int(live) if live is not None else count_ai_replies(session, tenant_id, month)
    if used >= limits.ai_replies:
        raise PlanLimitReached("ai_replies", value=limits.ai_replies, usage=used)


# --- exact usage (seats, storage) ---------------------------------------------------------


def _lock(session: Session, tenant_id: uuid.UUID, what: str) -> None:
    lock_key(session, f"billing:{what}:{tenant_id}")


def count_seats(session: Session, tenant_id: uuid.UUID) -> int:
    return session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.tenant_id == tenant_id, User.deleted_at.is_(None), User.suspended_at.is_(None))
    )


def check_seat(session: Session, tenant_id: uuid.UUID) -> None:
    """Before adding (or reactivating) a user: 402 when every seat is taken."""
    limits = limits_for(session, tenant_id)
    if limits is None or limits.seats is None:
        return
    _lock(session, tenant_id, "seats")
    used = count_seats(session, tenant_id)
    if used + 1 > limits.seats:
        raise PlanLimitReached("seats", value=limits.seats, usage=used)


def storage_used(session: Session, tenant_id: uuid.UUID) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(MediaFile.size), 0)).where(
                MediaFile.tenant_id == tenant_id
            )
        )
    )


def check_storage(session: Session, tenant_id: uuid.UUID, size: int) -> None:
    """Before storing ``size`` more bytes: 402 when the plan's storage would be exceeded."""
    limits = limits_for(session, tenant_id)
    if limits is None or limits.storage_bytes is None:
        return
    _lock(session, tenant_id, "storage")
    used = storage_used(session, tenant_id)
    if used + size > limits.storage_bytes:
        raise PlanLimitReached("storage_bytes", value=limits.storage_bytes, usage=used)


# --- the report and the rollup ------------------------------------------------------------


def current_usage(session: Session, tenant_id: uuid.UUID) -> dict:
    """This month's usage beside the limits (``GET /api/billing/usage``), counted now."""
    now = session.scalar(select(func.now()))
    month = month_of(now)
    limits = limits_for(session, tenant_id)
    return {
        "month": month,
        "usage": {
            "seats": count_seats(session, tenant_id),
            "messages": count_messages(session, tenant_id, month),
            "ai_replies": count_ai_replies(session, tenant_id, month),
            "storage_bytes": storage_used(session, tenant_id),
        },
        "limits": (limits or Limits(None, None, None, None)).as_dict(),
        "billing_enabled": limits is not None,
    }


_ROLLUP = text(
    """
    WITH t AS (
        SELECT DISTINCT s.tenant_id FROM billing_subscriptions s
          JOIN tenants ON tenants.id = s.tenant_id AND tenants.status = 'active'
         WHERE s.status <> 'cancelled'
    )
    INSERT INTO billing_usage (tenant_id, month, seats, messages, ai_replies, storage_bytes,
                               conversations, updated_at)
    SELECT t.tenant_id, CAST(:month AS date),
           (SELECT count(*) FROM users u
             WHERE u.tenant_id = t.tenant_id AND u.deleted_at IS NULL
               AND u.suspended_at IS NULL),
           (SELECT count(*) FROM messages m
             WHERE m.tenant_id = t.tenant_id AND m.direction = 'outbound'
               AND m.created_at >= :start AND m.created_at < :end),
           (SELECT coalesce(sum(a.replies), 0) FROM ai_usage_daily a
             WHERE a.tenant_id = t.tenant_id AND a.day >= CAST(:month AS date)
               AND a.day < CAST(:next_month AS date)),
           (SELECT coalesce(sum(f.size), 0) FROM media_files f WHERE f.tenant_id = t.tenant_id),
           (SELECT count(*) FROM conversations c
             WHERE c.tenant_id = t.tenant_id AND c.created_at >= :start AND c.created_at < :end),
           now()
      FROM t
    ON CONFLICT (tenant_id, month) DO UPDATE
       SET seats = EXCLUDED.seats, messages = EXCLUDED.messages,
           ai_replies = EXCLUDED.ai_replies, storage_bytes = EXCLUDED.storage_bytes,
           conversations = EXCLUDED.conversations, updated_at = now()
    RETURNING tenant_id, messages, ai_replies
    """
)


#: The counted figures of a month already rolled up, recounted in the new month's first day
#: (seats and storage are the month's own points in time: kept).
_FINISH = text(
    """
    UPDATE billing_usage u
       SET messages = (SELECT count(*) FROM messages m
                        WHERE m.tenant_id = u.tenant_id AND m.direction = 'outbound'
                          AND m.created_at >= :start AND m.created_at < :end),
           ai_replies = (SELECT coalesce(sum(a.replies), 0) FROM ai_usage_daily a
                          WHERE a.tenant_id = u.tenant_id AND a.day >= CAST(:month AS date)
                            AND a.day < CAST(:next_month AS date)),
           conversations = (SELECT count(*) FROM conversations c
                             WHERE c.tenant_id = u.tenant_id
                               AND c.created_at >= :start AND c.created_at < :end),
           updated_at = now()
     WHERE u.month = CAST(:month AS date)
       AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = u.tenant_id AND t.status = 'active')
    """
)


def _finish_previous_month(session: Session, month: dt.date) -> None:
    """Recount the month before ``month``: its last run was up to an hour before its end, so
    what its last hour counted was never in its row."""
    previous = dt.date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)
    session.execute(
        _FINISH,
        {
            "month": previous,
            "next_month": month,
            "start": _month_start(previous),
            "end": _month_start(month),
        },
    )


def rollup(session: Session, *, now: dt.datetime | None = None) -> int:
    """Recount this month's usage of every billed workspace into ``billing_usage`` and reset
    the Redis counters to the committed counts (after commit); how many workspaces. On the
    month's first day the month before is finished too (:func:`_finish_previous_month`)."""
    now = now or session.scalar(select(func.now()))
    month = month_of(now)
    nxt = _next_month(month)
    if now.astimezone(dt.UTC).day == 1:
        _finish_previous_month(session, month)
    rows = session.execute(
        _ROLLUP,
        {
            "month": month,
            "next_month": nxt,
            "start": _month_start(month),
            "end": _month_start(nxt),
        },
    ).all()

    def reseed() -> None:
        pipe = get_redis().pipeline(transaction=False)
        for tenant_id, messages, ai_replies in rows:
            for what, value in (("messages", messages), ("ai_replies", ai_replies)):
                pipe.set(_counter_key(tenant_id, month, what), value, ex=COUNTER_TTL_SECONDS)
        pipe.execute()

    if rows and month == month_of(dt.datetime.now(dt.UTC)):
        db.after_commit(session, reseed)
    return len(rows)
