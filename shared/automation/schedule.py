"""A rule's schedule: weekly windows and date exceptions, in the tenant's or its own timezone.

Stored on the rule (``schedule`` column, NULL: no restriction, the rule may run at
any time)::

    {"enabled": true,                             # false: kept, but not applied
     "timezone": "Europe/Berlin" | null,          # null: the tenant's timezone
     "days": [{"weekday": 0, "intervals": [{"start": "09:00", "end": "17:00"}]}],
     "exceptions": [{"date": "2026-12-25", "name": "Christmas"}]}

``days`` and ``exceptions`` mean exactly what working hours' ``days`` and
``holidays`` mean, and are checked and answered by the same code
(:mod:`shared.timekeeping.working_hours`): wall-clock times that stay put across
daylight-saving changes, a start included and an end excluded, no interval crossing
midnight or overlapping another, a weekday not listed closed all day, an exception
closing its whole local date. The evaluator (:meth:`RuleSchedule.is_open`) and the
preview (:func:`upcoming_windows`) both ask that module, so the preview lists the
windows exactly as they will be applied.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from shared.errors import ValidationFailed
from shared.timekeeping import working_hours

FIELDS = ("enabled", "timezone", "days", "exceptions")
#: Most windows one preview lists.
MAX_PREVIEW = 100
#: The empty schedule a first PATCH is merged onto.
_EMPTY: dict[str, Any] = {"enabled": True, "timezone": None, "days": [], "exceptions": []}


def as_hours(schedule: Mapping[str, Any]) -> dict[str, Any]:
    """The schedule in working hours' shape (exceptions are its holidays)."""
    return {"days": schedule.get("days") or [], "holidays": schedule.get("exceptions") or []}


def _field(path: str) -> str:
    return "exceptions" + path[len("holidays") :] if path.startswith("holidays") else path


def _switched_on(current: Mapping[str, Any] | None, changes: Mapping[str, Any]) -> bool:
    """Whether ``changes`` make a first or a disabled schedule apply: then it must have days
    (a schedule enabled without them is closed all week, the rule silently never runs)."""
    if not changes.get("enabled", current is None):
        return False
    return current is None or not current.get("enabled", True)


def clean(current: Mapping[str, Any] | None, changes: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with the fields sent in ``changes``, validated and normalized.

    Raises :class:`ValidationFailed` naming every bad field (``days[0].intervals[1].end``,
    ``exceptions[2].date``, ``timezone``). A schedule switched on must name its ``days``.
    """
    if _switched_on(current, changes) and "days" not in changes and not (current or {}).get("days"):
        raise ValidationFailed.field("days", "required: the schedule names no days yet")
    merged = {**_EMPTY, **(current or {}), **changes}
    problems = working_hours.validate_schedule(as_hours(merged))
    if merged["timezone"] is not None:
        problems += working_hours.validate_timezone(merged["timezone"])
    if problems:
        details = [
            {"field": _field(p.path) or "body", "message": p.message, "code": p.code}
            for p in problems
        ]
        first = details[0]
        raise ValidationFailed(f"{first['field']}: {first['message']}", details=details)
    days = sorted(
        (
            {
                "weekday": day["weekday"],
                "intervals": sorted(
                    ({"start": i["start"], "end": i["end"]} for i in day["intervals"]),
                    key=lambda i: i["start"],
                ),
            }
            for day in merged["days"]
        ),
        key=lambda d: d["weekday"],
    )
    exceptions = sorted(
        ({"date": e["date"], "name": e.get("name", "")} for e in merged["exceptions"]),
        key=lambda e: e["date"],
    )
    return {
        "enabled": bool(merged["enabled"]),
        "timezone": merged["timezone"],
        "days": days,
        "exceptions": exceptions,
    }


@dataclass(frozen=True, slots=True)
class RuleSchedule:
    """A stored schedule prepared once per rules version, asked once per event."""

    hours: dict[str, Any]
    prepared: working_hours.Prepared
    #: The rule's own timezone, or None for the tenant's.
    timezone: str | None
    #: ``timezone`` as a zone, looked up once (None: the tenant's, known per event).
    zone: ZoneInfo | None

    @classmethod
    def of(cls, schedule: Mapping[str, Any] | None) -> RuleSchedule | None:
        """The schedule to apply; None when there is none or it is disabled (always open)."""
        if schedule is None or not schedule.get("enabled", True):
            return None
        hours = as_hours(schedule)
        timezone = schedule.get("timezone")
        zone = ZoneInfo(timezone) if timezone else None
        return cls(hours, working_hours.prepare(hours), timezone, zone)

    def zone_name(self, tenant_timezone: str) -> str:
        return self.timezone or tenant_timezone

    def is_open(self, tenant_timezone: str, at: dt.datetime) -> bool:
        """Whether ``at`` is inside a window."""
        zone = self.zone or ZoneInfo(tenant_timezone)
        return self.is_open_local(at.astimezone(zone))

    def is_open_local(self, local: dt.datetime) -> bool:
        """Whether ``local`` (now, in this schedule's timezone) is inside a window: the
        evaluator's question (:meth:`Moment.inside` converts once per zone and event)."""
        return working_hours.is_open_prepared(self.prepared, local)

    def next_change(self, tenant_timezone: str, at: dt.datetime) -> dt.datetime | None:
        """When inside/outside next flips after ``at`` (None: never)."""
        return working_hours.next_change(self.hours, self.zone_name(tenant_timezone), at)


def upcoming_windows(
    schedule: RuleSchedule, tenant_timezone: str, start: dt.datetime, count: int
) -> list[dict[str, Any]]:
    """The next ``count`` windows from ``start``: ``{start, end, start_local, end_local}``.

    A window open at ``start`` is listed from ``start`` (the preview shows what is still
    to come); ``end`` is None for a window that never closes. Windows that meet at a
    midnight are one window, as the evaluator sees them.
    """
    zone = ZoneInfo(schedule.zone_name(tenant_timezone))
    windows: list[dict[str, Any]] = []
    at = start
    inside = schedule.is_open(tenant_timezone, at)
    while len(windows) < count:
        change = schedule.next_change(tenant_timezone, at)
        if inside:
            windows.append(_window(at, change, zone))
        if change is None:
            break
        at, inside = change, not inside
    return windows


def _window(start: dt.datetime, end: dt.datetime | None, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "start": start.astimezone(dt.UTC),
        "end": end.astimezone(dt.UTC) if end else None,
        "start_local": start.astimezone(zone).isoformat(),
        "end_local": end.astimezone(zone).isoformat() if end else None,
    }
