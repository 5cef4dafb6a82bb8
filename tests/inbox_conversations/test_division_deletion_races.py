"""A division deleted while a transfer or a bulk action moves conversations into it.

The move read the division as existing; the deletion committed before the move's
write: the move must answer 422 (no such division), never a foreign key's 500.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from shared.context import Ctx
from shared.db import get_sessionmaker, session_scope
from shared.inbox import conversations, divisions, transfers
from shared.models import Conversation
from tests.inbox_conversations.conftest import (
    add_conversation,
    add_division,
    delete_division_now,
    row,
    tid,
)
from tests.lock_races import race


def _while_deleting(ws, division: str, call) -> int:
    """Run ``call()`` (an HTTP request) while the division's deletion is in flight; commit
    the deletion once the request waits on it (or has answered); the request's status."""
    deleting = get_sessionmaker()()
    divisions.delete_division(deleting, Ctx.system(tid(ws)), uuid.UUID(division))
    deleting.flush()
    return race(deleting, lambda: call().status_code)


@pytest.mark.parametrize("already_in_it", [False, True], ids=["elsewhere", "already_in_it"])
@pytest.mark.parametrize("move", ["transfer", "bulk set_division"])
def test_a_move_racing_the_divisions_deletion_is_refused(workspace, move, already_in_it):
    """Also for a conversation already in the division: the deletion released it first,
    so the move names a division the conversation is no longer in, and finds it gone."""
    ws = workspace
    doomed = add_division(ws, "Doomed")
    conversation = add_conversation(ws, division_id=uuid.UUID(doomed) if already_in_it else None)
    path, body = {
        "transfer": (f"/api/conversations/{conversation}/transfer", {"to_division_id": doomed}),
        "bulk set_division": (
            "/api/conversations/bulk",
            {"ids": [conversation], "action": "set_division", "division_id": doomed},
        ),
    }[move]
    status = _while_deleting(ws, doomed, lambda: ws.call("POST", path, json=body))
    assert status == 422
    assert row(conversation).division_id is None


def _change_while_deleting(ws, division: str, conversation: str, change) -> list:
    """Lock the conversation in a session, let the division's deletion wait for it, then
    make ``change(session, ctx, conversation_id)`` there and commit; what failed on
    either side."""
    ctx = Ctx.system(tid(ws))
    changing = get_sessionmaker()()
    failures: list = []

    def delete():
        try:
            with session_scope() as session:
                divisions.delete_division(session, ctx, uuid.UUID(division))
        except Exception as exc:  # reported by the test
            failures.append(exc)

    def make_the_change():
        try:
            change(changing, ctx, uuid.UUID(conversation))
            changing.commit()
        except Exception as exc:  # reported by the test
            failures.append(exc)
            changing.rollback()

    changing.execute(
        text("SELECT id FROM conversations WHERE id = :id FOR UPDATE"), {"id": conversation}
    )
    race(changing, delete, then=make_the_change)
    return failures


def test_changes_to_a_conversation_of_a_division_being_deleted_do_not_deadlock(workspace):
    """The change holds its conversation; the deletion holds the division and waits for
    the conversation (to release it). The change wrote the row twice (its fields, then
    its timestamp), and PostgreSQL re-checks every foreign key of a row written twice in
    one transaction: the division's check waited for the deletion, a deadlock. A transfer
    naming the conversation's own division share-locked that division: a deadlock too."""
    ws = workspace
    agent, _ = ws.create_agent()
    changes = {
        "tags": lambda s, ctx, c: conversations.update_tags(s, ctx, c, add=["vip"]),
        "transfer": lambda s, ctx, c: transfers.transfer(
            s, ctx, c, to_agent_id=uuid.UUID(agent["id"])
        ),
        "transfer within its division": lambda s, ctx, c: transfers.transfer(
            s,
            ctx,
            c,
            to_agent_id=uuid.UUID(agent["id"]),
            to_division_id=s.get(Conversation, c).division_id,
        ),
    }
    for name, change in changes.items():
        doomed = add_division(ws, f"Doomed {name}")
        conversation = add_conversation(ws, division_id=uuid.UUID(doomed))
        failures = _change_while_deleting(ws, doomed, conversation, change)
        assert failures == [], name
        assert row(conversation).division_id is None, name


def test_a_conversation_moved_in_without_a_share_lock_ends_without_the_deleted_division(
    workspace,
):
    """A write that only checks the foreign key (an AI handoff's move names its rule's
    division unlocked) moved a conversation into the division, uncommitted, when the
    deletion starts: the deletion's lock lets the key check be, its release does not see
    the conversation yet, and its DELETE waits for the move; the foreign key's ON DELETE
    SET NULL leaves the conversation without the division. Both commit."""
    ws = workspace
    doomed = add_division(ws, "Doomed")
    conversation = add_conversation(ws)
    moving = get_sessionmaker()()
    moving.execute(
        text("UPDATE conversations SET division_id = :division WHERE id = :id"),
        {"division": doomed, "id": conversation},
    )

    assert race(moving, lambda: delete_division_now(ws, doomed)) == "deleted"
    assert row(conversation).division_id is None
