"""Rollout: a stable hash of (rule, conversation), its share over 10,000 conversations, the API."""

from __future__ import annotations

import math
import uuid

from shared.automation import rollout
from tests.automation.conftest import (
    add_conversation,
    create_rule,
    runs,
    send_message,
    wait_settled,
)
from tests.automation_ops.conftest import RULES

#: Fixed ids, so the test is the same every run (uuid5 is itself a hash: ids look random).
RULE = uuid.uuid5(uuid.NAMESPACE_URL, "omnistream:rollout-rule")
CONVERSATIONS = [uuid.uuid5(RULE, str(n)) for n in range(10_000)]


def test_the_share_in_the_rollout_matches_the_percentage_within_statistical_bounds():
    n = len(CONVERSATIONS)
    for percentage in (1, 10, 25, 50, 90):
        inside = sum(rollout.includes(percentage, RULE, c) for c in CONVERSATIONS)
        p = percentage / 100
        sigma = math.sqrt(n * p * (1 - p))
        # 4.5 sigma: a fair hash fails this about once in 150,000 checks
        assert abs(inside - n * p) <= 4.5 * sigma, (percentage, inside)
    # and the buckets are uniform: chi-square over the 100 buckets, 99 degrees of freedom
    counts = [0] * 100
    for c in CONVERSATIONS:
        counts[rollout.bucket(RULE, c)] += 1
    chi2 = sum((k - n / 100) ** 2 / (n / 100) for k in counts)
    assert chi2 < 160  # p < 0.0001 for 99 degrees of freedom


def test_a_conversation_stays_in_as_the_percentage_grows_and_rules_pick_differently():
    previous: set[uuid.UUID] = set()
    for percentage in range(0, 101, 5):
        inside = {c for c in CONVERSATIONS if rollout.includes(percentage, RULE, c)}
        assert previous <= inside
        previous = inside
    assert previous == set(CONVERSATIONS)
    other = uuid.uuid5(uuid.NAMESPACE_URL, "omnistream:another-rule")
    ours = {c for c in CONVERSATIONS if rollout.includes(50, RULE, c)}
    theirs = {c for c in CONVERSATIONS if rollout.includes(50, other, c)}
    assert 0.4 < len(ours & theirs) / len(ours) < 0.6  # independent choices
    assert rollout.bucket(RULE, CONVERSATIONS[0]) == rollout.bucket(RULE, CONVERSATIONS[0])


def test_the_rollout_endpoint_validates_and_the_effective_state_names_the_bucket(workspace):
    rule = create_rule(workspace)
    for bad in (-1, 101, 50.5, "half", None):
        resp = workspace.call(
            "PATCH", f"{RULES}/{rule['id']}/rollout", json={"rollout_percentage": bad}
        )
        assert resp.status_code == 422, bad
        assert resp.json["error"]["details"][0]["field"] == "rollout_percentage"
    resp = workspace.call("PATCH", f"{RULES}/{rule['id']}/rollout", json={"rollout_percentage": 30})
    assert resp.status_code == 200 and resp.json["rollout_percentage"] == 30

    conversation_id = add_conversation(workspace)
    bucket = rollout.bucket(uuid.UUID(rule["id"]), uuid.UUID(conversation_id))
    state = workspace.call(
        "GET", f"{RULES}/{rule['id']}/effective-state?conversation_id={conversation_id}"
    ).json
    check = next(c for c in state["checks"] if c["check"] == "rollout")
    assert check["bucket"] == bucket and check["ok"] is (bucket < 30)
    unknown = workspace.call(
        "GET", f"{RULES}/{rule['id']}/effective-state?conversation_id={uuid.uuid4()}"
    )
    assert unknown.status_code == 404

    zero = workspace.call("PATCH", f"{RULES}/{rule['id']}/rollout", json={"rollout_percentage": 0})
    assert zero.status_code == 200
    state = workspace.call("GET", f"{RULES}/{rule['id']}/effective-state").json
    assert state["runs"] is False and state["reasons"] == ["rolled out to 0 % of conversations"]


def test_the_worker_runs_the_rule_only_on_conversations_inside_its_rollout(ws):
    rule = create_rule(ws)
    ws.call("PATCH", f"{RULES}/{rule['id']}/rollout", json={"rollout_percentage": 50})
    conversations = [add_conversation(ws) for _ in range(12)]
    for conversation_id in conversations:
        send_message(ws, conversation_id, "refund please")
    wait_settled(ws, at_least_rows=12)
    rule_id = uuid.UUID(rule["id"])
    by_conversation = {}
    for run in runs(ws):
        by_conversation[run.facts["conversation.id"]] = run
    assert len(by_conversation) == 12
    for conversation_id, run in by_conversation.items():
        bucket = rollout.bucket(rule_id, uuid.UUID(conversation_id))
        if bucket < 50:
            assert run.status == "matched", (bucket, run.error)
        else:
            assert run.status == "skipped"
            assert run.error == f"outside its rollout: bucket {bucket} is not below 50 %"
