"""Validate a condition tree at save time, so a saved rule can always be evaluated.

Tree shape::

    <group> = {"match": "all" | "any", "conditions": [<group> | <leaf>, ...]}
    <leaf>  = {"attribute": str, "operator": str, "value": any}   (no value for present/not_present)

A node is a group when it has ``match`` or ``conditions``, otherwise a leaf. An empty
``all`` group is always true (a rule with no conditions fires on every trigger); an empty
``any`` group is always false. Every problem carries the path of the offending field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.automation import value_types as t
from shared.automation.attributes import Attribute, lookup
from shared.automation.operators import is_finite_number, is_uuid, parse_datetime
from shared.automation.problems import Problem, index, key, type_name
from shared.automation.regex_safety import pattern_problems

#: Groups nested in groups, the root group counting as 1.
MAX_DEPTH = 5
#: Leaves in one rule.
MAX_CONDITIONS = 50
#: ``matches`` conditions in one rule (each is probed when saved, and time-bounded when run).
MAX_PATTERNS = 10
#: Groups in one rule, the root included.
MAX_GROUPS = 25
#: Items in one ``in`` / ``not_in`` list.
MAX_LIST_ITEMS = 100
#: Characters in one string value.
MAX_TEXT_LENGTH = 1000

MATCH_MODES = ("all", "any")
_GROUP_KEYS = frozenset({"match", "conditions"})
_LEAF_KEYS = frozenset({"attribute", "operator", "value"})
_NO_VALUE = (t.PRESENT, t.NOT_PRESENT)


def validate_conditions(tree: Any, *, path: str = "conditions") -> list[Problem]:
    """Every problem in ``tree`` (a root group), each with its path; [] when it is valid."""
    if isinstance(tree, Mapping) and not (_GROUP_KEYS & tree.keys()):
        return [Problem(path, "not_a_group", 'the root must be a group: {"match", "conditions"}')]
    walk = _Walk()
    walk.group(tree, path, 1)
    if walk.leaves > MAX_CONDITIONS:
        walk.problems.append(
            Problem(
                path,
                "too_many_conditions",
                f"more than {MAX_CONDITIONS} conditions; at most {MAX_CONDITIONS} in a rule",
            )
        )
    if walk.patterns > MAX_PATTERNS:
        walk.problems.append(
            Problem(
                path,
                "too_many_patterns",
                f"{walk.patterns} regular expressions; at most {MAX_PATTERNS} in a rule",
            )
        )
    if walk.groups > MAX_GROUPS:
        walk.problems.append(
            Problem(path, "too_many_groups", f"more than {MAX_GROUPS} groups; at most {MAX_GROUPS}")
        )
    return walk.problems


@dataclass
class _Walk:
    """One validation pass: the problems so far and the nodes seen (the walk stops past
    the bounds, so a huge body costs no more than a legal one)."""

    problems: list[Problem] = field(default_factory=list)
    leaves: int = 0
    groups: int = 0
    patterns: int = 0

    def over(self) -> bool:
        return self.leaves > MAX_CONDITIONS or self.groups > MAX_GROUPS

    def group(self, node: Any, path: str, depth: int) -> None:
        self.groups += 1
        if not isinstance(node, Mapping):
            self.problems.append(
                Problem(path, "not_an_object", f"expected an object, got {type_name(node)}")
            )
            return
        if depth > MAX_DEPTH:
            self.problems.append(
                Problem(path, "too_deep", f"groups nest at most {MAX_DEPTH} levels deep")
            )
            return
        self.problems.extend(_unknown_fields(node, _GROUP_KEYS, path))
        if node.get("match") not in MATCH_MODES:
            self.problems.append(
                Problem(key(path, "match"), "invalid_match", 'expected "all" or "any"')
            )
        children = node.get("conditions")
        children_path = key(path, "conditions")
        if not isinstance(children, list):
            self.problems.append(
                Problem(children_path, "not_a_list", f"expected a list, got {type_name(children)}")
            )
            return
        for i, child in enumerate(children):
            if self.over():
                return
            child_path = index(children_path, i)
            if isinstance(child, Mapping) and _GROUP_KEYS & child.keys():
                self.group(child, child_path, depth + 1)
            else:
                self.leaves += 1
                self.problems.extend(_leaf(child, child_path, self))


def _leaf(node: Any, path: str, walk: _Walk) -> list[Problem]:
    if not isinstance(node, Mapping):
        return [Problem(path, "not_an_object", f"expected an object, got {type_name(node)}")]
    problems = _unknown_fields(node, _LEAF_KEYS, path)
    name = node.get("attribute")
    attribute = lookup(name)
    if attribute is None:
        message = "required" if name is None else f"unknown attribute {name!r}"
        problems.append(Problem(key(path, "attribute"), "unknown_attribute", message))
    operator = node.get("operator")
    if operator not in t.OPERATORS:
        message = "required" if operator is None else f"unknown operator {operator!r}"
        problems.append(Problem(key(path, "operator"), "unknown_operator", message))
        return problems
    if attribute is None:
        return problems
    if operator not in attribute.operators:
        problems.append(
            Problem(
                key(path, "operator"),
                "operator_not_allowed",
                f"{operator} does not apply to {attribute.name} ({attribute.type}); "
                f"use one of: {', '.join(attribute.operators)}",
            )
        )
        return problems
    value_path = key(path, "value")
    if operator in _NO_VALUE:
        if node.get("value") is not None:
            problems.append(Problem(value_path, "unexpected_value", f"{operator} takes no value"))
        return problems
    if "value" not in node:
        problems.append(Problem(value_path, "missing_value", f"{operator} needs a value"))
        return problems
    if operator == t.MATCHES:
        walk.patterns += 1
        if walk.patterns > MAX_PATTERNS:
            return problems  # refused as a whole; not worth probing
    problems.extend(value_problems(attribute, operator, node["value"], value_path))
    return problems


def _unknown_fields(node: Mapping, allowed: frozenset[str], path: str) -> list[Problem]:
    return [
        Problem(key(path, str(name)), "unknown_field", "not a field of a condition")
        for name in node
        if name not in allowed
    ]


# --- values -----------------------------------------------------------------------------


def value_problems(attribute: Attribute, operator: str, value: Any, path: str) -> list[Problem]:
    """Problems of ``value`` for ``operator`` on ``attribute`` (already known to fit)."""
    kind = attribute.type
    if operator in (t.IN, t.NOT_IN):
        return _list_problems(attribute, value, path)
    if operator in (t.CONTAINS, t.NOT_CONTAINS, t.STARTS_WITH, t.ENDS_WITH):
        return _text_problems(value, path, allow_empty=False)
    if operator == t.MATCHES:
        if not isinstance(value, str):
            return [_wrong(path, "a regular expression (string)", value)]
        return pattern_problems(value, path)
    if operator in (t.GREATER_THAN, t.LESS_THAN):
        return _bound_problems(kind, value, path)
    if operator == t.BETWEEN:
        return _range_problems(kind, value, path)
    if operator in (t.CHANGED_TO, t.CHANGED_FROM) and value is None:
        return []  # "became empty" / "was empty"
    return _scalar_problems(attribute, value, path)


def _wrong(path: str, expected: str, value: Any) -> Problem:
    return Problem(path, "wrong_value_type", f"expected {expected}, got {type_name(value)}")


def _text_problems(value: Any, path: str, *, allow_empty: bool) -> list[Problem]:
    if not isinstance(value, str):
        return [_wrong(path, "a string", value)]
    if len(value) > MAX_TEXT_LENGTH:
        return [Problem(path, "value_too_long", f"at most {MAX_TEXT_LENGTH} characters")]
    if not allow_empty and value == "":
        return [Problem(path, "empty_value", "an empty string would match everything")]
    return []


def _scalar_problems(attribute: Attribute, value: Any, path: str) -> list[Problem]:
    kind = attribute.type
    if kind == t.NUMBER:
        return [] if is_finite_number(value) else [_wrong(path, "a number", value)]
    if kind == t.BOOLEAN:
        return [] if isinstance(value, bool) else [_wrong(path, "true or false", value)]
    if kind == t.ENUM:
        if value in attribute.enum_values and isinstance(value, str):
            return []
        return [
            Problem(
                path,
                "not_an_enum_member",
                f"expected one of: {', '.join(attribute.enum_values)}",
            )
        ]
    if kind == t.ID:
        return [] if is_uuid(value) else [_wrong(path, "an id (UUID string)", value)]
    if kind == t.DYNAMIC:
        if isinstance(value, bool) or is_finite_number(value):
            return []
        if isinstance(value, str):
            return _text_problems(value, path, allow_empty=True)
        return [_wrong(path, "a string, number or boolean", value)]
    return _text_problems(value, path, allow_empty=True)


def _list_problems(attribute: Attribute, value: Any, path: str) -> list[Problem]:
    if not isinstance(value, list):
        return [_wrong(path, "a list", value)]
    if not value:
        return [Problem(path, "empty_list", "the list needs at least one value")]
    if len(value) > MAX_LIST_ITEMS:
        return [Problem(path, "too_many_values", f"at most {MAX_LIST_ITEMS} values")]
    item_attribute = attribute
    if attribute.type == t.STRING_LIST:
        item_attribute = attribute._replace(type=t.STRING)
    problems: list[Problem] = []
    for i, item in enumerate(value):
        item_path = index(path, i)
        if attribute.type == t.STRING_LIST:
            problems.extend(_text_problems(item, item_path, allow_empty=False))
        else:
            problems.extend(_scalar_problems(item_attribute, item, item_path))
    return problems


def _bound_problems(kind: str, value: Any, path: str) -> list[Problem]:
    if kind == t.DATETIME:
        if isinstance(value, str) and parse_datetime(value) is not None:
            return []
        return [
            Problem(
                path,
                "wrong_value_type",
                "expected an ISO 8601 date-time with a timezone (e.g. 2026-03-08T09:00:00Z)",
            )
        ]
    return [] if is_finite_number(value) else [_wrong(path, "a number", value)]


def _range_problems(kind: str, value: Any, path: str) -> list[Problem]:
    if not isinstance(value, list) or len(value) != 2:
        return [_wrong(path, "a list [low, high]", value)]
    problems = _bound_problems(kind, value[0], index(path, 0))
    problems += _bound_problems(kind, value[1], index(path, 1))
    if problems:
        return problems
    low, high = value
    if kind == t.DATETIME:
        low, high = parse_datetime(low), parse_datetime(high)
    if low > high:
        return [
            Problem(
                path,
                "invalid_range",
                "low must not be greater than high (for a range across midnight, use an "
                '"any" group of two conditions)',
            )
        ]
    return []
