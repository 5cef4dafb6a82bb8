"""Validation problems: what is wrong with a rule body, and exactly where.

Paths are dotted and indexed from the rule body's root (``conditions.conditions[1].value``,
``actions[2].params.agent_id``), so the API can answer 422 with the field that needs fixing.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

#: A UTF-16 surrogate: in a decoded string, always half of a pair (JSON joins whole ones).
_SURROGATE = re.compile("[\ud800-\udfff]")
#: What a value holding one is told.
NOT_TEXT = "holds half of an emoji (a lone UTF-16 surrogate), which is not text"


class Problem(NamedTuple):
    path: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code, "message": self.message}


def key(path: str, name: str) -> str:
    """The path of ``name`` inside the object at ``path``."""
    return f"{path}.{name}" if path else name


def index(path: str, i: int) -> str:
    """The path of item ``i`` of the list at ``path``."""
    return f"{path}[{i}]"


def type_name(value: object) -> str:
    """A JSON-ish name for a value's type, for messages ("a string", "null"...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def not_text(value: Any, path: str) -> str | None:
    """The path of the first string in ``value`` (an object's keys too: the object's
    path then) holding a lone surrogate, or None.

    WHY: JSON accepts ``"\\ud83d"`` alone, but no text encoding does: stored, the
    database refuses it; answered, the response cannot be encoded (a 500).
    """
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(name, str) and _SURROGATE.search(name):
                return path
            found = not_text(item, key(path, str(name)))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = not_text(item, index(path, i))
            if found is not None:
                return found
    return None
