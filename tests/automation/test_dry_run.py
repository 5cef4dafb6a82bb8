"""Dry-run: the decision and the actions a rule would take, and not one row changed."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import AutomationStatsPending, Base
from tests.automation.conftest import (
    RULES,
    add_conversation,
    create_rule,
    queue_rows,
    rule_body,
    send_message,
    settled,
    tid,
    wait_settled,
)
from tests.waiting import wait_until


def table_counts(ws) -> dict[str, int]:
    """Rows per table of this tenant (every tenant-owned table).

    NOTE: other tenants' rows are left out: the session's worker may still be finishing
    an earlier test's work (a webhook attempt, a retried send) while this one runs.
    """
    tenant_id = tid(ws)
    with session_scope() as session:
        return {
            table.name: session.scalar(
                select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
            )
            for table in Base.metadata.sorted_tables
            if "tenant_id" in table.c
        }


def stats_rolled_up(ws) -> None:
    """Wait until the workers counted the tenant's runs into the stats rollups."""

    def counted() -> bool:
        with session_scope() as session:
            return not session.scalar(
                select(func.count())
                .select_from(AutomationStatsPending)
                .where(AutomationStatsPending.tenant_id == tid(ws))
            )

    wait_until(counted, "the runs' stats rolled up")


def test_dry_run_explains_the_decision_and_changes_nothing(ws):
    rule = create_rule(
        ws,
        actions=[
            {"type": "add_tags", "params": {"tags": ["refund"]}},
            {"type": "send_message", "params": {"body": "Hi {{contact.name}}"}},
        ],
    )
    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "refund now")
    row = wait_settled(ws, at_least_rows=2)[0]  # the message, then the rule's reply
    stats_rolled_up(ws)  # the runs' stats are counted a second later, in the background
    before = table_counts(ws)

    by_event = ws.call("POST", f"{RULES}/{rule['id']}/dry-run", json={"event_id": str(row.id)})
    assert by_event.status_code == 200, by_event.text
    result = by_event.json
    assert result["matched"] is True and result["event_type"] == "message.created"
    [leaf] = result["conditions"]
    assert leaf["seen"] == "refund now" and leaf["matched"] is True
    assert result["actions"][1]["params"]["body"] == "Hi Carla Customer"
    assert all(a["would_run"] for a in result["actions"])
    state = result["effective_state"]
    assert (state["state"], state["is_active"], state["reasons"]) == ("active", True, [])
    assert [c["check"] for c in state["checks"] if c["ok"]] == [
        "active",
        "snooze",
        "control",
        "schedule",
        "rollout",
    ]

    unsaved = {
        "conditions": {
            "match": "all",
            "conditions": [{"attribute": "contact.country", "operator": "equal_to", "value": "FR"}],
        }
    }
    payload = {"conversation_id": conv_id, "body": "hello", "contact.country": "FR"}
    tried = ws.call(
        "POST", f"{RULES}/{rule['id']}/dry-run", json={"rule": unsaved, "payload": payload}
    )
    assert tried.status_code == 200, tried.text
    assert tried.json["matched"] is True and tried.json["conditions"][0]["seen"] == "FR"
    assert tried.json["facts"]["message.content"] == "hello"
    assert table_counts(ws) == before

    ws.call("POST", f"{RULES}/{rule['id']}/toggle")
    before = table_counts(ws)
    off = ws.call("POST", f"{RULES}/{rule['id']}/dry-run", json={"event_id": str(row.id)})
    assert off.json["effective_state"]["state"] == "inactive"
    assert off.json["matched"] is True and not any(a["would_run"] for a in off.json["actions"])
    assert wait_until(lambda: settled(ws), "nothing left to settle")
    assert table_counts(ws) == before
    assert len(queue_rows(ws)) == 2


def test_dry_run_refuses_bad_input_with_its_path(ws, other_workspace):
    rule = create_rule(ws)
    url = f"{RULES}/{rule['id']}/dry-run"
    bad_rule = {
        "rule": {
            "conditions": {
                "match": "all",
                "conditions": [{"attribute": "nope", "operator": "equal_to", "value": 1}],
            }
        }
    }
    resp = ws.call("POST", url, json=bad_rule)
    assert resp.status_code == 422
    assert resp.json["error"]["details"][0]["field"] == "conditions.conditions[0].attribute"
    resp = ws.call("POST", url, json={"payload": ["not", "an", "object"]})
    assert resp.status_code == 422 and resp.json["error"]["details"][0]["field"] == "payload"
    resp = ws.call("POST", url, json={"payload": {}, "event_type": "note.created"})
    assert resp.status_code == 422
    # Another tenant's event id is unknown here.
    other_rule = create_rule(other_workspace)
    conv = add_conversation(other_workspace)
    send_message(other_workspace, conv, "refund")
    wait_until(lambda: queue_rows(other_workspace), "their event")
    theirs = queue_rows(other_workspace)[0]
    resp = ws.call("POST", url, json={"event_id": str(theirs.id)})
    assert resp.status_code == 404
    assert other_rule["id"] != rule["id"]


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        ("message.created", {"body": "refund", "attachments": {"type": "image"}}),
        ("conversation.tags_updated", {"tags": 5, "added": [{"x": 1}]}),
        ("conversation.status_changed", {"custom_attributes": "vip"}),
    ],
)
def test_a_dry_run_payload_field_of_another_shape_is_a_422(ws, event_type, payload):
    """A test payload is the caller's to get wrong: a field no event carries in that shape
    is named (the facts once failed on it: a 500)."""
    if event_type.startswith("conversation."):
        payload = {"id": add_conversation(ws), **payload}
    rule = create_rule(ws, trigger_event_types=[event_type])
    resp = ws.call(
        "POST",
        f"{RULES}/{rule['id']}/dry-run",
        json={"payload": payload, "event_type": event_type},
    )
    assert resp.status_code == 422, resp.text
    [detail] = resp.json["error"]["details"]
    assert detail["field"].startswith("payload.") and detail["field"][8:] in payload


def test_dry_run_finds_the_event_by_either_id_and_follows_rule_edits(ws, other_workspace):
    rule = create_rule(ws)
    url = f"{RULES}/{rule['id']}/dry-run"
    conv_id = add_conversation(ws)
    send_message(ws, conv_id, "refund please")
    row = wait_settled(ws)[0]

    by_queue_row = ws.call("POST", url, json={"event_id": str(row.id)})
    by_outbox_event = ws.call("POST", url, json={"event_id": str(row.outbox_event_id)})
    assert by_queue_row.status_code == by_outbox_event.status_code == 200, by_outbox_event.text
    for result in (by_queue_row.json, by_outbox_event.json):
        assert result["matched"] is True and result["conditions"][0]["seen"] == "refund please"

    # A saved edit is what the next dry-run evaluates (no stale compiled rule).
    edited = {
        "conditions": {
            "match": "all",
            "conditions": [
                {"attribute": "message.content", "operator": "contains", "value": "invoice"}
            ],
        }
    }
    assert ws.call("PATCH", f"{RULES}/{rule['id']}", json=edited).status_code == 200
    after = ws.call("POST", url, json={"event_id": str(row.id)})
    assert after.status_code == 200 and after.json["matched"] is False
    assert after.json["rule"]["version"] == rule["version"] + 1

    unknown = ws.call("POST", url, json={"event_id": str(uuid.uuid4())})
    assert unknown.status_code == 404 and "Event" in unknown.json["error"]["message"]
    theirs = create_rule(other_workspace)
    resp = ws.call("POST", f"{RULES}/{theirs['id']}/dry-run", json={"event_id": str(row.id)})
    assert resp.status_code == 404 and "rule" in resp.json["error"]["message"]


def test_dry_run_refuses_half_an_emoji_with_its_path(ws):
    """A lone surrogate (``\\ud83d``, half of an emoji's UTF-16 pair) is valid JSON but not
    text: in a test payload it reached the answer, whose encoding failed (a 500). Refused
    as every JSON body is read (tests/api/test_lone_surrogates.py): 422 naming where it is,
    in the payload, an unsaved rule or a saved one."""
    rule = create_rule(ws)
    url = f"{RULES}/{rule['id']}/dry-run"
    json_body = {"Content-Type": "application/json"}
    cases = {
        '{"payload": {"body": "refund \\ud83d"}}': "payload.body",
        '{"payload": {"custom_attributes": {"\\udc00": 1}}}': "payload.custom_attributes",
        '{"payload": {"attachments": [{"type": ["\\ud83d"]}]}}': "payload.attachments[0].type[0]",
        '{"rule": {"conditions": {"match": "all", "conditions": [{"attribute":'
        ' "message.content", "operator": "contains", "value": "\\ud83d"}]}}}': (
            "rule.conditions.conditions[0].value"
        ),
    }
    for body, field in cases.items():
        resp = ws.call("POST", url, body=body, headers=json_body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json["error"]["details"][0]["field"] == field, resp.text
    saved = rule_body(actions=[{"type": "send_message", "params": {"body": "hi \ud83d"}}])
    resp = ws.call("POST", RULES, body=json.dumps(saved), headers=json_body)  # ASCII: \\ud83d
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "actions[0].params.body"
    # A whole emoji is text like any other.
    emoji = ws.call("POST", url, json={"payload": {"body": "refund \U0001f600"}})
    assert emoji.status_code == 200, emoji.text
    assert emoji.json["facts"]["message.content"] == "refund \U0001f600"
