"""Record every message that failed for good in Postgres, where operators can see it."""

from __future__ import annotations

import logging
import traceback
import uuid

import dramatiq
from dramatiq.common import q_name, xq_name

from shared.db import session_scope
from shared.dead_letters import PLATFORM_ACTORS, record_dead_letter
from workers import tenant_gate

log = logging.getLogger(__name__)

#: Attribute set on a :class:`dramatiq.MessageProxy`: its ``retries`` before this attempt.
_RETRIES_ATTR = "_omnistream_retries_before"


class DeadLetters(dramatiq.Middleware):
    """Insert a ``dead_letters`` row when a message is rejected for good (``after_nack``).

    Dramatiq moves such a message to ``{queue}.XQ``, which it empties after a
    week; the row keeps it visible until an operator acts. ``retries`` is the
    number of retries the message had before its last attempt (Retries bumps
    the option once more when it gives up). A database failure is logged
    loudly and never raised into the worker: the message is still in the XQ.

    Example::

        @dramatiq.actor(max_retries=2)
        def sync(account_id): ...  # raises three times -> one dead_letters row, retries=2
    """

    def before_process_message(self, broker, message):
        setattr(message, _RETRIES_ATTR, message.options.get("retries", 0))

    def after_nack(self, broker, message):
        retries = getattr(message, _RETRIES_ATTR, None)
        if retries is None:  # it never reached its actor (skipped, unknown actor)
            retries = message.options.get("retries", 0)
        tenant_id = _tenant_of(broker, message)
        try:
            with session_scope() as session:
                record_dead_letter(
                    session,
                    message_id=message.message_id,
                    queue_name=q_name(message.queue_name),
                    actor_name=message.actor_name,
                    args=message.args,
                    kwargs=message.kwargs,
                    options=message.options,
                    retries=retries,
                    error=_error_text(message),
                    tenant_id=tenant_id,
                )
        except Exception:
            log.critical(
                "dead letter %s (%s on %s) could not be recorded in Postgres;"
                " it is still in Dramatiq's %s until it expires",
                message.message_id,
                message.actor_name,
                message.queue_name,
                xq_name(message.queue_name),
                exc_info=True,
            )


def _tenant_of(broker, message) -> uuid.UUID | None:
    """The tenant whose console lists the dead letter (None: the platform's).

    WHY: a message naming only its row (no ``tenant_id`` option: ``process_inbound``,
    ``mark_read_upstream``, ``send_email``...) made a tenantless row, missing from its
    tenant's dead-letter list. The row's tenant is what the tenant gate resolves; a
    retries-exhausted handler's message (Dramatiq sends it without options) takes the
    tenant of the given-up message, its first argument. Billing's stay the platform's
    (:data:`PLATFORM_ACTORS`). A failed lookup only leaves the tenant out: the row is
    recorded all the same.
    """
    if message.actor_name in PLATFORM_ACTORS:
        return None
    try:
        tenant_id = tenant_gate.tenant_of(message)
        if tenant_id is None and _handles_exhausted_retries(broker, message.actor_name):
            tenant_id = _tenant_of_given_up(message)
    except Exception:
        log.warning("the tenant of dead letter %s is unknown", message.message_id, exc_info=True)
        return None
    return tenant_id


def _tenant_of_given_up(message) -> uuid.UUID | None:
    """The tenant of the message a retries-exhausted handler was sent about."""
    given_up = message.args[0] if message.args else None
    if not isinstance(given_up, dict) or given_up.get("actor_name") in PLATFORM_ACTORS:
        return None
    try:
        return tenant_gate.tenant_of(dramatiq.Message(**given_up))
    except (TypeError, ValueError):
        return None  # not a message's shape


def _handles_exhausted_retries(broker, actor_name: str) -> bool:
    return any(
        broker.get_actor(name).options.get("on_retry_exhausted") == actor_name
        for name in broker.get_declared_actors()
    )


def _error_text(message) -> str | None:
    """Return the traceback of the last failure, from the attempt itself when possible."""
    # NOTE: the worker keeps the attempt's exception on the proxy until post-processing
    # (ack/nack) is over. It beats the ``traceback`` option, which Retries does not
    # refresh when an actor's ``throws`` makes it give up at once.
    exception = getattr(message, "_exception", None)
    if exception is not None:
        return "".join(traceback.format_exception(exception)).strip()
    return message.options.get("traceback")
