"""Suspending a tenant end to end: credentials, scheduled work, queued jobs, inbound webhooks.

Time is moved, not slept: the scheduler's claim is handed an instant two hours ahead.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select, update

from shared import events, outbox_sweeper
from shared.db import session_scope
from shared.events import Actor, emit
from shared.models import ActivityLog, DeadLetter, InboundEvent, OutboxEvent, ScheduledMessage
from shared.timekeeping import scheduled_messages
from tests.channels_inbound.conftest import Channels
from tests.inbox_conversations.conftest import add_conversation
from tests.waiting import wait_until
from tests.workspaces import PASSWORD
from workers import queues
from workers.actors.events import dispatch_event
from workers.tenant_gate import REASON


def _later(hours: float = 2) -> dt.datetime:
    with session_scope() as session:
        return session.scalar(select(func.now())) + dt.timedelta(hours=hours)


def _schedule(ws) -> str:
    conversation = add_conversation(ws, channel="api")
    run_at = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    resp = ws.call(
        "POST",
        f"/api/conversations/{conversation}/scheduled-messages",
        json={"body": "See you tomorrow", "run_at": run_at},
    )
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


def _emit_event(tenant_id: uuid.UUID) -> uuid.UUID:
    """A change of the tenant's, committed: the outbox hands dispatch_event to the broker."""
    with session_scope() as session:
        return emit(
            session,
            "contact.updated",
            {"id": str(uuid.uuid4())},
            tenant_id=tenant_id,
            actor=Actor.system(),
        )


def _event_status(event_id: uuid.UUID) -> str:
    with session_scope() as session:
        return session.get(OutboxEvent, event_id).status


def _sweep(event_id: uuid.UUID) -> list[uuid.UUID]:
    """One sweep_outbox run with the event due now (time moved); which of it was re-sent."""
    with session_scope() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event_id)
            .values(next_sweep_at=func.now() - dt.timedelta(seconds=1))
        )
    resent: list[uuid.UUID] = []

    def publish(pending):
        resent.extend(e.id for e in pending if e.id == event_id)
        events.publish(pending)

    with session_scope() as session:
        outbox_sweeper.sweep(session, publish=publish)
    return resent


def test_a_suspended_tenant_is_refused_skipped_dropped_and_deaf(
    root, client, workspace, other_workspace, broker, worker
):
    tenant_id = uuid.UUID(workspace.tenant["id"])
    agent, agent_token = workspace.create_agent()
    key = workspace.call("POST", "/api/api-keys", json={"name": "integration"}).json["key"]
    scheduled = _schedule(workspace)
    other_scheduled = _schedule(other_workspace)
    channels = Channels(workspace, broker)
    account = channels.account("whatsapp")

    suspended = root.call("DELETE", f"/api/admin/tenants/{tenant_id}")
    assert suspended.status_code == 204
    assert root.call("GET", f"/api/admin/tenants/{tenant_id}").json["status"] == "suspended"

    # Credentials: tokens, API keys and logins answer 403 tenant_suspended.
    for token in (workspace.token, agent_token):
        refused = workspace.call("GET", "/api/auth/me", token=token)
        assert refused.status_code == 403
        assert refused.json["error"]["code"] == "tenant_suspended"
    with_key = client.simulate_get("/api/auth/me", headers={"X-API-Key": key})
    assert with_key.json["error"]["code"] == "tenant_suspended"
    login = client.simulate_post(
        "/api/auth/login", json={"email": agent["email"], "password": PASSWORD}
    )
    assert login.status_code == 403 and login.json["error"]["code"] == "tenant_suspended"
    # The other tenant is untouched.
    assert other_workspace.call("GET", "/api/auth/me").status_code == 200

    # Scheduled work: the scheduler's claim skips the suspended tenant's due row.
    with session_scope() as session:
        claimed = {str(i) for i in scheduled_messages.claim_due(session, now=_later())}
    assert scheduled not in claimed and other_scheduled in claimed
    with session_scope() as session:
        row = session.get(ScheduledMessage, uuid.UUID(scheduled))
        assert (row.status, row.attempts) == ("pending", 0)

    # Queued work: the worker drops the tenant's message and records why.
    event_id = _emit_event(tenant_id)

    def dropped():
        with session_scope() as session:
            return session.scalars(
                select(DeadLetter).where(
                    DeadLetter.tenant_id == tenant_id,
                    DeadLetter.actor_name == "dispatch_event",
                    DeadLetter.args[0].astext == str(event_id),
                )
            ).first()

    letter = wait_until(dropped, "dead letter of the dropped dispatch_event", timeout=20)
    assert letter.error == REASON
    # The same work sent again (a sweeper's re-drive) is dropped without a second row.
    dispatch_event.send_with_options(args=(str(event_id),), tenant_id=str(tenant_id))
    broker.join(queues.EVENTS, timeout=20_000)
    with session_scope() as session:
        copies = session.scalar(
            select(func.count()).where(
                DeadLetter.tenant_id == tenant_id, DeadLetter.args[0].astext == str(event_id)
            )
        )
    assert copies == 1
    # The outbox sweep (a scheduler job) leaves the event pending while suspended.
    assert _sweep(event_id) == []

    # Inbound provider webhooks: acknowledged (200), nothing stored.
    ack = channels.whatsapp(account, "wa_text.json")
    assert ack.status_code == 200, ack.text
    assert ack.json == {"stored": 0, "duplicates": 0, "dropped": 1}
    with session_scope() as session:
        stored = session.scalar(select(func.count()).where(InboundEvent.tenant_id == tenant_id))
    assert stored == 0

    # Reactivation: the same credentials work again.
    back = root.call("PATCH", f"/api/admin/tenants/{tenant_id}", json={"status": "active"})
    assert back.status_code == 200 and back.json["status"] == "active"
    assert workspace.call("GET", "/api/auth/me").status_code == 200
    assert client.simulate_get("/api/auth/me", headers={"X-API-Key": key}).status_code == 200
    # ...and the held event is swept and dispatched.
    assert _sweep(event_id) == [event_id]
    wait_until(
        lambda: _event_status(event_id) == "processed", "the held event dispatched", timeout=20
    )
    with session_scope() as session:
        actions = [
            a
            for (a,) in session.execute(
                select(ActivityLog.action)
                .where(ActivityLog.tenant_id == tenant_id, ActivityLog.entity_type == "tenant")
                .order_by(ActivityLog.created_at)
            )
        ]
    assert actions[-2:] == ["tenant.suspended", "tenant.reactivated"]
