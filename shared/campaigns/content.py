"""A campaign's message for one recipient: its body or template with the placeholders filled.

Placeholders are ``{{name}}``, ``{{phone}}``, ``{{email}}`` (the contact's),
``{{attr.KEY}}`` (a contact custom attribute) and ``{{var.KEY}}`` (a value given with
the recipient). They may appear in a body and in any text parameter of a template's
components. A missing value renders empty.

Example::

    render_text("Hi {{name}}, code {{var.code}}", contact, {"code": "X1"})
"""

from __future__ import annotations

import re
from typing import Any

from shared.errors import ValidationFailed
from shared.models import Contact

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_KNOWN = re.compile(r"^(name|phone|email|(attr|var)\.[A-Za-z0-9_.-]{1,64})$")


def check(body: str | None, template: dict[str, Any] | None) -> None:
    """422 naming an unknown placeholder (before anything is stored)."""
    for field, text in [("body", body), *(("template", t) for t in _texts(template))]:
        for key in PLACEHOLDER.findall(text or ""):
            if not _KNOWN.match(key):
                raise ValidationFailed.field(
                    field,
                    f"unknown placeholder {{{{{key}}}}}: use name, phone, email, attr.KEY"
                    " or var.KEY",
                )


def _value(key: str, contact: Contact, variables: dict[str, Any]) -> str:
    if key in ("name", "phone", "email"):
        value = getattr(contact, key)
    elif key.startswith("attr."):
        value = (contact.custom_attributes or {}).get(key[5:])
    elif key.startswith("var."):
        value = (variables or {}).get(key[4:])
    else:
        value = None
    return "" if value is None else str(value)


def render_text(text: str, contact: Contact, variables: dict[str, Any]) -> str:
    return PLACEHOLDER.sub(lambda m: _value(m.group(1), contact, variables), text)


def render_template(
    template: dict[str, Any], contact: Contact, variables: dict[str, Any]
) -> dict[str, Any]:
    """A copy of ``template`` whose string values are rendered for this recipient."""

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return render_text(node, contact, variables)
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        return node

    return {**template, "components": walk(template.get("components") or [])}


def _texts(template: dict[str, Any] | None) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    walk((template or {}).get("components"))
    return found
