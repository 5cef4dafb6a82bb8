"""A run's condition trace: stored as one character per leaf, answered in full.

The worker stores each leaf's outcome (``condition_outcomes``) instead of the trace;
every read (list, one run, replay context) rebuilds the trace from the run's rule
snapshot and facts, and it is the trace a live evaluation (the dry-run) shows.
"""

from __future__ import annotations

import uuid

from sqlalchemy import update

from shared.db import session_scope
from shared.models import AutomationRun
from tests.automation.conftest import (
    RULES,
    add_conversation,
    create_rule,
    runs,
    send_message,
    wait_settled,
)

RUNS = "/api/automation/runs"
TWO_LEAVES = {
    "match": "all",
    "conditions": [
        {"attribute": "message.content", "operator": "contains", "value": "refund"},
        {"attribute": "contact.country", "operator": "equal_to", "value": "FR"},
    ],
}


def test_a_not_matched_run_keeps_outcomes_and_answers_its_whole_trace(ws):
    rule = create_rule(ws, conditions=TWO_LEAVES)
    conv_id = add_conversation(ws, country="DE")
    send_message(ws, conv_id, "a refund please")
    [row] = wait_settled(ws)
    [run] = runs(ws)
    assert run.status == "not_matched"
    assert run.condition_outcomes == "10" and run.own_condition_results == []

    [listed] = ws.call("GET", f"{RULES}/{rule['id']}/runs").json["items"]
    trace = listed["condition_results"]
    assert [(i["attribute"], i["seen"], i["matched"]) for i in trace] == [
        ("message.content", "a refund please", True),
        ("contact.country", "DE", False),
    ]
    assert [i["expected"] for i in trace] == ["refund", "FR"]
    assert ws.call("GET", f"{RUNS}/{run.id}").json["condition_results"] == trace
    replay = ws.call("GET", f"{RUNS}/{run.id}/replay-context").json
    assert replay["condition_results"] == trace and replay["same_decision"] is True
    # The live evaluation of the same event shows the same trace.
    dry = ws.call("POST", f"{RULES}/{rule['id']}/dry-run", json={"event_id": str(row.id)})
    assert dry.status_code == 200, dry.text
    assert dry.json["conditions"] == trace


def test_outcomes_that_disagree_with_a_replay_show_as_stored_and_not_the_same_decision(ws):
    rule = create_rule(ws, conditions=TWO_LEAVES)
    conv_id = add_conversation(ws, country="FR")
    send_message(ws, conv_id, "refund")
    wait_settled(ws)
    [run] = runs(ws)
    assert run.status == "matched" and run.condition_outcomes == "11"
    # As if older code had decided the second leaf otherwise.
    with session_scope() as session:
        session.execute(
            update(AutomationRun).where(AutomationRun.id == run.id).values(condition_outcomes="10")
        )
    one = ws.call("GET", f"{RUNS}/{run.id}").json
    assert [i["matched"] for i in one["condition_results"]] == [True, False]
    replay = ws.call("GET", f"{RUNS}/{run.id}/replay-context").json
    assert replay["same_decision"] is False
    assert [i["matched"] for i in replay["replayed"]["condition_results"]] == [True, True]
    assert rule["id"] == str(run.rule_id)


def test_a_run_that_holds_its_own_trace_answers_it(ws):
    create_rule(ws)
    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "refund")
    wait_settled(ws)
    [run] = runs(ws)
    own = [{"path": "conditions.conditions[0]", "matched": True, "note": "written before 0027"}]
    with session_scope() as session:
        session.execute(
            update(AutomationRun)
            .where(AutomationRun.id == run.id)
            .values(condition_outcomes=None, own_condition_results=own)
        )
    assert ws.call("GET", f"{RUNS}/{run.id}").json["condition_results"] == own
    assert ws.call("GET", f"{RUNS}/{uuid.uuid4()}").status_code == 404
