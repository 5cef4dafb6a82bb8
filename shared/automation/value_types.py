"""Attribute value types and the operators each one accepts.

The one table that says which ``operator`` fits which attribute: validation refuses the
rest (``operator_not_allowed``), and the attribute catalogue publishes it for rule editors.
"""

from __future__ import annotations

STRING = "string"
NUMBER = "number"
BOOLEAN = "boolean"
ENUM = "enum"
STRING_LIST = "string_list"
DATETIME = "datetime"
ID = "id"
#: Custom attributes: any JSON scalar (or a list of strings); the value a rule compares
#: with decides how the comparison is made.
DYNAMIC = "dynamic"

TYPES = (STRING, NUMBER, BOOLEAN, ENUM, STRING_LIST, DATETIME, ID, DYNAMIC)

EQUAL_TO = "equal_to"
NOT_EQUAL_TO = "not_equal_to"
IN = "in"
NOT_IN = "not_in"
CONTAINS = "contains"
NOT_CONTAINS = "not_contains"
STARTS_WITH = "starts_with"
ENDS_WITH = "ends_with"
MATCHES = "matches"
PRESENT = "present"
NOT_PRESENT = "not_present"
GREATER_THAN = "greater_than"
LESS_THAN = "less_than"
BETWEEN = "between"
CHANGED_TO = "changed_to"
CHANGED_FROM = "changed_from"

OPERATORS = (
    EQUAL_TO,
    NOT_EQUAL_TO,
    IN,
    NOT_IN,
    CONTAINS,
    NOT_CONTAINS,
    STARTS_WITH,
    ENDS_WITH,
    MATCHES,
    PRESENT,
    NOT_PRESENT,
    GREATER_THAN,
    LESS_THAN,
    BETWEEN,
    CHANGED_TO,
    CHANGED_FROM,
)

_IDENTITY = (EQUAL_TO, NOT_EQUAL_TO, IN, NOT_IN)
_PRESENCE = (PRESENT, NOT_PRESENT)
_CHANGES = (CHANGED_TO, CHANGED_FROM)
_TEXT = (CONTAINS, NOT_CONTAINS, STARTS_WITH, ENDS_WITH, MATCHES)
_ORDER = (GREATER_THAN, LESS_THAN, BETWEEN)

ALLOWED: dict[str, tuple[str, ...]] = {
    STRING: (*_IDENTITY, *_TEXT, *_PRESENCE, *_CHANGES),
    NUMBER: (*_IDENTITY, *_ORDER, *_PRESENCE, *_CHANGES),
    BOOLEAN: (EQUAL_TO, NOT_EQUAL_TO, *_PRESENCE, *_CHANGES),
    ENUM: (*_IDENTITY, *_PRESENCE, *_CHANGES),
    STRING_LIST: (CONTAINS, NOT_CONTAINS, IN, NOT_IN, *_PRESENCE),
    DATETIME: (*_ORDER, *_PRESENCE),
    ID: (*_IDENTITY, *_PRESENCE, *_CHANGES),
    DYNAMIC: OPERATORS,
}

#: One line per operator for rule editors (the full semantics: ``operators.py``).
DESCRIPTIONS: dict[str, str] = {
    EQUAL_TO: "is exactly the value (case-sensitive; ids compare as UUIDs, 1 equals 1.0)",
    NOT_EQUAL_TO: "is there and is not exactly the value",
    IN: "is one of the values (for tags: has any of them)",
    NOT_IN: "is there and is none of the values (for tags: has none of them)",
    CONTAINS: "contains the text, ignoring case (for tags: has the tag)",
    NOT_CONTAINS: "is there and does not contain the text, ignoring case",
    STARTS_WITH: "starts with the text, ignoring case",
    ENDS_WITH: "ends with the text, ignoring case",
    MATCHES: "a regular expression finds a match (case-sensitive unless (?i); time-bounded)",
    PRESENT: "is there and not blank or empty",
    NOT_PRESENT: "is missing, blank or empty",
    GREATER_THAN: "is greater than the value",
    LESS_THAN: "is less than the value",
    BETWEEN: "is within [low, high], both included",
    CHANGED_TO: "the event changed it, to the value (null: it became empty)",
    CHANGED_FROM: "the event changed it, from the value (null: it was empty)",
}


def operator_catalogue() -> list[dict[str, str]]:
    """The operators with a short description each (for rule editors)."""
    return [{"name": name, "description": DESCRIPTIONS[name]} for name in OPERATORS]
