"""Dispatch's per-process answers (endpoints, rules, AI agents) never outlive a committed change.

The facts a dispatch asks about its tenant are kept per process (shared.dispatch_facts);
a change committed anywhere (another process included) must be honoured by the very
next event, and the webhook engine's health stamps must not make every process forget.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

from sqlalchemy import func, select, text, update

import workers.actors.automation  # registers the automation target (and webhooks below)
import workers.actors.webhooks  # noqa: F401  (registers the webhooks target)
from shared import dispatch, dispatch_facts, epoch_cache
from shared.db import session_scope
from shared.models import AutomationEvent, WebhookDelivery, WebhookEndpoint
from shared.redis_client import get_redis
from tests.outbox_rows import unswept_event

EVENT_TYPE = "conversation.created"


def _dispatch_one(tenant_id: uuid.UUID) -> uuid.UUID:
    """Write a pending ``conversation.created`` outbox row and dispatch it now; its id."""
    event_id = unswept_event(tenant_id, EVENT_TYPE, {"id": str(uuid.uuid4()), "status": "open"})
    with session_scope() as session:
        assert dispatch.dispatch(session, event_id) is dispatch.Outcome.PROCESSED
    return event_id


def _fanned_out(event_id: uuid.UUID) -> tuple[int, int]:
    """(webhook deliveries, automation queue rows) the event got."""
    with session_scope() as session:
        deliveries = session.scalar(
            select(func.count()).where(WebhookDelivery.event_id == event_id)
        )
        queued = session.scalar(
            select(func.count()).where(AutomationEvent.outbox_event_id == event_id)
        )
    return deliveries, queued


def _facts(tenant_id: uuid.UUID) -> dispatch_facts.Facts:
    with session_scope() as session:
        return dispatch_facts.of(session, tenant_id)


_WRITER = textwrap.dedent(
    """
    import sys, uuid
    from shared.db import session_scope
    from shared.models import AiAgent, AutomationRule, WebhookEndpoint
    tenant = uuid.UUID(sys.argv[1])
    with session_scope() as session:
        session.add(WebhookEndpoint(tenant_id=tenant, url="http://127.0.0.1:9/hook",
                                    event_types=[sys.argv[2]], secret_encrypted="x"))
        session.add(AutomationRule(tenant_id=tenant, name="r", trigger_event_types=[sys.argv[2]],
                                   conditions={}, actions=[]))
        session.add(AiAgent(tenant_id=tenant, name="bot"))
    """
)


def test_a_change_committed_by_another_process_is_honoured_by_the_next_event(
    broker, tenant, monkeypatch
):
    # NOTE: entries outlive the writer's start, so only the epochs can make them go.
    monkeypatch.setattr(epoch_cache, "TTL_SECONDS", 300.0)
    first = _dispatch_one(tenant)
    assert _fanned_out(first) == (0, 0)
    assert _facts(tenant) == dispatch_facts.Facts(frozenset(), frozenset(), False)  # cached

    # Another process commits an endpoint, a rule and an AI agent: only the epochs it
    # sets in Redis can tell this process (whose own generation did not move).
    subprocess.run([sys.executable, "-c", _WRITER, str(tenant), EVENT_TYPE], check=True)

    assert _fanned_out(_dispatch_one(tenant)) == (1, 1)
    assert _facts(tenant) == dispatch_facts.Facts(
        frozenset({EVENT_TYPE}), frozenset({EVENT_TYPE}), True
    )


def test_a_disabled_endpoint_gets_nothing_from_the_next_event(broker, tenant):
    with session_scope() as session:
        endpoint = WebhookEndpoint(
            tenant_id=tenant,
            url="http://127.0.0.1:9/hook",
            event_types=[EVENT_TYPE],
            secret_encrypted="x",
        )
        session.add(endpoint)
    assert _fanned_out(_dispatch_one(tenant))[0] == 1
    with session_scope() as session:
        session.get(WebhookEndpoint, endpoint.id).enabled = False
    assert _fanned_out(_dispatch_one(tenant))[0] == 0


def test_a_message_uses_the_epochs_read_before_it_ran(broker, tenant):
    """The worker's epochs (the tenant gate's MGET) serve the dispatch: no second read."""
    _facts(tenant)  # cached
    epochs = epoch_cache.read(tenant, [dispatch_facts.CACHE])
    token = epoch_cache.FOR_MESSAGE.set(epochs)
    try:
        with session_scope() as session:
            session.add(
                WebhookEndpoint(
                    tenant_id=tenant,
                    url="http://127.0.0.1:9/hook",
                    event_types=[EVENT_TYPE],
                    secret_encrypted="x",
                )
            )
        # Committed here: this process's own entries go at once, whatever the epochs say.
        assert _facts(tenant).webhook_types == {EVENT_TYPE}
    finally:
        epoch_cache.FOR_MESSAGE.reset(token)


def test_health_stamps_keep_the_cache_and_real_changes_do_not(tenant):
    with session_scope() as session:
        endpoint = WebhookEndpoint(
            tenant_id=tenant, url="http://127.0.0.1:9/hook", event_types=["x"], secret_encrypted="x"
        )
        session.add(endpoint)
    keys = dispatch_facts.CACHE.epoch_keys(tenant)
    before = get_redis().mget(keys)

    from shared.webhooks import delivery

    with session_scope() as session:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint.id)
            .values(first_failure_at=func.now())
            .execution_options(**delivery._HEALTH_ONLY)
        )
        session.execute(
            text(
                "UPDATE webhook_endpoints SET last_success_at = now() WHERE id = :id"
            ).execution_options(**delivery._HEALTH_ONLY),
            {"id": endpoint.id},
        )
    assert get_redis().mget(keys) == before

    with session_scope() as session:
        session.execute(
            update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id).values(enabled=False)
        )
    assert get_redis().mget(keys)[0] != before[0]  # no tenant condition: the global epoch
