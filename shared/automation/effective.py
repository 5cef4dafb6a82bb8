"""Effective state: whether a rule runs for an event now, and if not, why.

One function decides for the evaluator, the dry-run and the effective-state
endpoint. A rule runs only when, in this order:

1. ``active``: it is active (``is_active``);
2. ``snooze``: it is not snoozed (``snoozed_until`` is not after now: a snooze ends
   by itself, nothing has to run at its end);
3. ``control``: the tenant's global control allows it (not paused, the event type not
   paused);
4. ``schedule``: now is inside its schedule windows (no schedule: always);
5. ``rollout``: the event's conversation falls inside its rollout percentage.

PERF: what depends only on the event (now, the control, the tenant's timezone, the
subject) is read once per event into a :class:`Moment`, in the round trip the
evaluator already makes; what depends only on the rule is prepared once per rules
version into a :class:`Gate` (kept with the compiled rule). A rule without a
snooze, schedule or partial rollout then costs a few attribute reads per event.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from shared.automation import rollout
from shared.automation.schedule import RuleSchedule

CHECKS = ("active", "snooze", "control", "schedule", "rollout")


def _ts(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Control:
    """A tenant's global automation control (``automation_settings``)."""

    paused: bool = False
    paused_event_types: frozenset[str] = frozenset()
    max_actions_per_minute: int | None = None
    pause_reason: str | None = None

    @classmethod
    def of(cls, row: Any) -> Control:
        """From a row (or mapping) with the control columns; None: the defaults."""
        if row is None:
            return OPEN
        get = row.get if isinstance(row, Mapping) else lambda name: getattr(row, name)
        types = get("paused_event_types")
        return cls(
            bool(get("paused")),
            frozenset(types or ()),
            get("max_actions_per_minute"),
            get("pause_reason"),
        )

    def blocks(self, event_type: str | None) -> str | None:
        """Why events of ``event_type`` wait (None: they run); no type: only the full pause."""
        if self.paused:
            suffix = f": {self.pause_reason}" if self.pause_reason else ""
            return f"automation is paused for the workspace{suffix}"
        if event_type is not None and event_type in self.paused_event_types:
            return f"automation is paused for {event_type} events"
        return None


#: No pause, no ceiling (a tenant that never set its control).
OPEN = Control()


@dataclass(frozen=True, slots=True)
class Gate:
    """A rule's own conditions to run, prepared once per rules version."""

    is_active: bool = True
    snoozed_until: dt.datetime | None = None
    schedule: RuleSchedule | None = None
    rollout_percentage: int = rollout.FULL
    _plain: bool = field(default=False, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, rule: Any) -> Gate:
        """From a rule row (ORM object or Core row with the rule's columns)."""
        return cls(
            bool(rule.is_active),
            rule.snoozed_until,
            RuleSchedule.of(rule.schedule),
            rule.rollout_percentage if rule.rollout_percentage is not None else rollout.FULL,
        )

    @property
    def plain(self) -> bool:
        """Active with no snooze, schedule or partial rollout: only the control can stop it."""
        return self._plain

    def __post_init__(self) -> None:
        plain = (
            self.is_active
            and self.snoozed_until is None
            and self.schedule is None
            and self.rollout_percentage >= rollout.FULL
        )
        object.__setattr__(self, "_plain", plain)


@dataclass(slots=True)
class Moment:
    """What an event brings to every rule's check: computed once per event."""

    now: dt.datetime
    tenant_timezone: str = "UTC"
    control: Control = OPEN
    #: None when asked without an event (the endpoint): every trigger type is considered.
    event_type: str | None = None
    #: What rollout hashes: the conversation (else the contact, else the event).
    subject_id: uuid.UUID | None = None
    #: Now in each timezone asked about (PERF: rules sharing a zone convert once).
    _local: dict[str | None, dt.datetime] = field(default_factory=dict, init=False, repr=False)

    def inside(self, schedule: RuleSchedule) -> bool:
        """Whether now is inside ``schedule``'s windows."""
        local = self._local.get(schedule.timezone)
        if local is None:
            zone = schedule.zone or ZoneInfo(self.tenant_timezone)
            local = self._local[schedule.timezone] = self.now.astimezone(zone)
        return schedule.is_open_local(local)


def subject_of(
    event_type: str, payload: Mapping[str, Any], conversation_id: uuid.UUID | None
) -> uuid.UUID | None:
    """What rollout hashes for an event: its conversation, else a contact event's contact."""
    if conversation_id is not None:
        return conversation_id
    if event_type.startswith("contact."):
        try:
            return uuid.UUID(str(payload.get("id")))
        except ValueError:
            return None
    return None


# --- the checks: (rule_id, gate, moment) -> the reason the rule does not run, or None ------
# PERF: these run per rule per event; they build nothing unless the rule is blocked.


def _active(rule_id: uuid.UUID, gate: Gate, moment: Moment) -> str | None:
    return None if gate.is_active else "the rule is inactive"


def _snooze(rule_id: uuid.UUID, gate: Gate, moment: Moment) -> str | None:
    until = gate.snoozed_until
    if until is None or until <= moment.now:
        return None
    return f"snoozed until {_ts(until)}"


def _control(rule_id: uuid.UUID, gate: Gate, moment: Moment) -> str | None:
    return moment.control.blocks(moment.event_type)


def _schedule(rule_id: uuid.UUID, gate: Gate, moment: Moment) -> str | None:
    if gate.schedule is None or moment.inside(gate.schedule):
        return None
    return "outside its schedule windows"


def _rollout(rule_id: uuid.UUID, gate: Gate, moment: Moment) -> str | None:
    percentage = gate.rollout_percentage
    if percentage >= rollout.FULL:
        return None
    if percentage <= 0:
        return "rolled out to 0 % of conversations"
    if moment.subject_id is None:  # asked without an event: it runs for some
        return None
    bucket = rollout.bucket(rule_id, moment.subject_id)
    if bucket < percentage:
        return None
    return f"outside its rollout: bucket {bucket} is not below {percentage} %"


_CHECKS = (_active, _snooze, _control, _schedule, _rollout)


def blocked(rule_id: uuid.UUID, gate: Gate, moment: Moment) -> str | None:
    """The evaluator's question: None when the rule runs, else the first reason it does not.

    The event-level control check comes first in the evaluator (a paused event waits,
    held, instead of being decided); it is repeated here so that every caller gets the
    same answer from this one function.
    """
    if gate.plain:  # PERF: the common case, one attribute read
        return moment.control.blocks(moment.event_type)
    # PERF: the checks of _CHECKS in their order, unrolled (a reason is a non-empty str)
    return (
        _active(rule_id, gate, moment)
        or _snooze(rule_id, gate, moment)
        or _control(rule_id, gate, moment)
        or _schedule(rule_id, gate, moment)
        or _rollout(rule_id, gate, moment)
    )


def explain(
    rule_id: uuid.UUID,
    gate: Gate,
    moment: Moment,
    *,
    trigger_event_types: list[str] | None = None,
) -> dict[str, Any]:
    """Every check with its outcome and reason: the endpoint's and the dry-run's answer.

    ``{"state": "active" | "inactive", "runs": bool, "reasons": [...], "checks": [...]}``
    where each check is ``{"check", "ok", "reason", ...details}``. ``runs`` is whether
    the rule would run for this moment's event; with no event type, the control blocks
    only when paused or when every trigger type is paused; with no subject, a partial
    rollout counts as running (for some conversations).
    """
    checks = []
    for name, check in zip(CHECKS, _CHECKS, strict=True):
        if name == "control" and moment.event_type is None:
            reason = _control_without_event(moment.control, trigger_event_types or [])
        else:
            reason = check(rule_id, gate, moment)
        checks.append(
            {
                "check": name,
                "ok": reason is None,
                "reason": reason,
                **_details(name, rule_id, gate, moment),
            }
        )
    reasons = [c["reason"] for c in checks if not c["ok"]]
    # API.md: the state is active when the control allows it, the rule is active, not
    # snoozed and inside its schedule; a rollout of 0 % never runs either.
    return {
        "state": "active" if not reasons else "inactive",
        "runs": not reasons,
        "is_active": gate.is_active,
        "reasons": reasons,
        "checks": checks,
        "at": _ts(moment.now),
    }


def _control_without_event(control: Control, triggers: list[str]) -> str | None:
    if control.paused:
        return control.blocks(None)
    paused = sorted(set(triggers) & control.paused_event_types)
    if triggers and len(paused) == len(set(triggers)):
        return f"automation is paused for {', '.join(paused)} events"
    return None


def _details(name: str, rule_id: uuid.UUID, gate: Gate, moment: Moment) -> dict[str, Any]:
    """What a reader wants beside a check's outcome (not needed to decide)."""
    if name == "snooze":
        until = gate.snoozed_until
        return {"snoozed_until": _ts(until) if until and until > moment.now else None}
    if name == "control":
        return {"paused_event_types": sorted(moment.control.paused_event_types)}
    if name == "schedule":
        if gate.schedule is None:
            return {"timezone": None, "next_change_at": None}
        at = gate.schedule.next_change(moment.tenant_timezone, moment.now)
        return {
            "timezone": gate.schedule.zone_name(moment.tenant_timezone),
            "next_change_at": _ts(at) if at else None,
        }
    if name == "rollout":
        extra: dict[str, Any] = {"percentage": gate.rollout_percentage}
        if moment.subject_id is not None and 0 < gate.rollout_percentage < rollout.FULL:
            extra["bucket"] = rollout.bucket(rule_id, moment.subject_id)
        return extra
    return {}
