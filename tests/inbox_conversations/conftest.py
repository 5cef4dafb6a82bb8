"""Fixtures for the conversation tests: workspaces, rows inserted with the ORM, event polling."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from shared.context import Ctx
from shared.db import get_sessionmaker, session_scope
from shared.inbox import bulk, divisions
from shared.models import Contact, Conversation, Division, DivisionMember, Job, OutboxEvent
from tests.lock_races import race
from tests.waiting import wait_until
from tests.workspaces import Workspace, register


@pytest.fixture
def workspace(client) -> Workspace:
    return register(client)


@pytest.fixture
def other_workspace(client) -> Workspace:
    return register(client)


def tid(ws: Workspace) -> uuid.UUID:
    return uuid.UUID(ws.tenant["id"])


def add_conversation(
    ws: Workspace,
    *,
    channel: str = "whatsapp",
    name: str | None = "Carla Customer",
    phone: str | None = None,
    email: str | None = None,
    contact_id: uuid.UUID | None = None,
    **fields: Any,
) -> str:
    """Insert a conversation (and a fresh contact unless ``contact_id``); return its id."""
    with session_scope() as session:
        if contact_id is None:
            contact = Contact(
                tenant_id=tid(ws),
                channel=channel,
                external_id=uuid.uuid4().hex,
                name=name,
                phone=phone,
                email=email,
            )
            session.add(contact)
            session.flush()
            contact_id = contact.id
        conversation = Conversation(
            tenant_id=tid(ws), contact_id=contact_id, channel=channel, **fields
        )
        session.add(conversation)
        session.flush()
        return str(conversation.id)


def add_division(ws: Workspace, name: str, *members: str) -> str:
    with session_scope() as session:
        division = Division(tenant_id=tid(ws), name=name)
        session.add(division)
        session.flush()
        for user_id in members:
            session.add(
                DivisionMember(
                    tenant_id=tid(ws), division_id=division.id, user_id=uuid.UUID(user_id)
                )
            )
        return str(division.id)


def delete_division_now(ws: Workspace, division: str) -> str:
    """Delete the division in a transaction of its own: "deleted", or the error's repr
    (a race test reports it)."""
    try:
        with session_scope() as session:
            divisions.delete_division(session, Ctx.system(tid(ws)), uuid.UUID(division))
        return "deleted"
    except Exception as exc:  # reported by the test
        return repr(exc)


def while_deleting(ws: Workspace, division: str, call) -> Any:
    """``call()``'s value, made while the division's deletion is done but not committed;
    the deletion commits once the call waits on it (or has answered)."""
    deleting = get_sessionmaker()()
    divisions.delete_division(deleting, Ctx.system(tid(ws)), uuid.UUID(division))
    deleting.flush()
    return race(deleting, call)


def set_columns(conversation_id: str, **values: Any) -> None:
    """Move time (or state) by editing the row: tests never sleep for the clock."""
    with session_scope() as session:
        session.execute(
            update(Conversation)
            .where(Conversation.id == uuid.UUID(conversation_id))
            .values(**values)
        )


def row(conversation_id: str) -> Conversation:
    with session_scope() as session:
        return session.get(Conversation, uuid.UUID(conversation_id))


def ago(**delta: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(**delta)


def events(ws: Workspace, *types: str) -> list[OutboxEvent]:
    """The tenant's outbox events (of ``types`` if given), oldest first."""
    with session_scope() as session:
        query = select(OutboxEvent).where(OutboxEvent.tenant_id == tid(ws))
        if types:
            query = query.where(OutboxEvent.type.in_(types))
        return list(session.scalars(query.order_by(OutboxEvent.occurred_at, OutboxEvent.id)))


def many_conversations(ws, n: int, **fields) -> list[str]:
    """Insert ``n`` conversations of one contact in one transaction."""
    with session_scope() as session:
        contact = Contact(tenant_id=tid(ws), channel="email", external_id=uuid.uuid4().hex)
        session.add(contact)
        session.flush()
        rows = [
            Conversation(tenant_id=tid(ws), contact_id=contact.id, channel="email", **fields)
            for _ in range(n)
        ]
        session.add_all(rows)
        session.flush()
        return [str(r.id) for r in rows]


def queued_job(ws, ids: list[str], action: str, **params) -> uuid.UUID:
    """A job row as the API stores it, but not enqueued: the test runs it by hand."""
    spec = {
        "ids": ids,
        "action": action,
        "params": params,
        "actor": {"type": "user", "id": ws.admin["id"]},
    }
    with session_scope() as session:
        job = Job(tenant_id=tid(ws), kind=bulk.KIND, params=spec)
        session.add(job)
        session.flush()
        return job.id


def finished_job(ws, job_id) -> dict:
    """The job as ``GET /api/jobs/{id}`` shows it, once it succeeded or failed."""

    def finished():
        job = ws.call("GET", f"/api/jobs/{job_id}").json
        return job if job["status"] in ("succeeded", "failed") else None

    return wait_until(finished, timeout=30)
