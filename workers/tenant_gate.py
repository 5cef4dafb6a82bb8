"""Drop the queued work of a suspended tenant, once each, with the reason on record.

Every message whose tenant is known is checked before its actor runs: by its
``tenant_id`` option (outbox dispatch, bulk actions, AI replies, imports, rollups,
template syncs), or, for actors whose messages name only a row (``process_inbound``,
``send_email``, ``mark_read_upstream``, ``ingest_knowledge_source``, ``embed_items``,
``charge_invoice``),
by the row's tenant (a resolver the actor module registers with
:func:`resolve_tenant_with`; one registered with ``gate=False``, as ``run_campaign``'s, is
not gated and only names its dead letters' tenant: :mod:`workers.dead_letters`). A
suspended tenant's message is not run: it is written to
``dead_letters`` with the reason (so an operator sees it, and may requeue it after
reactivation) and skipped. The same work sent again by a sweeper is skipped without a
second row (:mod:`shared.admin.dropped_work`).

Batch jobs that mix tenants (``deliver_webhooks``) are not gated here: they skip and
record only the suspended tenant's rows themselves (:mod:`shared.webhooks.engine`), and
``evaluate_rules`` checks its claimed row's tenant itself (no extra query on the hot path).

PERF: the check is :func:`shared.admin.tenant_state.is_suspended`, an epoch-cached
answer (one Redis ``MGET``, no query, per message); Redis down means a query. A
resolver costs one primary-key query per message of its actor. The same ``MGET`` reads the
tenant's epochs of the caches dispatch asks (:mod:`shared.dispatch_facts`) and leaves them
to the message (:data:`shared.epoch_cache.FOR_MESSAGE`): read before it runs, so a change
committed before the message started is seen by it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import dramatiq
from dramatiq.middleware import SkipMessage
from sqlalchemy.orm import Session

from shared import dispatch_facts, epoch_cache
from shared.admin import dropped_work, tenant_state
from shared.admin.dropped_work import REASON
from shared.db import session_scope
from shared.worker_metrics import tenant_id_from_options

log = logging.getLogger(__name__)

__all__ = ["REASON", "TenantGate", "on_drop", "resolve_tenant_with", "tenant_of"]

#: ``(session, message args) -> tenant id`` (None: unknown row, let the actor decide).
Resolver = Callable[[Session, tuple], uuid.UUID | None]

_RESOLVERS: dict[str, Resolver] = {}
#: Actors whose resolver names only their dead letters' tenant (see resolve_tenant_with).
_NOT_GATED: set[str] = set()
#: Actor name -> called with a message of it the gate drops (after recording it).
_ON_DROP: dict[str, Callable[[dramatiq.Message], None]] = {}


def resolve_tenant_with(actor_name: str, resolver: Resolver, *, gate: bool = True) -> None:
    """Gate ``actor_name``'s messages that carry no ``tenant_id`` by their row's tenant.

    ``gate=False``: the actor settles a suspended tenant's work itself (a campaign's batch
    is held, not dropped); the resolver only names the tenant of its dead letters.
    """
    _RESOLVERS[actor_name] = resolver
    if gate:
        _NOT_GATED.discard(actor_name)
    else:
        _NOT_GATED.add(actor_name)


def on_drop(actor_name: str, hook: Callable[[dramatiq.Message], None]) -> None:
    """Call ``hook`` with each dropped message of ``actor_name`` (work that joined it is
    handed back: see :mod:`workers.joining`)."""
    _ON_DROP[actor_name] = hook


def tenant_of(message, session: Session | None = None, *, gating: bool = False) -> uuid.UUID | None:
    """The message's tenant: its ``tenant_id`` option, else its actor's resolver's answer
    (in ``session`` when given), else None. The dead letters ask it too (``gating`` False:
    the resolvers registered with ``gate=False`` answer them as well)."""
    tenant_id = tenant_id_from_options(message.options)
    if tenant_id is not None:
        return tenant_id
    resolver = _RESOLVERS.get(message.actor_name)
    if resolver is None or (gating and message.actor_name in _NOT_GATED):
        return None
    try:
        if session is not None:
            return resolver(session, tuple(message.args))
        with session_scope() as own:
            return resolver(own, tuple(message.args))
    except (ValueError, TypeError, IndexError):
        return None  # malformed arguments: the actor itself fails them


#: The caches whose epochs the gate reads for a message (its own first).
_CACHES = (tenant_state.CACHE, dispatch_facts.CACHE)


class TenantGate(dramatiq.Middleware):
    """Skip (and record) a message whose tenant is suspended. Place it before Presence."""

    def before_process_message(self, broker, message):
        tenant_id = tenant_of(message, gating=True)
        if tenant_id is None:
            epoch_cache.FOR_MESSAGE.set(None)
            return
        epochs = epoch_cache.read(tenant_id, _CACHES)
        epoch_cache.FOR_MESSAGE.set(epochs)
        if not tenant_state.is_suspended(tenant_id, epochs=epochs):
            return
        log.warning(
            "message %s (%s) of suspended tenant %s dropped",
            message.message_id,
            message.actor_name,
            tenant_id,
        )
        with session_scope() as session:
            dropped_work.record(
                session,
                tenant_id=tenant_id,
                message_id=message.message_id,
                queue_name=message.queue_name,
                actor_name=message.actor_name,
                args=list(message.args),
                kwargs=dict(message.kwargs),
                options=message.options,
            )
        if hook := _ON_DROP.get(message.actor_name):
            hook(message)
        raise SkipMessage()

    def after_process_message(self, broker, message, *, result=None, exception=None):
        epoch_cache.FOR_MESSAGE.set(None)

    def after_skip_message(self, broker, message):
        epoch_cache.FOR_MESSAGE.set(None)
