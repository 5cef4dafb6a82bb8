"""The console's figures and actions through /api/ops, against the real worker and Redis."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import dramatiq
import pytest

from scheduler import jobs as scheduler_jobs
from tests.ops.conftest import OPERATOR
from tests.waiting import wait_until
from tests.workspaces import register

#: Released by the tests; the busy actor waits on it (bounded, so a failed test cannot hang).
_release = threading.Event()
_ran: dict[str, int] = {}
_fail_first: set[str] = set()


@dramatiq.actor(queue_name="test_ops_busy", max_retries=0)
def ops_slow(marker: str) -> None:
    _release.wait(10)
    _ran[marker] = _ran.get(marker, 0) + 1


@dramatiq.actor(queue_name="test_ops_pause", max_retries=0)
def ops_paused(marker: str) -> None:
    _ran[marker] = _ran.get(marker, 0) + 1


@dramatiq.actor(queue_name="test_ops_delay", max_retries=3, min_backoff=60_000, max_backoff=60_000)
def ops_retried(marker: str) -> None:
    """Fails on its first run (then waits a minute to retry), succeeds afterwards."""
    if marker in _fail_first:
        _fail_first.discard(marker)
        raise RuntimeError(f"first run of {marker} fails")
    _ran[marker] = _ran.get(marker, 0) + 1


@dramatiq.actor(queue_name="test_ops_dead", max_retries=0)
def ops_dies(marker: str) -> None:
    if marker in _fail_first:
        raise RuntimeError(f"dead on arrival {marker}")
    _ran[marker] = _ran.get(marker, 0) + 1


def overview(client, headers=OPERATOR, **params):
    resp = client.simulate_get("/api/ops/overview", headers=headers, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json


def test_busy_lists_the_running_message_its_thread_and_age(client, worker, workspace):
    stranger = register(client)
    marker = uuid.uuid4().hex
    _release.clear()
    ops_slow.send_with_options(args=(marker,), tenant_id=workspace.tenant["id"])
    try:

        def running():
            busy = overview(client)["busy"]
            return next((item for item in busy if marker in item["args"]), None)

        item = wait_until(running, timeout=10)
        assert item["actor"] == "ops_slow" and item["queue"] == "test_ops_busy"
        assert item["tenant_id"] == workspace.tenant["id"]
        assert item["process"] and item["thread"] and item["thread_id"]
        time.sleep(0.3)
        later = running()
        assert later["running_seconds"] > item["running_seconds"] >= 0

        view = overview(client)
        assert view["summary"]["busy"] >= 1 and view["summary"]["processes"] >= 1
        process = next(p for p in view["processes"] if p["identity"] == item["process"])
        assert "test_ops_busy" in process["queues"] and process["threads"] == 4

        own = overview(client, headers=workspace.headers)
        assert [b["message_id"] for b in own["busy"]] == [item["message_id"]]
        assert own["busy"][0]["process"] is None and own["processes"] == []
        assert "jobs" not in own["scheduler"]
        # The stranger's own registration work may be running this instant;
        # what matters is that nothing of the first tenant's shows.
        theirs = overview(client, headers=stranger.headers)["busy"]
        assert item["message_id"] not in [b["message_id"] for b in theirs]
        assert all(b["tenant_id"] == stranger.tenant["id"] for b in theirs)
    finally:
        _release.set()
    wait_until(lambda: _ran.get(marker) == 1)
    wait_until(lambda: not any(marker in b["args"] for b in overview(client)["busy"]))


def test_console_is_for_admins_and_the_operator(client, workspace):
    _, supervisor = workspace.create_agent(role="supervisor")
    assert client.simulate_get("/api/ops/overview").status_code == 401
    resp = workspace.call("GET", "/api/ops/overview", token=supervisor)
    assert resp.status_code == 403
    resp = client.simulate_get("/api/ops/overview", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401
    assert workspace.call("POST", "/api/ops/queues/events/pause").status_code == 403
    assert workspace.call("GET", "/api/ops/overview", params={"minutes": "0"}).status_code == 400


def test_pause_holds_messages_in_the_queue_and_resume_runs_them(client, worker, operator):
    assert operator("POST", "/api/ops/queues/no_such_queue/pause").status_code == 404
    resp = operator("POST", "/api/ops/queues/test_ops_pause/pause")
    assert resp.status_code == 200 and resp.json == {"queue": "test_ops_pause", "paused": True}
    try:

        def paused_everywhere():
            processes = overview(client)["processes"]
            return processes and all("test_ops_pause" in p["paused"] for p in processes)

        wait_until(paused_everywhere, timeout=10)
        marker = uuid.uuid4().hex
        ops_paused.send(marker)
        time.sleep(1.5)
        assert marker not in _ran
        row = next(q for q in overview(client)["queues"] if q["queue"] == "test_ops_pause")
        assert row["paused"] is True and row["ready"] == 1
        assert row["latency_seconds"] >= 1.0
    finally:
        assert operator("POST", "/api/ops/queues/test_ops_pause/resume").status_code == 200
    wait_until(lambda: _ran.get(marker) == 1, timeout=15)
    row = next(q for q in overview(client)["queues"] if q["queue"] == "test_ops_pause")
    assert row["paused"] is False and row["ready"] == 0 and row["latency_seconds"] == 0.0


def _delayed(client, marker, headers=OPERATOR):
    resp = client.simulate_get(
        "/api/ops/delayed", headers=headers, params={"queue": "test_ops_delay"}
    )
    assert resp.status_code == 200, resp.text
    return next((item for item in resp.json["items"] if marker in item["args"]), None)


def test_a_retry_is_listed_and_run_now(client, worker, workspace):
    marker = uuid.uuid4().hex
    _fail_first.add(marker)
    ops_retried.send_with_options(args=(marker,), tenant_id=workspace.tenant["id"])
    item = wait_until(lambda: _delayed(client, marker), timeout=10)
    assert item["kind"] == "retry" and item["retries"] == 1 and item["actor"] == "ops_retried"
    assert f"first run of {marker} fails" in item["error"]
    assert item["eta"] > item["enqueued_at"]
    assert _delayed(client, marker, headers=workspace.headers)["id"] == item["id"]

    stranger = register(client)
    assert _delayed(client, marker, headers=stranger.headers) is None
    path = f"/api/ops/delayed/test_ops_delay/{item['id']}/retry"
    assert stranger.call("POST", path).status_code == 404

    resp = workspace.call("POST", path)
    assert resp.status_code == 200, resp.text
    wait_until(lambda: _ran.get(marker) == 1, timeout=10)
    assert _delayed(client, marker) is None
    assert workspace.call("POST", path).status_code == 404


def test_a_deleted_delayed_message_never_runs(client, worker, operator):
    marker = uuid.uuid4().hex
    sent = time.monotonic()
    ops_retried.send_with_options(args=(marker,), delay=5000)
    item = wait_until(lambda: _delayed(client, marker), timeout=3)
    assert item["kind"] == "scheduled" and item["retries"] == 0 and item["error"] is None
    # Let the worker fetch it into memory first: the cancel mark must stop it there.
    time.sleep(0.5)
    resp = operator("DELETE", f"/api/ops/delayed/test_ops_delay/{item['id']}")
    assert resp.status_code == 204
    assert _delayed(client, marker) is None
    assert time.monotonic() - sent < 4.0, "too slow to test: the eta is 5 s after the send"
    time.sleep(max(sent + 7.0 - time.monotonic(), 0))
    assert marker not in _ran


def test_dead_letters_inspected_requeued_and_deleted(client, worker, broker, workspace):
    stranger = register(client)
    revived, dropped = uuid.uuid4().hex, uuid.uuid4().hex
    _fail_first.update({revived, dropped})
    for marker in (revived, dropped):
        ops_dies.send_with_options(args=(marker,), tenant_id=workspace.tenant["id"])

    def listed():
        items = workspace.call("GET", "/api/ops/dead-letters").json["items"]
        mine = {m: i for i in items for m in (revived, dropped) if m in i["error"]}
        return mine if len(mine) == 2 else None

    found = wait_until(listed, timeout=10)
    one = workspace.call("GET", f"/api/ops/dead-letters/{found[revived]['id']}")
    assert one.status_code == 200
    assert one.json["args"] == [revived] and "Traceback" in one.json["error"]
    assert one.json["options"]["tenant_id"] == workspace.tenant["id"]
    assert stranger.call("GET", f"/api/ops/dead-letters/{found[revived]['id']}").status_code == 404
    assert stranger.call("GET", "/api/ops/dead-letters").json["count"] == 0

    _fail_first.discard(revived)
    requeue = f"/api/ops/dead-letters/{found[revived]['id']}/requeue"
    assert stranger.call("POST", requeue).status_code == 404
    resp = workspace.call("POST", requeue)
    assert resp.status_code == 200 and resp.json["requeued_at"]
    wait_until(lambda: _ran.get(revived) == 1, timeout=10)
    assert workspace.call("POST", requeue).status_code == 409
    remaining = workspace.call("GET", "/api/ops/dead-letters").json
    assert [i["id"] for i in remaining["items"]] == [found[dropped]["id"]]

    gone = f"/api/ops/dead-letters/{found[dropped]['id']}"
    assert stranger.call("DELETE", gone).status_code == 404
    assert workspace.call("DELETE", gone).status_code == 204
    assert workspace.call("GET", gone).status_code == 404
    assert workspace.call("GET", "/api/ops/dead-letters").json["count"] == 0


def test_actors_percentiles_and_tenant_breakdown(client, worker, broker, workspace):
    quiet = register(client)
    markers = [uuid.uuid4().hex for _ in range(6)]
    for marker in markers[:5]:
        ops_paused.send_with_options(args=(marker,), tenant_id=workspace.tenant["id"])
    ops_paused.send_with_options(args=(markers[5],), tenant_id=quiet.tenant["id"])
    wait_until(lambda: all(_ran.get(m) == 1 for m in markers))

    def counted():
        rows = overview(client)["tenants"].get("test_ops_pause", [])
        by_tenant = {row["tenant_id"]: row for row in rows}
        mine = by_tenant.get(workspace.tenant["id"], {})
        other = by_tenant.get(quiet.tenant["id"], {})
        # NOTE: a job's count lands after it ran: wait for both tenants' rows, not one.
        return rows if (mine.get("processed"), other.get("processed")) == (5, 1) else None

    rows = wait_until(counted, timeout=10)
    assert rows[0]["tenant_id"] == workspace.tenant["id"] and rows[0]["enqueued"] == 5
    assert rows[0]["tenant_name"] == workspace.tenant["name"]
    quiet_row = next(r for r in rows if r["tenant_id"] == quiet.tenant["id"])
    assert quiet_row["enqueued"] == 1
    own = overview(client, headers=workspace.headers)["tenants"]["test_ops_pause"]
    assert [r["tenant_id"] for r in own] == [workspace.tenant["id"]]

    actor = next(a for a in overview(client)["actors"] if a["actor"] == "ops_paused")
    assert actor["processed"] >= 6
    assert 0 < actor["p50_ms"] <= actor["p95_ms"] <= actor["p99_ms"]


def test_scheduler_jobs_show_their_last_run_and_outcome(client):
    def works(_session):
        return 3

    def breaks(_session):
        raise ValueError("the job broke")

    table = (
        scheduler_jobs.Job("ops_test_ok", works, scheduler_jobs._every(seconds=30), {}),
        scheduler_jobs.Job("ops_test_broken", breaks, scheduler_jobs._every(minutes=5), {}),
    )
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler_jobs.schedule(BackgroundScheduler(), guard=lambda _s: True, jobs=table)
    for job in table:
        scheduler_jobs.run(job, lambda _s: True)
    scheduler_jobs.run(table[0], lambda _s: False)
    jobs = {row["job"]: row for row in overview(client)["scheduler"]["jobs"]}
    assert jobs["ops_test_ok"]["trigger"].startswith("interval[0:00:30]")
    assert jobs["ops_test_ok"]["last_run"]["outcome"] == "skipped"
    broken = jobs["ops_test_broken"]["last_run"]
    assert broken["outcome"] == "failed" and "the job broke" in broken["error"]
    assert broken["next_run_at"] > broken["started_at"] and broken["duration_ms"] >= 0
    scheduler_jobs.run(table[0], lambda _s: True)
    ok = {row["job"]: row for row in overview(client)["scheduler"]["jobs"]}["ops_test_ok"]
    assert ok["last_run"]["outcome"] == "ok" and ok["last_run"]["result"] == "3"


@pytest.mark.parametrize("path", ["/api/ops/overview", "/metrics", "/api/ops/delayed"])
def test_redis_down_answers_503_naming_redis(client, private_redis, settings_env, path):
    settings_env(REDIS_URL=private_redis.url)
    assert client.simulate_get(path, headers=OPERATOR).status_code == 200
    private_redis.stop()
    resp = client.simulate_get(path, headers=OPERATOR)
    assert resp.status_code == 503, resp.text
    assert "Redis" in resp.json["error"]["message"]


def test_two_concurrent_run_nows_of_one_delayed_message_run_it_once(
    client, worker, operator, monkeypatch
):
    """A double-clicked "Run now" (or two operators at once) must not run the job twice."""
    from workers import resend

    marker = uuid.uuid4().hex
    ops_retried.send_with_options(args=(marker,), delay=60_000)
    item = wait_until(lambda: _delayed(client, marker), timeout=3)
    # A broker a little slow to take the copy: both requests are sending at once.
    both_sending = threading.Barrier(2, timeout=2)
    real_send = resend.send

    def slow_send(message):
        with contextlib.suppress(threading.BrokenBarrierError):
            both_sending.wait()
        real_send(message)

    monkeypatch.setattr(resend, "send", slow_send)
    path = f"/api/ops/delayed/test_ops_delay/{item['id']}/retry"
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda: statuses.append(operator("POST", path).status_code))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    wait_until(lambda: _ran.get(marker), timeout=10)
    time.sleep(1.5)
    assert _ran[marker] == 1
    assert sorted(statuses) == [200, 404]


def test_dead_letters_page_through_with_a_cursor(client, worker, broker, workspace):
    """More dead letters than one page holds: the rest are reached with ``next_cursor``."""
    markers = [uuid.uuid4().hex for _ in range(3)]
    _fail_first.update(markers)
    for marker in markers:
        ops_dies.send_with_options(args=(marker,), tenant_id=workspace.tenant["id"])
    wait_until(
        lambda: workspace.call("GET", "/api/ops/dead-letters").json["count"] == 3, timeout=10
    )
    first = workspace.call("GET", "/api/ops/dead-letters", params={"limit": 2})
    assert first.status_code == 200, first.text
    assert len(first.json["items"]) == 2 and first.json["next_cursor"]
    rest = workspace.call(
        "GET", "/api/ops/dead-letters", params={"limit": 2, "cursor": first.json["next_cursor"]}
    )
    assert rest.status_code == 200, rest.text
    assert rest.json["next_cursor"] is None and rest.json["count"] == 3
    seen = [item["id"] for item in first.json["items"] + rest.json["items"]]
    assert len(set(seen)) == 3
    bad = workspace.call("GET", "/api/ops/dead-letters", params={"cursor": "nope"})
    assert bad.status_code == 400 and bad.json["error"]["code"] == "bad_request"
    _fail_first.difference_update(markers)


def test_run_now_under_the_delay_or_dead_queues_name_still_runs_the_job(client, worker, operator):
    """The path names the queue; a suffixed name finds the same message, and its copy
    must still go to the queue the workers consume, never be lost on ``.XQ``."""
    marker = uuid.uuid4().hex
    ops_retried.send_with_options(args=(marker,), delay=60_000)
    item = wait_until(lambda: _delayed(client, marker), timeout=3)
    resp = operator("POST", f"/api/ops/delayed/test_ops_delay.XQ/{item['id']}/retry")
    if resp.status_code == 200:
        wait_until(lambda: _ran.get(marker) == 1, timeout=10)
    else:
        assert resp.status_code == 404, resp.text
        assert _delayed(client, marker)["id"] == item["id"]


def test_a_tenant_admin_is_told_the_broker_is_down_not_where_it_lives(
    client, workspace, settings_env
):
    """The broker's address (host, port, credentials) is the platform's, not a tenant's."""
    settings_env(BROKER_URL="redis://:s3cret@127.0.0.1:1/0")
    own = client.simulate_get("/api/ops/overview", headers=workspace.headers)
    assert own.status_code == 200, own.text
    assert own.json["broker_error"]
    assert "127.0.0.1" not in own.text and ":1" not in own.json["broker_error"]
    page = client.simulate_get("/ops", headers=workspace.headers)
    assert page.status_code == 200 and "127.0.0.1" not in page.text
    metrics = client.simulate_get("/api/automation/worker-metrics", headers=workspace.headers)
    assert metrics.status_code == 200 and metrics.json["broker_error"]
    assert "127.0.0.1" not in metrics.text
    operator = client.simulate_get("/api/ops/overview", headers=OPERATOR).json
    assert "127.0.0.1" in operator["broker_error"]


def test_the_scheduler_leaders_times_are_rfc3339_with_z(client):
    """API.md: times are RFC 3339 in UTC with ``Z``; the leader's said ``+00:00``."""
    from sqlalchemy import delete, func
    from sqlalchemy.dialects.postgresql import insert

    from shared.db import session_scope
    from shared.models import SchedulerHeartbeat
    from shared.scheduler_status import HEARTBEAT_NAME

    with session_scope() as session:
        before = session.get(SchedulerHeartbeat, HEARTBEAT_NAME)
        kept = before and {c.key: getattr(before, c.key) for c in SchedulerHeartbeat.__table__.c}
        values = {"instance_id": "ops-test", "hostname": "h", "pid": 1}
        values.update(leader_since=func.now(), beat_at=func.now())
        session.execute(
            insert(SchedulerHeartbeat)
            .values(name=HEARTBEAT_NAME, **values)
            .on_conflict_do_update(index_elements=[SchedulerHeartbeat.name], set_=values)
        )
    try:
        leader = overview(client)["scheduler"]["leader"]
    finally:
        with session_scope() as session:
            session.execute(
                delete(SchedulerHeartbeat).where(SchedulerHeartbeat.name == HEARTBEAT_NAME)
            )
            if kept:
                session.add(SchedulerHeartbeat(**kept))
    assert leader["leader_since"].endswith("Z") and leader["beat_at"].endswith("Z")
