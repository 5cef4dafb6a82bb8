"""A rule switched off (or edited) while an evaluation that decided it is still in flight.

The evaluation decides every rule first, then applies the matched rules' actions. A
rule switched off between the two acted once more, after its switch-off had answered
200 and committed. Now a change of a rule waits for the tenant's evaluations in flight
(and a new one waits for it): the rule acted before its switch-off answered, or not.

The evaluation is paused on its first rule's action (a ``mute``, upserting an expired
mute row held here) while the other rule is switched off.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid

from sqlalchemy import select

from shared.automation import rules
from shared.db import get_sessionmaker, session_scope
from shared.events import Actor, emit
from shared.models import AutomationRun, ConversationMute
from tests.automation.conftest import (
    add_conversation,
    admin_ctx,
    conversation,
    create_rule,
    tid,
    wait_settled,
)
from tests.lock_races import until_blocked
from tests.workspaces import Workspace

PAUSE = {"type": "mute", "params": {"minutes": 1}}


def _switch_off_during_evaluation(ws: Workspace, conversation_id: str, rule_id: str) -> bool:
    """Emit a customer's message, pause its evaluation on the first rule's action, switch
    ``rule_id`` off meanwhile; whether the switch-off answered before the pause ended."""
    with session_scope() as session:
        expired = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        session.add(
            ConversationMute(
                conversation_id=uuid.UUID(conversation_id), tenant_id=tid(ws), muted_until=expired
            )
        )
    answered: list[str] = []

    def switch_off() -> None:
        with session_scope() as session:
            rule = rules.toggle_rule(session, admin_ctx(ws), uuid.UUID(rule_id))
            assert rule.is_active is False
        answered.append("off")

    holding = get_sessionmaker()()
    try:
        holding.execute(
            select(ConversationMute.conversation_id)
            .where(ConversationMute.conversation_id == uuid.UUID(conversation_id))
            .with_for_update()
        )
        with session_scope() as session:
            data = {"conversation_id": conversation_id, "body": "refund", "direction": "inbound"}
            emit(session, "message.created", data, tenant_id=tid(ws), actor=Actor("contact"))
        until_blocked(1)
        toggling = threading.Thread(target=switch_off)
        toggling.start()
        until_blocked(2, toggling)
        toggling.join(timeout=0.5)  # answered, or waiting for the evaluation
        answered_first = bool(answered)
        holding.commit()
    finally:
        holding.close()
    toggling.join(timeout=30)
    assert answered == ["off"]
    return answered_first


def test_a_rule_switched_off_while_an_evaluation_is_in_flight_does_not_act_after_it(ws):
    create_rule(ws, name="Pause", priority=1, actions=[PAUSE])
    late = create_rule(
        ws, name="Tag", priority=2, actions=[{"type": "add_tags", "params": {"tags": ["late"]}}]
    )
    conversation_id = add_conversation(ws)

    answered_first = _switch_off_during_evaluation(ws, conversation_id, late["id"])

    [row] = wait_settled(ws)
    assert row.status == "done", row.error
    tagged = "late" in (conversation(conversation_id).tags or [])
    with session_scope() as session:
        run = session.scalars(
            select(AutomationRun).where(AutomationRun.rule_id == uuid.UUID(late["id"]))
        ).one_or_none()
    # Either the switch-off waited for the evaluation (the rule acted before it), or it
    # answered first and the rule did not act after it.
    if answered_first:
        assert not tagged
        assert run is None or not run.matched
    else:
        assert tagged
        assert run is not None and run.matched
