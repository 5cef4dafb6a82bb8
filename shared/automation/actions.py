"""The actions a rule can take: their catalogue, parameter validation and rendering.

Shape only, no I/O: the service checks that referenced ids belong to the tenant (via
:func:`references`, which gives each id with its path for a 422) and executes the actions.

==================  ==========================================  ==============================
type                params                                      notes
==================  ==========================================  ==============================
assign_agent        agent_id
assign_division     division_id
assign_round_robin  division_id?                                among online agents
add_tags            tags (1-20)                                 normalized like the inbox's
remove_tags         tags (1-20)
set_status          status: open | pending | resolved           snoozing is ``snooze``
set_priority        priority: low | normal | high | urgent
snooze              minutes (1-525600) | until (ISO, with tz)   exactly one of the two
send_message        body (template)                             ``{{contact.name}}`` variables
send_quick_reply    quick_reply_id
add_note            body (template)
send_webhook        endpoint_id                                 through the webhook engine
handover_to_ai      (none)
handover_to_human   division_id?
mute                minutes? (1-525600)                         without minutes: until undone
==================  ==========================================  ==============================
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from shared.automation.operators import is_uuid, parse_datetime
from shared.automation.problems import Problem, index, key, type_name
from shared.automation.templating import render, validate_template
from shared.inbox.conversations import MAX_TAGS, PRIORITIES, normalize_tag
from shared.time_bounds import EARLIEST_DAY, LATEST_DAY

#: Actions in one rule.
MAX_ACTIONS = 20
MAX_MINUTES = 525_600  # a year
MAX_BODY_LENGTH = 4096
SETTABLE_STATUSES = ("open", "pending", "resolved")

# Reference kinds, the keys of referenced_ids().
AGENTS = "agents"
DIVISIONS = "divisions"
QUICK_REPLIES = "quick_replies"
WEBHOOK_ENDPOINTS = "webhook_endpoints"
REFERENCE_KINDS = (AGENTS, DIVISIONS, QUICK_REPLIES, WEBHOOK_ENDPOINTS)

Checker = Callable[[Any, str], list[Problem]]


class Param(NamedTuple):
    name: str
    check: Checker
    required: bool = True
    #: The reference kind when the param names another row (an id), else None.
    refers_to: str | None = None
    #: Whether the param is a template rendered with the facts.
    template: bool = False


class ActionType(NamedTuple):
    name: str
    params: tuple[Param, ...]
    description: str
    #: Names of params of which exactly one must be given.
    one_of: tuple[str, ...] = ()


def _wrong(path: str, expected: str, value: Any) -> list[Problem]:
    return [Problem(path, "wrong_value_type", f"expected {expected}, got {type_name(value)}")]


def _id(value: Any, path: str) -> list[Problem]:
    return [] if is_uuid(value) else _wrong(path, "an id (UUID string)", value)


def _minutes(value: Any, path: str) -> list[Problem]:
    if isinstance(value, bool) or not isinstance(value, int):
        return _wrong(path, "a whole number of minutes", value)
    if not 1 <= value <= MAX_MINUTES:
        return [Problem(path, "out_of_range", f"between 1 and {MAX_MINUTES} minutes")]
    return []


def _until(value: Any, path: str) -> list[Problem]:
    until = parse_datetime(value) if isinstance(value, str) else None
    if until is None:
        return [Problem(path, "wrong_value_type", "expected an ISO 8601 date-time with a timezone")]
    # NOTE: in UTC, where it is stored: 9999-12-31T23:00-14:00 is year 10000 there, which
    # PostgreSQL keeps and no driver reads back (every read of the conversation failed).
    try:
        day = until.astimezone(dt.UTC).date()
    except OverflowError:
        day = None
    if day is None or not EARLIEST_DAY <= day <= LATEST_DAY:
        return [Problem(path, "out_of_range", "a time in the years 1900 to 9000")]
    return []


def _one_of(choices: tuple[str, ...]) -> Checker:
    def check(value: Any, path: str) -> list[Problem]:
        if isinstance(value, str) and value in choices:
            return []
        return [Problem(path, "not_an_enum_member", f"expected one of: {', '.join(choices)}")]

    return check


def _tags(value: Any, path: str) -> list[Problem]:
    if not isinstance(value, list):
        return _wrong(path, "a list of tags", value)
    if not 1 <= len(value) <= MAX_TAGS:
        return [Problem(path, "out_of_range", f"1 to {MAX_TAGS} tags")]
    problems = []
    for i, tag in enumerate(value):
        if not isinstance(tag, str):
            problems += _wrong(index(path, i), "a string", tag)
            continue
        try:
            normalize_tag(tag)
        except ValueError as exc:
            problems.append(Problem(index(path, i), "invalid_tag", str(exc)))
    return problems


def _body(value: Any, path: str) -> list[Problem]:
    if isinstance(value, str) and value.strip() == "":
        return [Problem(path, "empty_value", "the body is empty")]
    return validate_template(value, path=path)


_STATUS = _one_of(SETTABLE_STATUSES)
_PRIORITY = _one_of(PRIORITIES)


def _types(*items: ActionType) -> dict[str, ActionType]:
    return {a.name: a for a in items}


ACTION_TYPES: dict[str, ActionType] = _types(
    ActionType("assign_agent", (Param("agent_id", _id, refers_to=AGENTS),), "Assign to an agent"),
    ActionType(
        "assign_division",
        (Param("division_id", _id, refers_to=DIVISIONS),),
        "Route to a division",
    ),
    ActionType(
        "assign_round_robin",
        (Param("division_id", _id, required=False, refers_to=DIVISIONS),),
        "Assign to the next online agent (of a division)",
    ),
    ActionType("add_tags", (Param("tags", _tags),), "Add tags"),
    ActionType("remove_tags", (Param("tags", _tags),), "Remove tags"),
    ActionType("set_status", (Param("status", _STATUS),), "Set the status"),
    ActionType("set_priority", (Param("priority", _PRIORITY),), "Set the priority"),
    ActionType(
        "snooze",
        (Param("minutes", _minutes, required=False), Param("until", _until, required=False)),
        "Snooze for some minutes or until a time",
        one_of=("minutes", "until"),
    ),
    ActionType(
        "send_message", (Param("body", _body, template=True),), "Send a message to the contact"
    ),
    ActionType(
        "send_quick_reply",
        (Param("quick_reply_id", _id, refers_to=QUICK_REPLIES),),
        "Send a quick reply",
    ),
    ActionType("add_note", (Param("body", _body, template=True),), "Add a private note"),
    ActionType(
        "send_webhook",
        (Param("endpoint_id", _id, refers_to=WEBHOOK_ENDPOINTS),),
        "Send the event to an outgoing webhook endpoint",
    ),
    ActionType("handover_to_ai", (), "Hand the conversation to its AI agent"),
    ActionType(
        "handover_to_human",
        (Param("division_id", _id, required=False, refers_to=DIVISIONS),),
        "Hand the conversation to humans (of a division)",
    ),
    ActionType(
        "mute",
        (Param("minutes", _minutes, required=False),),
        "Mute notifications (for some minutes)",
    ),
)

_ACTION_KEYS = frozenset({"type", "params"})


def spec_of(action: Any) -> ActionType | None:
    """The catalogue entry of an action body (None for anything that names no known type)."""
    kind = action.get("type") if isinstance(action, Mapping) else None
    return ACTION_TYPES.get(kind) if isinstance(kind, str) else None


def validate_actions(actions: Any, *, path: str = "actions") -> list[Problem]:
    """Every problem in a rule's action list, each with its path; [] when valid."""
    if not isinstance(actions, list):
        return [Problem(path, "not_a_list", f"expected a list, got {type_name(actions)}")]
    if len(actions) > MAX_ACTIONS:
        return [Problem(path, "too_many_actions", f"at most {MAX_ACTIONS} actions in a rule")]
    problems: list[Problem] = []
    for i, action in enumerate(actions):
        problems.extend(_action_problems(action, index(path, i)))
    return problems


def _action_problems(action: Any, path: str) -> list[Problem]:
    if not isinstance(action, Mapping):
        return [Problem(path, "not_an_object", f"expected an object, got {type_name(action)}")]
    problems = [
        Problem(key(path, str(name)), "unknown_field", "not a field of an action")
        for name in action
        if name not in _ACTION_KEYS
    ]
    spec = spec_of(action)
    if spec is None:
        problems.append(
            Problem(
                key(path, "type"),
                "unknown_action",
                f"unknown action type {action.get('type')!r}; use one of: "
                + ", ".join(ACTION_TYPES),
            )
        )
        return problems
    params = action.get("params", {})
    params_path = key(path, "params")
    if not isinstance(params, Mapping):
        problems.append(
            Problem(params_path, "not_an_object", f"expected an object, got {type_name(params)}")
        )
        return problems
    known = {p.name: p for p in spec.params}
    for name in params:
        if name not in known:
            problems.append(
                Problem(key(params_path, str(name)), "unknown_field", f"{spec.name} has no {name}")
            )
    given = [name for name in spec.one_of if params.get(name) is not None]
    if spec.one_of and len(given) != 1:
        problems.append(
            Problem(params_path, "one_of", f"give exactly one of: {', '.join(spec.one_of)}")
        )
    for param in spec.params:
        value = params.get(param.name)
        param_path = key(params_path, param.name)
        if value is None:
            if param.required:
                problems.append(Problem(param_path, "required", f"{spec.name} needs {param.name}"))
            continue
        problems.extend(param.check(value, param_path))
    return problems


def references(
    actions: list[Mapping[str, Any]], *, path: str = "actions"
) -> list[tuple[str, str, uuid.UUID]]:
    """``(path, kind, id)`` of every row the actions name, for the tenant-ownership check."""
    found: list[tuple[str, str, uuid.UUID]] = []
    for i, action in enumerate(actions if isinstance(actions, list) else []):
        spec = spec_of(action)
        params = action.get("params") if spec is not None else None
        if not isinstance(params, Mapping):
            continue
        for param in spec.params:
            value = params.get(param.name)
            if param.refers_to and is_uuid(value):
                param_path = key(key(index(path, i), "params"), param.name)
                found.append((param_path, param.refers_to, uuid.UUID(value)))
    return found


def referenced_ids(actions: list[Mapping[str, Any]]) -> dict[str, set[uuid.UUID]]:
    """The ids the actions name, by kind (every kind present, maybe empty)."""
    ids: dict[str, set[uuid.UUID]] = {kind: set() for kind in REFERENCE_KINDS}
    for _, kind, value in references(actions):
        ids[kind].add(value)
    return ids


def render_action(action: Mapping[str, Any], variables: Mapping[str, Any]) -> dict[str, Any]:
    """The action with its template params rendered with the facts (others as they are)."""
    spec = ACTION_TYPES[action["type"]]
    params = dict(action.get("params") or {})
    for param in spec.params:
        if param.template and isinstance(params.get(param.name), str):
            params[param.name] = render(params[param.name], variables)
    return {"type": spec.name, "params": params}


def catalogue() -> list[dict[str, Any]]:
    """The action types with their params (for rule editors)."""
    return [
        {
            "type": spec.name,
            "description": spec.description,
            "params": [
                {
                    "name": p.name,
                    "required": p.required and p.name not in spec.one_of,
                    "refers_to": p.refers_to,
                    "template": p.template,
                }
                for p in spec.params
            ],
            "one_of": list(spec.one_of),
        }
        for spec in ACTION_TYPES.values()
    ]
