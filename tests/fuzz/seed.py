"""A workspace with one row of each kind, so fuzzed path ids reach the services, not 404.

``path_ids(path)`` answers the real ids for a path's parameters: ``{id}`` is the
row of the collection just before it (``/api/agents/{id}`` an agent), other names
(``note_id``, ``channel``) are looked up by name. A path this module does not know
(a new group) gets no real ids and is fuzzed with generated ones only.
"""

from __future__ import annotations

import uuid

from shared.db import session_scope
from shared.models import AutomationEvent, Message
from tests.inbox_conversations.conftest import add_conversation
from tests.workspaces import Workspace

FINGERPRINT = "f" * 64


def _created(ws: Workspace, path: str, body: dict) -> str:
    resp = ws.call("POST", path, json=body)
    assert resp.status_code in (200, 201), (path, resp.text)
    return resp.json["id"]


def _failed_automation_event(ws: Workspace, conversation: str) -> str:
    """A failed event-queue row, as a rule that raised leaves it (retry/reprocess targets)."""
    with session_scope() as session:
        event = AutomationEvent(
            tenant_id=uuid.UUID(ws.tenant["id"]),
            outbox_event_id=uuid.uuid4(),
            event_type="message.created",
            conversation_id=uuid.UUID(conversation),
            payload={"conversation_id": conversation},
            fingerprint=FINGERPRINT,
            status="failed",
            attempts=1,
            error="seeded failure",
        )
        session.add(event)
        session.flush()
        return str(event.id)


def _ai_agent(ws: Workspace, conversation: str) -> dict[str, str]:
    """An AI agent with one of each of its rows (a rule, a product, a rated reply)."""
    agent = _created(ws, "/api/ai-agents", {"name": f"ai-{uuid.uuid4().hex[:8]}"})
    with session_scope() as session:
        reply = Message(
            tenant_id=uuid.UUID(ws.tenant["id"]),
            conversation_id=uuid.UUID(conversation),
            channel="whatsapp",
            direction="outbound",
            sender_type="ai_agent",
            sender_id=uuid.UUID(agent),
            body="An AI answer",
            status="sent",
        )
        session.add(reply)
        session.flush()
        reply_id = str(reply.id)
    base = f"/api/ai-agents/{agent}"
    return {
        "/api/ai-agents": agent,
        "rule_id": _created(ws, f"{base}/handoff-rules", {"kind": "model_error"}),
        "product_id": _created(ws, f"{base}/products", {"sku": "S-1", "name": "Socks"}),
        "evaluation_id": _created(ws, f"{base}/evaluations", {"message_id": reply_id, "score": 4}),
        "/api/ai-agent-assignments": _created(
            ws, "/api/ai-agent-assignments", {"ai_agent_id": agent, "channel": "email"}
        ),
        "/api/ai-orchestration-rules": _created(
            ws,
            "/api/ai-orchestration-rules",
            {
                "name": "Email",
                "match_type": "channel",
                "channel": "email",
                "target_ai_agent_id": agent,
            },
        ),
    }


def _ai_knowledge(ws: Workspace, agent: str) -> dict[str, str]:
    """A text source of the AI agent and a QnA pair of it."""
    base = f"/api/ai-agents/{agent}/knowledge-sources"
    source = _created(ws, base, {"kind": "text", "title": "Hours", "content": "Open at nine."})
    pair = _created(ws, f"{base}/{source}/qna-pairs", {"question": "When?", "answer": "At nine."})
    return {"source_id": source, "qna_id": pair}


def seed(ws: Workspace) -> dict[str, str]:
    """Create one row of each kind in ``ws``; return ids by collection path or parameter."""
    agent, _token = ws.create_agent("supervisor")
    conversation = add_conversation(ws, phone="+14155550123", email="carla@example.com")
    contact = ws.call("GET", f"/api/conversations/{conversation}").json["contact"]["id"]
    suffix = uuid.uuid4().hex[:8]
    webhook = ws.call(
        "POST",
        "/api/outgoing-webhooks",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["message.created"]},
    )
    assert webhook.status_code == 201, webhook.text
    sent = ws.call("POST", f"/api/outgoing-webhooks/{webhook.json['id']}/test")
    assert sent.status_code == 200, sent.text
    ai = _ai_agent(ws, conversation)
    ai |= _ai_knowledge(ws, ai["/api/ai-agents"])
    return {
        "/api/agents": agent["id"],
        "/api/roles": _created(ws, "/api/roles", {"name": f"r-{suffix}", "permissions": []}),
        "/api/divisions": _created(ws, "/api/divisions", {"name": f"d-{suffix}"}),
        "/api/conversations": conversation,
        "/api/contacts": contact,
        "note_id": _created(
            ws, f"/api/conversations/{conversation}/notes", {"body": "a private note"}
        ),
        "/api/quick-replies": _created(
            ws,
            "/api/quick-replies",
            {"shortcut": f"q{suffix}", "title": "Hello", "content": "Hello there"},
        ),
        "/api/outgoing-webhooks": webhook.json["id"],
        "delivery_id": sent.json["delivery_id"],
        "/api/integration-accounts": _created(
            ws,
            "/api/integration-accounts",
            {"channel": "whatsapp", "name": "Main line", "external_id": str(uuid.uuid4().int)[:15]},
        ),
        "/api/automation/rules": _created(
            ws,
            "/api/automation/rules",
            {"name": "Tag refunds", "trigger_event_types": ["message.created"]},
        ),
        "/api/api-keys": _created(ws, "/api/api-keys", {"name": "fuzz"}),
        "/api/campaigns": _created(
            ws, "/api/campaigns", {"name": "Fuzz", "channel": "messenger", "body": "Hi {{name}}"}
        ),
        "/api/automation/events": _failed_automation_event(ws, conversation),
        "fingerprint": FINGERPRINT,
        # Super Admin routes: a workspace token is refused there (403) whatever the ids.
        "/api/admin/tenants": ws.tenant["id"],
        "/api/admin/super-admins": str(uuid.uuid4()),
        "user_id": agent["id"],
        "channel": "whatsapp",
        **ai,
    }


def path_ids(path: str, ids: dict[str, str]) -> dict[str, str] | None:
    """Real values for every parameter of ``path``, or None if one is unknown."""
    values = {}
    for segment in (part for part in path.split("/") if part.startswith("{")):
        name = segment.strip("{}")
        key = path.split(f"/{segment}", 1)[0] if name == "id" else name
        if key not in ids:
            return None
        values[name] = ids[key]
    return values
