"""A rule whose creator (the agent who saved it) was deleted goes on working.

Agents are soft-deleted (``users.deleted_at``): the rule keeps its ``created_by``, and
what only a person can write (a note) is still signed with that id. Every action must
run as before, the run be recorded ``matched`` and the queue row ``done``, with nothing
dead-lettered, whether the deletion committed before the rule ran or while it ran.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import DeadLetter, Message
from tests.automation.conftest import (
    RULES,
    add_conversation,
    conversation,
    flushed_deletion,
    queue_rows,
    race_locked_deletion,
    rule_body,
    runs,
    send_message,
    settled,
    tid,
    wait_settled,
    waiting_on_a_lock,
)
from tests.lock_races import race
from tests.waiting import wait_until
from tests.workspaces import Workspace


def _creator_and_rule(ws: Workspace) -> tuple[dict, dict]:
    """An admin agent who saves a rule acting in every way that names a person: a note,
    a reply, their own personal quick reply."""
    creator, token = ws.create_agent("admin")
    reply = ws.call(
        "POST",
        "/api/quick-replies",
        token=token,
        json={
            "shortcut": "mine",
            "title": "Mine",
            "content": "Hi {{contact.name}}",
            "scope": "personal",
        },
    )
    assert reply.status_code == 201, reply.text
    actions = [
        {"type": "add_note", "params": {"body": "Refund asked by {{contact.name}}"}},
        {"type": "send_message", "params": {"body": "On it"}},
        {"type": "send_quick_reply", "params": {"quick_reply_id": reply.json["id"]}},
        {"type": "add_tags", "params": {"tags": ["refund"]}},
    ]
    rule = ws.call("POST", RULES, token=token, json=rule_body(actions=actions))
    assert rule.status_code == 201, rule.text
    assert rule.json["created_by"] == creator["id"]
    return creator, rule.json


def _assert_ran(ws: Workspace, conv_id: str, rule: dict, creator: dict) -> None:
    # The message, then the rule's two replies (its own: skipped as a loop).
    rows = queue_rows(ws)
    assert [(r.status, r.error, r.attempts) for r in rows] == [("done", None, 1)] * 3
    [run] = [r for r in runs(ws) if r.status != "skipped"]
    assert (run.status, run.error) == ("matched", None)
    assert [a["result"] for a in run.action_results] == ["applied"] * 4
    notes = ws.call("GET", f"/api/conversations/{conv_id}/notes")
    assert notes.status_code == 200, notes.text
    [note] = notes.json["items"]
    assert note["body"] == "Refund asked by Carla Customer"
    # notes.author_id is a NOT NULL reference to users: the (soft-deleted) creator signs it.
    assert note["author"] == {"id": creator["id"], "full_name": creator["full_name"]}
    with session_scope() as session:
        sent = session.execute(
            select(Message.body, Message.sender_id).where(
                Message.conversation_id == uuid.UUID(conv_id),
                Message.sender_type == "automation",
            )
        )
        assert sorted(tuple(m) for m in sent) == [
            ("Hi Carla Customer", uuid.UUID(rule["id"])),
            ("On it", uuid.UUID(rule["id"])),
        ]
        dead = session.scalar(
            select(func.count()).select_from(DeadLetter).where(DeadLetter.tenant_id == tid(ws))
        )
    assert dead == 0


def test_a_rule_whose_creator_was_deleted_still_runs_every_action(ws):
    creator, rule = _creator_and_rule(ws)
    assert ws.call("DELETE", f"/api/agents/{creator['id']}").status_code == 204
    assert ws.call("GET", f"{RULES}/{rule['id']}").json["is_active"] is True

    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "I want a refund")
    row = wait_settled(ws, at_least_rows=3)[0]
    _assert_ran(ws, conv_id, rule, creator)

    # The dry-run of that event answers as the run did (authors test rules with it).
    dry = ws.call("POST", f"{RULES}/{rule['id']}/dry-run", json={"event_id": str(row.id)})
    assert dry.status_code == 200, dry.text
    assert dry.json["matched"] is True and dry.json["effective_state"]["reasons"] == []
    assert [a["would_run"] for a in dry.json["actions"]] == [True] * 4


def _rule_ran_or_waits(ws: Workspace) -> bool:
    """Whether the run triggered by the message is done (with the rule's two replies), or
    waits on a lock of the uncommitted deletion."""
    return waiting_on_a_lock() or (settled(ws) and len(queue_rows(ws)) >= 3)


def test_a_rule_running_while_its_creator_is_deleted_completes(ws):
    """The deletion commits while the run is under way: the run completes as after it."""
    creator, rule = _creator_and_rule(ws)
    conv_id = add_conversation(ws)
    deleting = flushed_deletion(ws, creator["id"])

    def trigger() -> bool:
        send_message(ws, conv_id, "I want a refund")
        return wait_until(lambda: _rule_ran_or_waits(ws), "the run ran or waits", timeout=10.0)

    assert race(deleting, trigger) is True
    wait_settled(ws, at_least_rows=3)
    assert ws.call("GET", f"/api/agents/{creator['id']}").status_code == 404
    _assert_ran(ws, conv_id, rule, creator)


def test_a_rule_acting_on_its_creators_conversation_while_the_creator_is_deleted(ws):
    """The deletion has locked the creator's row (its first step) when the run locks the
    conversation, assigned to the creator, and writes its note; the deletion then
    unassigns that conversation. Neither may deadlock the other: the run completes at its
    first attempt and the deletion succeeds."""
    creator, rule = _creator_and_rule(ws)
    conv_id = add_conversation(ws, assignee_id=uuid.UUID(creator["id"]), status="open")

    def trigger() -> bool:
        send_message(ws, conv_id, "I want a refund")
        return wait_until(lambda: _rule_ran_or_waits(ws), "the run ran or waits", timeout=10.0)

    race_locked_deletion(ws, creator["id"], trigger)
    wait_settled(ws, at_least_rows=3)
    assert ws.call("GET", f"/api/agents/{creator['id']}").status_code == 404
    assert conversation(conv_id).assignee_id is None
    _assert_ran(ws, conv_id, rule, creator)
