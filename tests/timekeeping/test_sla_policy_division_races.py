"""An SLA policy saved naming a division while that division is being deleted.

The deletion takes the division off the policies naming it (``forget_division``), then
deletes it. A policy saved meanwhile, its division read unlocked, kept the dead id: the
deletion had not seen it, and no foreign key covers ``division_ids``. The save now
share-locks the divisions it names: it waits for the deletion and answers 422, or the
deletion waits for it and takes the division off it.
"""

from __future__ import annotations

import uuid

from shared.context import Ctx
from shared.db import get_sessionmaker, session_scope
from shared.models import SlaPolicy
from shared.timekeeping import sla_policies
from tests.inbox_conversations.conftest import (
    add_division,
    delete_division_now,
    tid,
    while_deleting,
)
from tests.lock_races import race

POLICIES = "/api/sla-policies"


def _policies(ws) -> list[SlaPolicy]:
    with session_scope() as session:
        return list(session.query(SlaPolicy).filter(SlaPolicy.tenant_id == tid(ws)))


def test_a_policy_created_naming_a_division_being_deleted_is_refused(workspace):
    ws = workspace
    doomed = add_division(ws, "Doomed")
    body = {"name": "Doomed SLA", "first_response_minutes": 15, "division_ids": [doomed]}
    resp = while_deleting(ws, doomed, lambda: ws.call("POST", POLICIES, json=body))
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "division_ids"
    assert _policies(ws) == []


def test_a_policy_changed_to_name_a_division_being_deleted_is_refused(workspace):
    ws = workspace
    doomed = add_division(ws, "Doomed")
    support = add_division(ws, "Support")
    body = {"name": "Team SLA", "first_response_minutes": 15, "division_ids": [support]}
    made = ws.call("POST", POLICIES, json=body)
    assert made.status_code == 201, made.text
    path = f"{POLICIES}/{made.json['id']}"
    change = {"division_ids": [support, doomed]}
    resp = while_deleting(ws, doomed, lambda: ws.call("PATCH", path, json=change))
    assert resp.status_code == 422, resp.text
    [policy] = _policies(ws)
    assert policy.division_ids == [uuid.UUID(support)]


def test_a_division_deleted_while_a_policy_naming_it_is_created_is_taken_off_it(workspace):
    """The creation came first (uncommitted): the deletion waits for it, then forgets the
    division on it as on any policy naming it (the policy, left with none, switched off)."""
    ws = workspace
    doomed = add_division(ws, "Doomed")
    creating = get_sessionmaker()()
    values = {"name": "Doomed SLA", "first_response_minutes": 15}
    values["division_ids"] = [uuid.UUID(doomed)]
    sla_policies.create_policy(creating, Ctx.system(tid(ws)), values)
    creating.flush()

    assert race(creating, lambda: delete_division_now(ws, doomed)) == "deleted"
    [policy] = _policies(ws)
    assert (policy.division_ids, policy.is_active) == ([], False)
