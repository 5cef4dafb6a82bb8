"""The action catalogue: validation with paths, references and rendering."""

from __future__ import annotations

import uuid

import pytest

from shared.automation.actions import (
    ACTION_TYPES,
    MAX_ACTIONS,
    catalogue,
    referenced_ids,
    references,
    render_action,
    validate_actions,
)
from tests.automation_engine.support import codes

ID_A = "6f1c1f0e-8a43-4c55-9d6b-1f6f5d0b3a11"
ID_B = "0b7a2d4e-1c3f-4e5a-8b9c-0d1e2f3a4b5c"

VALID = [
    {"type": "assign_agent", "params": {"agent_id": ID_A}},
    {"type": "assign_division", "params": {"division_id": ID_A}},
    {"type": "assign_round_robin", "params": {}},
    {"type": "assign_round_robin"},
    {"type": "assign_round_robin", "params": {"division_id": ID_B}},
    {"type": "add_tags", "params": {"tags": ["vip", "Billing issue"]}},
    {"type": "remove_tags", "params": {"tags": ["vip"]}},
    {"type": "set_status", "params": {"status": "resolved"}},
    {"type": "set_priority", "params": {"priority": "urgent"}},
    {"type": "snooze", "params": {"minutes": 30}},
    {"type": "snooze", "params": {"until": "2026-03-08T09:00:00-05:00"}},
    {"type": "send_message", "params": {"body": "Hi {{ contact.name | default: 'there' }}"}},
    {"type": "send_quick_reply", "params": {"quick_reply_id": ID_A}},
    {"type": "add_note", "params": {"body": "VIP: {{contact.tags}}"}},
    {"type": "send_webhook", "params": {"endpoint_id": ID_A}},
    {"type": "handover_to_ai", "params": {}},
    {"type": "handover_to_human", "params": {"division_id": ID_A}},
    {"type": "handover_to_human", "params": {}},
    {"type": "mute", "params": {}},
    {"type": "mute", "params": {"minutes": 60}},
]


@pytest.mark.parametrize("action", VALID, ids=[f"{i}-{a['type']}" for i, a in enumerate(VALID)])
def test_valid_action(action):
    assert validate_actions([action]) == []


def test_every_type_has_a_valid_example():
    assert {a["type"] for a in VALID} == set(ACTION_TYPES)


A = "actions[0]"


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("assign_agent", [(A, "not_an_object")]),
        ({"type": "explode"}, [(f"{A}.type", "unknown_action")]),
        ({}, [(f"{A}.type", "unknown_action")]),
        ({"type": ["mute"]}, [(f"{A}.type", "unknown_action")]),
        ({"type": {"mute": 1}}, [(f"{A}.type", "unknown_action")]),
        ({"type": None}, [(f"{A}.type", "unknown_action")]),
        ({"type": "mute", "extra": 1}, [(f"{A}.extra", "unknown_field")]),
        ({"type": "mute", "params": []}, [(f"{A}.params", "not_an_object")]),
        ({"type": "assign_agent", "params": {}}, [(f"{A}.params.agent_id", "required")]),
        (
            {"type": "assign_agent", "params": {"agent_id": "bob"}},
            [(f"{A}.params.agent_id", "wrong_value_type")],
        ),
        (
            {"type": "assign_agent", "params": {"agent_id": ID_A, "x": 1}},
            [(f"{A}.params.x", "unknown_field")],
        ),
        ({"type": "add_tags", "params": {"tags": []}}, [(f"{A}.params.tags", "out_of_range")]),
        (
            {"type": "add_tags", "params": {"tags": "vip"}},
            [(f"{A}.params.tags", "wrong_value_type")],
        ),
        (
            {"type": "add_tags", "params": {"tags": ["ok", 5]}},
            [(f"{A}.params.tags[1]", "wrong_value_type")],
        ),
        (
            {"type": "add_tags", "params": {"tags": ["ok", "<b>"]}},
            [(f"{A}.params.tags[1]", "invalid_tag")],
        ),
        (
            {"type": "add_tags", "params": {"tags": ["x" * 65]}},
            [(f"{A}.params.tags[0]", "invalid_tag")],
        ),
        (
            {"type": "add_tags", "params": {"tags": [f"t{i}" for i in range(21)]}},
            [(f"{A}.params.tags", "out_of_range")],
        ),
        (
            {"type": "set_status", "params": {"status": "snoozed"}},
            [(f"{A}.params.status", "not_an_enum_member")],
        ),
        (
            {"type": "set_priority", "params": {"priority": "HIGH"}},
            [(f"{A}.params.priority", "not_an_enum_member")],
        ),
        ({"type": "snooze", "params": {}}, [(f"{A}.params", "one_of")]),
        (
            {"type": "snooze", "params": {"minutes": 5, "until": "2026-03-08T09:00:00Z"}},
            [(f"{A}.params", "one_of")],
        ),
        ({"type": "snooze", "params": {"minutes": 0}}, [(f"{A}.params.minutes", "out_of_range")]),
        (
            {"type": "snooze", "params": {"minutes": 525_601}},
            [(f"{A}.params.minutes", "out_of_range")],
        ),
        (
            {"type": "snooze", "params": {"minutes": 1.5}},
            [(f"{A}.params.minutes", "wrong_value_type")],
        ),
        (
            {"type": "snooze", "params": {"minutes": True}},
            [(f"{A}.params.minutes", "wrong_value_type")],
        ),
        (
            {"type": "snooze", "params": {"until": "2026-03-08T09:00:00"}},
            [(f"{A}.params.until", "wrong_value_type")],
        ),
        ({"type": "send_message", "params": {}}, [(f"{A}.params.body", "required")]),
        ({"type": "send_message", "params": {"body": "  "}}, [(f"{A}.params.body", "empty_value")]),
        (
            {"type": "send_message", "params": {"body": "Hi {{contact.nmae}}"}},
            [(f"{A}.params.body", "unknown_variable")],
        ),
        ({"type": "add_note", "params": {"body": 5}}, [(f"{A}.params.body", "wrong_value_type")]),
        ({"type": "handover_to_ai", "params": {"x": 1}}, [(f"{A}.params.x", "unknown_field")]),
        ({"type": "mute", "params": {"minutes": -1}}, [(f"{A}.params.minutes", "out_of_range")]),
    ],
)
def test_refused_action(action, expected):
    assert codes(validate_actions([action])) == expected


def test_list_problems():
    assert codes(validate_actions({"type": "mute"})) == [("actions", "not_a_list")]
    assert codes(validate_actions(None)) == [("actions", "not_a_list")]
    assert validate_actions([]) == []
    many = [{"type": "mute"}] * (MAX_ACTIONS + 1)
    assert codes(validate_actions(many)) == [("actions", "too_many_actions")]
    mixed = [{"type": "mute"}, {"type": "assign_agent", "params": {}}]
    assert codes(validate_actions(mixed, path="rule.actions")) == [
        ("rule.actions[1].params.agent_id", "required")
    ]


def test_references_and_referenced_ids():
    actions = [
        {"type": "assign_agent", "params": {"agent_id": ID_A}},
        {"type": "add_tags", "params": {"tags": ["x"]}},
        {"type": "handover_to_human", "params": {"division_id": ID_B}},
        {"type": "send_webhook", "params": {"endpoint_id": ID_B}},
        {"type": "send_quick_reply", "params": {"quick_reply_id": ID_A.upper()}},
        {"type": "assign_division", "params": {"division_id": "not-an-id"}},
        {"type": "unknown", "params": {"agent_id": ID_A}},
        {"type": ["assign_agent"], "params": {"agent_id": ID_A}},
        {"type": "assign_agent", "params": ["junk"]},
        "junk",
    ]
    assert references(actions) == [
        ("actions[0].params.agent_id", "agents", uuid.UUID(ID_A)),
        ("actions[2].params.division_id", "divisions", uuid.UUID(ID_B)),
        ("actions[3].params.endpoint_id", "webhook_endpoints", uuid.UUID(ID_B)),
        ("actions[4].params.quick_reply_id", "quick_replies", uuid.UUID(ID_A)),
    ]
    assert referenced_ids(actions) == {
        "agents": {uuid.UUID(ID_A)},
        "divisions": {uuid.UUID(ID_B)},
        "quick_replies": {uuid.UUID(ID_A)},
        "webhook_endpoints": {uuid.UUID(ID_B)},
    }
    assert referenced_ids([]) == {
        "agents": set(),
        "divisions": set(),
        "quick_replies": set(),
        "webhook_endpoints": set(),
    }


def test_render_action_renders_templates_only():
    facts = {"contact.name": "Ana", "conversation.tags": ["vip"]}
    message = {"type": "send_message", "params": {"body": "Hi {{contact.name}}"}}
    assert render_action(message, facts) == {"type": "send_message", "params": {"body": "Hi Ana"}}
    note = {"type": "add_note", "params": {"body": "{{ contact.email | default: 'no email' }}"}}
    assert render_action(note, facts)["params"]["body"] == "no email"
    tags = {"type": "add_tags", "params": {"tags": ["{{contact.name}}"]}}
    assert render_action(tags, facts) == tags
    assert render_action({"type": "mute"}, facts) == {"type": "mute", "params": {}}
    assert message["params"]["body"] == "Hi {{contact.name}}"  # the rule is not modified


def test_catalogue_describes_every_type():
    items = {i["type"]: i for i in catalogue()}
    assert set(items) == set(ACTION_TYPES)
    assert items["assign_agent"]["params"] == [
        {"name": "agent_id", "required": True, "refers_to": "agents", "template": False}
    ]
    assert items["snooze"]["one_of"] == ["minutes", "until"]
    assert all(not p["required"] for p in items["snooze"]["params"])
