"""JSON in and out of the API: bodies read with a bounded depth, answers written by orjson.

Reading (:func:`loads`): the standard parser (integers keep every digit, where orjson
would turn one past 64 bits into a float), kept to JSON (no ``NaN`` or ``Infinity``,
which jsonb refuses), refusing a document nested deeper than :data:`MAX_DEPTH`.
Without the bound, a free-form field (an account's settings, a rule's payload) nested
300 levels was stored, and reading it back overflowed Python's stack: a row that
answered 500 for as long as it lived; a few thousand levels failed the parser itself.

Writing (:func:`dumps`): orjson, writing what ``pydantic_core.to_json`` writes.

WHY: an inbox page is 25 conversations, each with five UUIDs and six timestamps.
``pydantic_core.to_json`` converts each UUID and datetime through Python code (about
3 us apiece), so serialising a 23 KB page took ~140-200 us, the largest single cost of
the request in the web process. orjson writes UUIDs and datetimes in C: the same bytes
in 33-68 us (measured side by side, twice).

The output is pydantic's, byte for byte (``tests/api/test_json_encoding.py`` compares
them value kind by value kind): ``Z`` for UTC, no spaces, UTF-8 left unescaped, dict
keys that are not strings written as pydantic writes them. Types orjson does not know
(Decimal, timedelta, sets, bytes, pydantic models...) go through
``pydantic_core.to_jsonable_python``, which turns them into what pydantic would have
written. What orjson refuses outright (an integer past 64 bits, a ``time`` with a
time zone) is written by ``pydantic_core.to_json`` itself, as before.
One difference, on purpose: a NaN or infinite float is written ``null`` (valid JSON),
where pydantic wrote ``NaN`` / ``Infinity``, which no JSON parser accepts.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pydantic_core

#: How deep a JSON document from outside may nest. Real ones nest a few levels (a
#: template's components, a rule's condition groups); orjson writes at most 254, and a
#: jsonb value read back under the app's own frames overflowed Python's stack at 300.
MAX_DEPTH = 64


class TooDeep(ValueError):
    """A JSON document nested deeper than :data:`MAX_DEPTH`."""

    def __init__(self) -> None:
        super().__init__(f"nested deeper than {MAX_DEPTH} levels")


def loads(raw: bytes | str) -> Any:
    """Parse JSON from outside; ValueError when it is not JSON, TooDeep when too nested.

    PERF: a document with at most MAX_DEPTH brackets cannot nest deeper (a C count, so
    the usual small body is never walked).
    """
    try:
        data = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except RecursionError:
        raise TooDeep() from None
    brackets = (
        raw.count(b"[") + raw.count(b"{")
        if isinstance(raw, bytes)
        else (raw.count("[") + raw.count("{"))
    )
    if brackets > MAX_DEPTH and _deeper_than(data, MAX_DEPTH):
        raise TooDeep()
    return data


def as_object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else ``{}``: for reading a peer's document, whose
    shape is the peer's to get wrong, without a crash of ours."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a JSON list, else ``[]``: its items are still the peer's to check."""
    return value if isinstance(value, list) else []


def objects_in(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list; anything else (a number, an object) holds none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _not_json(constant: str) -> float:
    """``NaN`` and ``Infinity`` are Python's extensions, not JSON (RFC 8259), and jsonb
    refuses them: refused here, so the answer names the body, not a database error."""
    raise ValueError(f"{constant} is not a JSON number")


def _finite(text: str) -> float:
    """A number too large for a float (``1e400``) would become Infinity: refused too."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is too large a number")
    return value


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels in ``data`` (no recursion)."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def dumps(data: Any) -> bytes:
    """``data`` as compact JSON bytes (see the module docstring)."""
    try:
        return orjson.dumps(data, default=pydantic_core.to_jsonable_python, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return pydantic_core.to_json(data)
