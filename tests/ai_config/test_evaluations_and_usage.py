"""Evaluations of AI replies, and the usage reports (zero-filled days, totals, range checks)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.ai_config.conftest import AGENTS, add_usage, ai_message, create_agent, fields
from tests.inbox_conversations.conftest import add_conversation


def test_a_reviewer_rates_a_reply_changes_the_rating_and_removes_it(workspace):
    agent = create_agent(workspace)
    message = ai_message(workspace, agent["id"])
    _sup, supervisor = workspace.create_agent("supervisor")
    evaluations = f"{AGENTS}/{agent['id']}/evaluations"
    made = workspace.call(
        "POST",
        evaluations,
        json={"message_id": message, "score": 2, "correction": "We open at 8."},
        token=supervisor,
    )
    assert made.status_code == 201, made.text
    assert made.json["score"] == 2 and made.json["evaluator_id"] == _sup["id"]
    again = workspace.call(
        "POST", evaluations, json={"message_id": message, "score": 5}, token=supervisor
    )
    assert again.status_code == 409
    # Another reviewer may rate the same reply.
    assert (
        workspace.call("POST", evaluations, json={"message_id": message, "score": 4}).status_code
        == 201
    )
    listed = workspace.call("GET", evaluations, params={"score": 2}).json["items"]
    assert [e["id"] for e in listed] == [made.json["id"]]
    path = f"{evaluations}/{made.json['id']}"
    put = workspace.call("PUT", path, json={"score": 3}, token=supervisor)
    assert put.status_code == 200 and put.json["score"] == 3 and put.json["correction"] is None
    assert workspace.call("DELETE", path, token=supervisor).status_code == 204
    assert workspace.call("DELETE", path).status_code == 404


def test_only_replies_of_this_agent_can_be_rated(workspace, other_workspace):
    agent, other = create_agent(workspace), create_agent(workspace)
    evaluations = f"{AGENTS}/{agent['id']}/evaluations"
    theirs = create_agent(other_workspace)
    conversation = add_conversation(workspace)
    inbound = workspace.call(
        "POST", f"/api/conversations/{conversation}/notes", json={"body": "not a message"}
    )
    assert inbound.status_code == 201
    for message in (
        ai_message(workspace, other["id"]),  # another agent's reply
        ai_message(other_workspace, theirs["id"]),  # another tenant's
        inbound.json["id"],  # not a message at all
    ):
        resp = workspace.call("POST", evaluations, json={"message_id": message, "score": 3})
        assert resp.status_code == 422 and fields(resp) == ["message_id"], resp.text
    for body, field in (({"message_id": ai_message(workspace, agent["id"]), "score": 6}, "score"),):
        resp = workspace.call("POST", evaluations, json=body)
        assert resp.status_code == 422 and fields(resp) == [field]


def test_evaluations_need_the_review_permission_and_the_tenant(workspace, other_workspace):
    agent = create_agent(workspace)
    message = ai_message(workspace, agent["id"])
    _agt, plain = workspace.create_agent("agent")
    evaluations = f"{AGENTS}/{agent['id']}/evaluations"
    assert workspace.call("GET", evaluations, token=plain).status_code == 403
    body = {"message_id": message, "score": 3}
    assert workspace.call("POST", evaluations, json=body, token=plain).status_code == 403
    made = workspace.call("POST", evaluations, json=body).json
    path = f"{evaluations}/{made['id']}"
    assert other_workspace.call("GET", evaluations).status_code == 404
    assert other_workspace.call("PUT", path, json={"score": 1}).status_code == 404
    assert other_workspace.call("DELETE", path).status_code == 404


def test_an_agents_usage_is_zero_filled_with_totals(workspace):
    agent = create_agent(workspace)
    day = dt.date(2026, 3, 1)
    add_usage(
        workspace,
        agent["id"],
        day,
        replies=3,
        prompt_tokens=300,
        completion_tokens=90,
        cost="0.0123",
    )
    add_usage(
        workspace, agent["id"], day + dt.timedelta(days=2), replies=1, handoffs=1, cost="0.001"
    )
    resp = workspace.call(
        "GET", f"{AGENTS}/{agent['id']}/usage", params={"from": "2026-02-28", "to": "2026-03-03"}
    )
    assert resp.status_code == 200, resp.text
    report = resp.json
    assert [d["day"] for d in report["days"]] == [
        "2026-02-28",
        "2026-03-01",
        "2026-03-02",
        "2026-03-03",
    ]
    assert [d["replies"] for d in report["days"]] == [0, 3, 0, 1]
    assert report["totals"]["replies"] == 4 and report["totals"]["handoffs"] == 1
    assert report["totals"]["prompt_tokens"] == 300
    assert float(report["totals"]["cost"]) == pytest.approx(0.0133)
    default = workspace.call("GET", f"{AGENTS}/{agent['id']}/usage").json
    assert (
        len(default["days"]) == 30
        and default["to_date"] == dt.datetime.now(dt.UTC).date().isoformat()
    )


def test_the_summary_sums_every_agent(workspace, other_workspace):
    busy, idle = create_agent(workspace, name="Busy"), create_agent(workspace, name="Idle")
    day = dt.date(2026, 3, 1)
    add_usage(workspace, busy["id"], day, replies=2, cost="0.5")
    add_usage(
        workspace, busy["id"], day + dt.timedelta(days=1), replies=5, test_replies=1, cost="0.25"
    )
    add_usage(workspace, busy["id"], day + dt.timedelta(days=40), replies=100)
    theirs = create_agent(other_workspace)
    add_usage(other_workspace, theirs["id"], day, replies=1000)
    resp = workspace.call(
        "GET", f"{AGENTS}/usage", params={"from": "2026-03-01", "to": "2026-03-31"}
    )
    assert resp.status_code == 200, resp.text
    summary = resp.json
    assert summary["totals"]["replies"] == 7 and summary["totals"]["test_replies"] == 1
    assert float(summary["totals"]["cost"]) == 0.75
    by_name = {a["name"]: a for a in summary["agents"]}
    assert set(by_name) == {"Busy", "Idle"}
    assert by_name["Busy"]["replies"] == 7 and by_name["Idle"]["replies"] == 0
    assert by_name["Idle"]["ai_agent_id"] == idle["id"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"from": "2026-03-05", "to": "2026-03-01"}, 422),
        ({"from": "2020-01-01", "to": "2026-03-01"}, 422),
        # Not a YYYY-MM-DD date: the same 422 naming the field as every date parameter.
        ({"from": "yesterday"}, 422),
        ({"to": "2026-02-30"}, 422),
        ({"from": "1704067200"}, 422),
        ({"to": "2026-03-01T00:00:00Z"}, 422),
        # The default range before the first day, or after the last: no OverflowError.
        ({"to": "0001-01-01"}, 422),
        ({"from": "9999-12-31"}, 422),
    ],
)
def test_bad_usage_ranges_are_refused(workspace, params, status):
    agent = create_agent(workspace)
    for path in (f"{AGENTS}/{agent['id']}/usage", f"{AGENTS}/usage"):
        resp = workspace.call("GET", path, params=params)
        assert resp.status_code == status, resp.text


def test_usage_is_for_reviewers_of_this_tenant(workspace, other_workspace):
    agent = create_agent(workspace)
    _agt, plain = workspace.create_agent("agent")
    _sup, supervisor = workspace.create_agent("supervisor")
    assert workspace.call("GET", f"{AGENTS}/usage", token=plain).status_code == 403
    assert workspace.call("GET", f"{AGENTS}/usage", token=supervisor).status_code == 200
    assert workspace.call("GET", f"{AGENTS}/{agent['id']}/usage", token=plain).status_code == 403
    assert other_workspace.call("GET", f"{AGENTS}/{agent['id']}/usage").status_code == 404
