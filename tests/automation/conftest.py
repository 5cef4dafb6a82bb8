"""Helpers for the automation tests: rules through the API, conversations, waiting for the queue."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from shared.context import Ctx
from shared.db import get_sessionmaker, session_scope
from shared.events import Actor
from shared.identity import agents
from shared.identity.permissions import ALL_KEYS
from shared.models import (
    AutomationEvent,
    AutomationRun,
    Contact,
    Conversation,
    OutboxEvent,
)
from tests.inbox_conversations.conftest import add_division  # noqa: F401  (re-exported)
from tests.lock_races import race
from tests.waiting import wait_until
from tests.workspaces import Workspace

RULES = "/api/automation/rules"


def tid(ws: Workspace) -> uuid.UUID:
    return uuid.UUID(ws.tenant["id"])


def add_conversation(ws: Workspace, *, channel: str = "email", **fields: Any) -> str:
    """Insert a conversation and its contact (email: no WhatsApp window to open)."""
    with session_scope() as session:
        contact = Contact(
            tenant_id=tid(ws),
            channel=channel,
            external_id=uuid.uuid4().hex,
            name=fields.pop("contact_name", "Carla Customer"),
            email="carla@example.com",
            country=fields.pop("country", "DE"),
        )
        session.add(contact)
        session.flush()
        conversation = Conversation(
            tenant_id=tid(ws), contact_id=contact.id, channel=channel, **fields
        )
        session.add(conversation)
        session.flush()
        return str(conversation.id)


def rule_body(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "Refund requests",
        "trigger_event_types": ["message.created"],
        "conditions": {
            "match": "all",
            "conditions": [
                {"attribute": "message.content", "operator": "contains", "value": "refund"}
            ],
        },
        "actions": [{"type": "add_tags", "params": {"tags": ["refund"]}}],
    } | overrides


def create_rule(ws: Workspace, **overrides: Any) -> dict[str, Any]:
    resp = ws.call("POST", RULES, json=rule_body(**overrides))
    assert resp.status_code == 201, resp.text
    return resp.json


def conversation(conversation_id: str) -> Conversation:
    with session_scope() as session:
        return session.get(Conversation, uuid.UUID(conversation_id))


def _rows(ws: Workspace, model: Any) -> list[Any]:
    with session_scope() as session:
        query = select(model).where(model.tenant_id == tid(ws))
        return list(session.scalars(query.order_by(model.created_at, model.id)))


def waiting_on_a_lock() -> bool:
    """Whether a session of this database waits for a row lock (the worker, held by us)."""
    with session_scope() as session:
        return bool(
            session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        )


def queue_rows(ws: Workspace) -> list[AutomationEvent]:
    return _rows(ws, AutomationEvent)


def runs(ws: Workspace) -> list[AutomationRun]:
    return _rows(ws, AutomationRun)


def settled(ws: Workspace) -> bool:
    """Every outbox event of the tenant dispatched and every queue row finished.

    NOTE: one statement, so one snapshot: a row turning done commits with the events
    its actions emitted, and a dispatch commits with the rows it queued, so both
    counts at zero in one snapshot means nothing more is coming.
    """
    pending_outbox = (
        select(func.count())
        .where(OutboxEvent.tenant_id == tid(ws), OutboxEvent.status == "pending")
        .scalar_subquery()
    )
    unfinished = (
        select(func.count())
        .where(
            AutomationEvent.tenant_id == tid(ws),
            AutomationEvent.status.in_(("pending", "processing")),
        )
        .scalar_subquery()
    )
    with session_scope() as session:
        return bool(session.scalar(select((pending_outbox + unfinished) == 0)))


def wait_settled(ws: Workspace, *, at_least_rows: int = 1) -> list[AutomationEvent]:
    def done():
        if not settled(ws):
            return None
        rows = queue_rows(ws)
        return rows if len(rows) >= at_least_rows else None

    return wait_until(done, "the automation queue settled", timeout=20.0)


@pytest.fixture
def ws(worker, workspace) -> Workspace:
    """A workspace with the in-process worker running."""
    return workspace


def send_message(ws: Workspace, conversation_id: str, body: str) -> dict[str, Any]:
    resp = ws.call("POST", f"/api/conversations/{conversation_id}/messages", json={"body": body})
    assert resp.status_code == 201, resp.text
    return resp.json


@pytest.fixture
def override(monkeypatch):
    """Change automation settings for one test (the worker runs in this process)."""

    def apply(**values: Any) -> None:
        from shared.config import get_settings

        settings = get_settings().model_copy(update=values)
        for module in ("shared.automation.rules", "shared.automation.evaluator"):
            monkeypatch.setattr(f"{module}.get_settings", lambda: settings)

    return apply


def admin_ctx(ws: Workspace) -> Ctx:
    """The workspace admin's context, for domain calls a test makes beside the worker."""
    admin_id = uuid.UUID(ws.admin["id"])
    return Ctx(tid(ws), Actor("user", admin_id), user_id=admin_id, permissions=ALL_KEYS)


def flushed_deletion(ws: Workspace, agent_id: str) -> Session:
    """A session holding the agent's deletion written but uncommitted (for ``race()``)."""
    deleting = get_sessionmaker()()
    agents.delete_agent(deleting, admin_ctx(ws), uuid.UUID(agent_id))
    deleting.flush()
    return deleting


def race_locked_deletion(ws: Workspace, agent_id: str, trigger: Callable[[], bool]) -> None:
    """``trigger`` runs while the agent's deletion holds their row locked (its first step);
    the deletion then unassigns and deletes them, and commits. Asserts it succeeded."""
    deleting = get_sessionmaker()()
    ctx = admin_ctx(ws)
    agents.get_agent(deleting, ctx, uuid.UUID(agent_id), for_update=True)
    outcome: list[str] = []

    def delete() -> None:
        try:
            agents.delete_agent(deleting, ctx, uuid.UUID(agent_id))
            deleting.flush()
            outcome.append("deleted")
        except Exception as exc:
            outcome.append(repr(exc))
            raise

    assert race(deleting, trigger, then=delete) is True
    assert outcome == ["deleted"]
