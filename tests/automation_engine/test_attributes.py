"""The attribute catalogue the service and rule editors rely on."""

from __future__ import annotations

import json

import pytest

from shared.automation import value_types as t
from shared.automation.attributes import ATTRIBUTES, catalogue, lookup


@pytest.mark.parametrize(
    ("name", "type_"),
    [
        ("conversation.id", t.ID),
        ("conversation.status", t.ENUM),
        ("conversation.channel", t.ENUM),
        ("conversation.division_id", t.ID),
        ("conversation.assignee_id", t.ID),
        ("conversation.tags", t.STRING_LIST),
        ("conversation.priority", t.ENUM),
        ("conversation.unread_count", t.NUMBER),
        ("conversation.age_minutes", t.NUMBER),
        ("conversation.last_activity_minutes", t.NUMBER),
        ("conversation.ai_active", t.BOOLEAN),
        ("message.content", t.STRING),
        ("message.direction", t.ENUM),
        ("message.sender_type", t.ENUM),
        ("message.content_type", t.ENUM),
        ("message.attachment_type", t.ENUM),
        ("contact.name", t.STRING),
        ("contact.email", t.STRING),
        ("contact.phone", t.STRING),
        ("contact.country", t.STRING),
        ("contact.language", t.STRING),
        ("contact.tags", t.STRING_LIST),
        ("time.inside_working_hours", t.BOOLEAN),
        ("time.weekday", t.ENUM),
        ("time.local_hour", t.NUMBER),
        ("event.type", t.STRING),
        ("conversation.custom_attributes.order_id", t.DYNAMIC),
        ("contact.custom_attributes.plan", t.DYNAMIC),
    ],
)
def test_contract_attributes(name, type_):
    attribute = lookup(name)
    assert attribute is not None and attribute.name == name and attribute.type == type_


@pytest.mark.parametrize(
    "name",
    [
        None,
        5,
        "",
        "conversation",
        "conversation.custom_attributes.",
        "contact.custom_attributes.a.b",
        "message.custom_attributes.x",
        "CONVERSATION.STATUS",
    ],
)
def test_unknown_names(name):
    assert lookup(name) is None


def test_enum_members_come_from_the_domain():
    assert set(lookup("conversation.status").enum_values) == {
        "open",
        "pending",
        "snoozed",
        "resolved",
    }
    assert "whatsapp" in lookup("conversation.channel").enum_values
    assert lookup("message.direction").enum_values == ("inbound", "outbound")
    assert lookup("time.weekday").enum_values[0] == "monday"


def test_catalogue_is_json_and_lists_operators():
    items = catalogue()
    json.dumps(items)
    by_name = {i["name"]: i for i in items}
    assert set(ATTRIBUTES) <= set(by_name)
    assert "contact.custom_attributes.<key>" in by_name
    assert by_name["message.content"]["operators"][:4] == [
        "equal_to",
        "not_equal_to",
        "in",
        "not_in",
    ]
    assert "matches" not in by_name["conversation.unread_count"]["operators"]
    assert by_name["conversation.status"]["enum_values"]


def test_every_type_allows_presence_checks():
    for type_ in t.TYPES:
        assert {t.PRESENT, t.NOT_PRESENT} <= set(t.ALLOWED[type_])


def test_every_operator_is_described():
    described = t.operator_catalogue()
    assert [o["name"] for o in described] == list(t.OPERATORS)
    assert all(o["description"] for o in described)
