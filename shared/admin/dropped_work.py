"""The record of a suspended tenant's work that was not run: a dead letter, written once.

Why here and not in the worker middleware: work is skipped in two places. The worker
gate (:mod:`workers.tenant_gate`) skips whole messages; batch jobs that mix tenants
(``deliver_webhooks``) skip only the suspended tenant's rows. Both record the same
reason in ``dead_letters``, where operators list, count and requeue failed work
(``GET /api/ops/dead-letters``; the tenant's own list once it is reactivated).

The skipped rows stay pending: sweepers leave a suspended tenant's rows alone and
re-drive them once it is reactivated, so nothing is lost; a requeue after that is a
no-op for work already done.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from shared.dead_letters import listed_for, record_dead_letter
from shared.models import DeadLetter

#: The reason written on a dropped message's (or row's) dead letter.
REASON = "tenant_suspended: the workspace is suspended; its queued work was dropped"


def already_recorded(
    session: Session, tenant_id: uuid.UUID, actor_name: str, args: Sequence[Any]
) -> bool:
    """Whether this work (actor and arguments) was dropped before and not requeued since.

    Sweepers and duplicate messages may bring the same work back while the tenant
    stays suspended: each copy is skipped again, but recorded once.
    """
    return bool(
        session.scalar(
            select(
                exists().where(
                    # NOTE: ``== None`` is ``IS NULL``: a platform actor's are listed so.
                    DeadLetter.tenant_id == listed_for(actor_name, tenant_id),
                    DeadLetter.actor_name == actor_name,
                    DeadLetter.args == list(args),
                    DeadLetter.error == REASON,
                    DeadLetter.requeued_at.is_(None),
                )
            )
        )
    )


def _claim_work(
    session: Session, tenant_id: uuid.UUID, actor_name: str, args: Sequence[Any]
) -> bool:
    """Whether this transaction is the only one recording this work now (held until it ends).

    WHY: two copies dropped at once (a message and its sweeper's copy, on two worker
    threads) each found no dead letter and each wrote one. NOTE: tried, never waited for:
    a caller may hold row locks and record several pieces of work in any order, so waiting
    could deadlock. The copy that finds it taken skips: the other transaction records it
    (and if that one rolls back, its work stays pending and is dropped, recorded, again).
    A 64-bit hash: a collision with other work recorded at that instant is out of reach.
    """
    work = json.dumps([str(tenant_id), actor_name, list(args)], sort_keys=True, default=str)
    return bool(
        session.scalar(
            select(func.pg_try_advisory_xact_lock(func.hashtextextended(f"dropped_work:{work}", 0)))
        )
    )


def record(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    queue_name: str,
    actor_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    message_id: str | None = None,
) -> bool:
    """Write the dead letter of skipped work unless it is on record already; return whether.

    ``actor_name`` and ``args`` are a message that redoes the work (what a requeue
    sends); ``message_id`` is the skipped message's, or a new one for a skipped row.
    """
    if not _claim_work(session, tenant_id, actor_name, args):
        return False
    if already_recorded(session, tenant_id, actor_name, args):
        return False
    options = dict(options or {})
    return record_dead_letter(
        session,
        message_id=message_id or uuid.uuid4().hex,
        queue_name=queue_name,
        actor_name=actor_name,
        args=list(args),
        kwargs=dict(kwargs or {}),
        options=options,
        retries=options.get("retries", 0),
        error=REASON,
        # WHY: a dropped charge is listed as a failed one is: the platform's (billing's
        # work on the tenant's account), not on the tenant's console once reactivated.
        tenant_id=listed_for(actor_name, tenant_id),
    )
