"""JSON bytes for API responses: orjson, writing what ``pydantic_core.to_json`` writes.

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

from typing import Any

import orjson
import pydantic_core

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def dumps(data: Any) -> bytes:
    """``data`` as compact JSON bytes (see the module docstring)."""
    try:
        return orjson.dumps(data, default=pydantic_core.to_jsonable_python, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return pydantic_core.to_json(data)
