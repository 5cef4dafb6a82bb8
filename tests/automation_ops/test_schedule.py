"""Schedule windows: validation, the preview, and the effective state across DST changes.

Europe/Berlin moves from CET (+01:00) to CEST (+02:00) at 01:00 UTC on 2026-03-29 and
back at 01:00 UTC on 2026-10-25. A window "09:00"-"17:00" stays 09:00-17:00 local time.
"""

from __future__ import annotations

import datetime as dt

from tests.automation.conftest import create_rule
from tests.automation_ops.conftest import RULES, parse

UTC = dt.UTC
EVERY_DAY = [{"weekday": d, "intervals": [{"start": "09:00", "end": "17:00"}]} for d in range(7)]


def _schedule(ws, rule_id: str, body: dict):
    return ws.call("PATCH", f"{RULES}/{rule_id}/schedule", json=body)


def _preview(ws, rule_id: str, count: int = 4) -> dict:
    resp = ws.call("GET", f"{RULES}/{rule_id}/schedule/preview?count={count}")
    assert resp.status_code == 200, resp.text
    return resp.json


def _state(ws, rule_id: str) -> dict:
    return ws.call("GET", f"{RULES}/{rule_id}/effective-state").json


def test_the_preview_lists_windows_in_local_time_across_spring_forward(workspace, moved_clock):
    rule = create_rule(workspace)
    resp = _schedule(
        workspace,
        rule["id"],
        {"timezone": "Europe/Berlin", "days": EVERY_DAY, "exceptions": [{"date": "2026-03-31"}]},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json["schedule"]["timezone"] == "Europe/Berlin"
    assert resp.json["schedule"]["exceptions"] == [{"date": "2026-03-31", "name": ""}]

    moved_clock.move_to(dt.datetime(2026, 3, 27, 12, 0, tzinfo=UTC))  # Friday 13:00 CET
    preview = _preview(workspace, rule["id"], count=5)
    assert preview["inside_now"] is True and preview["timezone"] == "Europe/Berlin"
    spans = [(w["start_local"], w["end_local"]) for w in preview["windows"]]
    assert spans == [
        ("2026-03-27T13:00:00+01:00", "2026-03-27T17:00:00+01:00"),  # listed from now
        ("2026-03-28T09:00:00+01:00", "2026-03-28T17:00:00+01:00"),
        ("2026-03-29T09:00:00+02:00", "2026-03-29T17:00:00+02:00"),  # after the change
        ("2026-03-30T09:00:00+02:00", "2026-03-30T17:00:00+02:00"),
        ("2026-04-01T09:00:00+02:00", "2026-04-01T17:00:00+02:00"),  # 31st: exception
    ]
    assert parse(preview["windows"][2]["start"]) == dt.datetime(2026, 3, 29, 7, 0, tzinfo=UTC)


def test_the_window_opens_and_closes_on_local_time_across_both_dst_changes(workspace, moved_clock):
    rule = create_rule(workspace)
    _schedule(workspace, rule["id"], {"timezone": "Europe/Berlin", "days": EVERY_DAY})
    cases = [
        # 07:30 UTC is 08:30 CET on Saturday (closed) but 09:30 CEST on Sunday (open)
        (dt.datetime(2026, 3, 28, 7, 30, tzinfo=UTC), False),
        (dt.datetime(2026, 3, 29, 7, 30, tzinfo=UTC), True),
        # 15:30 UTC is 16:30 CET Saturday (open), 17:30 CEST Sunday (closed)
        (dt.datetime(2026, 3, 28, 15, 30, tzinfo=UTC), True),
        (dt.datetime(2026, 3, 29, 15, 30, tzinfo=UTC), False),
        # autumn: 07:30 UTC is 09:30 CEST on Saturday 24 Oct, 08:30 CET on Sunday 25 Oct
        (dt.datetime(2026, 10, 24, 7, 30, tzinfo=UTC), True),
        (dt.datetime(2026, 10, 25, 7, 30, tzinfo=UTC), False),
        (dt.datetime(2026, 10, 25, 8, 0, tzinfo=UTC), True),  # 09:00 CET: opens
    ]
    for at, inside in cases:
        moved_clock.move_to(at)
        state = _state(workspace, rule["id"])
        check = next(c for c in state["checks"] if c["check"] == "schedule")
        assert check["ok"] is inside, at
        assert state["runs"] is inside
        if not inside:
            assert state["reasons"] == ["outside its schedule windows"]
        assert check["timezone"] == "Europe/Berlin"


def test_the_tenant_timezone_applies_when_the_rule_has_none(workspace, moved_clock):
    workspace.call("PUT", "/api/working-hours/timezone", json={"timezone": "Asia/Jakarta"})
    rule = create_rule(workspace)
    resp = _schedule(
        workspace,
        rule["id"],
        {"days": [{"weekday": 0, "intervals": [{"start": "00:00", "end": "24:00"}]}]},
    )
    assert resp.status_code == 200 and resp.json["schedule"]["timezone"] is None
    # Sunday 18:00 UTC is already Monday 01:00 in Jakarta (+07:00)
    moved_clock.move_to(dt.datetime(2026, 5, 3, 18, 0, tzinfo=UTC))
    preview = _preview(workspace, rule["id"], count=2)
    assert preview["timezone"] == "Asia/Jakarta" and preview["inside_now"] is True
    assert preview["windows"][0]["end_local"] == "2026-05-05T00:00:00+07:00"
    assert preview["windows"][1]["start_local"] == "2026-05-11T00:00:00+07:00"

    # disabled: the windows are kept, the rule runs at any time
    off = _schedule(workspace, rule["id"], {"enabled": False})
    assert off.json["schedule"]["enabled"] is False and off.json["schedule"]["days"]
    moved_clock.move_to(dt.datetime(2026, 5, 6, 12, 0, tzinfo=UTC))
    assert _state(workspace, rule["id"])["runs"] is True
    preview = _preview(workspace, rule["id"])
    assert preview["scheduled"] is False and preview["windows"][0]["end"] is None


def test_bad_schedules_are_422_naming_the_field(workspace):
    rule = create_rule(workspace)
    first = _schedule(workspace, rule["id"], {"timezone": "Europe/Berlin"})
    assert first.status_code == 422 and first.json["error"]["details"][0]["field"] == "days"
    bad = {
        "overlap": (
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
        "inverted": (
            {"days": [{"weekday": 1, "intervals": [{"start": "17:00", "end": "09:00"}]}]},
            "days[0].intervals[0].end",
        ),
        "timezone": ({"days": EVERY_DAY, "timezone": "Mars/Olympus_Mons"}, "timezone"),
        "time": (
            {"days": [{"weekday": 1, "intervals": [{"start": "25:00", "end": "26:00"}]}]},
            "days[0].intervals[0].start",
        ),
        "weekday": ({"days": [{"weekday": 7, "intervals": []}]}, "days[0].weekday"),
        "duplicate exception": (
            {"days": EVERY_DAY, "exceptions": [{"date": "2026-12-25"}, {"date": "2026-12-25"}]},
            "exceptions[1].date",
        ),
        "exception date": (
            {"days": EVERY_DAY, "exceptions": [{"date": "25/12/2026"}]},
            "exceptions[0].date",
        ),
        "null days": ({"days": None}, "days"),
    }
    for name, (body, field) in bad.items():
        resp = _schedule(workspace, rule["id"], body)
        assert resp.status_code == 422, (name, resp.text)
        fields = [d["field"] for d in resp.json["error"]["details"]]
        assert field in fields, (name, fields)
    assert workspace.call("GET", f"{RULES}/{rule['id']}").json["schedule"] is None
    count = workspace.call("GET", f"{RULES}/{rule['id']}/schedule/preview?count=0")
    assert count.status_code == 400


def test_supervisors_preview_but_cannot_change_schedules(workspace):
    rule = create_rule(workspace)
    _, supervisor = workspace.create_agent("supervisor")
    resp = workspace.call(
        "PATCH", f"{RULES}/{rule['id']}/schedule", json={"days": EVERY_DAY}, token=supervisor
    )
    assert resp.status_code == 403
    preview = workspace.call("GET", f"{RULES}/{rule['id']}/schedule/preview", token=supervisor)
    assert preview.status_code == 200 and preview.json["scheduled"] is False


def test_switching_on_a_schedule_that_never_named_its_days_is_422(workspace):
    rule = create_rule(workspace)
    off = _schedule(workspace, rule["id"], {"enabled": False})
    assert off.status_code == 200, off.text
    on = _schedule(workspace, rule["id"], {"enabled": True})
    assert on.status_code == 422, on.text  # else closed all week: the rule would never run
    assert on.json["error"]["details"][0]["field"] == "days"
    assert _state(workspace, rule["id"])["runs"] is True
    named = _schedule(workspace, rule["id"], {"enabled": True, "days": EVERY_DAY})
    assert named.status_code == 200 and named.json["schedule"]["enabled"] is True
