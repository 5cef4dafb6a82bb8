"""The event catalogue's samples are shaped like the events a subscriber receives.

A receiver is written from ``GET /api/outgoing-webhooks/event-types``: a sample whose
``data`` lacks what the real event carries (or carries what it never does) has its
integrators parse fields that are not there.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text, update

from shared.db import session_scope
from shared.models import WaTemplate
from tests.campaigns.conftest import (  # noqa: F401  (fixtures)
    Shop,
    batches,
    campaign_settings,
    gaps_settings,
    shop,
)
from tests.channels_api.conftest import ACCOUNTS, ApiChannel
from tests.csat.conftest import link_of, survey_messages
from tests.inbox_conversations.conftest import add_conversation, ago, set_columns
from tests.peers.fixtures import fake_graph, fake_graph_server, smtp_servers, smtp_tls_files  # noqa: F401

CAMPAIGN_EVENTS = (
    "campaign.started",
    "campaign.completed",
    "campaign.cancelled",
    "campaign.failed",
)


def _shape(data: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The keys of an event's ``data`` and of its ``counts``."""
    return set(data), set(data.get("counts") or {})


def _keys(value: Any) -> Any:
    """The key structure of an event's ``data``: nested objects by their own keys."""
    if isinstance(value, dict):
        return {key: _keys(item) for key, item in value.items()}
    return None


def _real(tenant_id: str, event_type: str) -> dict[str, Any]:
    with session_scope() as session:
        data = session.execute(
            text(
                "SELECT data FROM outbox_events WHERE tenant_id = :t AND type = :type"
                " ORDER BY occurred_at DESC LIMIT 1"
            ),
            {"t": tenant_id, "type": event_type},
        ).scalar()
    assert data is not None, f"no {event_type} was emitted"
    return data


def _assert_samples_match(ws: Any, tenant_id: str, event_types: tuple[str, ...]) -> None:
    resp = ws.call("GET", "/api/outgoing-webhooks/event-types")
    assert resp.status_code == 200, resp.text
    samples = {t["type"]: t["sample"]["data"] for t in resp.json}
    for event_type in event_types:
        assert _keys(samples[event_type]) == _keys(_real(tenant_id, event_type)), event_type


def _ok(resp: Any) -> dict[str, Any]:
    assert resp.status_code in (200, 201, 204), resp.text
    return resp.json


def _samples(tenant: Shop) -> dict[str, dict[str, Any]]:
    resp = tenant.ws.call("GET", "/api/outgoing-webhooks/event-types")
    assert resp.status_code == 200, resp.text
    return {t["type"]: t["sample"]["data"] for t in resp.json}


def _run_until(recorded, outcome: str) -> None:
    for _ in range(5):
        if outcome in recorded.run_next():
            return
    raise AssertionError(f"no batch ended {outcome}")


def test_each_campaign_events_sample_has_the_keys_of_the_real_event(
    shop: Shop,  # noqa: F811
    fake_graph,  # noqa: F811
    campaign_settings,  # noqa: F811
    batches,  # noqa: F811
):
    """The ``campaign.*`` samples were ``{id, created_at}``; each real event carries the
    campaign's view, counts included (and ``error_code``/``error_message`` on failure)."""
    completed = shop.create(name="Completes")
    shop.add(completed, shop.contacts(2))
    shop.send(completed)
    _run_until(batches, "completed")

    cancelled = shop.create(name="Cancelled")
    shop.add(cancelled, shop.contacts(1))
    shop.send(cancelled)
    resp = shop.ws.call("POST", f"/api/campaigns/{cancelled['id']}/cancel")
    assert resp.status_code == 200, resp.text
    batches.items.clear()

    failed = shop.create(name="Fails")
    shop.add(failed, shop.contacts(1))
    shop.send(failed)
    with session_scope() as session:
        session.execute(
            update(WaTemplate)
            .where(WaTemplate.tenant_id == shop.tenant_id)
            .values(status="DISABLED")
        )
    _run_until(batches, "failed")

    samples = _samples(shop)
    for event_type in CAMPAIGN_EVENTS:
        real = shop.event_data(event_type)
        assert real, f"no {event_type} was emitted"
        assert _shape(samples[event_type]) == _shape(real[0]), event_type
    assert samples["campaign.failed"]["status"] == "failed"
    assert samples["campaign.failed"]["error_code"] and samples["campaign.failed"]["error_message"]
    assert samples["campaign.completed"]["status"] == "completed"
    assert samples["campaign.completed"]["error_code"] is None


def test_team_events_samples_have_the_keys_of_the_real_events(workspace):
    """``agent.*``, ``role.*`` and ``api_key.*`` samples were ``{id, created_at}`` or
    hand-written; each real event carries the resource's view (its GET)."""
    ws, tenant_id = workspace, workspace.tenant["id"]
    role = _ok(ws.call("POST", "/api/roles", json={"name": "Desk", "permissions": []}))
    _ok(ws.call("PATCH", f"/api/roles/{role['id']}", json={"description": "Front desk"}))
    agent, _ = ws.create_agent()
    _ok(ws.call("PATCH", f"/api/agents/{agent['id']}", json={"full_name": "Ada B."}))
    _ok(ws.call("PATCH", f"/api/agents/{agent['id']}/status", json={"status": "online"}))
    _ok(ws.call("DELETE", f"/api/agents/{agent['id']}"))
    _ok(ws.call("DELETE", f"/api/roles/{role['id']}"))
    key = _ok(ws.call("POST", "/api/api-keys", json={"name": "CRM"}))
    _ok(ws.call("DELETE", f"/api/api-keys/{key['id']}"))
    _assert_samples_match(
        ws,
        tenant_id,
        (
            "agent.created",
            "agent.updated",
            "agent.status_changed",
            "agent.deleted",
            "role.created",
            "role.updated",
            "role.deleted",
            "api_key.created",
            "api_key.revoked",
        ),
    )


def test_inbox_events_samples_have_the_keys_of_the_real_events(workspace):
    """The ``conversation.*`` samples had 8 of the view's fields and none of the event's
    own (``previous_status``, ``added``...); ``contact.*`` and ``note.*`` were guesses."""
    ws, tenant_id = workspace, workspace.tenant["id"]
    conversation = add_conversation(ws, inbound_count=2)
    agent, _ = ws.create_agent()
    path = f"/api/conversations/{conversation}"
    _ok(ws.call("PATCH", f"{path}/assignment", json={"assignee_id": agent["id"]}))
    _ok(ws.call("PATCH", f"{path}/assignment", json={"assignee_id": None}))
    _ok(ws.call("PATCH", f"{path}/tags", json={"add": ["vip"]}))
    _ok(ws.call("POST", f"{path}/read"))
    _ok(ws.call("POST", f"{path}/notes", json={"body": "Called back"}))
    _ok(ws.call("POST", f"{path}/transfer", json={"to_agent_id": agent["id"]}))
    _ok(ws.call("PATCH", f"{path}/status", json={"status": "resolved"}))
    contact = _ok(ws.call("GET", path))["contact_id"]
    _ok(ws.call("PATCH", f"/api/contacts/{contact}", json={"name": "Carla C."}))
    _ok(ws.call("PUT", "/api/chat-expiration-rules/whatsapp", json={"inactive_minutes": 60}))
    add_conversation(ws, last_activity_at=ago(hours=2))
    _ok(ws.call("POST", "/api/conversations/expire"))
    _assert_samples_match(
        ws,
        tenant_id,
        (
            "conversation.assigned",
            "conversation.unassigned",
            "conversation.tags_updated",
            "conversation.read",
            "conversation.transferred",
            "conversation.status_changed",
            "note.created",
            "contact.updated",
            "conversation.expired",
        ),
    )


def test_channel_events_samples_have_the_keys_of_the_real_events(workspace):
    """What a customer's message causes (``contact.created``, ``conversation.created``,
    ``message.created``), a provider's status report and an account's (dis)connection:
    the ``message.*`` sample had ``type``/``text`` where real events carry
    ``content_type``/``body``/``sender_type``/``attachments``..."""
    ws, tenant_id = workspace, workspace.tenant["id"]
    api = ApiChannel(ws, None)
    inbound = api.inbound("Hello")
    conversation = inbound.get("conversation_id") or inbound["message"]["conversation_id"]
    set_columns(conversation, ai_active=True)  # as an AI agent answering it leaves it
    _ok(ws.call("POST", f"/api/conversations/{conversation}/takeover"))
    _ok(ws.call("POST", f"/api/conversations/{conversation}/csat"))
    survey_id, token = link_of(survey_messages(ws, conversation)[0])
    rated = ws.client.simulate_patch(
        f"/api/public/csat-surveys/{survey_id}", json={"token": token, "rating": 5}
    )
    assert rated.status_code == 200, rated.text
    _assert_samples_match(
        ws,
        tenant_id,
        (
            "integration_account.connected",
            "contact.created",
            "conversation.created",
            "message.created",
            "conversation.taken_over",
            "csat.survey_sent",
            "csat.submitted",
        ),
    )
    _ok(ws.call("DELETE", f"{ACCOUNTS}/{api.id}"))
    _assert_samples_match(ws, tenant_id, ("integration_account.disconnected",))
