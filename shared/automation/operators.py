"""What each operator means, as small closures built once per condition.

Semantics (documented for rule authors):

- **Identity** (``equal_to``, ``not_equal_to``, ``in``, ``not_in``, ``changed_to``,
  ``changed_from``) is exact: ``"Refund" equal_to "refund"`` is false. Ids compare as UUIDs
  (case and braces do not matter); numbers compare by value (``1 == 1.0``) but a boolean is
  never a number (``true`` is not ``1``) and a string of digits is never a number.
- **Text search** (``contains``, ``not_contains``, ``starts_with``, ``ends_with``) is
  case-insensitive: both sides are Unicode-normalized (NFC) and case-folded, so
  ``contains "refund"`` matches ``"REFUND please"`` and ``"Straße"`` contains ``"STRASSE"``.
- **Tag lists** (``string_list``): ``contains`` = has that tag, ``in`` = has any of these
  tags, ``not_in`` = has none of them; tags compare case-insensitively.
- ``matches`` searches with the pattern as written (add ``(?i)`` for case-insensitivity),
  under a time bound: a search that runs out of time does not match (the trace says so).
- ``greater_than``, ``less_than`` are strict; ``between [low, high]`` includes both ends.
- ``present`` means the attribute is there and not empty (a blank string or an empty list
  is not present); ``not_present`` is its negation.
- A value of the wrong type (a string where a number is expected, ...) does not match.
- Absent attributes match nothing but ``not_present`` (the engine handles absence, so the
  tests built here always receive a value).
- ``changed_to V``: the event changed the attribute and its new value is V (V may be null:
  "became empty"); ``changed_from V``: it changed and its old value was V.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import unicodedata
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import regex

from shared.automation import value_types as t

#: Seconds one ``matches`` search may run before it counts as "no match".
REGEX_TIMEOUT_SECONDS = 0.05

Test = Callable[[Any], bool]


class Check(NamedTuple):
    """A compiled operator: ``test(seen)`` decides; ``guard(seen)`` says the type fits."""

    test: Test
    guard: Test
    #: "value" (absent never matches), "presence" (sees absence) or "change".
    reads: str = "value"


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())


# PERF: one event's message is folded once for all the rules that search it. Long texts get
# a small cache of their own so that memory stays bounded (a few messages, not thousands).
_fold_short = functools.lru_cache(maxsize=8192)(_fold)
_fold_long = functools.lru_cache(maxsize=32)(_fold)
_SHORT = 256


def fold(text: str) -> str:
    """Text as the case-insensitive operators compare it (NFC, then Unicode case folding)."""
    return _fold_short(text) if len(text) <= _SHORT else _fold_long(text)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_text(value: Any) -> bool:
    return isinstance(value, str)


def is_list(value: Any) -> bool:
    return isinstance(value, list | tuple | set | frozenset)


def is_id(value: Any) -> bool:
    return isinstance(value, str | uuid.UUID)


def is_boolean(value: Any) -> bool:
    return isinstance(value, bool)


def canonical_id(value: Any) -> str:
    """An id as a canonical UUID string (a string that is not a UUID stays as it is)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return str(value)


def is_uuid(value: Any) -> bool:
    """Whether ``value`` is a string holding a UUID."""
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def parse_datetime(value: Any) -> dt.datetime | None:
    """An aware datetime from a datetime or an ISO 8601 string; None when it is neither."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value
    return None


def is_datetime(value: Any) -> bool:
    return parse_datetime(value) is not None


def is_present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip() != ""
    return not (is_list(value) and len(value) == 0)


def is_finite_number(value: Any) -> bool:
    # NOTE: JSON keeps every digit of an integer (math.isfinite(10**400) overflows); one
    # past what a double holds exactly is no number a rule (or its JavaScript editor) means.
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) <= _EXACT_INTEGERS
    return is_number(value) and math.isfinite(value)


#: The integers a double holds exactly (JavaScript's Number.MAX_SAFE_INTEGER).
_EXACT_INTEGERS = 2**53 - 1


# --- equality per type ------------------------------------------------------------------


def _same(value_type: str, expected: Any) -> tuple[Test, Test]:
    """(equals, guard) for one expected scalar of ``value_type``."""
    if value_type == t.ID:
        want = canonical_id(expected)
        return (lambda seen: canonical_id(seen) == want), is_id
    if value_type == t.NUMBER or (value_type == t.DYNAMIC and is_number(expected)):
        return (lambda seen: is_number(seen) and seen == expected), is_number
    if value_type == t.BOOLEAN or (value_type == t.DYNAMIC and is_boolean(expected)):
        return (lambda seen: seen is expected), is_boolean
    return (lambda seen: seen == expected), is_text


def _membership(value_type: str, values: list[Any]) -> tuple[Test, Test]:
    """(is one of, guard) for a list of expected scalars."""
    if value_type == t.STRING_LIST:
        tags = frozenset(fold(v) for v in values)
        return (
            lambda seen: is_list(seen) and any(is_text(x) and fold(x) in tags for x in seen)
        ), is_list
    if value_type == t.ID:
        ids = frozenset(canonical_id(v) for v in values)
        return (lambda seen: canonical_id(seen) in ids), is_id
    texts = frozenset(v for v in values if is_text(v))
    numbers = frozenset(v for v in values if is_number(v))
    booleans = frozenset(v for v in values if is_boolean(v))

    def test(seen: Any) -> bool:
        if isinstance(seen, str):
            return seen in texts
        if isinstance(seen, bool):
            return seen in booleans
        return is_number(seen) and seen in numbers

    if value_type == t.NUMBER:
        return test, is_number
    if value_type in (t.STRING, t.ENUM):
        return test, is_text
    return test, lambda seen: isinstance(seen, str | int | float)


# --- text search ------------------------------------------------------------------------


def _contains(value_type: str, expected: str) -> tuple[Test, Test]:
    want = fold(expected)

    def in_list(seen: Any) -> bool:
        return is_list(seen) and any(is_text(x) and fold(x) == want for x in seen)

    def in_text(seen: Any) -> bool:
        return want in fold(seen)

    if value_type == t.STRING_LIST:
        return in_list, is_list
    if value_type == t.DYNAMIC:

        def either(seen: Any) -> bool:
            if isinstance(seen, str):
                return in_text(seen)
            return in_list(seen)

        return either, lambda seen: isinstance(seen, str) or is_list(seen)
    return (lambda seen: isinstance(seen, str) and in_text(seen)), is_text


def _affix(expected: str, starts: bool) -> tuple[Test, Test]:
    want = fold(expected)
    if starts:
        return (lambda seen: isinstance(seen, str) and fold(seen).startswith(want)), is_text
    return (lambda seen: isinstance(seen, str) and fold(seen).endswith(want)), is_text


def compile_pattern(pattern: str) -> regex.Pattern:
    """The ``matches`` pattern as the engine runs it (``regex`` with VERSION1 semantics)."""
    return regex.compile(pattern, regex.VERSION1)


def _matches(pattern: str) -> tuple[Test, Test]:
    compiled = compile_pattern(pattern)

    def test(seen: Any) -> bool:
        # Raises TimeoutError when the search runs out of time; the engine records it.
        return isinstance(seen, str) and (
            compiled.search(seen, timeout=REGEX_TIMEOUT_SECONDS) is not None
        )

    return test, is_text


# --- order ------------------------------------------------------------------------------


def _ordered(value_type: str, expected: Any) -> tuple[Callable[[Any], Any], Any, Test]:
    """(convert seen, expected converted, guard): numbers as they are, datetimes parsed."""
    if value_type == t.DATETIME:
        if is_list(expected):
            return parse_datetime, [parse_datetime(v) for v in expected], is_datetime
        return parse_datetime, parse_datetime(expected), is_datetime

    def number(seen: Any) -> Any:
        return seen if is_number(seen) else None

    return number, expected, is_number


def _compare(value_type: str, operator: str, expected: Any) -> tuple[Test, Test]:
    convert, want, guard = _ordered(value_type, expected)
    if operator == t.GREATER_THAN:

        def greater(seen: Any) -> bool:
            value = convert(seen)
            return value is not None and value > want

        return greater, guard
    if operator == t.LESS_THAN:

        def less(seen: Any) -> bool:
            value = convert(seen)
            return value is not None and value < want

        return less, guard
    low, high = want

    def between(seen: Any) -> bool:
        value = convert(seen)
        return value is not None and low <= value <= high

    return between, guard


# --- presence and changes ---------------------------------------------------------------


def _change(value_type: str, operator: str, expected: Any) -> Test:
    """A test over ``(before, after)``: it changed, and the new (old) value is ``expected``."""
    if expected is None:
        wanted: Test = lambda value: not is_present(value)  # noqa: E731
    else:
        wanted, _ = _same(value_type, expected)
    canon = canonical_id if value_type == t.ID else (lambda value: value)
    side = 1 if operator == t.CHANGED_TO else 0

    def test(change: Any) -> bool:
        before, after = change
        if before is not None and after is not None and canon(before) == canon(after):
            return False
        if before is None and after is None:
            return False
        value = (before, after)[side]
        return wanted(value) if value is not None else expected is None

    return test


def _negate(test: Test, guard: Test) -> Test:
    return lambda seen: guard(seen) and not test(seen)


def build(value_type: str, operator: str, value: Any) -> Check:
    """The check for ``operator`` with ``value`` on an attribute of ``value_type``.

    Call only with a validated (type, operator, value) combination.
    """
    if operator == t.PRESENT:
        return Check(is_present, lambda seen: True, "presence")
    if operator == t.NOT_PRESENT:
        return Check(lambda seen: not is_present(seen), lambda seen: True, "presence")
    if operator in (t.CHANGED_TO, t.CHANGED_FROM):
        return Check(_change(value_type, operator, value), lambda seen: True, "change")
    if operator in (t.EQUAL_TO, t.NOT_EQUAL_TO):
        test, guard = _same(value_type, value)
    elif operator in (t.IN, t.NOT_IN):
        test, guard = _membership(value_type, value)
    elif operator in (t.CONTAINS, t.NOT_CONTAINS):
        test, guard = _contains(value_type, value)
    elif operator in (t.STARTS_WITH, t.ENDS_WITH):
        test, guard = _affix(value, operator == t.STARTS_WITH)
    elif operator == t.MATCHES:
        test, guard = _matches(value)
    elif operator in (t.GREATER_THAN, t.LESS_THAN, t.BETWEEN):
        test, guard = _compare(value_type, operator, value)
    else:
        raise ValueError(f"unknown operator {operator!r}")
    if operator in (t.NOT_EQUAL_TO, t.NOT_IN, t.NOT_CONTAINS):
        test = _negate(test, guard)
    return Check(test, guard)
