"""The pure rules of template components: what a new template may hold, what a send must give.

Meta's shapes (Cloud API, "Message templates"): a template is a list of components,
``HEADER`` (``format`` TEXT with at most one variable, IMAGE, VIDEO, DOCUMENT or
LOCATION), ``BODY`` (text with variables), ``FOOTER`` (plain text) and ``BUTTONS``
(QUICK_REPLY, URL with an optional variable in the URL, PHONE_NUMBER, COPY_CODE, OTP...).
Variables are ``{{1}}``, ``{{2}}``... (``POSITIONAL``) or ``{{first_name}}`` (``NAMED``).

A send (``{"name", "language", "components": [{"type": "header" | "body" | "button",
"sub_type", "index", "parameters": [...]}]}``) must give each variable of the template
exactly one parameter; Meta refuses it otherwise (error 132000), after the message was
queued and charged to the conversation. :func:`check_send` says so before any call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
PARAMETER_FORMATS = ("POSITIONAL", "NAMED")
HEADER_FORMATS = ("TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION")
MEDIA_FORMATS = ("IMAGE", "VIDEO", "DOCUMENT")
#: The parameter types of a body's (or a TEXT header's) variables.
TEXT_TYPES = ("text", "currency", "date_time")
BUTTON_TYPES = (
    "QUICK_REPLY",
    "URL",
    "PHONE_NUMBER",
    "COPY_CODE",
    "OTP",
    "FLOW",
    "CATALOG",
    "MPM",
    "VOICE_CALL",
)
#: Meta's limits on text lengths and counts.
MAX_HEADER_TEXT = 60
MAX_BODY_TEXT = 1024
MAX_FOOTER_TEXT = 60
MAX_BUTTON_TEXT = 25
MAX_BUTTONS = 10

NAME = re.compile(r"[a-z0-9_]{1,512}")
NAME_RULE = "1 to 512 characters among a-z, 0-9 and '_'"
LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Za-z]{2,4})?")
LANGUAGE_RULE = "a Meta language code such as en, en_US or pt_BR"
_VARIABLE = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")
_NAMED = re.compile(r"[a-z][a-z0-9_]*")


class ComponentProblems(Exception):
    """What is wrong, as ``[{"field", "message"}]`` (the 422's details)."""

    def __init__(self, details: list[dict[str, str]]):
        super().__init__("; ".join(f"{d['field']}: {d['message']}" for d in details))
        self.details = details


def variables(text: Any) -> list[str]:
    """The distinct variables of ``text`` in order of first use (``["1", "2"]``)."""
    if not isinstance(text, str):
        return []
    seen: list[str] = []
    for name in _VARIABLE.findall(text):
        if name not in seen:
            seen.append(name)
    return seen


# --- a new template ---------------------------------------------------------------------------


def normalize_new(components: list[Any], category: str, parameter_format: str) -> list[dict]:
    """Check a new template's components; return them with upper-case ``type``/``format``.

    Only what Meta would certainly refuse is checked here (shape, lengths, variable
    names and order); the rest (examples, content policy) is Meta's review.
    """
    problems: list[dict[str, str]] = []
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for index, raw in enumerate(components):
        where = f"components[{index}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            problems.append({"field": where, "message": "an object with a 'type'"})
            continue
        component = dict(raw)
        kind = component["type"] = raw["type"].upper()
        if kind not in ("HEADER", "BODY", "FOOTER", "BUTTONS"):
            problems.append(
                {"field": f"{where}.type", "message": "HEADER, BODY, FOOTER or BUTTONS"}
            )
            continue
        if kind in seen:
            problems.append({"field": f"{where}.type", "message": f"only one {kind}"})
            continue
        seen.add(kind)
        problems += _check_component(component, where, category, parameter_format)
        out.append(component)
    if "BODY" not in seen and category != "AUTHENTICATION" and not problems:
        problems.append({"field": "components", "message": "a BODY component is required"})
    if problems:
        raise ComponentProblems(problems)
    return out


def _check_component(
    component: dict[str, Any], where: str, category: str, parameter_format: str
) -> list[dict[str, str]]:
    kind = component["type"]
    if kind == "HEADER":
        fmt = str(component.get("format") or "").upper()
        component["format"] = fmt
        if fmt not in HEADER_FORMATS:
            return [{"field": f"{where}.format", "message": ", ".join(HEADER_FORMATS)}]
        if fmt != "TEXT":
            return []
        problems = _text(component, where, MAX_HEADER_TEXT, parameter_format)
        if len(variables(component.get("text"))) > 1:
            problems.append({"field": f"{where}.text", "message": "at most one variable"})
        return problems
    if kind == "BODY":
        if category == "AUTHENTICATION" and "text" not in component:
            return []  # Meta writes the body of an authentication template itself
        return _text(component, where, MAX_BODY_TEXT, parameter_format)
    if kind == "FOOTER":
        problems = _text(component, where, MAX_FOOTER_TEXT, parameter_format)
        if variables(component.get("text")):
            problems.append({"field": f"{where}.text", "message": "a footer has no variables"})
        return problems
    return _buttons(component, where)


def _text(
    component: dict[str, Any], where: str, maximum: int, parameter_format: str
) -> list[dict[str, str]]:
    text = component.get("text")
    if not isinstance(text, str) or not text.strip():
        return [{"field": f"{where}.text", "message": "required"}]
    if len(text) > maximum:
        return [{"field": f"{where}.text", "message": f"at most {maximum} characters"}]
    names = variables(text)
    if parameter_format == "NAMED":
        bad = [n for n in names if not _NAMED.fullmatch(n)]
        if bad:
            return [
                {
                    "field": f"{where}.text",
                    "message": f"named variables are lower-case words: {{{{{bad[0]}}}}}",
                }
            ]
    elif names != [str(n) for n in range(1, len(names) + 1)]:
        return [
            {
                "field": f"{where}.text",
                "message": "variables are {{1}}, {{2}}... in order, without gaps",
            }
        ]
    return []


def _buttons(component: dict[str, Any], where: str) -> list[dict[str, str]]:
    buttons = component.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        return [{"field": f"{where}.buttons", "message": f"1 to {MAX_BUTTONS} buttons"}]
    problems = []
    for index, button in enumerate(buttons):
        here = f"{where}.buttons[{index}]"
        if not isinstance(button, dict) or str(button.get("type", "")).upper() not in BUTTON_TYPES:
            problems.append({"field": f"{here}.type", "message": ", ".join(BUTTON_TYPES)})
            continue
        button["type"] = button["type"].upper()
        text = button.get("text")
        if text is not None and (not isinstance(text, str) or len(text) > MAX_BUTTON_TEXT):
            problems.append({"field": f"{here}.text", "message": f"at most {MAX_BUTTON_TEXT}"})
        if button["type"] == "URL" and len(variables(button.get("url"))) > 1:
            problems.append({"field": f"{here}.url", "message": "at most one variable"})
    return problems


# --- a send -----------------------------------------------------------------------------------


@dataclass
class Expected:
    """The parameters a send of a template must give, per component."""

    #: ``TEXT`` header: its variables; a media header: its format (one parameter).
    header_variables: list[str] = field(default_factory=list)
    header_media: str | None = None
    header_location: bool = False
    body_variables: list[str] = field(default_factory=list)
    #: Button index -> (Meta's button type, variables it needs).
    buttons: dict[int, tuple[str, list[str]]] = field(default_factory=dict)


def expected(components: list[dict[str, Any]]) -> Expected:
    """What a send of a template with these (Meta-listed) components must give."""
    want = Expected()
    for component in components or []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            fmt = str(component.get("format") or "").upper()
            if fmt == "TEXT":
                want.header_variables = variables(component.get("text"))
            elif fmt in MEDIA_FORMATS:
                want.header_media = fmt
            elif fmt == "LOCATION":
                want.header_location = True
        elif kind == "BODY":
            want.body_variables = variables(component.get("text"))
        elif kind == "BUTTONS":
            buttons = component.get("buttons")
            # Stored as Meta listed them: another shape than a list means no buttons.
            for index, button in enumerate(buttons if isinstance(buttons, list) else []):
                if not isinstance(button, dict):
                    continue
                button_type = str(button.get("type", "")).upper()
                needs = variables(button.get("url")) if button_type in ("URL", "OTP") else []
                if button_type == "COPY_CODE":
                    needs = ["coupon_code"]
                want.buttons[index] = (button_type, needs)
    return want


def check_send(
    want: Expected,
    given: list[dict[str, Any]],
    *,
    header_media_url: str | None,
    named: bool = False,
) -> list[dict[str, Any]]:
    """The send's components, checked against ``want``; the header media filled in.

    Raises :class:`ComponentProblems` naming every component whose parameters are
    wrong. A media header without parameters gets the template's ``header_media_url``.
    ``named``: a NAMED template, whose body and header parameters Meta matches by their
    ``parameter_name``.
    """
    problems: list[dict[str, str]] = []
    headers, bodies, buttons = [], [], {}
    for index, component in enumerate(given):
        where = f"template.components[{index}]"
        if not isinstance(component, dict):
            problems.append({"field": where, "message": "an object with a 'type'"})
            continue
        kind = str(component.get("type", "")).lower()
        parameters = component.get("parameters") or []
        if not isinstance(parameters, list):
            problems.append({"field": f"{where}.parameters", "message": "a list"})
            continue
        if kind == "header":
            headers.append(parameters)
        elif kind == "body":
            bodies.append(parameters)
        elif kind == "button":
            try:
                button_index = int(component.get("index"))
            except (TypeError, ValueError):
                problems.append({"field": f"{where}.index", "message": "the button's index"})
                continue
            buttons[button_index] = parameters
        else:
            problems.append({"field": f"{where}.type", "message": "header, body or button"})
    if len(headers) > 1 or len(bodies) > 1:
        problems.append({"field": "template.components", "message": "one header and one body"})
    out = [dict(c) for c in given if isinstance(c, dict)]
    header = headers[0] if headers else None
    problems += _check_header(want, header, header_media_url, out, named)
    problems += _count(
        "body", want.body_variables, bodies[0] if bodies else [], TEXT_TYPES, named=named
    )
    for index, parameters in sorted(buttons.items()):
        if index not in want.buttons:
            problems.append(
                {"field": f"template.button[{index}]", "message": "the template has no such button"}
            )
            continue
        button_type, needs = want.buttons[index]
        if button_type == "QUICK_REPLY":
            if len(parameters) > 1:
                problems.append(
                    {"field": f"template.button[{index}]", "message": "at most one payload"}
                )
            else:
                problems += _untyped(f"button[{index}]", parameters)
            continue
        problems += _count(f"button[{index}]", needs, parameters)
    for index, (_button_type, needs) in sorted(want.buttons.items()):
        if needs and index not in buttons:
            problems.append(
                {
                    "field": f"template.button[{index}]",
                    "message": f"expects {len(needs)} parameter(s), got none",
                }
            )
    if problems:
        raise ComponentProblems(problems)
    return out


def _check_header(
    want: Expected,
    header: list[Any] | None,
    header_media_url: str | None,
    out: list[dict[str, Any]],
    named: bool,
) -> list[dict[str, str]]:
    if want.header_media:
        kind = want.header_media.lower()
        if header is None:
            if not header_media_url:
                return [
                    {
                        "field": "template.header",
                        "message": f"expects 1 {kind} parameter, got none (and the template"
                        " has no header media URL)",
                    }
                ]
            out.insert(
                0,
                {
                    "type": "header",
                    "parameters": [{"type": kind, kind: {"link": header_media_url}}],
                },
            )
            return []
        if len(header) != 1 or not _media(header[0], kind):
            return [
                {
                    "field": "template.header",
                    "message": f"expects 1 {kind} parameter: "
                    f'{{"type": "{kind}", "{kind}": {{"link" or "id": ...}}}}',
                }
            ]
        return []
    if want.header_location:
        if header is None or len(header) != 1:
            return [{"field": "template.header", "message": "expects 1 location parameter"}]
        return _untyped("header", header)
    return _count("header", want.header_variables, header or [], TEXT_TYPES, named=named)


def _media(parameter: Any, kind: str) -> bool:
    """Whether ``parameter`` is ``{"type": kind, kind: {"link" | "id": "..."}}``."""
    if not isinstance(parameter, dict) or parameter.get("type") != kind:
        return False
    media = parameter.get(kind)
    return isinstance(media, dict) and any(
        isinstance(media.get(key), str) and media[key] for key in ("link", "id")
    )


def _typed(parameter: Any, types: tuple[str, ...] | None) -> bool:
    """Meta's ``{"type": T, T: value}`` (a string for ``text``), T among ``types``."""
    if not isinstance(parameter, dict) or not isinstance(parameter.get("type"), str):
        return False
    kind = parameter["type"]
    if types is not None and kind not in types:
        return False
    value = parameter.get(kind)
    if kind == "text":
        # NOTE: an empty text passes: a campaign's "{{var.x}}" may render empty, and what
        # it sends then is the campaign's rule, not a shape error.
        return isinstance(value, str)
    return value is not None


def _untyped(
    what: str, parameters: list[Any], types: tuple[str, ...] | None = None
) -> list[dict[str, str]]:
    """Meta refuses bare values and values missing their type's key: each parameter is
    ``{"type": "text", "text": ...}`` or the like."""
    if all(_typed(p, types) for p in parameters):
        return []
    shape = '{"type": T, T: value}' + (f", T one of {', '.join(types)}" if types else "")
    return [{"field": f"template.{what}", "message": f"each parameter is {shape}"}]


def _count(
    what: str,
    needs: list[str],
    parameters: list[Any],
    types: tuple[str, ...] | None = None,
    *,
    named: bool = False,
) -> list[dict[str, str]]:
    if untyped := _untyped(what, parameters, types):
        return untyped
    if len(parameters) != len(needs):
        return [
            {
                "field": f"template.{what}",
                "message": f"expects {len(needs)} parameter(s), got {len(parameters)}",
            }
        ]
    if named and sorted(str(p.get("parameter_name")) for p in parameters) != sorted(needs):
        return [
            {
                "field": f"template.{what}",
                "message": "a NAMED template's parameters each give one 'parameter_name': "
                + ", ".join(needs),
            }
        ]
    return []
