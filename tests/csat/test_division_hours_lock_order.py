"""A division's working-hours change against a resolve: no deadlock.

The change locks the division, then re-times its conversations' SLA clocks; the resolve
locks the conversation's clock, then inserts its survey (FOR KEY SHARE on the division
the survey names).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from shared.context import Ctx
from shared.db import get_sessionmaker
from shared.inbox import conversations
from shared.models import ConversationSla, CsatSurvey
from tests.csat.conftest import conversation, enable
from tests.inbox_conversations.conftest import add_division
from tests.lock_races import race

HOURS = {"days": [{"weekday": 2, "intervals": [{"start": "10:00", "end": "11:00"}]}]}


def test_a_division_hours_change_does_not_deadlock_with_a_resolve(ws):
    enable(ws, ["api"])
    body = {"name": "Office", "first_response_minutes": 30, "business_hours_only": True}
    assert ws.call("POST", "/api/sla-policies", json=body).status_code == 201
    desk = add_division(ws, "Desk")
    conversation_id = conversation(ws)
    moved = ws.call(
        "POST", f"/api/conversations/{conversation_id}/transfer", json={"to_division_id": desk}
    )
    assert moved.status_code in (200, 201), moved.text
    holder = get_sessionmaker()()
    # The resolve's first half: its clock is locked (sla.status_changed).
    clock = holder.scalar(
        select(ConversationSla)
        .where(ConversationSla.conversation_id == uuid.UUID(conversation_id))
        .with_for_update()
    )
    assert clock is not None
    failures: list[str] = []

    def resolve():
        # ...then the survey is inserted, naming the conversation's division.
        try:
            ctx = Ctx.system(uuid.UUID(ws.tenant["id"]))
            conversations.set_status(holder, ctx, uuid.UUID(conversation_id), "resolved")
        except DBAPIError as exc:
            failures.append(str(exc.orig))
            holder.rollback()

    resp = race(
        holder,
        lambda: ws.call("PUT", f"/api/divisions/{desk}/working-hours", json=HOURS),
        then=resolve,
    )

    assert failures == []
    assert resp is not None and resp.status_code == 200, resp and resp.text
    with get_sessionmaker()() as session:
        surveys = session.scalars(
            select(CsatSurvey.division_id).where(
                CsatSurvey.conversation_id == uuid.UUID(conversation_id)
            )
        ).all()
    assert surveys == [uuid.UUID(desk)]
