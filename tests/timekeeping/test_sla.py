"""SLA: policies over HTTP, clocks attached on open, breaches recorded once by check_sla.

Time is moved, not slept: ``check_due(now=...)`` judges at a chosen instant, and clocks
are moved by editing their rows (as the inbox tests move snoozes).
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from sqlalchemy import func, select, text, update

from shared.db import session_scope
from shared.models import ConversationSla, Job, OutboxEvent, SlaBreach
from shared.timekeeping import sla, sla_policies
from tests.channels_api.conftest import ApiChannel
from tests.inbox_conversations.conftest import add_division, tid
from tests.webhooks.conftest import path, receiver  # noqa: F401

UTC = dt.UTC
POLICIES = "/api/sla-policies"


@pytest.fixture
def api(worker, workspace, receiver, path):  # noqa: F811
    return ApiChannel(workspace, receiver.url(path))


def policy(ws, **fields) -> dict:
    body = {"name": f"Policy {uuid.uuid4().hex[:6]}", "first_response_minutes": 30} | fields
    resp = ws.call("POST", POLICIES, json=body)
    assert resp.status_code == 201, resp.text
    return resp.json


def clock(conversation_id) -> ConversationSla | None:
    with session_scope() as session:
        found = session.get(ConversationSla, uuid.UUID(str(conversation_id)))
        if found is not None:
            session.expunge(found)
        return found


def move_clock(conversation_id, **values) -> None:
    with session_scope() as session:
        session.execute(
            update(ConversationSla)
            .where(ConversationSla.conversation_id == uuid.UUID(str(conversation_id)))
            .values(**values)
        )


def check(at: dt.datetime, *conversations: str) -> int:
    """One check_sla run at ``at``; the breaches it recorded for ``conversations`` (other
    tests' clocks may be due at ``at`` too)."""
    with session_scope() as session:
        sla.check_due(session, now=at)
    with session_scope() as session:
        return session.scalar(
            select(func.count())
            .select_from(SlaBreach)
            .where(
                SlaBreach.breached_at == at,
                SlaBreach.conversation_id.in_([uuid.UUID(str(c)) for c in conversations]),
            )
        )


def breaches_of(conversation_id) -> list[SlaBreach]:
    with session_scope() as session:
        rows = session.scalars(
            select(SlaBreach)
            .where(SlaBreach.conversation_id == uuid.UUID(str(conversation_id)))
            .order_by(SlaBreach.breached_at, SlaBreach.kind)
        ).all()
        session.expunge_all()
        return list(rows)


def breach_events(ws) -> list[dict]:
    with session_scope() as session:
        return [
            e.data
            for e in session.scalars(
                select(OutboxEvent).where(
                    OutboxEvent.tenant_id == tid(ws), OutboxEvent.type == "sla.breached"
                )
            )
        ]


def db_now() -> dt.datetime:
    with session_scope() as session:
        return session.scalar(select(func.now()))


# --- policies over HTTP -----------------------------------------------------------------


def test_policy_crud(workspace):
    division = add_division(workspace, "VIP desk")
    created = policy(
        workspace,
        name="VIP",
        priority=1,
        channels=["api", "whatsapp"],
        division_ids=[division],
        tags=["VIP"],
        resolution_minutes=480,
        business_hours_only=True,
    )
    assert created["tags"] == ["vip"] and created["version"] == 1
    listed = workspace.call("GET", POLICIES).json["items"]
    assert [p["id"] for p in listed] == [created["id"]]
    patched = workspace.call(
        "PATCH", f"{POLICIES}/{created['id']}", json={"first_response_minutes": 15}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json["first_response_minutes"] == 15 and patched.json["version"] == 2
    renamed = workspace.call("PATCH", f"{POLICIES}/{created['id']}", json={"priority": 3})
    assert renamed.json["version"] == 2  # no clock field changed
    cleared = workspace.call(
        "PATCH", f"{POLICIES}/{created['id']}", json={"first_response_minutes": None}
    )
    assert cleared.status_code == 200 and cleared.json["first_response_minutes"] is None
    breaches = workspace.call("GET", f"{POLICIES}/{created['id']}/breaches")
    assert breaches.status_code == 200 and breaches.json["items"] == []
    assert workspace.call("DELETE", f"{POLICIES}/{created['id']}").status_code == 204
    assert workspace.call("GET", POLICIES).json["items"] == []
    assert workspace.call("DELETE", f"{POLICIES}/{created['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "x", "first_response_minutes": 0}, 422, "first_response_minutes"),
        ({"name": "x", "resolution_minutes": 525_601}, 422, "resolution_minutes"),
        ({"name": "x"}, 422, "first_response_minutes"),
        ({"name": "x", "first_response_minutes": 5, "channels": ["fax"]}, 422, "channels[0]"),
        (
            {"name": "x", "first_response_minutes": 5, "division_ids": [str(uuid.uuid4())]},
            422,
            "division_ids",
        ),
        ({"name": "", "first_response_minutes": 5}, 422, "name"),
        ({"name": "x", "first_response_minutes": 5, "priority": -1}, 422, "priority"),
    ],
)
def test_bad_policies_are_refused_and_nothing_is_stored(workspace, body, status, field):
    resp = workspace.call("POST", POLICIES, json=body)
    assert resp.status_code == status, resp.text
    assert field in [d.get("field") for d in resp.json["error"]["details"]], resp.json
    assert workspace.call("GET", POLICIES).json["items"] == []


def test_policy_permissions_names_and_tenants(workspace, other_workspace):
    created = policy(workspace, name="Standard")
    assert (
        workspace.call(
            "POST", POLICIES, json={"name": "Standard", "first_response_minutes": 5}
        ).status_code
        == 409
    )
    # a division of another tenant is unknown here
    theirs = add_division(other_workspace, "Theirs")
    resp = workspace.call(
        "POST", POLICIES, json={"name": "D", "first_response_minutes": 5, "division_ids": [theirs]}
    )
    assert resp.status_code == 422
    _, agent = workspace.create_agent("agent")
    _, supervisor = workspace.create_agent("supervisor")
    assert workspace.call("GET", POLICIES, token=agent).status_code == 403
    assert workspace.call("GET", POLICIES, token=supervisor).status_code == 200
    body = {"name": "S", "first_response_minutes": 5}
    assert workspace.call("POST", POLICIES, json=body, token=supervisor).status_code == 403
    target = f"{POLICIES}/{created['id']}"
    for method, kwargs in (("PATCH", {"json": {"priority": 2}}), ("DELETE", {})):
        assert workspace.call(method, target, token=supervisor, **kwargs).status_code == 403
        assert other_workspace.call(method, target, **kwargs).status_code == 404
    assert other_workspace.call("GET", f"{target}/breaches").status_code == 404


# --- clocks --------------------------------------------------------------------------------


def test_the_first_matching_policy_is_attached_when_a_conversation_opens(api):
    ws = api.ws
    policy(ws, name="Email only", priority=0, channels=["email"], first_response_minutes=5)
    policy(ws, name="VIP", priority=1, tags=["vip"], first_response_minutes=10)
    chosen = policy(
        ws,
        name="API",
        priority=2,
        channels=["api"],
        first_response_minutes=None,
        resolution_minutes=60,
    )
    policy(ws, name="Fallback", priority=3, first_response_minutes=120)
    conversation = api.inbound("Hello")["conversation_id"]
    status = ws.call("GET", f"/api/conversations/{conversation}/sla")
    assert status.status_code == 200, status.text
    body = status.json
    assert body["policy"]["id"] == chosen["id"]
    [target] = body["targets"]
    assert target["kind"] == "resolution" and target["status"] == "pending"
    started = dt.datetime.fromisoformat(body["started_at"])
    assert dt.datetime.fromisoformat(target["due_at"]) == started + dt.timedelta(minutes=60)


def test_no_policy_no_clock(api, other_workspace):
    conversation = api.inbound("Hello")["conversation_id"]
    body = api.ws.call("GET", f"/api/conversations/{conversation}/sla").json
    assert body == {
        "policy": None,
        "started_at": None,
        "paused_at": None,
        "targets": [],
        "breaches": [],
    }
    assert other_workspace.call("GET", f"/api/conversations/{conversation}/sla").status_code == 404


def test_first_response_met_resolution_breached_once_with_the_event(api):
    ws = api.ws
    chosen = policy(ws, first_response_minutes=30, resolution_minutes=120)
    conversation = api.inbound("Help")["conversation_id"]
    api.reply(conversation, "Looking into it")
    started = clock(conversation).started_at
    assert (
        check(started + dt.timedelta(minutes=60), conversation) == 0
    )  # first response met in time
    assert check(started + dt.timedelta(minutes=121), conversation) == 1
    assert check(started + dt.timedelta(minutes=200), conversation) == 0  # recorded once
    [breach] = breaches_of(conversation)
    assert breach.kind == "resolution"
    assert breach.due_at == started + dt.timedelta(minutes=120)
    [data] = breach_events(ws)
    assert data["kind"] == "resolution" and data["conversation_id"] == conversation
    status = ws.call("GET", f"/api/conversations/{conversation}/sla").json
    targets = {t["kind"]: t for t in status["targets"]}
    assert targets["first_response"]["status"] == "met"
    assert targets["first_response"]["met_at"] is not None
    assert targets["resolution"]["status"] == "breached"
    assert len(status["breaches"]) == 1
    listed = ws.call("GET", f"{POLICIES}/{chosen['id']}/breaches").json["items"]
    assert [b["id"] for b in listed] == [str(breach.id)]


def test_first_response_breach_then_next_response_cycle(api):
    ws = api.ws
    policy(ws, first_response_minutes=10, next_response_minutes=20)
    conversation = api.inbound("Anyone?")["conversation_id"]
    started = clock(conversation).started_at
    assert check(started + dt.timedelta(minutes=11), conversation) == 1
    assert [b.kind for b in breaches_of(conversation)] == ["first_response"]
    api.reply(conversation, "Sorry for the wait")
    api.inbound("Thanks, one more thing")
    running = clock(conversation)
    assert running.next_response_started_at is not None
    assert running.next_response_due_at == running.next_response_started_at + dt.timedelta(
        minutes=20
    )
    assert check(running.next_response_due_at + dt.timedelta(seconds=1), conversation) == 1
    assert [b.kind for b in breaches_of(conversation)] == ["first_response", "next_response"]
    assert {e["kind"] for e in breach_events(ws)} == {"first_response", "next_response"}
    # answered: the cycle ends; the customer's next message starts a new one
    api.reply(conversation, "Done")
    assert clock(conversation).next_response_met_at is not None
    assert clock(conversation).next_check_at is None


def test_pending_pauses_the_clock_and_resuming_pushes_the_due_time(api):
    ws = api.ws
    policy(ws, first_response_minutes=30, pause_on_pending=True)
    conversation = api.inbound("Hi")["conversation_id"]
    due = clock(conversation).first_response_due_at
    resp = ws.call("PATCH", f"/api/conversations/{conversation}/status", json={"status": "pending"})
    assert resp.status_code == 200, resp.text
    paused = clock(conversation)
    assert paused.paused_at is not None and paused.next_check_at is None
    assert check(due + dt.timedelta(hours=5), conversation) == 0
    assert (
        ws.call("GET", f"/api/conversations/{conversation}/sla").json["targets"][0]["status"]
        == "paused"
    )
    # two hours pass while pending
    move_clock(conversation, paused_at=ConversationSla.paused_at - dt.timedelta(hours=2))
    ws.call("PATCH", f"/api/conversations/{conversation}/status", json={"status": "open"})
    resumed = clock(conversation)
    assert resumed.paused_at is None
    assert abs(resumed.paused_seconds - 7200) < 5
    assert abs((resumed.first_response_due_at - due).total_seconds() - 7200) < 5
    assert resumed.next_check_at == resumed.first_response_due_at


def test_a_policy_without_pause_keeps_counting_while_pending(api):
    ws = api.ws
    policy(ws, first_response_minutes=30, pause_on_pending=False)
    conversation = api.inbound("Hi")["conversation_id"]
    ws.call("PATCH", f"/api/conversations/{conversation}/status", json={"status": "pending"})
    running = clock(conversation)
    assert running.paused_at is None
    assert check(running.first_response_due_at + dt.timedelta(seconds=1), conversation) == 1
    assert [b.kind for b in breaches_of(conversation)] == ["first_response"]


def test_business_hours_only_counts_working_time_and_skips_a_holiday(api):
    ws = api.ws
    office = {
        "days": [
            {"weekday": d, "intervals": [{"start": "09:00", "end": "17:00"}]} for d in range(5)
        ],
        "holidays": [{"date": "2026-03-09", "name": "Founders' day"}],
    }
    assert ws.call("PUT", "/api/working-hours", json=office).status_code == 200
    policy(ws, first_response_minutes=30, business_hours_only=True)
    conversation = api.inbound("Friday evening question")["conversation_id"]
    friday_1650 = dt.datetime(2026, 3, 6, 16, 50, tzinfo=UTC)
    # the conversation opened Friday 16:50 (moved); the version mismatch makes check_sla
    # recompute, as after a policy change
    move_clock(conversation, started_at=friday_1650, policy_version=0, next_check_at=friday_1650)
    assert check(dt.datetime(2026, 3, 6, 17, 30, tzinfo=UTC), conversation) == 0
    # Monday is a holiday: 10 minutes Friday + 20 minutes Tuesday -> Tuesday 09:20
    assert clock(conversation).first_response_due_at == dt.datetime(2026, 3, 10, 9, 20, tzinfo=UTC)
    assert check(dt.datetime(2026, 3, 10, 9, 19, tzinfo=UTC), conversation) == 0
    assert check(dt.datetime(2026, 3, 10, 9, 21, tzinfo=UTC), conversation) == 1


def test_a_changed_policy_reaches_open_conversations_on_the_next_check(api):
    ws = api.ws
    chosen = policy(ws, first_response_minutes=60)
    conversation = api.inbound("Hi")["conversation_id"]
    started = clock(conversation).started_at
    ws.call("PATCH", f"{POLICIES}/{chosen['id']}", json={"first_response_minutes": 5})
    assert check(started + dt.timedelta(minutes=6), conversation) == 1
    assert breaches_of(conversation)[0].due_at == started + dt.timedelta(minutes=5)


def test_a_pause_setting_turned_off_restarts_the_paused_clocks_on_the_next_check(api):
    ws = api.ws
    chosen = policy(ws, first_response_minutes=30, pause_on_pending=True)
    conversation = api.inbound("Hi")["conversation_id"]
    ws.call("PATCH", f"/api/conversations/{conversation}/status", json={"status": "pending"})
    # two hours pass while pending, then a new target: the clock stays paused, unbreached
    move_clock(conversation, paused_at=ConversationSla.paused_at - dt.timedelta(hours=2))
    ws.call("PATCH", f"{POLICIES}/{chosen['id']}", json={"first_response_minutes": 20})
    now = db_now()
    assert check(now, conversation) == 0
    assert clock(conversation).paused_at is not None
    # pending no longer pauses: the next check restarts the clock, the two hours pushed
    ws.call("PATCH", f"{POLICIES}/{chosen['id']}", json={"pause_on_pending": False})
    assert check(db_now(), conversation) == 0
    running = clock(conversation)
    assert running.paused_at is None and abs(running.paused_seconds - 7200) < 5
    assert running.next_check_at == running.first_response_due_at
    assert check(running.first_response_due_at + dt.timedelta(seconds=1), conversation) == 1


def test_a_clock_moved_to_another_policy_follows_its_pause_settings(api):
    ws = api.ws
    policy(ws, name="Standard", priority=1, first_response_minutes=30, pause_on_pending=True)
    vip = {"tags": ["vip"], "first_response_minutes": 10, "pause_on_pending": False}
    policy(ws, name="VIP", priority=0, **vip)
    conversation = api.inbound("Hello")["conversation_id"]
    ws.call("PATCH", f"/api/conversations/{conversation}/status", json={"status": "pending"})
    assert clock(conversation).paused_at is not None  # Standard pauses while pending
    tags = f"/api/conversations/{conversation}/tags"
    assert ws.call("PATCH", tags, json={"add": ["vip"]}).status_code == 200
    moved = clock(conversation)
    assert moved.paused_at is None  # VIP does not pause on pending
    assert moved.next_check_at == moved.first_response_due_at
    assert check(moved.first_response_due_at + dt.timedelta(seconds=1), conversation) == 1
    # back under Standard while still pending: it counts on until the next reply
    assert ws.call("PATCH", tags, json={"remove": ["vip"]}).status_code == 200
    assert clock(conversation).paused_at is None
    api.reply(conversation, "Waiting for your answer")
    assert clock(conversation).paused_at is not None


def test_a_transfer_times_a_business_hours_clock_by_the_new_divisions_hours(api):
    ws = api.ws
    desk = add_division(ws, "Office desk")
    an_hour_a_week = {"days": [{"weekday": 2, "intervals": [{"start": "10:00", "end": "11:00"}]}]}
    resp = ws.call("PUT", f"/api/divisions/{desk}/working-hours", json=an_hour_a_week)
    assert resp.status_code == 200, resp.text
    policy(ws, first_response_minutes=30, business_hours_only=True)  # the tenant: always open
    conversation = api.inbound("Hello")["conversation_id"]
    before = clock(conversation)
    assert before.first_response_due_at == before.started_at + dt.timedelta(minutes=30)
    moved = ws.call(
        "POST", f"/api/conversations/{conversation}/transfer", json={"to_division_id": desk}
    )
    assert moved.status_code in (200, 201), moved.text
    due = clock(conversation).first_response_due_at
    assert due.weekday() == 2 and (due.hour, due.minute) == (10, 30), due  # the desk is UTC
    assert clock(conversation).started_at == before.started_at


def test_a_deleted_policy_stops_its_clocks(api):
    ws = api.ws
    chosen = policy(ws, first_response_minutes=5)
    conversation = api.inbound("Hi")["conversation_id"]
    assert ws.call("DELETE", f"{POLICIES}/{chosen['id']}").status_code == 204
    assert check(db_now() + dt.timedelta(hours=1), conversation) == 0
    assert clock(conversation).next_check_at is None  # stopped by the check, not the request
    assert breaches_of(conversation) == []


def test_resolving_meets_resolution_and_reopening_starts_a_fresh_clock(api):
    ws = api.ws
    policy(ws, resolution_minutes=60)
    conversation = api.inbound("Hi")["conversation_id"]
    first = clock(conversation)
    ws.call("PATCH", f"/api/conversations/{conversation}/status", json={"status": "resolved"})
    done = clock(conversation)
    assert done.resolution_met_at is not None and done.next_check_at is None
    assert check(first.resolution_due_at + dt.timedelta(minutes=1), conversation) == 0
    assert breaches_of(conversation) == []
    ws.call("PATCH", f"/api/conversations/{conversation}/status", json={"status": "open"})
    again = clock(conversation)
    assert again.resolution_met_at is None and again.started_at > first.started_at


def test_two_checks_at_once_record_each_breach_once(api):
    ws = api.ws
    policy(ws, first_response_minutes=1)
    conversations = [api.inbound("Hi", source_id=f"c{n}")["conversation_id"] for n in range(6)]
    later = db_now() + dt.timedelta(minutes=5)
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def run():
        barrier.wait()
        counts.append(check(later))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for conversation in conversations:
        assert [b.kind for b in breaches_of(conversation)] == ["first_response"]
    mine = [e for e in breach_events(ws) if e["conversation_id"] in conversations]
    assert len(mine) == 6


def test_a_customer_message_on_a_pending_conversation_restarts_its_paused_clock(api):
    ws = api.ws
    policy(ws, first_response_minutes=30, pause_on_pending=True)
    conversation = api.inbound("Hi")["conversation_id"]
    due = clock(conversation).first_response_due_at
    ws.call("PATCH", f"/api/conversations/{conversation}/status", json={"status": "pending"})
    move_clock(conversation, paused_at=ConversationSla.paused_at - dt.timedelta(hours=1))
    # the customer writes: the conversation stays pending, but no longer waits on them
    assert api.inbound("Still there?")["conversation_id"] == conversation
    assert ws.call("GET", f"/api/conversations/{conversation}").json["status"] == "pending"
    running = clock(conversation)
    assert running.paused_at is None
    assert abs(running.paused_seconds - 3600) < 5
    assert abs((running.first_response_due_at - due).total_seconds() - 3600) < 5
    assert running.next_check_at == running.first_response_due_at
    assert check(running.first_response_due_at + dt.timedelta(seconds=1), conversation) == 1
    # the agent's reply hands the turn back to the customer: the clock stops again
    api.reply(conversation, "Yes, here")
    answered = clock(conversation)
    assert answered.first_response_breached_at is not None  # late, and recorded as such
    assert answered.first_response_met_at is not None
    assert answered.paused_at is not None and answered.next_check_at is None


def test_a_tag_moves_the_clock_to_the_policy_that_matches_and_keeps_its_start(api):
    ws = api.ws
    policy(ws, name="Fallback", priority=1, first_response_minutes=120)
    vip = policy(ws, name="VIP", priority=0, tags=["vip"], first_response_minutes=10)
    conversation = api.inbound("Hello")["conversation_id"]
    before = clock(conversation)
    tags = f"/api/conversations/{conversation}/tags"
    assert ws.call("PATCH", tags, json={"add": ["vip"]}).status_code == 200
    moved = clock(conversation)
    assert str(moved.policy_id) == vip["id"]
    assert moved.started_at == before.started_at
    assert moved.first_response_due_at == before.started_at + dt.timedelta(minutes=10)
    assert moved.next_check_at == moved.first_response_due_at
    body = ws.call("GET", f"/api/conversations/{conversation}/sla").json
    assert body["policy"]["id"] == vip["id"]
    assert check(before.started_at + dt.timedelta(minutes=11), conversation) == 1
    # untagged: back under the fallback, the breach already recorded stays
    ws.call("PATCH", tags, json={"remove": ["vip"]})
    back = clock(conversation)
    assert back.policy_id == before.policy_id
    assert back.first_response_due_at == before.first_response_due_at
    assert [b.kind for b in breaches_of(conversation)] == ["first_response"]


def test_a_conversation_that_starts_or_stops_matching_gains_or_loses_its_clock(api):
    ws = api.ws
    desk = add_division(ws, "Escalations")
    escalated = policy(ws, division_ids=[desk], first_response_minutes=15)
    conversation = api.inbound("Hello")["conversation_id"]
    assert clock(conversation) is None
    moved = ws.call(
        "POST", f"/api/conversations/{conversation}/transfer", json={"to_division_id": desk}
    )
    assert moved.status_code in (200, 201), moved.text
    started = clock(conversation)
    assert started is not None and str(started.policy_id) == escalated["id"]
    assert started.first_response_due_at == started.started_at + dt.timedelta(minutes=15)
    assert started.started_at > db_now() - dt.timedelta(minutes=1)
    # a policy for tagged conversations only: the tag brings a clock, untagging takes it
    other = api.inbound("Hi", source_id="cust-2")["conversation_id"]
    assert other != conversation and clock(other) is None
    policy(ws, tags=["urgent"], first_response_minutes=5)
    tags = f"/api/conversations/{other}/tags"
    ws.call("PATCH", tags, json={"add": ["urgent"]})
    assert clock(other) is not None
    ws.call("PATCH", tags, json={"remove": ["urgent"]})
    assert clock(other) is None
    assert ws.call("GET", f"/api/conversations/{other}/sla").json["policy"] is None


def test_a_reply_before_the_next_check_does_not_hide_a_lowered_target(api):
    ws = api.ws
    chosen = policy(ws, first_response_minutes=30, resolution_minutes=600)
    conversation = api.inbound("Hi")["conversation_id"]
    started = clock(conversation).started_at
    # the target is lowered; an agent replies before check_sla has applied it
    resp = ws.call("PATCH", f"{POLICIES}/{chosen['id']}", json={"resolution_minutes": 60})
    assert resp.status_code == 200, resp.text
    api.reply(conversation, "On it")
    # the lowered target is missed: the next check after its due time records it
    assert check(started + dt.timedelta(minutes=61), conversation) == 1
    assert breaches_of(conversation)[0].due_at == started + dt.timedelta(minutes=60)


def test_a_pause_turned_off_reaches_a_paused_clock_answered_before_the_next_check(api):
    ws = api.ws
    chosen = policy(ws, resolution_minutes=600, pause_on_pending=True)
    conversation = api.inbound("Hi")["conversation_id"]
    ws.call("PATCH", f"/api/conversations/{conversation}/status", json={"status": "pending"})
    assert clock(conversation).paused_at is not None
    # pending no longer pauses; an agent replies before check_sla has applied that
    ws.call("PATCH", f"{POLICIES}/{chosen['id']}", json={"pause_on_pending": False})
    api.reply(conversation, "Still on it")
    assert check(db_now(), conversation) == 0
    running = clock(conversation)
    assert running.paused_at is None
    assert running.next_check_at == running.resolution_due_at is not None


def test_a_pause_turned_off_reaches_a_paused_clock_retagged_before_the_next_check(api):
    ws = api.ws
    chosen = policy(ws, resolution_minutes=600, business_hours_only=True, pause_on_pending=True)
    conversation = api.inbound("Hi")["conversation_id"]
    ws.call("PATCH", f"/api/conversations/{conversation}/status", json={"status": "pending"})
    assert clock(conversation).paused_at is not None
    # pending no longer pauses; the conversation is tagged before check_sla has applied that
    ws.call("PATCH", f"{POLICIES}/{chosen['id']}", json={"pause_on_pending": False})
    tags = f"/api/conversations/{conversation}/tags"
    assert ws.call("PATCH", tags, json={"add": ["billing"]}).status_code == 200
    assert check(db_now(), conversation) == 0
    running = clock(conversation)
    assert running.paused_at is None
    assert running.next_check_at == running.first_response_due_at is not None


def test_a_deleted_policys_breaches_stay_listed(api, other_workspace):
    ws = api.ws
    chosen = policy(ws, first_response_minutes=5)
    conversation = api.inbound("Hi")["conversation_id"]
    started = clock(conversation).started_at
    assert check(started + dt.timedelta(minutes=6), conversation) == 1
    assert ws.call("DELETE", f"{POLICIES}/{chosen['id']}").status_code == 204
    listed = ws.call("GET", f"{POLICIES}/{chosen['id']}/breaches")
    assert listed.status_code == 200, listed.text
    assert [b["conversation_id"] for b in listed.json["items"]] == [conversation]
    # still another tenant's policy to everyone else
    assert other_workspace.call("GET", f"{POLICIES}/{chosen['id']}/breaches").status_code == 404


def test_a_backlog_of_breaches_is_recorded_in_one_check(workspace):
    """After an outage thousands of clocks are overdue on every target at once: one run
    records them all (more than one statement's 65,535 parameters' worth)."""
    chosen = policy(
        workspace, first_response_minutes=5, next_response_minutes=5, resolution_minutes=5
    )
    count, tenant = 2_800, tid(workspace)
    with session_scope() as session:
        contact = session.scalar(
            text(
                "INSERT INTO contacts (id, tenant_id, channel, external_id)"
                " VALUES (gen_random_uuid(), :t, 'api', 'backlog') RETURNING id"
            ),
            {"t": tenant},
        )
        session.execute(
            text(
                "INSERT INTO conversations (id, tenant_id, contact_id, channel)"
                " SELECT gen_random_uuid(), :t, :c, 'api' FROM generate_series(1, :n)"
            ),
            {"t": tenant, "c": contact, "n": count},
        )
        started = db_now() - dt.timedelta(hours=2)
        due = started + dt.timedelta(minutes=5)
        session.execute(
            text(
                "INSERT INTO conversation_slas (conversation_id, tenant_id, policy_id,"
                " policy_version, started_at, first_response_due_at, next_response_started_at,"
                " next_response_due_at, resolution_due_at, next_check_at)"
                " SELECT id, tenant_id, :p, 1, :s, :d, :s, :d, :d, :d"
                " FROM conversations WHERE contact_id = :c"
            ),
            {"p": uuid.UUID(chosen["id"]), "s": started, "d": due, "c": contact},
        )
    at = db_now()
    with session_scope() as session:
        sla.check_due(session, now=at)
    with session_scope() as session:
        recorded = session.scalar(
            select(func.count()).select_from(SlaBreach).where(SlaBreach.tenant_id == tenant)
        )
    assert recorded == 3 * count
    assert len(breach_events(workspace)) == 3 * count


def test_new_working_hours_re_time_the_open_business_hours_clocks(api):
    ws = api.ws
    policy(ws, first_response_minutes=30, business_hours_only=True)  # the tenant: always open
    conversation = api.inbound("Hello")["conversation_id"]
    before = clock(conversation)
    assert before.first_response_due_at == before.started_at + dt.timedelta(minutes=30)
    # closed until further notice (a schedule that lists no days is always closed)
    assert ws.call("PUT", "/api/working-hours", json={"days": []}).status_code == 200
    # no breach at the old due time: the next check re-times the clock by the new hours
    assert check(before.first_response_due_at + dt.timedelta(minutes=1), conversation) == 0
    after = clock(conversation)
    assert after.first_response_due_at == before.started_at + dt.timedelta(days=3650)
    assert after.started_at == before.started_at


def test_a_target_the_working_hours_cannot_hold_is_never_due_and_opens_at_once(api):
    """A minute a week cannot hold a year's target: never due (10 years on), computed at
    once; the walk to it used to pass year 9999 and fail the inbound message."""
    ws = api.ws
    a_minute_a_week = {
        "days": [{"weekday": 0, "intervals": [{"start": "09:00", "end": "09:01"}]}],
        "holidays": [],
    }
    assert ws.call("PUT", "/api/working-hours", json=a_minute_a_week).status_code == 200
    policy(ws, first_response_minutes=600, resolution_minutes=525_600, business_hours_only=True)

    conversation = api.inbound("Anyone there?")["conversation_id"]

    opened = clock(conversation)
    never = opened.started_at + dt.timedelta(days=3650)
    assert (opened.first_response_due_at, opened.resolution_due_at) == (never, never)
    assert check(db_now() + dt.timedelta(days=400), conversation) == 0


def test_a_super_admins_timezone_change_re_times_the_open_business_hours_clocks(api):
    from tests.admin.conftest import create_super_admin, login

    ws = api.ws
    office = {
        "days": [
            {"weekday": d, "intervals": [{"start": "09:00", "end": "17:00"}]} for d in range(7)
        ]
    }
    assert ws.call("PUT", "/api/working-hours", json=office).status_code == 200
    policy(ws, first_response_minutes=30, business_hours_only=True)
    conversation = api.inbound("Hello")["conversation_id"]
    move_clock(conversation, next_check_at=db_now() + dt.timedelta(days=1))  # checked, not due
    root = login(ws.client, create_super_admin())

    resp = root.call(
        "PATCH", f"/api/admin/tenants/{ws.tenant['id']}", json={"timezone": "Pacific/Kiritimati"}
    )

    assert resp.status_code == 200, resp.text
    with session_scope() as session:
        assert sla.drain_retimes(session, db_now()) >= 1  # check_sla's first step
    moved = clock(conversation)
    assert moved.policy_version == 0 and moved.next_check_at <= db_now()  # check_sla re-times it


# --- a target missed between two checks ---------------------------------------------------


def test_a_reply_after_the_due_time_but_before_the_next_check_is_still_a_breach(api):
    """check_sla runs every minute (later after an outage): a reply in between used to
    meet the target and hide its breach for good."""
    ws = api.ws
    policy(ws, first_response_minutes=5)
    conversation = api.inbound("Hi")["conversation_id"]
    overdue = db_now() - dt.timedelta(minutes=1)
    move_clock(conversation, first_response_due_at=overdue, next_check_at=overdue)

    api.reply(conversation, "Sorry, late")

    [breach] = breaches_of(conversation)
    assert breach.kind == "first_response" and breach.due_at == overdue
    assert [e["kind"] for e in breach_events(ws)] == ["first_response"]
    assert check(db_now() + dt.timedelta(minutes=1), conversation) == 0  # recorded once


def test_resolving_after_the_due_times_but_before_the_next_check_records_the_breaches(api):
    ws = api.ws
    policy(ws, first_response_minutes=5, resolution_minutes=10)
    conversation = api.inbound("Hi")["conversation_id"]
    overdue = db_now() - dt.timedelta(minutes=1)
    move_clock(
        conversation,
        first_response_due_at=overdue,
        resolution_due_at=overdue,
        next_check_at=overdue,
    )

    resp = ws.call(
        "PATCH", f"/api/conversations/{conversation}/status", json={"status": "resolved"}
    )

    assert resp.status_code == 200, resp.text
    assert {b.kind for b in breaches_of(conversation)} == {"first_response", "resolution"}
    assert len(breach_events(ws)) == 2


def test_a_pause_after_the_due_time_but_before_the_next_check_keeps_the_breach(api):
    ws = api.ws
    policy(ws, first_response_minutes=5, pause_on_pending=True)
    conversation = api.inbound("Hi")["conversation_id"]
    overdue = db_now() - dt.timedelta(minutes=1)
    move_clock(conversation, first_response_due_at=overdue, next_check_at=overdue)

    resp = ws.call("PATCH", f"/api/conversations/{conversation}/status", json={"status": "pending"})

    assert resp.status_code == 200, resp.text
    assert [b.kind for b in breaches_of(conversation)] == ["first_response"]


def test_a_retag_after_the_due_time_but_before_the_next_check_keeps_the_breach(api):
    """The target was missed under the policy the conversation was on: moving it to a
    laxer policy before check_sla's next run recomputed the due time and lost the breach."""
    ws = api.ws
    policy(ws, name="Fallback", priority=1, first_response_minutes=5)
    policy(ws, name="Relaxed", priority=0, tags=["later"], first_response_minutes=600)
    conversation = api.inbound("Hi")["conversation_id"]
    overdue = db_now() - dt.timedelta(minutes=1)
    move_clock(conversation, first_response_due_at=overdue, next_check_at=overdue)

    tags = f"/api/conversations/{conversation}/tags"
    assert ws.call("PATCH", tags, json={"add": ["later"]}).status_code == 200

    [breach] = breaches_of(conversation)
    assert breach.kind == "first_response" and breach.due_at == overdue
    assert [e["kind"] for e in breach_events(ws)] == ["first_response"]
    assert check(db_now() + dt.timedelta(minutes=1), conversation) == 0  # recorded once


def test_a_reply_in_time_while_the_check_is_late_is_no_breach(api):
    ws = api.ws
    policy(ws, first_response_minutes=5, pause_on_pending=True)
    conversation = api.inbound("Hi")["conversation_id"]
    api.reply(conversation, "Right away")
    ws.call("PATCH", f"/api/conversations/{conversation}/status", json={"status": "resolved"})
    assert breaches_of(conversation) == []


def finish_other_retimes() -> None:
    """Close the re-time jobs earlier tests of this database left queued.

    drain_retimes serves the oldest jobs first, whatever their tenant (production's
    order), so a test that counts what its own job marks in a batch must not share the
    batch with leftovers (a policy changed in a tenant without clocks queues one).
    """
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.kind == sla.RETIME_KIND, Job.status.in_(("queued", "running")))
            .values(status="succeeded", finished_at=func.now())
        )


def test_new_working_hours_leave_the_clocks_to_check_sla_a_batch_a_run(api):
    """The PUT used to mark every running clock of the tenant in one UPDATE inside the
    request (every open conversation's clock locked while it ran): it queues the re-time,
    which check_sla does a batch a run."""
    ws = api.ws
    chosen = policy(ws, first_response_minutes=30, business_hours_only=True)
    conversations = [api.inbound("Hi", source_id=f"r{n}")["conversation_id"] for n in range(3)]
    before = {c: clock(c) for c in conversations}
    finish_other_retimes()

    assert ws.call("PUT", "/api/working-hours", json={"days": []}).status_code == 200

    assert all(clock(c).policy_version == chosen["version"] for c in conversations)
    now = db_now()
    with session_scope() as session:
        assert sla.drain_retimes(session, now, batch=2) == 2
    with session_scope() as session:
        assert sla.drain_retimes(session, now, batch=2) == 1
    with session_scope() as session:
        assert sla.drain_retimes(session, now, batch=2) == 0  # the job is done
    assert check(before[conversations[0]].first_response_due_at + dt.timedelta(minutes=1)) == 0
    for c in conversations:
        after = clock(c)
        assert after.first_response_due_at == before[c].started_at + dt.timedelta(days=3650)


def test_a_tenants_long_re_time_does_not_hold_back_another_tenants(
    api,
    other_workspace,
    receiver,  # noqa: F811
    path,  # noqa: F811
):
    """drain_retimes gave each run's batch to the oldest job until it was done: a big
    tenant's re-time (or several, one per change of its hours) held every other tenant's
    clocks on their old hours for as many runs as its walk took."""
    big, small = api, ApiChannel(other_workspace, receiver.url(path))
    for channel, count in ((big, 4), (small, 1)):
        policy(channel.ws, first_response_minutes=30, business_hours_only=True)
        for n in range(count):
            channel.inbound("Hi", source_id=f"t{n}")
    finish_other_retimes()
    for channel in (big, small):  # the big tenant changes its hours first
        assert channel.ws.call("PUT", "/api/working-hours", json={"days": []}).status_code == 200

    now = db_now()
    for _ in range(2):
        with session_scope() as session:
            assert sla.drain_retimes(session, now, batch=2) == 2

    with session_scope() as session:
        marked = session.scalars(
            select(ConversationSla.tenant_id).where(ConversationSla.policy_version == 0)
        ).all()
    assert marked.count(tid(other_workspace)) == 1  # its turn came
    assert marked.count(tid(big.ws)) == 3
    with session_scope() as session:  # the rest, re-timed: no clock left due for later tests
        sla.check_due(session, now=now)


def test_a_changed_policy_is_applied_by_check_sla_in_batches(api):
    ws = api.ws
    chosen = policy(ws, first_response_minutes=30)
    conversations = [api.inbound("Hi", source_id=f"p{n}")["conversation_id"] for n in range(3)]
    finish_other_retimes()
    resp = ws.call("PATCH", f"{POLICIES}/{chosen['id']}", json={"first_response_minutes": 5})
    assert resp.status_code == 200, resp.text
    later = max(clock(c).started_at for c in conversations) + dt.timedelta(minutes=6)
    with session_scope() as session:
        sla.check_due(session, now=later, batch=2)
    with session_scope() as session:
        sla.check_due(session, now=later, batch=2)
    for c in conversations:
        after = clock(c)
        assert after.first_response_due_at == after.started_at + dt.timedelta(minutes=5)
        assert [b.kind for b in breaches_of(c)] == ["first_response"]


def test_a_conversations_sla_status_lists_its_latest_breaches_only(api):
    """Each answered-late customer message is a breach: a long conversation's status
    listed every one of them in one answer."""
    ws = api.ws
    chosen = policy(ws, first_response_minutes=5, next_response_minutes=5)
    conversation = api.inbound("Hi")["conversation_id"]
    started = clock(conversation).started_at
    with session_scope() as session:
        session.execute(
            SlaBreach.__table__.insert(),
            [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": tid(ws),
                    "conversation_id": uuid.UUID(conversation),
                    "policy_id": uuid.UUID(chosen["id"]),
                    "kind": "next_response",
                    "cycle_started_at": started + dt.timedelta(minutes=n),
                    "due_at": started + dt.timedelta(minutes=n + 5),
                    "breached_at": started + dt.timedelta(minutes=n + 6),
                }
                for n in range(sla_policies.STATUS_BREACHES + 20)
            ],
        )

    status = ws.call("GET", f"/api/conversations/{conversation}/sla")

    assert status.status_code == 200, status.text
    listed = status.json["breaches"]
    assert len(listed) == sla_policies.STATUS_BREACHES
    last = started + dt.timedelta(minutes=sla_policies.STATUS_BREACHES + 19 + 6)
    assert dt.datetime.fromisoformat(listed[-1]["breached_at"]) == last  # oldest first, latest kept


def test_repeated_changes_queue_one_re_time_until_it_begins(api):
    ws = api.ws
    policy(ws, first_response_minutes=30, business_hours_only=True)
    api.inbound("Hi")
    for _ in range(3):
        assert ws.call("PUT", "/api/working-hours", json={"days": []}).status_code == 200
    with session_scope() as session:
        queued = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.tenant_id == tid(ws), Job.kind == sla.RETIME_KIND, Job.status == "running")
        )
    assert queued == 1
