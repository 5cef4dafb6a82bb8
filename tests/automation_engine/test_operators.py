"""Every operator on every type it applies to, with type edge cases, as a table."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tests.automation_engine.support import ABSENT, run_leaf

ID_A = "6f1c1f0e-8a43-4c55-9d6b-1f6f5d0b3a11"
ID_B = "0b7a2d4e-1c3f-4e5a-8b9c-0d1e2f3a4b5c"
UTC = dt.UTC

CONTENT = "message.content"
NAME = "contact.name"
STATUS = "conversation.status"
UNREAD = "conversation.unread_count"
AI = "conversation.ai_active"
TAGS = "conversation.tags"
ASSIGNEE = "conversation.assignee_id"
CREATED = "conversation.created_at"
CUSTOM = "contact.custom_attributes.plan"
SCORE = "conversation.custom_attributes.score"

CASES = [
    # --- string: identity is exact -----------------------------------------------------
    (CONTENT, "equal_to", "refund", "refund", True),
    (CONTENT, "equal_to", "refund", "Refund", False),
    (CONTENT, "equal_to", "refund", "refund ", False),
    (CONTENT, "equal_to", "", "", True),
    (CONTENT, "equal_to", "5", 5, False),
    (CONTENT, "not_equal_to", "refund", "Refund", True),
    (CONTENT, "not_equal_to", "refund", "refund", False),
    (CONTENT, "not_equal_to", "refund", 5, False),
    (CONTENT, "in", ["hi", "hello"], "hello", True),
    (CONTENT, "in", ["hi", "hello"], "Hello", False),
    (CONTENT, "in", ["hi"], "hey", False),
    (CONTENT, "not_in", ["hi", "hello"], "hey", True),
    (CONTENT, "not_in", ["hi", "hello"], "hi", False),
    (CONTENT, "not_in", ["5"], 5, False),
    # --- string: text search is case-insensitive (NFC + casefold) ----------------------
    (CONTENT, "contains", "refund", "I want a REFUND now", True),
    (CONTENT, "contains", "Refund", "refunds please", True),
    (CONTENT, "contains", "refund", "money back", False),
    (CONTENT, "contains", "STRASSE", "Hauptstraße 5", True),
    (CONTENT, "contains", "café", "CAFE\u0301 au lait", True),  # decomposed é
    (CONTENT, "contains", "ΣΟΦΙΑ", "σοφια", True),
    (CONTENT, "contains", "🙂", "thanks 🙂", True),
    (CONTENT, "contains", "1", 123, False),
    (CONTENT, "not_contains", "refund", "money back", True),
    (CONTENT, "not_contains", "refund", "REFUND", False),
    (CONTENT, "not_contains", "refund", ["refund"], False),
    (CONTENT, "starts_with", "hello", "Hello there", True),
    (CONTENT, "starts_with", "hello", "oh hello", False),
    (CONTENT, "starts_with", "İ", "i̇stanbul", True),
    (CONTENT, "ends_with", "thanks", "ok THANKS", True),
    (CONTENT, "ends_with", "thanks", "thanks ok", False),
    (CONTENT, "ends_with", "x", None, False),
    # --- string: regular expressions as written ----------------------------------------
    (CONTENT, "matches", r"order #\d{4,}", "where is order #12345?", True),
    (CONTENT, "matches", r"order #\d{4,}", "order #12", False),
    (CONTENT, "matches", r"^refund", "Refund", False),
    (CONTENT, "matches", r"(?i)^refund", "Refund", True),
    (CONTENT, "matches", r"\p{Han}", "你好", True),
    (CONTENT, "matches", r"a", 1, False),
    # --- presence -----------------------------------------------------------------------
    (CONTENT, "present", ABSENT, "x", True),
    (CONTENT, "present", ABSENT, "", False),
    (CONTENT, "present", ABSENT, "   ", False),
    (CONTENT, "present", ABSENT, ABSENT, False),
    (CONTENT, "present", ABSENT, None, False),
    (CONTENT, "not_present", ABSENT, ABSENT, True),
    (CONTENT, "not_present", ABSENT, None, True),
    (CONTENT, "not_present", ABSENT, "", True),
    (CONTENT, "not_present", ABSENT, "x", False),
    (CONTENT, "present", None, "x", True),  # an explicit null value is accepted
    # --- absent attributes match nothing but not_present ---------------------------------
    (CONTENT, "equal_to", "x", ABSENT, False),
    (CONTENT, "not_equal_to", "x", ABSENT, False),
    (CONTENT, "in", ["x"], ABSENT, False),
    (CONTENT, "not_in", ["x"], ABSENT, False),
    (CONTENT, "contains", "x", ABSENT, False),
    (CONTENT, "not_contains", "x", ABSENT, False),
    (CONTENT, "starts_with", "x", ABSENT, False),
    (CONTENT, "ends_with", "x", ABSENT, False),
    (CONTENT, "matches", "x", ABSENT, False),
    (UNREAD, "greater_than", 1, ABSENT, False),
    (UNREAD, "less_than", 1, ABSENT, False),
    (UNREAD, "between", [1, 2], ABSENT, False),
    (TAGS, "not_contains", "vip", ABSENT, False),
    (TAGS, "not_in", ["vip"], ABSENT, False),
    (AI, "not_equal_to", True, ABSENT, False),
    (ASSIGNEE, "not_in", [ID_A], ABSENT, False),
    (NAME, "present", ABSENT, "Ana", True),
    (NAME, "contains", "ana", "Ana María", True),
    # --- number: by value, never booleans or digit strings ------------------------------
    (UNREAD, "equal_to", 3, 3, True),
    (UNREAD, "equal_to", 3, 3.0, True),
    (UNREAD, "equal_to", 3.5, 3.5, True),
    (UNREAD, "equal_to", 3, "3", False),
    (UNREAD, "equal_to", 1, True, False),
    (UNREAD, "equal_to", 0, False, False),
    (UNREAD, "equal_to", 0, 0, True),
    (UNREAD, "not_equal_to", 3, 4, True),
    (UNREAD, "not_equal_to", 3, 3.0, False),
    (UNREAD, "not_equal_to", 3, "4", False),
    (UNREAD, "not_equal_to", 1, True, False),
    (UNREAD, "in", [1, 2, 3], 2, True),
    (UNREAD, "in", [1, 2, 3], 2.0, True),
    (UNREAD, "in", [1, 2, 3], True, False),
    (UNREAD, "in", [1, 2, 3], "2", False),
    (UNREAD, "in", [1, 2, 3], 4, False),
    (UNREAD, "not_in", [1, 2, 3], 4, True),
    (UNREAD, "not_in", [1, 2, 3], 1, False),
    (UNREAD, "not_in", [1, 2, 3], "4", False),
    (UNREAD, "greater_than", 3, 4, True),
    (UNREAD, "greater_than", 3, 3, False),
    (UNREAD, "greater_than", 3, 3.0001, True),
    (UNREAD, "greater_than", 3, "10", False),
    (UNREAD, "greater_than", 0, True, False),
    (UNREAD, "greater_than", -1.5, -1, True),
    (UNREAD, "less_than", 3, 2, True),
    (UNREAD, "less_than", 3, 3, False),
    (UNREAD, "less_than", 3, float("nan"), False),
    (UNREAD, "less_than", 3, "1", False),
    (UNREAD, "between", [1, 5], 1, True),
    (UNREAD, "between", [1, 5], 5, True),
    (UNREAD, "between", [1, 5], 3.3, True),
    (UNREAD, "between", [1, 5], 0.999, False),
    (UNREAD, "between", [1, 5], 6, False),
    (UNREAD, "between", [1, 5], True, False),
    (UNREAD, "between", [2, 2], 2, True),
    (UNREAD, "between", [1.5, 2.5], 2, True),
    (UNREAD, "present", ABSENT, 0, True),
    (UNREAD, "not_present", ABSENT, 0, False),
    ("time.local_hour", "between", [9, 17], 12, True),
    ("conversation.age_minutes", "greater_than", 60, 61.5, True),
    ("conversation.last_activity_minutes", "less_than", 5, 10, False),
    # --- boolean: identity, never numbers -----------------------------------------------
    (AI, "equal_to", True, True, True),
    (AI, "equal_to", True, False, False),
    (AI, "equal_to", True, 1, False),
    (AI, "equal_to", False, 0, False),
    (AI, "equal_to", False, False, True),
    (AI, "equal_to", True, "true", False),
    (AI, "not_equal_to", True, False, True),
    (AI, "not_equal_to", True, True, False),
    (AI, "not_equal_to", True, 0, False),
    (AI, "present", ABSENT, False, True),
    (AI, "not_present", ABSENT, False, False),
    ("time.inside_working_hours", "equal_to", False, False, True),
    # --- enum -----------------------------------------------------------------------------
    (STATUS, "equal_to", "open", "open", True),
    (STATUS, "equal_to", "open", "OPEN", False),
    (STATUS, "equal_to", "open", "pending", False),
    (STATUS, "not_equal_to", "open", "pending", True),
    (STATUS, "not_equal_to", "open", "open", False),
    (STATUS, "in", ["open", "pending"], "pending", True),
    (STATUS, "in", ["open", "pending"], "resolved", False),
    (STATUS, "not_in", ["open", "pending"], "resolved", True),
    (STATUS, "not_in", ["open", "pending"], "open", False),
    (STATUS, "present", ABSENT, "open", True),
    ("conversation.channel", "equal_to", "whatsapp", "whatsapp", True),
    ("conversation.priority", "in", ["high", "urgent"], "urgent", True),
    ("message.direction", "equal_to", "inbound", "outbound", False),
    ("message.sender_type", "equal_to", "contact", "contact", True),
    ("message.content_type", "not_in", ["text"], "image", True),
    ("message.attachment_type", "equal_to", "image", ABSENT, False),
    ("message.attachment_type", "not_present", ABSENT, ABSENT, True),
    ("time.weekday", "in", ["saturday", "sunday"], "sunday", True),
    # --- string lists (tags): membership, case-insensitive ------------------------------
    (TAGS, "contains", "vip", ["vip", "billing"], True),
    (TAGS, "contains", "VIP", ["vip"], True),
    (TAGS, "contains", "vip", ["vipp"], False),
    (TAGS, "contains", "vip", [], False),
    (TAGS, "contains", "vip", "vip", False),  # a string is not a list
    (TAGS, "contains", "1", [1], False),
    (TAGS, "not_contains", "vip", ["billing"], True),
    (TAGS, "not_contains", "vip", [], True),
    (TAGS, "not_contains", "vip", ["VIP"], False),
    (TAGS, "in", ["vip", "gold"], ["gold"], True),
    (TAGS, "in", ["vip", "gold"], ["silver", "vip"], True),
    (TAGS, "in", ["vip", "gold"], ["silver"], False),
    (TAGS, "in", ["vip"], [], False),
    (TAGS, "not_in", ["vip", "gold"], ["silver"], True),
    (TAGS, "not_in", ["vip", "gold"], [], True),
    (TAGS, "not_in", ["vip", "gold"], ["gold"], False),
    (TAGS, "present", ABSENT, ["a"], True),
    (TAGS, "present", ABSENT, [], False),
    (TAGS, "not_present", ABSENT, [], True),
    (TAGS, "in", ["vip"], ("vip",), True),
    ("contact.tags", "contains", "straße", ["STRASSE"], True),
    # --- ids: compared as UUIDs -----------------------------------------------------------
    (ASSIGNEE, "equal_to", ID_A, ID_A, True),
    (ASSIGNEE, "equal_to", ID_A, ID_A.upper(), True),
    (ASSIGNEE, "equal_to", ID_A, uuid.UUID(ID_A), True),
    (ASSIGNEE, "equal_to", ID_A.upper(), ID_A, True),
    (ASSIGNEE, "equal_to", ID_A, ID_B, False),
    (ASSIGNEE, "equal_to", ID_A, "not-a-uuid", False),
    (ASSIGNEE, "equal_to", ID_A, 5, False),
    (ASSIGNEE, "not_equal_to", ID_A, ID_B, True),
    (ASSIGNEE, "not_equal_to", ID_A, uuid.UUID(ID_A), False),
    (ASSIGNEE, "in", [ID_A, ID_B], uuid.UUID(ID_B), True),
    (ASSIGNEE, "in", [ID_A], ID_B, False),
    (ASSIGNEE, "not_in", [ID_A], ID_B, True),
    (ASSIGNEE, "not_in", [ID_A], ID_A, False),
    (ASSIGNEE, "present", ABSENT, ID_A, True),
    (ASSIGNEE, "not_present", ABSENT, ABSENT, True),
    ("conversation.division_id", "equal_to", ID_B, ID_B, True),
    ("conversation.id", "in", [ID_A], ID_A, True),
    # --- datetimes ------------------------------------------------------------------------
    (CREATED, "greater_than", "2026-03-08T00:00:00Z", "2026-03-09T00:00:00+00:00", True),
    (CREATED, "greater_than", "2026-03-08T00:00:00Z", dt.datetime(2026, 3, 9, tzinfo=UTC), True),
    (CREATED, "greater_than", "2026-03-08T00:00:00Z", "2026-03-08T00:00:00Z", False),
    (CREATED, "greater_than", "2026-03-08T05:00:00Z", "2026-03-08T01:00:00-05:00", True),
    (CREATED, "less_than", "2026-03-08T06:00:01Z", "2026-03-08T01:00:00-05:00", True),
    (CREATED, "less_than", "2026-03-08T06:00:00Z", "2026-03-08T01:00:00-05:00", False),
    (CREATED, "less_than", "2026-03-08T00:00:00Z", dt.datetime(2026, 3, 7), False),  # naive
    (CREATED, "less_than", "2026-03-08T00:00:00Z", "yesterday", False),
    (CREATED, "less_than", "2026-03-08T00:00:00Z", 5, False),
    (
        CREATED,
        "between",
        ["2026-01-01T00:00:00Z", "2026-12-31T23:59:59Z"],
        "2026-06-01T12:00:00+07:00",
        True,
    ),
    (
        CREATED,
        "between",
        ["2026-01-01T00:00:00Z", "2026-12-31T23:59:59Z"],
        "2027-01-01T00:00:00Z",
        False,
    ),
    (CREATED, "present", ABSENT, "2026-01-01T00:00:00Z", True),
    # --- dynamic (custom attributes): the rule's value decides the comparison -----------
    (CUSTOM, "equal_to", "gold", "gold", True),
    (CUSTOM, "equal_to", "gold", "Gold", False),
    (CUSTOM, "equal_to", 5, 5, True),
    (CUSTOM, "equal_to", 5, 5.0, True),
    (CUSTOM, "equal_to", 5, "5", False),
    (CUSTOM, "equal_to", "5", 5, False),
    (CUSTOM, "equal_to", True, True, True),
    (CUSTOM, "equal_to", True, 1, False),
    (CUSTOM, "equal_to", 1, True, False),
    (CUSTOM, "not_equal_to", "gold", "silver", True),
    (CUSTOM, "not_equal_to", "gold", 5, False),
    (CUSTOM, "not_equal_to", False, True, True),
    (CUSTOM, "in", ["gold", 5, True], 5, True),
    (CUSTOM, "in", ["gold", 5, True], True, True),
    (CUSTOM, "in", ["gold", 5], True, False),
    (CUSTOM, "in", ["gold", 1], True, False),
    (CUSTOM, "in", ["gold", 5], "5", False),
    (CUSTOM, "not_in", ["gold"], "silver", True),
    (CUSTOM, "not_in", ["gold"], "gold", False),
    (CUSTOM, "contains", "old", "GOLD", True),
    (CUSTOM, "contains", "gold", ["Gold", "x"], True),
    (CUSTOM, "contains", "gold", 5, False),
    (CUSTOM, "not_contains", "gold", "silver", True),
    (CUSTOM, "not_contains", "gold", {"gold": 1}, False),
    (CUSTOM, "starts_with", "go", "Gold", True),
    (CUSTOM, "ends_with", "ld", "Gold", True),
    (CUSTOM, "matches", r"^g", "gold", True),
    (CUSTOM, "matches", r"^g", 7, False),
    (SCORE, "greater_than", 7, 8, True),
    (SCORE, "greater_than", 7, "8", False),
    (SCORE, "greater_than", 7, True, False),
    (SCORE, "less_than", 7, 6.9, True),
    (SCORE, "between", [1, 10], 10, True),
    (SCORE, "between", [1, 10], 11, False),
    (SCORE, "present", ABSENT, 0, True),
    (SCORE, "present", ABSENT, False, True),
    (SCORE, "not_present", ABSENT, ABSENT, True),
    (SCORE, "present", ABSENT, {}, True),
    ("event.type", "starts_with", "message.", "message.created", True),
]


@pytest.mark.parametrize(
    ("attribute", "operator", "value", "seen", "expected"),
    CASES,
    ids=[f"{a}-{o}-{v!r}-{s!r}" for a, o, v, s, _ in CASES],
)
def test_operator(attribute, operator, value, seen, expected):
    result = run_leaf(attribute, operator, value, seen)
    assert result.matched is expected
    [item] = result.trace
    assert item["matched"] is expected
    assert item["attribute"] == attribute and item["operator"] == operator
    if seen is ABSENT or (seen is None and operator not in ("present", "not_present")):
        assert item["seen"] is None
    if seen is ABSENT and operator not in ("present", "not_present"):
        assert item["note"] == "absent"


@pytest.mark.parametrize(
    ("attribute", "operator", "value", "seen", "note"),
    [
        (UNREAD, "greater_than", 3, "10", "type mismatch: saw a string"),
        (UNREAD, "equal_to", 1, True, "type mismatch: saw a boolean"),
        (AI, "equal_to", True, 1, "type mismatch: saw a number"),
        (TAGS, "contains", "vip", "vip", "type mismatch: saw a string"),
        (CONTENT, "contains", "x", ["x"], "type mismatch: saw a list"),
        (ASSIGNEE, "equal_to", ID_A, 5, "type mismatch: saw a number"),
        (CREATED, "less_than", "2026-03-08T00:00:00Z", "yesterday", "type mismatch: saw a string"),
    ],
)
def test_type_mismatch_is_noted(attribute, operator, value, seen, note):
    [item] = run_leaf(attribute, operator, value, seen).trace
    assert item["matched"] is False
    assert item["note"] == note


def test_a_match_has_no_note():
    [item] = run_leaf(CONTENT, "contains", "refund", "Refund please").trace
    assert "note" not in item
    assert item == {
        "path": "conditions.conditions[0]",
        "attribute": CONTENT,
        "operator": "contains",
        "expected": "refund",
        "seen": "Refund please",
        "matched": True,
    }


def test_trace_cuts_long_text_and_serializes_ids_and_datetimes():
    long_text = "refund " * 200
    [item] = run_leaf(CONTENT, "contains", "refund", long_text).trace
    assert item["matched"] is True
    assert len(item["seen"]) == 501 and item["seen"].endswith("…")
    [item] = run_leaf(ASSIGNEE, "equal_to", ID_A, uuid.UUID(ID_A)).trace
    assert item["seen"] == ID_A
    moment = dt.datetime(2026, 3, 9, tzinfo=UTC)
    [item] = run_leaf(CREATED, "greater_than", "2026-03-08T00:00:00Z", moment).trace
    assert item["seen"] == "2026-03-09T00:00:00+00:00"
