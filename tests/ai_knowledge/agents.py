"""AI agent rows for tests (their own endpoints belong to another part of the API)."""

from __future__ import annotations

import uuid

from shared.db import session_scope
from shared.models import AiAgent


def add_ai_agent(ws, **fields) -> str:
    """An AI agent of ``ws``'s tenant; returns its id."""
    with session_scope() as session:
        agent = AiAgent(
            tenant_id=uuid.UUID(ws.tenant["id"]), name=f"Helper {uuid.uuid4().hex[:6]}", **fields
        )
        session.add(agent)
        session.flush()
        return str(agent.id)
