"""Working hours: validate a weekly schedule, and tell whether it is open at an instant.

Schedule (API.md, Working Hours)::

    {"days": [{"weekday": 0-6 (Monday = 0), "intervals": [{"start": "09:00", "end": "17:00"}]}],
     "holidays": [{"date": "2026-12-25", "name": "Christmas"}]}

Decisions (documented for the API and rule authors):

- Times are wall-clock times in the tenant's timezone (IANA name), so "09:00" stays 09:00
  across DST changes. An interval includes its start and excludes its end; ``end`` may be
  "24:00" (end of day). A weekday that is not listed is closed all day.
- Intervals must not cross midnight: "22:00"-"06:00" is refused with a hint to split it
  into "22:00"-"24:00" on one day and "00:00"-"06:00" on the next (the two join seamlessly:
  ``next_change`` does not report a change at that midnight). Overlapping intervals are refused.
- DST: on a spring-forward day the skipped wall-clock hour never happens (a schedule opening
  at 02:30 in New York opens at the jump, 03:00 EDT); on a fall-back day the repeated hour
  counts twice (an interval 01:00-02:00 lasts two real hours).
- A holiday closes its whole local date.
- No schedule at all means always open (:func:`time_facts` with ``schedule=None``); a schedule
  with no days is always closed.

Pure functions; the only outside data is the system's timezone database (via ``zoneinfo``).
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import itertools
import re
import zoneinfo
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from shared.automation.problems import Problem, index, key, type_name

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_INTERVALS_PER_DAY = 8
MAX_HOLIDAYS = 366
MAX_HOLIDAY_NAME = 100
DAY_SECONDS = 24 * 3600
#: Most days ``next_change`` checks (:func:`_days_to_check`): two beside each holiday and
#: two months to spare, more than any real schedule needs; a safety bound on the cost of
#: an unauthenticated status request (past it, no change is reported).
_MAX_DAYS_CHECKED = 2 * MAX_HOLIDAYS + 64
_ALL_DAY = ((0, DAY_SECONDS),)
_ONE_DAY = dt.timedelta(days=1)
_TIME = re.compile(r"^(?:([01]\d|2[0-3]):([0-5]\d)|(24):(00))$")
_UTC = dt.UTC


class _Schedule(NamedTuple):
    #: weekday -> ((start second, end second), ...) in local wall-clock time.
    days: dict[int, tuple[tuple[int, int], ...]]
    holidays: frozenset[dt.date]


# --- validation -------------------------------------------------------------------------


def validate_schedule(obj: Any, *, path: str = "") -> list[Problem]:
    """Every problem of a schedule body, each with its path; [] when valid."""
    if not isinstance(obj, Mapping):
        return [Problem(path, "not_an_object", f"expected an object, got {type_name(obj)}")]
    problems = _unknown(obj, {"days", "holidays"}, path)
    days = obj.get("days")
    if not isinstance(days, list):
        problems.append(
            Problem(key(path, "days"), "not_a_list", f"expected a list, got {type_name(days)}")
        )
    else:
        problems += _days_problems(days, key(path, "days"))
    holidays = obj.get("holidays", [])
    if not isinstance(holidays, list):
        problems.append(
            Problem(
                key(path, "holidays"), "not_a_list", f"expected a list, got {type_name(holidays)}"
            )
        )
    else:
        problems += _holidays_problems(holidays, key(path, "holidays"))
    return problems


#: Names the zone database holds that are not a place's civil time: the host's own zone
#: (``localtime``: another server, another answer) and tzdata's placeholders.
_NOT_A_PLACE = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _iana_names() -> frozenset[str]:
    """The IANA names a workspace may choose (read once: listing them walks the database).

    NOTE: ``ZoneInfo`` alone also loads ``right/...`` copies, which count leap seconds
    (their clocks run 27 s from UTC's); ``available_timezones`` lists neither them nor
    ``posix/``.
    """
    return frozenset(zoneinfo.available_timezones()) - _NOT_A_PLACE


def is_known_timezone(name: Any) -> bool:
    """Whether ``name`` is an IANA time zone such as ``Asia/Jakarta`` (or ``UTC``)."""
    return isinstance(name, str) and name in _iana_names()


def validate_timezone(name: Any, *, path: str = "timezone") -> list[Problem]:
    """Problems of a timezone name (an IANA name such as ``Asia/Jakarta``)."""
    if is_known_timezone(name):
        return []
    return [Problem(path, "unknown_timezone", "expected an IANA timezone such as Asia/Jakarta")]


def _unknown(obj: Mapping, allowed: set[str], path: str) -> list[Problem]:
    return [
        Problem(key(path, str(name)), "unknown_field", "not a field here")
        for name in obj
        if name not in allowed
    ]


def _objects(
    items: list, path: str, fields: set[str], problems: list[Problem]
) -> Iterator[tuple[str, Mapping]]:
    """(path, item) of each object in ``items``; what is not an object, or has an unknown
    field, is added to ``problems``."""
    for i, item in enumerate(items):
        item_path = index(path, i)
        if not isinstance(item, Mapping):
            problems.append(Problem(item_path, "not_an_object", "expected an object"))
            continue
        problems += _unknown(item, fields, item_path)
        yield item_path, item


def _days_problems(days: list, path: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[int] = set()
    for day_path, day in _objects(days, path, {"weekday", "intervals"}, problems):
        weekday = day.get("weekday")
        if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
            problems.append(
                Problem(key(day_path, "weekday"), "invalid_weekday", "0 (Monday) to 6 (Sunday)")
            )
        elif weekday in seen:
            problems.append(
                Problem(key(day_path, "weekday"), "duplicate_weekday", "each weekday once")
            )
        else:
            seen.add(weekday)
        intervals = day.get("intervals")
        intervals_path = key(day_path, "intervals")
        if not isinstance(intervals, list):
            problems.append(Problem(intervals_path, "not_a_list", "expected a list"))
        elif len(intervals) > MAX_INTERVALS_PER_DAY:
            problems.append(
                Problem(intervals_path, "too_many_intervals", f"at most {MAX_INTERVALS_PER_DAY}")
            )
        else:
            problems += _intervals_problems(intervals, intervals_path)
    return problems


def _intervals_problems(intervals: list, path: str) -> list[Problem]:
    problems: list[Problem] = []
    accepted: list[tuple[int, int]] = []
    for interval_path, interval in _objects(intervals, path, {"start", "end"}, problems):
        start = _written_time(interval.get("start"))
        end = _written_time(interval.get("end"))
        if start is None or start == DAY_SECONDS:
            problems.append(
                Problem(key(interval_path, "start"), "invalid_time", "HH:MM, 00:00-23:59")
            )
        if end is None:
            problems.append(
                Problem(key(interval_path, "end"), "invalid_time", "HH:MM, 00:01-24:00")
            )
        if start is None or end is None or start == DAY_SECONDS:
            continue
        if end <= start:
            problems.append(
                Problem(
                    key(interval_path, "end"),
                    "invalid_interval",
                    "end must be after start; an interval crossing midnight is two: "
                    '"22:00"-"24:00" on one day and "00:00"-"06:00" on the next',
                )
            )
            continue
        if any(start < other_end and other_start < end for other_start, other_end in accepted):
            problems.append(
                Problem(interval_path, "overlapping_intervals", "overlaps another interval")
            )
            continue
        accepted.append((start, end))
    return problems


def _holidays_problems(holidays: list, path: str) -> list[Problem]:
    if len(holidays) > MAX_HOLIDAYS:
        return [Problem(path, "too_many_holidays", f"at most {MAX_HOLIDAYS}")]
    problems: list[Problem] = []
    seen: set[dt.date] = set()
    for holiday_path, holiday in _objects(holidays, path, {"date", "name"}, problems):
        date = _date(holiday.get("date"))
        if date is None:
            problems.append(Problem(key(holiday_path, "date"), "invalid_date", "YYYY-MM-DD"))
        elif date in seen:
            problems.append(Problem(key(holiday_path, "date"), "duplicate_holiday", "listed twice"))
        else:
            seen.add(date)
        name = holiday.get("name", "")
        if not isinstance(name, str) or len(name) > MAX_HOLIDAY_NAME:
            problems.append(
                Problem(
                    key(holiday_path, "name"),
                    "wrong_value_type",
                    f"a string of at most {MAX_HOLIDAY_NAME} characters",
                )
            )
    return problems


def _seconds(text: Any) -> int | None:
    match = _TIME.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    hours, minutes = (match[1], match[2]) if match[1] is not None else (match[3], match[4])
    return int(hours) * 3600 + int(minutes) * 60


def _written_time(text: Any) -> int | None:
    """:func:`_seconds` of a time written as the API says, HH:MM in ASCII digits.

    WHY: :data:`_TIME`'s digit class takes any script's digits, and its ``$`` a trailing
    newline: "09:00" with an Arabic-Indic nine was read as 09:00 and stored as sent, a
    value no client reading HH:MM understands. Only validation is strict: a schedule
    stored before still parses.
    """
    if not isinstance(text, str) or not text.isascii() or "\n" in text:
        return None
    return _seconds(text)


def _date(text: Any) -> dt.date | None:
    if not isinstance(text, str) or len(text) != 10:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _parse(schedule: Mapping[str, Any]) -> _Schedule:
    """A validated schedule body as lookup tables."""
    days: dict[int, tuple[tuple[int, int], ...]] = {}
    for day in schedule.get("days") or []:
        spans = sorted((_seconds(i["start"]), _seconds(i["end"])) for i in day["intervals"])
        days[day["weekday"]] = _merged(spans)  # type: ignore[arg-type]
    holidays = frozenset(_date(h["date"]) for h in schedule.get("holidays") or [])
    return _Schedule(days, holidays)  # type: ignore[arg-type]


def _merged(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted spans with touching ones joined ("00:00"-"12:00" + "12:00"-"24:00" is one).

    PERF: the state never changes where two spans touch, and a day open from midnight to
    midnight must read as such: ``next_change`` passes over whole days, but checked every
    boundary of every day up to its horizon for a day sent in two halves (ten years with
    a far holiday: 1.3 s of an unauthenticated status request).
    """
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)


def week_open_seconds(schedule: Mapping[str, Any]) -> int:
    """Seconds the schedule is open in a week without holidays (a DST change moves it by
    an hour at most, once)."""
    return sum(end - start for spans in _parse(schedule).days.values() for start, end in spans)


# --- questions --------------------------------------------------------------------------


#: A validated schedule prepared for many questions (:func:`prepare`).
Prepared = _Schedule


def prepare(schedule: Mapping[str, Any]) -> Prepared:
    """Parse a validated schedule once, for callers that ask :func:`is_open_prepared` often.

    PERF: the automation evaluator asks per rule per event; parsing per question cost more
    than the question.
    """
    return _parse(schedule)


def is_open_prepared(prepared: Prepared, local: dt.datetime) -> bool:
    """:func:`is_open` for a :func:`prepare`-d schedule at ``local``, an instant already in
    the schedule's timezone (``at_utc.astimezone(zone)``): same rules, same answer."""
    return _open_at(prepared, local)


def _aware(at_utc: dt.datetime) -> dt.datetime:
    if at_utc.tzinfo is None or at_utc.utcoffset() is None:
        raise ValueError("at_utc must be timezone-aware")
    return at_utc


def _open_at(parsed: _Schedule, local: dt.datetime) -> bool:
    if local.date() in parsed.holidays:
        return False
    second = local.hour * 3600 + local.minute * 60 + local.second
    return any(start <= second < end for start, end in parsed.days.get(local.weekday(), ()))


def is_open(schedule: Mapping[str, Any], tz_name: str, at_utc: dt.datetime) -> bool:
    """Whether a (validated) schedule is open at ``at_utc``, in the timezone ``tz_name``."""
    local = _aware(at_utc).astimezone(ZoneInfo(tz_name))
    return _open_at(_parse(schedule), local)


def next_change(
    schedule: Mapping[str, Any], tz_name: str, at_utc: dt.datetime
) -> dt.datetime | None:
    """The first instant after ``at_utc`` when open/closed flips (UTC); None if it never does.

    The state only changes where the local wall clock meets an interval boundary or a
    midnight, or jumps (a DST transition); those instants are the candidates, checked in
    order, day by day. A run of whole days like the day before holds none and is passed
    over in one step (:func:`_days_to_check`), so there is no horizon: a holiday decades
    away is found, and the work is bounded by the number of holidays.
    """
    zone = ZoneInfo(tz_name)
    at_utc = _aware(at_utc).astimezone(_UTC)
    parsed = _parse(schedule)
    first_day = at_utc.astimezone(zone).date()
    if _never_changes(parsed, first_day):
        return None
    state = _open_at(parsed, at_utc.astimezone(zone))
    pending: list[dt.datetime] = []
    for day in itertools.islice(_days_to_check(parsed, first_day), _MAX_DAYS_CHECKED):
        # A day's candidates are past the midnight before it (a DST gap is under a day):
        # the ones before that midnight are all known.
        cutoff = _utc(zone, day - _ONE_DAY, 0, 0)
        changed = _first_flip(parsed, zone, state, at_utc, [c for c in pending if c < cutoff])
        if changed is not None:
            return changed
        pending = [c for c in pending if c >= cutoff]
        pending.extend(_candidates(parsed, zone, day))
    return _first_flip(parsed, zone, state, at_utc, pending)


def _first_flip(
    parsed: _Schedule,
    zone: ZoneInfo,
    state: bool,
    at_utc: dt.datetime,
    candidates: list[dt.datetime],
) -> dt.datetime | None:
    """The earliest candidate after ``at_utc`` where the state is no longer ``state``."""
    for candidate in sorted(c for c in candidates if at_utc < c):
        if _open_at(parsed, candidate.astimezone(zone)) != state:
            return candidate
    return None


def _never_changes(parsed: _Schedule, today: dt.date) -> bool:
    if not any(parsed.days.values()):
        return True  # always closed, holidays or not
    always_open = all(parsed.days.get(d) == ((0, DAY_SECONDS),) for d in range(7))
    return always_open and not any(h >= today - dt.timedelta(days=1) for h in parsed.holidays)


def _days_to_check(parsed: _Schedule, day: dt.date) -> Iterator[dt.date]:
    """``day``, then in order the later days on which the state may change.

    :func:`_candidates` finds nothing on a whole day (:func:`_whole_day`) like the day
    before, so after a whole day the next one to check is the first day unlike it.
    Between holidays, a schedule that changes at all does so within a week: the days
    yielded without a change are the ones beside holidays (or with a DST change).
    """
    holidays = sorted(parsed.holidays)
    try:
        while True:
            yield day
            whole = _whole_day(parsed, day)
            day += _ONE_DAY
            if whole is not None:
                unlike = _first_unlike(parsed, holidays, day, whole)
                if unlike is None:
                    return
                day = unlike
    except OverflowError:  # past 9999-12-31: no later day to check
        return


def _first_unlike(
    parsed: _Schedule, holidays: list[dt.date], day: dt.date, whole: bool
) -> dt.date | None:
    """The first day from ``day`` on that is not open (``whole``) or closed (not
    ``whole``) from midnight to midnight; None if there is none."""
    if whole:  # until a holiday, or a weekday not open all day long
        found = [_next_weekday(day, w) for w in range(7) if parsed.days.get(w) != _ALL_DAY]
        later = bisect.bisect_left(holidays, day)
        return min(found + holidays[later : later + 1], default=None)
    weekdays = [w for w in range(7) if parsed.days.get(w)]
    while weekdays:  # until a weekday with hours that is not a holiday (one step a holiday)
        day = min(_next_weekday(day, w) for w in weekdays)
        if day not in parsed.holidays:
            return day
        day += _ONE_DAY
    return None


def _next_weekday(day: dt.date, weekday: int) -> dt.date:
    return day + dt.timedelta(days=(weekday - day.weekday()) % 7)


def _utc(zone: ZoneInfo, day: dt.date, second: int, fold: int) -> dt.datetime:
    if second >= DAY_SECONDS:
        day, second = day + dt.timedelta(days=1), second - DAY_SECONDS
    wall = dt.datetime.combine(day, dt.time(second // 3600, second // 60 % 60), tzinfo=zone)
    return wall.replace(fold=fold).astimezone(_UTC)


def _whole_day(parsed: _Schedule, day: dt.date) -> bool | None:
    """True (False) when ``day`` is open (closed) from midnight to midnight; None otherwise."""
    if day in parsed.holidays:
        return False
    spans = parsed.days.get(day.weekday(), ())
    if not spans:
        return False
    return True if spans == ((0, DAY_SECONDS),) else None


def _candidates(parsed: _Schedule, zone: ZoneInfo, day: dt.date) -> list[dt.datetime]:
    """Instants during ``day`` (and its starting midnight) where the state may flip."""
    whole = _whole_day(parsed, day)
    if whole is not None and whole == _whole_day(parsed, day - dt.timedelta(days=1)):
        return []  # PERF: same all day long, as the day before: nothing to check
    found = [_utc(zone, day, 0, fold) for fold in (0, 1)]
    if whole is None:
        boundaries = {b for span in parsed.days[day.weekday()] for b in span} - {0}
        found.extend(_utc(zone, day, b, fold) for b in boundaries for fold in (0, 1))
        found.extend(_transitions(zone, day))
    return found


def _transitions(zone: ZoneInfo, day: dt.date) -> list[dt.datetime]:
    """The UTC instants during ``day`` when the zone's offset changes (DST, ...)."""
    low = _utc(zone, day, 0, 0)
    high = _utc(zone, day, DAY_SECONDS, 0)
    if low.astimezone(zone).utcoffset() == high.astimezone(zone).utcoffset():
        return []
    before = low.astimezone(zone).utcoffset()
    low_s, high_s = int(low.timestamp()), int(high.timestamp())
    while high_s - low_s > 1:  # offsets change on whole seconds
        middle = (low_s + high_s) // 2
        if dt.datetime.fromtimestamp(middle, zone).utcoffset() == before:
            low_s = middle
        else:
            high_s = middle
    return [dt.datetime.fromtimestamp(high_s, _UTC)]


def time_facts(
    at_utc: dt.datetime, tz_name: str, schedule: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The ``time.*`` facts at ``at_utc`` in the tenant's timezone.

    Without a schedule the tenant has not restricted its hours: it is always open.
    """
    local = _aware(at_utc).astimezone(ZoneInfo(tz_name))
    inside = True if schedule is None else _open_at(_parse(schedule), local)
    return {
        "time.inside_working_hours": inside,
        "time.weekday": WEEKDAYS[local.weekday()],
        "time.local_hour": local.hour,
    }
