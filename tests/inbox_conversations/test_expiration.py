"""Chat expiration rules, the expire action and scheduler job, and snooze wake-ups."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, update

from scheduler import jobs as scheduler_jobs
from shared.db import session_scope
from shared.models import Message, Tenant
from tests.channels_api.conftest import ApiChannel
from tests.inbox_conversations.conftest import add_conversation, ago, events, row, set_columns

RULES = "/api/chat-expiration-rules"


def _job(name: str):
    """The function the scheduler runs for ``name``, as registered in its job table."""
    return next(job.func for job in scheduler_jobs.JOBS if job.name == name)


def test_rules_are_upserted_per_channel(workspace, other_workspace):
    ws = workspace
    assert ws.call("GET", RULES).json == []
    created = ws.call("PUT", f"{RULES}/whatsapp", json={"inactive_minutes": 1440})
    assert created.status_code == 200, created.text
    assert created.json["is_active"] is True and created.json["closing_message"] is None
    replaced = ws.call(
        "PUT",
        f"{RULES}/whatsapp",
        json={"inactive_minutes": 60, "is_active": False, "closing_message": " Bye! "},
    )
    assert replaced.json["inactive_minutes"] == 60 and replaced.json["closing_message"] == "Bye!"
    ws.call("PUT", f"{RULES}/email", json={"inactive_minutes": 30})
    listed = ws.call("GET", RULES).json
    assert [(r["channel"], r["inactive_minutes"], r["is_active"]) for r in listed] == [
        ("email", 30, True),
        ("whatsapp", 60, False),
    ]
    assert other_workspace.call("GET", RULES).json == []
    logs = ws.call("GET", "/api/activity-logs", params={"entity_type": "chat_expiration_rule"})
    assert [log["action"] for log in logs.json["items"]] == [
        "chat_expiration_rule.created",
        "chat_expiration_rule.updated",
        "chat_expiration_rule.created",
    ]

    assert ws.call("PUT", f"{RULES}/fax", json={"inactive_minutes": 5}).status_code == 404
    for body, field in (
        ({"inactive_minutes": 0}, "inactive_minutes"),
        ({"inactive_minutes": 43201}, "inactive_minutes"),
        ({}, "inactive_minutes"),
        ({"inactive_minutes": 5, "closing_message": "x" * 4097}, "closing_message"),
        ({"inactive_minutes": 5, "colour": "red"}, "colour"),
    ):
        resp = ws.call("PUT", f"{RULES}/email", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json["error"]["details"][0]["field"] == field
    _, token = ws.create_agent(role="supervisor")
    assert ws.call("GET", RULES, token=token).status_code == 403
    put = ws.call("PUT", f"{RULES}/email", token=token, json={"inactive_minutes": 5})
    assert put.status_code == 403
    assert ws.call("POST", "/api/conversations/expire", token=token).status_code == 403


def test_expire_resolves_idle_conversations_of_active_rules(workspace, other_workspace):
    ws = workspace
    ws.call("PUT", f"{RULES}/whatsapp", json={"inactive_minutes": 60})
    ws.call("PUT", f"{RULES}/instagram", json={"inactive_minutes": 60, "is_active": False})
    other_workspace.call("PUT", f"{RULES}/whatsapp", json={"inactive_minutes": 60})
    idle_open = add_conversation(ws, last_activity_at=ago(hours=2))
    idle_pending = add_conversation(ws, status="pending", last_activity_at=ago(hours=3))
    fresh = add_conversation(ws, last_activity_at=ago(minutes=30))
    snoozed = add_conversation(
        ws, status="snoozed", snoozed_until=ago(hours=-1), last_activity_at=ago(days=2)
    )
    other_channel = add_conversation(ws, channel="email", last_activity_at=ago(days=2))
    inactive_rule = add_conversation(ws, channel="instagram", last_activity_at=ago(days=2))
    theirs = add_conversation(other_workspace, last_activity_at=ago(days=2))

    resp = ws.call("POST", "/api/conversations/expire")
    assert resp.status_code == 200, resp.text
    assert resp.json == {
        "rules": 1,
        "expired": 2,
        "closing_messages_sent": 0,
        "closing_messages_failed": 0,
    }
    for expired in (idle_open, idle_pending):
        conversation = row(expired)
        assert conversation.status == "resolved"
        assert conversation.resolution_reason == "expired" and conversation.resolved_at
    assert row(fresh).status == "open" and row(snoozed).status == "snoozed"
    assert row(other_channel).status == "open" and row(inactive_rule).status == "open"
    assert row(theirs).status == "open"  # the endpoint expires the caller's tenant only

    expired_events = events(ws, "conversation.expired")
    assert sorted(e.data["id"] for e in expired_events) == sorted([idle_open, idle_pending])
    assert {e.data["resolution_reason"] for e in expired_events} == {"expired"}
    changes = {e.data["id"]: e for e in events(ws, "conversation.status_changed")}
    assert changes[idle_pending].data["previous_status"] == "pending"
    assert changes[idle_open].actor_type == "user"
    # Nothing left to expire: a second run changes nothing.
    assert ws.call("POST", "/api/conversations/expire").json["expired"] == 0


def test_the_scheduler_job_expires_every_active_tenant_and_sends_closing_messages(
    workspace, other_workspace
):
    ws, suspended = workspace, other_workspace
    ws.call("PUT", f"{RULES}/email", json={"inactive_minutes": 10, "closing_message": "Closed."})
    ws.call("PUT", f"{RULES}/whatsapp", json={"inactive_minutes": 10, "closing_message": "Bye"})
    suspended.call("PUT", f"{RULES}/email", json={"inactive_minutes": 10})
    email = add_conversation(ws, channel="email", last_activity_at=ago(hours=1))
    # No inbound message ever: the WhatsApp window is closed, the closing message fails.
    whatsapp = add_conversation(ws, last_activity_at=ago(hours=1))
    asleep = add_conversation(suspended, channel="email", last_activity_at=ago(hours=1))
    with session_scope() as session:
        session.execute(
            update(Tenant)
            .where(Tenant.id == uuid.UUID(suspended.tenant["id"]))
            .values(status="suspended")
        )

    with session_scope() as session:
        counts = _job("expire_conversations")(session)
    assert counts["expired"] >= 2 and counts["closing_messages_sent"] >= 1
    assert counts["closing_messages_failed"] >= 1
    assert row(email).status == row(whatsapp).status == "resolved"
    assert row(asleep).status == "open"
    with session_scope() as session:
        sent = session.scalars(
            select(Message).where(
                Message.conversation_id.in_([uuid.UUID(email), uuid.UUID(whatsapp)])
            )
        ).all()
    assert [(str(m.conversation_id), m.body, m.sender_type) for m in sent] == [
        (email, "Closed.", "system")
    ]
    expired = events(ws, "conversation.expired")
    assert {e.actor_type for e in expired} == {"system"} and len(expired) == 2


@pytest.mark.parametrize(("method", "body"), [("DELETE", None), ("PATCH", {"status": "disabled"})])
def test_a_closing_message_on_a_deleted_or_disabled_account_is_not_sent(workspace, method, body):
    """As a reply and a CSAT survey are refused on a deleted account's conversation (the
    default account is another number, page or address than the one the customer wrote
    to), and a disabled account sends nothing: the closing message was stored, counted as
    sent, and only failed at the channel."""
    api = ApiChannel(workspace, None)
    conversation = api.inbound("Where is my parcel?")["conversation_id"]
    changed = workspace.call(method, f"/api/integration-accounts/{api.id}", json=body)
    assert changed.status_code in (200, 204), changed.text
    workspace.call("PUT", f"{RULES}/api", json={"inactive_minutes": 10, "closing_message": "Bye"})
    set_columns(conversation, last_activity_at=ago(hours=1))

    resp = workspace.call("POST", "/api/conversations/expire")
    assert resp.status_code == 200, resp.text
    assert resp.json["expired"] == 1
    assert (resp.json["closing_messages_sent"], resp.json["closing_messages_failed"]) == (0, 1)
    assert row(conversation).status == "resolved"
    with session_scope() as session:
        sent = session.scalars(
            select(Message.direction).where(Message.conversation_id == uuid.UUID(conversation))
        ).all()
    assert sent == ["inbound"]


def test_reopen_snoozed_job(workspace):
    ws = workspace
    due = add_conversation(ws)
    later = add_conversation(ws)
    for conversation in (due, later):
        resp = ws.call(
            "PATCH",
            f"/api/conversations/{conversation}/status",
            json={"status": "snoozed", "snoozed_until": ago(hours=-1).isoformat()},
        )
        assert resp.status_code == 200, resp.text
    set_columns(due, snoozed_until=ago(minutes=1))
    with session_scope() as session:
        assert _job("reopen_snoozed")(session) >= 1
    assert row(due).status == "open" and row(due).snoozed_until is None
    assert row(later).status == "snoozed"
    [reopened] = [
        e
        for e in events(ws, "conversation.status_changed")
        if e.data["previous_status"] == "snoozed"
    ]
    assert reopened.data["id"] == due and reopened.actor_type == "system"
    assert [
        j.name for j in scheduler_jobs.JOBS if j.name in ("reopen_snoozed", "expire_conversations")
    ] == [
        "reopen_snoozed",
        "expire_conversations",
    ]


def _snoozed_two_days(ws, conversation) -> None:
    """Snoozed ("remind me in two days"); the two days pass with no message."""
    resp = ws.call(
        "PATCH",
        f"/api/conversations/{conversation}/status",
        json={"status": "snoozed", "snoozed_until": ago(hours=-1).isoformat()},
    )
    assert resp.status_code == 200, resp.text
    set_columns(conversation, snoozed_until=ago(minutes=1), last_activity_at=ago(days=2))


def _expired_now(conversation) -> bool:
    with session_scope() as session:
        _job("expire_conversations")(session)
    return row(conversation).resolution_reason == "expired"


def test_a_reopened_conversation_is_active_from_its_reopening(workspace):
    """Expiry counts idleness from the last message; a conversation woken from a snooze
    longer than the channel's rule, or reopened by an agent, was closed again at once."""
    ws = workspace
    ws.call("PUT", f"{RULES}/email", json={"inactive_minutes": 1440})
    woken, opened, resolved = (add_conversation(ws, channel="email") for _ in range(3))
    _snoozed_two_days(ws, woken)
    _snoozed_two_days(ws, opened)
    set_columns(resolved, status="resolved", resolved_at=ago(days=3), last_activity_at=ago(days=3))

    with session_scope() as session:
        assert _job("reopen_snoozed")(session) >= 1  # the scheduler wakes one
    for by_hand in (opened, resolved):  # an agent reopens the others
        resp = ws.call("PATCH", f"/api/conversations/{by_hand}/status", json={"status": "open"})
        assert resp.status_code == 200, resp.text

    for conversation in (woken, opened, resolved):
        assert row(conversation).status == "open"
        assert not _expired_now(conversation)
    # Still expired once idle for the rule's time after the reopening.
    set_columns(woken, last_activity_at=ago(days=2))
    assert _expired_now(woken)
