"""Small SQL helpers every domain's queries share."""

from __future__ import annotations


def contains_pattern(text: str) -> str:
    """An ILIKE pattern matching ``text`` anywhere, with its own ``\\``, ``%`` and ``_`` literal.

    APPSEC: without escaping, a search for ``%`` would match everything and a
    pattern of many wildcards could be made expensive on purpose.
    """
    escaped = text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
    return f"%{escaped}%"
