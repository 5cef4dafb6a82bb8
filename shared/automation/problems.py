"""Validation problems: what is wrong with a rule body, and exactly where.

Paths are dotted and indexed from the rule body's root (``conditions.conditions[1].value``,
``actions[2].params.agent_id``), so the API can answer 422 with the field that needs fixing.
"""

from __future__ import annotations

from typing import NamedTuple


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
