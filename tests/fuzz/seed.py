"""A workspace with one row of each kind, so fuzzed path ids reach the services, not 404.

``path_ids(path)`` answers the real ids for a path's parameters: ``{id}`` is the
row of the collection just before it (``/api/agents/{id}`` an agent), other names
(``note_id``, ``channel``) are looked up by name. A path this module does not know
(a new group) gets no real ids and is fuzzed with generated ones only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping

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


class Seed(Mapping[str, str]):
    """The rows of one workspace by collection path or parameter name, each created the first
    time it is read, with the rows it needs (a note its conversation).

    PERF: a write operation gets a fresh workspace, and most of them need one row or none;
    creating every kind for each of them was a third of the fuzz test's time.
    """

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._ids: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        if key not in self._ids:
            self._ids[key] = _BUILDERS[key](self)
        return self._ids[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_BUILDERS)

    def __len__(self) -> int:
        return len(_BUILDERS)

    def __contains__(self, key: object) -> bool:
        return key in _BUILDERS


def seed(ws: Workspace) -> Seed:
    """Ids of ``ws``'s seeded rows, created on first use (``dict(seed(ws))`` creates all)."""
    return Seed(ws)


def _conversation(s: Seed) -> str:
    return add_conversation(s.ws, phone="+14155550123", email="carla@example.com")


def _webhook(s: Seed) -> str:
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["message.created"]}
    return _created(s.ws, "/api/outgoing-webhooks", body)


def _delivery(s: Seed) -> str:
    sent = s.ws.call("POST", f"/api/outgoing-webhooks/{s['/api/outgoing-webhooks']}/test")
    assert sent.status_code == 200, sent.text
    return sent.json["delivery_id"]


def _ai_reply(s: Seed) -> str:
    """An AI agent's answer in the seeded conversation (what an evaluation rates)."""
    with session_scope() as session:
        reply = Message(
            tenant_id=uuid.UUID(s.ws.tenant["id"]),
            conversation_id=uuid.UUID(s["/api/conversations"]),
            channel="whatsapp",
            direction="outbound",
            sender_type="ai_agent",
            sender_id=uuid.UUID(s["/api/ai-agents"]),
            body="An AI answer",
            status="sent",
        )
        session.add(reply)
        session.flush()
        return str(reply.id)


def _ai(s: Seed, tail: str, body: dict) -> str:
    return _created(s.ws, f"/api/ai-agents/{s['/api/ai-agents']}/{tail}", body)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


_Builder = Callable[[Seed], str]

#: How each row is made; a builder reads the rows it depends on through the seed.
_BUILDERS: dict[str, _Builder] = {
    "/api/agents": lambda s: s.ws.create_agent("supervisor")[0]["id"],
    "user_id": lambda s: s["/api/agents"],
    "/api/roles": lambda s: _created(s.ws, "/api/roles", {"name": _unique("r"), "permissions": []}),
    "/api/divisions": lambda s: _created(s.ws, "/api/divisions", {"name": _unique("d")}),
    "/api/conversations": _conversation,
    "/api/contacts": lambda s: s.ws.call(
        "GET", f"/api/conversations/{s['/api/conversations']}"
    ).json["contact"]["id"],
    "note_id": lambda s: _created(
        s.ws, f"/api/conversations/{s['/api/conversations']}/notes", {"body": "a private note"}
    ),
    "/api/quick-replies": lambda s: _created(
        s.ws,
        "/api/quick-replies",
        {"shortcut": _unique("q"), "title": "Hello", "content": "Hello there"},
    ),
    "/api/outgoing-webhooks": _webhook,
    "delivery_id": _delivery,
    "/api/integration-accounts": lambda s: _created(
        s.ws,
        "/api/integration-accounts",
        {"channel": "whatsapp", "name": "Main line", "external_id": str(uuid.uuid4().int)[:15]},
    ),
    "/api/automation/rules": lambda s: _created(
        s.ws,
        "/api/automation/rules",
        {"name": "Tag refunds", "trigger_event_types": ["message.created"]},
    ),
    "/api/api-keys": lambda s: _created(s.ws, "/api/api-keys", {"name": "fuzz"}),
    "/api/campaigns": lambda s: _created(
        s.ws, "/api/campaigns", {"name": "Fuzz", "channel": "messenger", "body": "Hi {{name}}"}
    ),
    "/api/automation/events": lambda s: _failed_automation_event(s.ws, s["/api/conversations"]),
    "fingerprint": lambda s: FINGERPRINT,
    # Super Admin routes: a workspace token is refused there (403) whatever the ids.
    "/api/admin/tenants": lambda s: s.ws.tenant["id"],
    "/api/admin/super-admins": lambda s: str(uuid.uuid4()),
    "channel": lambda s: "whatsapp",
    "/api/ai-agents": lambda s: _created(s.ws, "/api/ai-agents", {"name": _unique("ai")}),
    "rule_id": lambda s: _ai(s, "handoff-rules", {"kind": "model_error"}),
    "product_id": lambda s: _ai(s, "products", {"sku": "S-1", "name": "Socks"}),
    "evaluation_id": lambda s: _ai(s, "evaluations", {"message_id": _ai_reply(s), "score": 4}),
    "/api/ai-agent-assignments": lambda s: _created(
        s.ws, "/api/ai-agent-assignments", {"ai_agent_id": s["/api/ai-agents"], "channel": "email"}
    ),
    "/api/ai-orchestration-rules": lambda s: _created(
        s.ws,
        "/api/ai-orchestration-rules",
        {
            "name": "Email",
            "match_type": "channel",
            "channel": "email",
            "target_ai_agent_id": s["/api/ai-agents"],
        },
    ),
    "source_id": lambda s: _ai(
        s, "knowledge-sources", {"kind": "text", "title": "Hours", "content": "Open at nine."}
    ),
    "qna_id": lambda s: _ai(
        s,
        f"knowledge-sources/{s['source_id']}/qna-pairs",
        {"question": "When?", "answer": "At nine."},
    ),
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
