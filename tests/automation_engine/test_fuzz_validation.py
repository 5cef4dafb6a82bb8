"""Validators never raise: valid bodies with random parts replaced by random JSON.

A validator that raises would be a 500 where the API owes a 422 with a path.
"""

from __future__ import annotations

import copy
import random

import pytest

from shared.automation.actions import validate_actions
from shared.automation.conditions import validate_conditions
from shared.automation.engine import compile_conditions, evaluate
from shared.automation.problems import Problem
from shared.automation.templating import validate_template
from shared.timekeeping.working_hours import validate_schedule

ID_A = "6f1c1f0e-8a43-4c55-9d6b-1f6f5d0b3a11"

CONDITIONS = {
    "match": "all",
    "conditions": [
        {"attribute": "message.content", "operator": "contains", "value": "refund"},
        {"attribute": "conversation.unread_count", "operator": "between", "value": [1, 5]},
        {
            "match": "any",
            "conditions": [
                {"attribute": "conversation.tags", "operator": "in", "value": ["vip"]},
                {"attribute": "conversation.status", "operator": "changed_to", "value": "open"},
                {"attribute": "message.content", "operator": "matches", "value": "^hi"},
                {"attribute": "contact.email", "operator": "present"},
            ],
        },
    ],
}
ACTIONS = [
    {"type": "assign_agent", "params": {"agent_id": ID_A}},
    {"type": "add_tags", "params": {"tags": ["vip", "billing"]}},
    {"type": "snooze", "params": {"minutes": 30}},
    {"type": "send_message", "params": {"body": "Hi {{ contact.name | default: 'there' }}"}},
]
SCHEDULE = {
    "days": [{"weekday": 0, "intervals": [{"start": "09:00", "end": "17:00"}]}],
    "holidays": [{"date": "2026-12-25", "name": "Christmas"}],
}


def junk(rng: random.Random, depth: int = 0):
    choices = [
        None, True, False, 0, -1, 2**70, 1.5, float("nan"), "", "x", "all", "any", "open",
        "message.content", "contains", "24:00", "{{", "(a+)+", ID_A, [], {},
    ]  # fmt: skip
    if depth < 3 and rng.random() < 0.3:
        return [junk(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 3 and rng.random() < 0.3:
        keys = ["match", "conditions", "attribute", "operator", "value", "type", "params",
                "weekday", "intervals", "start", "end", "date", "name", "x"]  # fmt: skip
        return {rng.choice(keys): junk(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.choice(choices)


def mutate(body, rng: random.Random):
    """A copy of ``body`` with one random node (or key) replaced by junk."""
    body = copy.deepcopy(body)
    containers = []

    def collect(node):
        if isinstance(node, dict):
            containers.extend((node, k) for k in node)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            containers.extend((node, i) for i in range(len(node)))
            for value in node:
                collect(value)

    collect(body)
    if not containers or rng.random() < 0.05:
        return junk(rng)
    parent, slot = rng.choice(containers)
    if isinstance(parent, dict) and rng.random() < 0.2:
        parent[str(junk(rng))] = parent.pop(slot)
    else:
        parent[slot] = junk(rng)
    return body


@pytest.mark.parametrize(
    ("validate", "body"),
    [
        (validate_conditions, CONDITIONS),
        (validate_actions, ACTIONS),
        (validate_schedule, SCHEDULE),
        (lambda text: validate_template(text, path="body"), "Hi {{contact.name}}"),
    ],
    ids=["conditions", "actions", "schedule", "template"],
)
def test_validators_never_raise(validate, body):
    assert validate(body) == []
    rng = random.Random(6)
    refused = 0
    for _ in range(1500):
        problems = validate(mutate(body, rng))
        assert all(isinstance(p, Problem) and isinstance(p.path, str) for p in problems)
        refused += bool(problems)
    assert refused > 300  # the mutations do break bodies, so the validators were exercised


def test_whatever_validates_compiles_and_evaluates():
    rng = random.Random(7)
    facts = {"message.content": "hi, refund please", "conversation.unread_count": 2}
    accepted = 0
    for _ in range(1500):
        body = mutate(CONDITIONS, rng)
        if validate_conditions(body) == []:
            accepted += 1
            compiled = compile_conditions(body)
            evaluate(compiled, facts, {"conversation.status": ("pending", "open")})
    assert accepted > 50
