"""Working hours over HTTP: global schedule, division overrides, timezone, public status."""

from __future__ import annotations

import datetime as dt
import sys
import uuid

import pytest

from shared.db import session_scope
from shared.errors import NotFound
from shared.timekeeping import schedules, working_hours
from tests.inbox_conversations.conftest import add_division, tid

UTC = dt.UTC
OFFICE = {
    "days": [
        {
            "weekday": 0,
            "intervals": [{"start": "13:00", "end": "17:00"}, {"start": "09:00", "end": "12:00"}],
        },
        {"weekday": 1, "intervals": [{"start": "09:00", "end": "17:00"}]},
    ],
    "holidays": [{"date": "2026-12-28", "name": "Bank holiday"}],
}
NIGHTS = {
    "days": [{"weekday": d, "intervals": [{"start": "01:00", "end": "03:00"}]} for d in range(7)]
}
#: Open all week, each day sent in two halves.
HALVES = {
    "days": [
        {
            "weekday": d,
            "intervals": [{"start": "00:00", "end": "12:00"}, {"start": "12:00", "end": "24:00"}],
        }
        for d in range(7)
    ]
}


def _lines_run(module, call):
    """``call()``, and how many lines of ``module`` it ran: a cost no machine's speed sways."""
    count, previous = 0, sys.gettrace()

    def count_lines(frame, event, arg):
        nonlocal count
        count += event == "line"
        return count_lines

    def calls(frame, event, arg):
        return count_lines if frame.f_code.co_filename == module.__file__ else None

    sys.settrace(calls)
    try:
        result = call()
    finally:
        sys.settrace(previous)
    return result, count


def test_no_hours_set_is_always_open(workspace, client):
    got = workspace.call("GET", "/api/working-hours")
    assert got.status_code == 200, got.text
    assert got.json == {
        "days": [],
        "holidays": [],
        "configured": False,
        "timezone": "UTC",
        "updated_at": None,
    }
    slug = workspace.tenant["slug"]
    status = client.simulate_get("/api/public/working-hours/status", params={"tenant": slug})
    assert status.status_code == 200, status.text
    assert status.json["is_open"] is True
    assert status.json["next_change_at"] is None


def test_put_and_get_global_hours(workspace):
    put = workspace.call("PUT", "/api/working-hours", json=OFFICE)
    assert put.status_code == 200, put.text
    assert put.json["configured"] is True
    # stored sorted: intervals by start, so reading back is stable
    assert put.json["days"][0]["intervals"] == [
        {"start": "09:00", "end": "12:00"},
        {"start": "13:00", "end": "17:00"},
    ]
    assert put.json["holidays"] == [{"date": "2026-12-28", "name": "Bank holiday"}]
    got = workspace.call("GET", "/api/working-hours")
    assert got.json == put.json
    replaced = workspace.call("PUT", "/api/working-hours", json={"days": []})
    assert replaced.status_code == 200
    assert replaced.json["days"] == [] and replaced.json["configured"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"days": [{"weekday": 0, "intervals": [{"start": "17:00", "end": "09:00"}]}]},
            "days[0].intervals[0].end",
        ),
        (
            {
                "days": [
                    {
                        "weekday": 0,
                        "intervals": [
                            {"start": "09:00", "end": "12:00"},
                            {"start": "11:00", "end": "13:00"},
                        ],
                    }
                ]
            },
            "days[0].intervals[1]",
        ),
        (
            {"days": [{"weekday": 0, "intervals": [{"start": "25:00", "end": "26:00"}]}]},
            "days[0].intervals[0].start",
        ),
        (
            {"days": [{"weekday": 0, "intervals": []}, {"weekday": 0, "intervals": []}]},
            "days[1].weekday",
        ),
        ({"days": [{"weekday": 9, "intervals": []}]}, "days[0].weekday"),
        # HH:MM in ASCII digits: another script's digits were read as the time and stored
        # as sent, a value no client reading HH:MM understands
        (
            {"days": [{"weekday": 0, "intervals": [{"start": "0\u0669:00", "end": "17:00"}]}]},
            "days[0].intervals[0].start",
        ),
        ({"days": [], "holidays": [{"date": "2026-02-30"}]}, "holidays[0].date"),
        ({"days": [], "extra": 1}, "extra"),
    ],
)
def test_bad_schedules_are_422_and_change_nothing(workspace, body, field):
    resp = workspace.call("PUT", "/api/working-hours", json=body)
    assert resp.status_code == 422, resp.text
    assert field in [d.get("field") for d in resp.json["error"]["details"]], resp.json
    assert workspace.call("GET", "/api/working-hours").json["configured"] is False


def test_writes_need_settings_manage(workspace):
    _, token = workspace.create_agent("agent")
    assert workspace.call("GET", "/api/working-hours", token=token).status_code == 200
    for method, path, body in (
        ("PUT", "/api/working-hours", OFFICE),
        ("PUT", "/api/working-hours/timezone", {"timezone": "Asia/Jakarta"}),
    ):
        resp = workspace.call(method, path, json=body, token=token)
        assert resp.status_code == 403, resp.text


def test_division_override_inherits_then_replaces_then_goes(workspace, other_workspace):
    workspace.call("PUT", "/api/working-hours", json=OFFICE)
    division = add_division(workspace, "Night desk")
    path = f"/api/divisions/{division}/working-hours"
    inherited = workspace.call("GET", path)
    assert inherited.status_code == 200, inherited.text
    assert inherited.json["inherits_global"] is True
    assert inherited.json["days"][1]["weekday"] == 1
    put = workspace.call("PUT", path, json=NIGHTS)
    assert put.status_code == 200, put.text
    assert put.json["inherits_global"] is False and len(put.json["days"]) == 7
    assert workspace.call("GET", path).json["days"] == put.json["days"]
    # the tenant's own schedule is untouched by the override
    assert len(workspace.call("GET", "/api/working-hours").json["days"]) == 2
    # another tenant cannot see or touch it
    assert other_workspace.call("GET", path).status_code == 404
    assert other_workspace.call("PUT", path, json=NIGHTS).status_code == 404
    assert other_workspace.call("DELETE", path).status_code == 404
    assert workspace.call("DELETE", path).status_code == 204
    assert workspace.call("GET", path).json["inherits_global"] is True
    assert workspace.call("DELETE", path).status_code == 404
    unknown = f"/api/divisions/{uuid.uuid4()}/working-hours"
    assert workspace.call("GET", unknown).status_code == 404


def test_timezone_changes_every_later_computation(workspace, client):
    assert workspace.call("GET", "/api/working-hours/timezone").json == {"timezone": "UTC"}
    bad = workspace.call("PUT", "/api/working-hours/timezone", json={"timezone": "Mars/Olympus"})
    assert bad.status_code == 422, bad.text
    workspace.call("PUT", "/api/working-hours", json=OFFICE)
    slug = workspace.tenant["slug"]
    monday_10_utc = dt.datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    with session_scope() as session:
        assert schedules.public_status(session, slug, now=monday_10_utc)["is_open"] is True
    ok = workspace.call("PUT", "/api/working-hours/timezone", json={"timezone": "Asia/Jakarta"})
    assert ok.status_code == 200 and ok.json == {"timezone": "Asia/Jakarta"}
    with session_scope() as session:
        status = schedules.public_status(session, slug, now=monday_10_utc)
    # 10:00 UTC is 17:00 in Jakarta: just closed; opens Tuesday 09:00 WIB = 02:00 UTC
    assert status["is_open"] is False
    assert status["timezone"] == "Asia/Jakarta"
    assert status["next_change_at"] == dt.datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
    assert workspace.call("GET", "/api/working-hours").json["timezone"] == "Asia/Jakarta"


@pytest.mark.parametrize(
    ("now", "is_open", "next_change_at"),
    [
        # spring forward, 8 March 2026: 01:00 EST opens, the 02:00 jump, closes 03:00 EDT
        (
            dt.datetime(2026, 3, 8, 5, 30, tzinfo=UTC),
            False,
            dt.datetime(2026, 3, 8, 6, 0, tzinfo=UTC),
        ),
        (
            dt.datetime(2026, 3, 8, 6, 30, tzinfo=UTC),
            True,
            dt.datetime(2026, 3, 8, 7, 0, tzinfo=UTC),
        ),
        # fall back, 1 November 2026: open 01:00 EDT (05:00Z) to 03:00 EST (08:00Z), 3 hours
        (
            dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
            True,
            dt.datetime(2026, 11, 1, 8, 0, tzinfo=UTC),
        ),
        (
            dt.datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
            True,
            dt.datetime(2026, 11, 1, 8, 0, tzinfo=UTC),
        ),
        (
            dt.datetime(2026, 11, 1, 8, 0, tzinfo=UTC),
            False,
            dt.datetime(2026, 11, 2, 6, 0, tzinfo=UTC),
        ),
    ],
)
def test_public_status_across_dst(workspace, now, is_open, next_change_at):
    division = add_division(workspace, "Nights")
    workspace.call("PUT", "/api/working-hours/timezone", json={"timezone": "America/New_York"})
    workspace.call("PUT", f"/api/divisions/{division}/working-hours", json=NIGHTS)
    with session_scope() as session:
        status = schedules.public_status(
            session, workspace.tenant["slug"], uuid.UUID(division), now=now
        )
    assert (status["is_open"], status["next_change_at"]) == (is_open, next_change_at)


def test_a_holiday_closes_the_day(workspace):
    workspace.call("PUT", "/api/working-hours", json=OFFICE)
    holiday_monday_10 = dt.datetime(2026, 12, 28, 10, 0, tzinfo=UTC)
    with session_scope() as session:
        status = schedules.public_status(session, workspace.tenant["slug"], now=holiday_monday_10)
        assert schedules.is_open_now(session, tid(workspace), now=holiday_monday_10) is False
        assert schedules.is_open_now(
            session, tid(workspace), now=holiday_monday_10 + dt.timedelta(days=1)
        )
    assert status["is_open"] is False
    assert status["next_change_at"] == dt.datetime(2026, 12, 29, 9, 0, tzinfo=UTC)


def test_public_status_over_http_and_its_404s(workspace, other_workspace, client):
    workspace.call("PUT", "/api/working-hours", json=OFFICE)
    slug = workspace.tenant["slug"]
    url = "/api/public/working-hours/status"
    resp = client.simulate_get(url, params={"tenant": slug})
    assert resp.status_code == 200, resp.text
    assert set(resp.json) == {"is_open", "timezone", "now", "next_change_at"}
    assert resp.json["next_change_at"] is not None
    assert client.simulate_get(url, params={"tenant": "no-such-tenant"}).status_code == 404
    foreign = add_division(other_workspace, "Theirs")
    resp = client.simulate_get(url, params={"tenant": slug, "division_id": foreign})
    assert resp.status_code == 404
    assert client.simulate_get(url).status_code in (400, 422)
    with session_scope() as session, pytest.raises(NotFound):
        schedules.public_status(session, slug, uuid.UUID(foreign))


def test_public_status_of_a_day_sent_in_halves_is_cheap(workspace, client):
    """An unauthenticated request must not buy a scan of years of days: halves that
    touch are one interval, so the week is seen as always open at once."""
    workspace.call("PUT", "/api/working-hours/timezone", json={"timezone": "America/New_York"})
    assert workspace.call("PUT", "/api/working-hours", json=HALVES).status_code == 200
    slug = workspace.tenant["slug"]
    resp, lines = _lines_run(
        working_hours,
        lambda: client.simulate_get("/api/public/working-hours/status", params={"tenant": slug}),
    )
    assert resp.status_code == 200, resp.text
    assert (resp.json["is_open"], resp.json["next_change_at"]) == (True, None)
    assert lines < 2000, lines


@pytest.mark.parametrize(
    ("holiday", "next_change_at"),
    [
        ("2040-01-02", dt.datetime(2040, 1, 2, 5, 0, tzinfo=UTC)),
        ("9000-12-31", dt.datetime(9000, 12, 31, 5, 0, tzinfo=UTC)),  # the latest day allowed
    ],
)
def test_public_status_finds_a_holiday_decades_away_cheaply(workspace, holiday, next_change_at):
    """Open all week but on a holiday beyond any horizon: it is when the status changes
    (it was null past ten years), found without walking the days in between."""
    workspace.call("PUT", "/api/working-hours/timezone", json={"timezone": "America/New_York"})
    body = HALVES | {"holidays": [{"date": holiday, "name": "Far"}]}
    assert workspace.call("PUT", "/api/working-hours", json=body).status_code == 200
    now = dt.datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    with session_scope() as session:
        status, lines = _lines_run(
            working_hours,
            lambda: schedules.public_status(session, workspace.tenant["slug"], now=now),
        )
    assert (status["is_open"], status["next_change_at"]) == (True, next_change_at)
    assert lines < 2000, lines


def test_public_status_past_a_year_of_holidays_on_the_only_open_day(workspace):
    """Open on Mondays only, and the next 366 Mondays are holidays: the first one after
    them opens, seven years on; each holiday costs a step, not each day between."""
    mondays = [dt.date(2026, 12, 14) + dt.timedelta(weeks=n) for n in range(366)]
    body = {
        "days": [{"weekday": 0, "intervals": [{"start": "09:00", "end": "17:00"}]}],
        "holidays": [{"date": d.isoformat(), "name": ""} for d in mondays],
    }
    assert workspace.call("PUT", "/api/working-hours", json=body).status_code == 200
    now = dt.datetime(2026, 12, 8, 12, 0, tzinfo=UTC)  # a Tuesday
    with session_scope() as session:
        status, lines = _lines_run(
            working_hours,
            lambda: schedules.public_status(session, workspace.tenant["slug"], now=now),
        )
    reopens = dt.datetime.combine(mondays[-1] + dt.timedelta(weeks=1), dt.time(9), tzinfo=UTC)
    assert (status["is_open"], status["next_change_at"]) == (False, reopens)
    assert lines < 10_000, lines
