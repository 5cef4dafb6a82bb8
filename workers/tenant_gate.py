"""Drop the queued work of a suspended tenant, once each, with the reason on record.

Every message that names its tenant (the ``tenant_id`` option: outbox dispatch, bulk
actions, AI replies, imports, rollups, template syncs) is checked before its actor
runs. A suspended tenant's message is not run: it is written to ``dead_letters`` with
the reason (so an operator sees it, and may requeue it after reactivation) and skipped.
The same work sent again by a sweeper is skipped without a second row.

PERF: the check is :func:`shared.admin.tenant_state.is_suspended`, an epoch-cached
answer (one Redis ``MGET``, no query, per message); Redis down means a query.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.middleware import SkipMessage
from sqlalchemy import exists, select

from shared.admin import tenant_state
from shared.db import session_scope
from shared.dead_letters import record_dead_letter
from shared.models import DeadLetter
from shared.worker_metrics import tenant_id_from_options

log = logging.getLogger(__name__)

#: The reason written on a dropped message's dead letter.
REASON = "tenant_suspended: the workspace is suspended; its queued work was dropped"


def _already_recorded(session, tenant_id, message) -> bool:
    """Whether this work (actor and arguments) was dropped before and not requeued since.

    Sweepers re-send lost work on a backoff; while the tenant stays suspended each copy
    is dropped again, but recorded once.
    """
    return bool(
        session.scalar(
            select(
                exists().where(
                    DeadLetter.tenant_id == tenant_id,
                    DeadLetter.actor_name == message.actor_name,
                    DeadLetter.args == list(message.args),
                    DeadLetter.error == REASON,
                    DeadLetter.requeued_at.is_(None),
                )
            )
        )
    )


class TenantGate(dramatiq.Middleware):
    """Skip (and record) a message whose tenant is suspended. Place it before Presence."""

    def before_process_message(self, broker, message):
        tenant_id = tenant_id_from_options(message.options)
        if tenant_id is None or not tenant_state.is_suspended(tenant_id):
            return
        log.warning(
            "message %s (%s) of suspended tenant %s dropped",
            message.message_id,
            message.actor_name,
            tenant_id,
        )
        with session_scope() as session:
            if _already_recorded(session, tenant_id, message):
                raise SkipMessage()
            record_dead_letter(
                session,
                message_id=message.message_id,
                queue_name=message.queue_name,
                actor_name=message.actor_name,
                args=list(message.args),
                kwargs=dict(message.kwargs),
                options=message.options,
                retries=message.options.get("retries", 0),
                error=REASON,
                tenant_id=tenant_id,
            )
        raise SkipMessage()
