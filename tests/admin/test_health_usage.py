"""The platform's health (dependencies, queues, workers, scheduler runs) and tenant usage."""

from __future__ import annotations

import socket

from scheduler import jobs
from tests.analytics.conftest import ApiChannel, wait_settled
from tests.channels_outbound.test_media import PNG, upload
from tests.waiting import wait_until


def test_health_names_dependencies_queues_live_workers_and_scheduler_runs(root, worker):
    job = next(j for j in jobs.JOBS if j.name == "check_sla")
    jobs.run(job, guard=lambda _session: True)

    def report():
        resp = root.call("GET", "/api/admin/health")
        assert resp.status_code == 200, resp.text
        return resp.json if resp.json["workers"] else None

    body = wait_until(report, "a live worker in the health report", timeout=20)
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["broker"]["ok"] and checks["redis"]["ok"]
    assert "events" in checks["broker"]["queues"]
    here = [w for w in body["workers"] if w["hostname"] == socket.gethostname()]
    assert here and here[0]["pid"] and here[0]["started_at"].endswith("Z")
    runs = {row["job"]: row for row in body["scheduler_jobs"]}
    assert runs["check_sla"]["last_run"]["outcome"] == "ok"


def test_usage_counts_come_from_the_rollups_per_tenant(root, workspace, other_workspace, worker):
    channel = ApiChannel(workspace)
    channel.inbound("cust-1", "Where is my order?")
    channel.inbound("cust-1", "Hello?")
    channel.inbound("cust-2", "Hi")
    workspace.create_agent()
    stored = upload(workspace, PNG)
    assert stored.status_code == 201, stored.text
    wait_settled(workspace)
    resp = root.call("GET", "/api/admin/tenants/usage", params={"limit": 200})
    assert resp.status_code == 200, resp.text
    by_id = {item["tenant"]["id"]: item["usage"] for item in resp.json["items"]}
    mine = by_id[workspace.tenant["id"]]
    assert mine["conversations"] == 2
    assert (mine["inbound_messages"], mine["messages"]) == (3, 3)
    assert mine["agents"] == 2 and mine["ai_replies"] == 0
    assert mine["storage_bytes"] == len(PNG)
    assert by_id[other_workspace.tenant["id"]] == {
        "conversations": 0,
        "messages": 0,
        "inbound_messages": 0,
        "outbound_messages": 0,
        "agents": 1,
        "ai_replies": 0,
        "storage_bytes": 0,
    }
    suspended_only = root.call("GET", "/api/admin/tenants/usage", params={"status": "suspended"})
    assert workspace.tenant["id"] not in {i["tenant"]["id"] for i in suspended_only.json["items"]}
