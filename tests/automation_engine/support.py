"""Helpers for the engine's table tests: validate, compile and evaluate one leaf or tree."""

from __future__ import annotations

import json
from typing import Any

from shared.automation.conditions import validate_conditions
from shared.automation.engine import Evaluation, compile_conditions, evaluate


class _Absent:
    """No value at all (not even None); its repr is stable so test ids match across processes."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


def leaf(attribute: str, operator: str, value: Any = ABSENT) -> dict[str, Any]:
    node: dict[str, Any] = {"attribute": attribute, "operator": operator}
    if value is not ABSENT:
        node["value"] = value
    return node


def group(match: str, *children: dict[str, Any]) -> dict[str, Any]:
    return {"match": match, "conditions": list(children)}


def run(tree: dict[str, Any], facts: dict[str, Any], changes=None) -> Evaluation:
    """Evaluate a tree that must be valid; both modes must agree and the trace be JSON."""
    assert validate_conditions(tree) == []
    compiled = compile_conditions(tree)
    traced = evaluate(compiled, facts, changes, trace=True)
    fast = evaluate(compiled, facts, changes, trace=False)
    assert traced.matched == fast.matched
    assert fast.trace == []
    assert len(traced.trace) == compiled.leaf_count
    json.dumps(traced.trace, allow_nan=False)
    return traced


def run_leaf(attribute: str, operator: str, value: Any, seen: Any, changes=None) -> Evaluation:
    facts = {} if seen is ABSENT else {attribute: seen}
    return run(group("all", leaf(attribute, operator, value)), facts, changes)


def codes(problems) -> list[tuple[str, str]]:
    return [(p.path, p.code) for p in problems]
