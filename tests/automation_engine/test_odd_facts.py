"""Facts of any shape never make the engine raise: every type x operator x odd value."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from shared.automation import value_types as t
from shared.automation.attributes import lookup
from shared.automation.conditions import validate_conditions
from shared.automation.engine import compile_conditions, evaluate
from shared.automation.facts import changes_of
from tests.automation_engine.support import ABSENT, group, leaf

ID_A = "6f1c1f0e-8a43-4c55-9d6b-1f6f5d0b3a11"

#: One attribute per type, with a valid value for each operator it takes.
SAMPLES = {
    "message.content": {"default": "refund", "in": ["a", "b"], "matches": "^re"},
    "conversation.unread_count": {"default": 3, "in": [1, 2], "between": [1, 5]},
    "conversation.ai_active": {"default": True},
    "conversation.status": {"default": "open", "in": ["open", "pending"]},
    "conversation.tags": {"default": "vip", "in": ["vip", "gold"]},
    "conversation.created_at": {
        "default": "2026-01-01T00:00:00Z",
        "between": ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"],
    },
    "conversation.assignee_id": {"default": ID_A, "in": [ID_A]},
    "contact.custom_attributes.plan": {"default": "gold", "in": ["gold", 5], "between": [1, 5],
                                       "greater_than": 1, "less_than": 9, "matches": "^g"},
}  # fmt: skip

ODD = [
    "x",
    "",
    "9",
    5,
    -1.5,
    float("nan"),
    float("inf"),
    True,
    False,
    [],
    ["vip", 5, None],
    [[1]],
    {},
    {"a": 1},
    (1, 2),
    {"vip"},
    b"bytes",
    uuid.UUID(ID_A),
    dt.datetime(2026, 1, 1),
    dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    dt.date(2026, 1, 1),
    object(),
]


def _leaves():
    for name, values in SAMPLES.items():
        attribute = lookup(name)
        for operator in t.ALLOWED[attribute.type]:
            if operator in (t.PRESENT, t.NOT_PRESENT):
                yield leaf(name, operator)
            elif operator in (t.CHANGED_TO, t.CHANGED_FROM):
                yield leaf(name, operator, None)
            else:
                shape = "in" if operator in (t.IN, t.NOT_IN) else operator
                yield leaf(name, operator, values.get(shape, values["default"]))


LEAVES = list(_leaves())


@pytest.mark.parametrize("node", LEAVES, ids=[f"{n['attribute']}-{n['operator']}" for n in LEAVES])
def test_odd_values_never_raise(node):
    assert validate_conditions(group("all", node)) == []
    compiled = compile_conditions(group("all", node))
    for seen in [*ODD, ABSENT]:
        facts = {} if seen is ABSENT else {node["attribute"]: seen}
        changes = {node["attribute"]: (seen, "x")} if seen is not ABSENT else {}
        fast = evaluate(compiled, facts, changes, trace=False)
        traced = evaluate(compiled, facts, changes, trace=True)
        assert fast.matched is traced.matched
        json.dumps(traced.trace, allow_nan=False)


@pytest.mark.parametrize("seen", ["vip", "v", 5, {"vip": 1}])
def test_a_tag_list_must_be_a_list(seen):
    for operator, value in (("contains", "v"), ("in", ["v", "vip"]), ("not_in", ["x"])):
        compiled = compile_conditions(group("all", leaf("conversation.tags", operator, value)))
        assert evaluate(compiled, {"conversation.tags": seen}).matched is False


def test_a_transfer_reports_its_division_and_assignee_changes():
    """``changed_to`` on the division matches the event that changes it: a transfer."""
    old, new, agent = (str(uuid.uuid4()) for _ in range(3))
    payload = {"division_id": new, "from_division_id": old, "to_division_id": new}
    payload |= {"from_agent_id": None, "to_agent_id": agent}
    changes = changes_of("conversation.transferred", payload)
    assert changes == {
        "conversation.division_id": [old, new],
        "conversation.assignee_id": [None, agent],
    }
    to_new = compile_conditions(group("all", leaf("conversation.division_id", "changed_to", new)))
    from_old = compile_conditions(
        group("all", leaf("conversation.division_id", "changed_from", old))
    )
    facts = {"conversation.division_id": new}
    assert evaluate(to_new, facts, changes).matched
    assert evaluate(from_old, facts, changes).matched
    assert not evaluate(to_new, facts, {}).matched  # another event: unchanged
