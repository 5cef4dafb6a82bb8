"""Groups, nesting, changes and the trace of the compiled engine."""

from __future__ import annotations

import pytest

from shared.automation.engine import compile_conditions, evaluate, outcomes, rebuild_trace
from tests.automation_engine.support import group, leaf, run

VIP = leaf("conversation.tags", "contains", "vip")
REFUND = leaf("message.content", "contains", "refund")
INBOUND = leaf("message.direction", "equal_to", "inbound")


@pytest.mark.parametrize(
    ("tree", "facts", "expected"),
    [
        (group("all"), {}, True),
        (group("any"), {}, False),
        (group("all", group("any")), {}, False),
        (group("any", group("all")), {}, True),
        (
            group("all", VIP, REFUND),
            {"conversation.tags": ["vip"], "message.content": "refund"},
            True,
        ),
        (group("all", VIP, REFUND), {"conversation.tags": ["vip"], "message.content": "hi"}, False),
        (group("all", VIP, REFUND), {"message.content": "refund"}, False),
        (group("any", VIP, REFUND), {"message.content": "refund"}, True),
        (group("any", VIP, REFUND), {"message.content": "hello"}, False),
        (group("any", VIP, REFUND), {}, False),
        (
            group("all", INBOUND, group("any", VIP, REFUND)),
            {"message.direction": "inbound", "message.content": "REFUND"},
            True,
        ),
        (
            group("all", INBOUND, group("any", VIP, REFUND)),
            {"message.direction": "outbound", "message.content": "REFUND"},
            False,
        ),
        (
            group("any", group("all", INBOUND, VIP), group("all", INBOUND, REFUND)),
            {"message.direction": "inbound", "conversation.tags": ["x"], "message.content": "a"},
            False,
        ),
        (
            group("any", group("all", INBOUND, VIP), group("all", INBOUND, REFUND)),
            {"message.direction": "inbound", "conversation.tags": ["VIP"]},
            True,
        ),
        (
            group("all", group("all", group("all", group("all", REFUND)))),
            {"message.content": "refund"},
            True,
        ),
        (group("all", group("any", group("all")), REFUND), {"message.content": "refund"}, True),
        (group("all", REFUND, group("any")), {"message.content": "refund"}, False),
    ],
)
def test_groups(tree, facts, expected):
    assert run(tree, facts).matched is expected


def test_trace_lists_every_leaf_in_tree_order_without_short_circuit():
    tree = group("all", INBOUND, group("any", VIP, REFUND), leaf("contact.name", "present"))
    result = run(tree, {"message.direction": "outbound", "message.content": "refund"})
    assert result.matched is False
    assert [(i["path"], i["matched"], i.get("note")) for i in result.trace] == [
        ("conditions.conditions[0]", False, None),
        ("conditions.conditions[1].conditions[0]", False, "absent"),
        ("conditions.conditions[1].conditions[1]", True, None),
        ("conditions.conditions[2]", False, "absent"),
    ]
    assert result.trace[0]["seen"] == "outbound"
    assert result.trace[0]["expected"] == "inbound"


def test_compile_uses_the_given_root_path():
    compiled = compile_conditions(group("all", REFUND), path="rule.conditions")
    [item] = evaluate(compiled, {"message.content": "x"}).trace
    assert item["path"] == "rule.conditions.conditions[0]"


def test_custom_attribute_missing_key_is_absent():
    tree = group("all", leaf("contact.custom_attributes.plan", "equal_to", "gold"))
    [item] = run(tree, {"contact.custom_attributes.other": "gold"}).trace
    assert item["note"] == "absent" and item["matched"] is False


STATUS = "conversation.status"
ASSIGNEE = "conversation.assignee_id"
ID_A = "6f1c1f0e-8a43-4c55-9d6b-1f6f5d0b3a11"


@pytest.mark.parametrize(
    ("operator", "value", "changes", "expected"),
    [
        ("changed_to", "resolved", {STATUS: ("open", "resolved")}, True),
        ("changed_to", "resolved", {STATUS: ["open", "resolved"]}, True),
        ("changed_to", "resolved", {STATUS: ("resolved", "open")}, False),
        ("changed_to", "resolved", {STATUS: ("resolved", "resolved")}, False),
        ("changed_to", "resolved", {STATUS: (None, "resolved")}, True),
        ("changed_to", "resolved", {}, False),
        ("changed_to", "resolved", None, False),
        ("changed_to", "resolved", {STATUS: "resolved"}, False),  # not a (before, after) pair
        ("changed_to", "resolved", {"conversation.priority": ("low", "high")}, False),
        ("changed_from", "open", {STATUS: ("open", "resolved")}, True),
        ("changed_from", "open", {STATUS: ("pending", "resolved")}, False),
        ("changed_from", "open", {STATUS: ("open", "open")}, False),
        ("changed_from", "open", {STATUS: ("open", None)}, True),
        ("changed_to", None, {STATUS: ("open", None)}, True),
        ("changed_to", None, {STATUS: ("open", "pending")}, False),
        ("changed_from", None, {STATUS: (None, "open")}, True),
        ("changed_from", None, {STATUS: ("open", "pending")}, False),
    ],
)
def test_changes_of_an_enum(operator, value, changes, expected):
    tree = group("all", leaf(STATUS, operator, value))
    result = run(tree, {STATUS: "whatever"}, changes)
    assert result.matched is expected


@pytest.mark.parametrize(
    ("operator", "value", "change", "expected"),
    [
        ("changed_to", ID_A, (None, ID_A), True),
        ("changed_to", ID_A, (None, ID_A.upper()), True),
        ("changed_to", ID_A, (ID_A, ID_A.upper()), False),  # same id, different spelling
        ("changed_from", ID_A, (ID_A, None), True),
        ("changed_to", None, (ID_A, None), True),
    ],
)
def test_changes_of_an_id(operator, value, change, expected):
    tree = group("all", leaf(ASSIGNEE, operator, value))
    assert run(tree, {}, {ASSIGNEE: change}).matched is expected


@pytest.mark.parametrize(
    ("attribute", "value", "change", "expected"),
    [
        ("conversation.ai_active", False, (True, False), True),
        ("conversation.ai_active", False, (1, 0), False),
        ("conversation.unread_count", 0, (3, 0), True),
        ("conversation.unread_count", 0, (3, 0.0), True),
        ("contact.custom_attributes.plan", "gold", ("silver", "gold"), True),
        ("contact.custom_attributes.plan", 5, ("4", 5), True),
        ("contact.custom_attributes.plan", 5, (4, "5"), False),
    ],
)
def test_changed_to_other_types(attribute, value, change, expected):
    tree = group("all", leaf(attribute, "changed_to", value))
    assert run(tree, {}, {attribute: change}).matched is expected


def test_change_trace_shows_before_and_after_or_unchanged():
    tree = group("all", leaf(STATUS, "changed_to", "resolved"), leaf(ASSIGNEE, "changed_to", None))
    result = run(tree, {}, {STATUS: ("open", "resolved")})
    assert result.trace[0]["seen"] == {"before": "open", "after": "resolved"}
    assert result.trace[0]["matched"] is True
    assert result.trace[1]["note"] == "unchanged" and result.trace[1]["matched"] is False


def test_a_regex_that_runs_out_of_time_does_not_match_and_says_so():
    # Validation refuses this pattern; compiling it anyway shows the runtime bound holds.
    tree = group("all", leaf("message.content", "matches", r"(a|aa)+$"))
    compiled = compile_conditions(tree)
    facts = {"message.content": "a" * 5000 + "!"}
    assert evaluate(compiled, facts, trace=False).matched is False
    [item] = evaluate(compiled, facts).trace
    assert item["matched"] is False
    assert item["note"] == "the regular expression ran out of time"
    # A run keeps "t" for it; its trace rebuilt later says so even if the search would
    # now finish in time.
    assert outcomes(compiled, facts) == (False, "t")
    [rebuilt] = rebuild_trace(compiled, {"message.content": "aaa"}, None, "t")
    assert rebuilt["matched"] is False
    assert rebuilt["note"] == "the regular expression ran out of time"
    assert rebuilt["seen"] == "aaa"


def test_a_rebuilt_trace_keeps_the_stored_outcome_of_each_leaf():
    tree = group(
        "all", leaf("message.content", "contains", "refund"), leaf(STATUS, "equal_to", "open")
    )
    compiled = compile_conditions(tree)
    facts = {"message.content": "a refund please", STATUS: "open"}
    assert outcomes(compiled, facts) == (True, "11")
    assert rebuild_trace(compiled, facts, None, "11") == evaluate(compiled, facts).trace
    # Decided otherwise then (older code): the leaf says what the run decided.
    first, second = rebuild_trace(compiled, facts, None, "10")
    assert first["matched"] is True and second["matched"] is False
    assert second["seen"] == "open"
    # Outcomes of another tree (a wrong length) are not forced onto this one.
    assert rebuild_trace(compiled, facts, None, "1") == evaluate(compiled, facts).trace


def test_compiled_rules_are_reusable_across_facts():
    compiled = compile_conditions(group("all", REFUND))
    results = [
        evaluate(compiled, {"message.content": text}, trace=False).matched
        for text in ("refund", "nope", "REFUND!", "")
    ]
    assert results == [True, False, True, False]


def test_compiling_an_unknown_attribute_raises():
    with pytest.raises(ValueError, match="unknown attribute"):
        compile_conditions(group("all", leaf("conversation.nope", "present")))
