"""``{{contact.name}}``-style templates for message and note bodies.

Syntax: ``{{ name }}`` or ``{{ name | filter | filter: "arg" }}``, where ``name`` is an
attribute of the catalogue, i.e. a fact (``contact.name``, ``contact.custom_attributes.plan``).
Filters: ``default: "text"`` (used when the value is absent, null, blank or an empty list),
``upcase``, ``downcase``, ``capitalize``. Values render as text: lists joined with ", ",
booleans as true/false, whole floats without ".0". Nothing is escaped (bodies are plain text).

At save time :func:`validate_template` refuses unknown variables, unknown filters, malformed
or unclosed placeholders. At render time nothing raises: an unknown variable renders empty
and a malformed placeholder is kept as written, so a message is never lost to a template.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from shared.automation.attributes import lookup
from shared.automation.problems import Problem

MAX_TEMPLATE_LENGTH = 4096
MAX_PLACEHOLDERS = 50
#: The longest rendered text: past every body's own limit (a message's 4096, a note's
#: 10,000 characters), so only a text over its limit already is cut.
MAX_RENDERED_LENGTH = 16_384

_OPEN, _CLOSE = "{{", "}}"
# NOTE: one way to read the blanks after a filter (``\s*`` before the ``:`` belongs to the
# argument): with two ``\s*`` in a row, a malformed placeholder of many filters padded
# with spaces backtracked exponentially (minutes per request).
_EXPRESSION = re.compile(
    r"""\s*(?P<name>[A-Za-z_][\w\-]*(?:\.[\w\-]+)*)\s*
        (?P<filters>(?:\|\s*[a-z_]+(?:\s*:\s*(?:"[^"]*"|'[^']*'))?\s*)*)$""",
    re.VERBOSE,
)
_FILTER = re.compile(r"""\|\s*(?P<name>[a-z_]+)(?:\s*:\s*(?P<arg>"[^"]*"|'[^']*'))?\s*""")

_FILTERS_WITH_ARGUMENT = frozenset({"default"})
_TEXT_FILTERS: dict[str, Callable[[str], str]] = {
    "upcase": str.upper,
    "downcase": str.lower,
    "capitalize": str.capitalize,
}
FILTERS = ("default", *_TEXT_FILTERS)


class _Placeholder(NamedTuple):
    name: str
    filters: tuple[tuple[str, str | None], ...]


class _Error(NamedTuple):
    code: str
    message: str


#: A parsed template: literal strings, placeholders, and the parse errors found.
_Part = str | _Placeholder


def render(template: str, variables: Mapping[str, Any]) -> str:
    """The template with every placeholder replaced by its variable's text, cut at
    :data:`MAX_RENDERED_LENGTH` characters.

    NOTE: a template is short, its variables are not: 50 placeholders of a large message
    (an email, a dry-run's test payload of up to a megabyte) rendered whole were 50 copies
    of it per action, in the dry-run's answer and in each run's stored action results.
    """
    parts, _ = _parse(template)
    out: list[str] = []
    size = 0
    for part in parts:
        text = part if isinstance(part, str) else _render_placeholder(part, variables)
        out.append(text)
        size += len(text)
        if size >= MAX_RENDERED_LENGTH:
            break
    return "".join(out)[:MAX_RENDERED_LENGTH]


def validate_template(text: Any, *, path: str) -> list[Problem]:
    """Problems of a template (each at ``path``); [] when it renders as its author meant."""
    if not isinstance(text, str):
        return [Problem(path, "wrong_value_type", "expected a string")]
    if len(text) > MAX_TEMPLATE_LENGTH:
        return [Problem(path, "value_too_long", f"at most {MAX_TEMPLATE_LENGTH} characters")]
    parts, errors = _parse(text)
    problems = [Problem(path, e.code, e.message) for e in errors]
    placeholders = [p for p in parts if isinstance(p, _Placeholder)]
    if len(placeholders) > MAX_PLACEHOLDERS:
        problems.append(
            Problem(path, "too_many_placeholders", f"at most {MAX_PLACEHOLDERS} placeholders")
        )
    for placeholder in placeholders:
        if lookup(placeholder.name) is None:
            problems.append(
                Problem(path, "unknown_variable", f"unknown variable {placeholder.name!r}")
            )
        for name, argument in placeholder.filters:
            problems.extend(_filter_problems(name, argument, path))
    return problems


def variables_of(template: str) -> list[str]:
    """The variable names a template uses, in order (for editors and dry-run)."""
    parts, _ = _parse(template)
    return [p.name for p in parts if isinstance(p, _Placeholder)]


def _filter_problems(name: str, argument: str | None, path: str) -> list[Problem]:
    if name not in FILTERS:
        return [
            Problem(path, "unknown_filter", f"unknown filter {name!r}; use {', '.join(FILTERS)}")
        ]
    if name in _FILTERS_WITH_ARGUMENT and argument is None:
        return [Problem(path, "missing_filter_argument", f'{name} needs a value: {name}: "..."')]
    if name not in _FILTERS_WITH_ARGUMENT and argument is not None:
        return [Problem(path, "unexpected_filter_argument", f"{name} takes no value")]
    return []


@functools.lru_cache(maxsize=2048)
def _parse(template: str) -> tuple[tuple[_Part, ...], tuple[_Error, ...]]:
    parts: list[_Part] = []
    errors: list[_Error] = []
    position = 0
    while True:
        start = template.find(_OPEN, position)
        if start < 0:
            parts.append(template[position:])
            break
        end = template.find(_CLOSE, start + 2)
        if end < 0:
            errors.append(_Error("unclosed_placeholder", f"'{{{{' at {start} is never closed"))
            parts.append(template[position:])
            break
        parts.append(template[position:start])
        inner = template[start + 2 : end]
        placeholder = _placeholder(inner)
        if placeholder is None:
            errors.append(
                _Error("invalid_placeholder", f"{{{{{inner}}}}} is not a variable with filters")
            )
            parts.append(template[start : end + 2])
        else:
            parts.append(placeholder)
        position = end + 2
    return tuple(p for p in parts if p != ""), tuple(errors)


def _placeholder(inner: str) -> _Placeholder | None:
    match = _EXPRESSION.match(inner)
    if match is None:
        return None
    filters = tuple(
        (f["name"], f["arg"][1:-1] if f["arg"] is not None else None)
        for f in _FILTER.finditer(match["filters"])
    )
    return _Placeholder(match["name"], filters)


def _render_placeholder(placeholder: _Placeholder, variables: Mapping[str, Any]) -> str:
    text = as_text(variables.get(placeholder.name))
    for name, argument in placeholder.filters:
        if name == "default":
            if text.strip() == "" and argument is not None:
                text = argument
        elif name in _TEXT_FILTERS:
            text = _TEXT_FILTERS[name](text)
    return text


def as_text(value: Any) -> str:
    """A variable's value as it appears in a rendered message."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(as_text(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)
