"""Condition trees refused at save time, each problem with its exact path."""

from __future__ import annotations

import pytest

from shared.automation.conditions import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_GROUPS,
    MAX_PATTERNS,
    validate_conditions,
)
from tests.automation_engine.support import codes, group, leaf

ID_A = "6f1c1f0e-8a43-4c55-9d6b-1f6f5d0b3a11"
P = "conditions.conditions[0]"


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (leaf("conversation.nope", "present"), [(f"{P}.attribute", "unknown_attribute")]),
        ({"operator": "present"}, [(f"{P}.attribute", "unknown_attribute")]),
        (leaf(5, "present"), [(f"{P}.attribute", "unknown_attribute")]),
        (leaf("contact.custom_attributes.", "present"), [(f"{P}.attribute", "unknown_attribute")]),
        (
            leaf("contact.custom_attributes.a b", "present"),
            [(f"{P}.attribute", "unknown_attribute")],
        ),
        (leaf("message.content", "like", "x"), [(f"{P}.operator", "unknown_operator")]),
        ({"attribute": "message.content"}, [(f"{P}.operator", "unknown_operator")]),
        (
            leaf("nope", "like", "x"),
            [(f"{P}.attribute", "unknown_attribute"), (f"{P}.operator", "unknown_operator")],
        ),
        (
            leaf("conversation.status", "contains", "op"),
            [(f"{P}.operator", "operator_not_allowed")],
        ),
        (
            leaf("conversation.unread_count", "matches", "1"),
            [(f"{P}.operator", "operator_not_allowed")],
        ),
        (leaf("conversation.ai_active", "in", [True]), [(f"{P}.operator", "operator_not_allowed")]),
        (leaf("conversation.tags", "equal_to", "x"), [(f"{P}.operator", "operator_not_allowed")]),
        (
            leaf("conversation.created_at", "equal_to", "2026-01-01T00:00:00Z"),
            [(f"{P}.operator", "operator_not_allowed")],
        ),
        (leaf("conversation.tags", "changed_to", "x"), [(f"{P}.operator", "operator_not_allowed")]),
        (leaf("message.content", "contains"), [(f"{P}.value", "missing_value")]),
        (leaf("message.content", "present", "x"), [(f"{P}.value", "unexpected_value")]),
        (
            leaf("conversation.unread_count", "greater_than", "3"),
            [(f"{P}.value", "wrong_value_type")],
        ),
        (
            leaf("conversation.unread_count", "greater_than", True),
            [(f"{P}.value", "wrong_value_type")],
        ),
        (leaf("conversation.unread_count", "equal_to", None), [(f"{P}.value", "wrong_value_type")]),
        (
            leaf("conversation.unread_count", "equal_to", float("inf")),
            [(f"{P}.value", "wrong_value_type")],
        ),
        (
            leaf("conversation.unread_count", "equal_to", float("nan")),
            [(f"{P}.value", "wrong_value_type")],
        ),
        (leaf("conversation.ai_active", "equal_to", 1), [(f"{P}.value", "wrong_value_type")]),
        (leaf("conversation.ai_active", "equal_to", "true"), [(f"{P}.value", "wrong_value_type")]),
        (leaf("conversation.status", "equal_to", "closed"), [(f"{P}.value", "not_an_enum_member")]),
        (leaf("conversation.status", "equal_to", "OPEN"), [(f"{P}.value", "not_an_enum_member")]),
        (leaf("conversation.status", "equal_to", ["open"]), [(f"{P}.value", "not_an_enum_member")]),
        (
            leaf("conversation.status", "in", ["open", "closed"]),
            [(f"{P}.value[1]", "not_an_enum_member")],
        ),
        (leaf("conversation.status", "in", "open"), [(f"{P}.value", "wrong_value_type")]),
        (leaf("conversation.status", "in", []), [(f"{P}.value", "empty_list")]),
        (
            leaf("conversation.unread_count", "in", [1, "2"]),
            [(f"{P}.value[1]", "wrong_value_type")],
        ),
        (
            leaf("conversation.unread_count", "in", list(range(101))),
            [(f"{P}.value", "too_many_values")],
        ),
        (leaf("conversation.tags", "in", ["vip", ""]), [(f"{P}.value[1]", "empty_value")]),
        (leaf("conversation.tags", "contains", 5), [(f"{P}.value", "wrong_value_type")]),
        (leaf("message.content", "contains", ""), [(f"{P}.value", "empty_value")]),
        (leaf("message.content", "contains", "x" * 1001), [(f"{P}.value", "value_too_long")]),
        (leaf("message.content", "equal_to", 5), [(f"{P}.value", "wrong_value_type")]),
        (leaf("message.content", "starts_with", None), [(f"{P}.value", "wrong_value_type")]),
        (leaf("conversation.assignee_id", "equal_to", "bob"), [(f"{P}.value", "wrong_value_type")]),
        (
            leaf("conversation.assignee_id", "in", [ID_A, 7]),
            [(f"{P}.value[1]", "wrong_value_type")],
        ),
        (leaf("conversation.unread_count", "between", [5, 1]), [(f"{P}.value", "invalid_range")]),
        (leaf("conversation.unread_count", "between", [1]), [(f"{P}.value", "wrong_value_type")]),
        (leaf("conversation.unread_count", "between", 3), [(f"{P}.value", "wrong_value_type")]),
        (
            leaf("conversation.unread_count", "between", [1, "9"]),
            [(f"{P}.value[1]", "wrong_value_type")],
        ),
        (
            leaf("conversation.created_at", "greater_than", "2026-01-01T00:00:00"),
            [(f"{P}.value", "wrong_value_type")],
        ),
        (
            leaf(
                "conversation.created_at",
                "between",
                ["2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z"],
            ),
            [(f"{P}.value", "invalid_range")],
        ),
        (
            leaf("contact.custom_attributes.plan", "equal_to", [1]),
            [(f"{P}.value", "wrong_value_type")],
        ),
        (
            leaf("contact.custom_attributes.plan", "equal_to", {}),
            [(f"{P}.value", "wrong_value_type")],
        ),
        (
            leaf("contact.custom_attributes.plan", "greater_than", "1"),
            [(f"{P}.value", "wrong_value_type")],
        ),
        (leaf("message.content", "matches", "("), [(f"{P}.value", "invalid_regex")]),
        (leaf("message.content", "matches", ""), [(f"{P}.value", "invalid_regex")]),
        (leaf("message.content", "matches", 5), [(f"{P}.value", "wrong_value_type")]),
        (leaf("message.content", "matches", "a" * 257), [(f"{P}.value", "regex_too_long")]),
        (leaf("message.content", "matches", "(a+)+$"), [(f"{P}.value", "regex_too_slow")]),
        (leaf("message.content", "matches", r"(\w+\s?)*$"), [(f"{P}.value", "regex_too_slow")]),
        (leaf("message.content", "matches", "(a|aa)+$"), [(f"{P}.value", "regex_too_slow")]),
        (leaf("message.content", "matches", "(?:x+x+)+y"), [(f"{P}.value", "regex_too_slow")]),
        (leaf("message.content", "matches", "(.*a){20}"), [(f"{P}.value", "regex_too_slow")]),
        (leaf("message.content", "matches", "a{4294967294}"), [(f"{P}.value", "regex_too_slow")]),
        (leaf("message.content", "matches", "a{101}"), [(f"{P}.value", "regex_too_slow")]),
        (leaf("message.content", "matches", "a{,101}"), [(f"{P}.value", "regex_too_slow")]),
        (
            leaf("message.content", "matches", "(?:a{100}){100}"),
            [(f"{P}.value", "regex_too_slow")],
        ),
        (leaf("message.content", "matches", "(?:a{2,})+"), [(f"{P}.value", "regex_too_slow")]),
        # cubic on a long run of letters without a space: the probe finds it
        (leaf("message.content", "matches", r"(\w+\s){3}"), [(f"{P}.value", "regex_too_slow")]),
        (leaf("message.content", "matches", "(?:a{2,})+("), [(f"{P}.value", "invalid_regex")]),
        # slow on every input (fuzzy matching): over the probe budget
        (
            leaf("message.content", "matches", "(?:refund please){e<=6}"),
            [(f"{P}.value", "regex_too_slow")],
        ),
        ({**leaf("message.content", "present"), "note": "x"}, [(f"{P}.note", "unknown_field")]),
        ("message.content", [(P, "not_an_object")]),
        (None, [(P, "not_an_object")]),
        ([], [(P, "not_an_object")]),
    ],
)
def test_refused_leaf(node, expected):
    assert codes(validate_conditions(group("all", node))) == expected


@pytest.mark.parametrize(
    "node",
    [
        leaf("message.content", "matches", r"order #\d{4,}"),
        leaf("message.content", "matches", r"(?i)\b(refund|money back)\b"),
        leaf("message.content", "matches", r"(?:ab)+c"),
        leaf("message.content", "matches", r"^[\w.+-]+@example\.com$"),
        leaf("message.content", "matches", r"(ab){2,3}"),
        leaf("message.content", "matches", r"(https?://)+x"),
        leaf("message.content", "matches", r"(?:ab){2}c{3}"),
        leaf("message.content", "matches", r"x{}"),
        leaf("message.content", "matches", r"[(a+)+]+"),
        leaf("message.content", "matches", r"\(a+\)+"),
        leaf("conversation.assignee_id", "equal_to", ID_A.upper()),
        leaf("conversation.status", "changed_to", None),
        leaf("conversation.status", "changed_from", "open"),
        leaf("conversation.unread_count", "between", [1, 1]),
        leaf("conversation.unread_count", "greater_than", -2.5),
        leaf("contact.custom_attributes.plan", "equal_to", ""),
        leaf("contact.custom_attributes.vip_level-2", "in", ["a", 1, True]),
        leaf("conversation.custom_attributes.score", "between", [0, 10]),
        leaf("message.content", "present", None),
        leaf("message.content", "equal_to", ""),
    ],
)
def test_accepted_leaf(node):
    assert validate_conditions(group("all", node)) == []


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ("x", [("conditions", "not_an_object")]),
        (None, [("conditions", "not_an_object")]),
        ([], [("conditions", "not_an_object")]),
        (leaf("message.content", "present"), [("conditions", "not_a_group")]),
        ({"match": "every", "conditions": []}, [("conditions.match", "invalid_match")]),
        ({"conditions": []}, [("conditions.match", "invalid_match")]),
        ({"match": "all"}, [("conditions.conditions", "not_a_list")]),
        ({"match": "all", "conditions": {}}, [("conditions.conditions", "not_a_list")]),
        (
            {"match": "all", "conditions": [], "name": "x"},
            [("conditions.name", "unknown_field")],
        ),
        (
            group("all", leaf("message.content", "present"), group("any", "oops")),
            [("conditions.conditions[1].conditions[0]", "not_an_object")],
        ),
        (
            group("any", group("all", leaf("x", "present")), group("all", leaf("y", "present"))),
            [
                ("conditions.conditions[0].conditions[0].attribute", "unknown_attribute"),
                ("conditions.conditions[1].conditions[0].attribute", "unknown_attribute"),
            ],
        ),
        (
            group("all", {"match": "some", "conditions": [leaf("message.content", "present")]}),
            [("conditions.conditions[0].match", "invalid_match")],
        ),
    ],
)
def test_refused_tree(tree, expected):
    assert codes(validate_conditions(tree)) == expected


def _nested(depth: int) -> dict:
    tree = group("all", leaf("message.content", "present"))
    for _ in range(depth - 1):
        tree = group("all", tree)
    return tree


def test_depth_bound():
    assert validate_conditions(_nested(MAX_DEPTH)) == []
    deep_path = "conditions" + ".conditions[0]" * MAX_DEPTH
    assert codes(validate_conditions(_nested(MAX_DEPTH + 1))) == [(deep_path, "too_deep")]


def test_leaf_count_bound_counts_leaves_in_every_group():
    half = [leaf("message.content", "present")] * (MAX_CONDITIONS // 2)
    assert validate_conditions(group("all", group("any", *half), group("any", *half))) == []
    over = group("all", group("any", *half), group("any", *half, leaf("contact.name", "present")))
    assert codes(validate_conditions(over)) == [("conditions", "too_many_conditions")]


def test_custom_root_path():
    problems = validate_conditions(group("all", leaf("nope", "present")), path="rule.conditions")
    assert codes(problems) == [("rule.conditions.conditions[0].attribute", "unknown_attribute")]


def test_messages_say_what_fits():
    [problem] = validate_conditions(group("all", leaf("conversation.status", "contains", "x")))
    assert "equal_to" in problem.message and "conversation.status" in problem.message
    [problem] = validate_conditions(group("all", leaf("conversation.status", "equal_to", "x")))
    assert "open" in problem.message and "resolved" in problem.message
    assert problem.as_dict() == {
        "path": f"{P}.value",
        "code": problem.code,
        "message": problem.message,
    }


def test_huge_bodies_stop_at_the_bounds():
    valid_leaves = group("all", *[leaf("message.content", "present")] * 100_000)
    assert codes(validate_conditions(valid_leaves)) == [("conditions", "too_many_conditions")]
    bad_leaves = group("all", *[leaf("nope", "present")] * 100_000)
    problems = validate_conditions(bad_leaves)
    assert len(problems) == MAX_CONDITIONS + 2  # the leaves up to the bound, then the bound
    assert problems[-1].code == "too_many_conditions"
    empty_groups = group("any", *[group("all")] * 100_000)
    assert codes(validate_conditions(empty_groups)) == [("conditions", "too_many_groups")]
    assert validate_conditions(group("any", *[group("all")] * (MAX_GROUPS - 1))) == []


def test_pattern_count_bound():
    pattern = leaf("message.content", "matches", "^order")
    assert validate_conditions(group("any", *[pattern] * MAX_PATTERNS)) == []
    over = group("any", *[pattern] * (MAX_PATTERNS + 1))
    assert codes(validate_conditions(over)) == [("conditions", "too_many_patterns")]
