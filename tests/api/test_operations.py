"""Health, worker metrics and the Prometheus endpoint through HTTP."""

from __future__ import annotations

import os
import uuid

import dramatiq
import pika
import pika.exceptions
import pytest
from sqlalchemy import delete, text

from shared.config import get_settings
from shared.db import session_scope
from shared.models import SchedulerHeartbeat
from tests.waiting import wait_until

OPERATOR = {"Authorization": f"Bearer {os.environ['METRICS_TOKEN']}"}


def _beat(age_seconds: float) -> None:
    with session_scope() as session:
        session.execute(delete(SchedulerHeartbeat))
        session.execute(
            text(
                "INSERT INTO scheduler_heartbeats (name, instance_id, hostname, pid, leader_since,"
                " beat_at) VALUES ('scheduler', 'test', 'host', 1, now(),"
                " clock_timestamp() - make_interval(secs => :age))"
            ),
            {"age": age_seconds},
        )


@pytest.fixture
def heartbeat():
    yield _beat
    with session_scope() as session:
        session.execute(delete(SchedulerHeartbeat).where(SchedulerHeartbeat.instance_id == "test"))


def test_health_ok_when_everything_answers(client, heartbeat):
    heartbeat(0.1)
    resp = client.simulate_get("/api/health")
    assert resp.status_code == 200, resp.text
    body = resp.json
    assert body["status"] == "ok" and body["down"] == []
    assert set(body["checks"]) == {"database", "redis", "broker", "scheduler"}
    assert "events" in body["checks"]["broker"]["queues"]
    assert body["checks"]["scheduler"]["heartbeat_age_seconds"] < 5
    # The broker is the Redis of REDIS_URL here: its queue-depth read checks Redis too.
    assert body["checks"]["redis"] == {"ok": True, "checked_by": "broker"}


def test_health_503_names_a_stale_scheduler(client, heartbeat):
    heartbeat(3600)
    resp = client.simulate_get("/api/health")
    assert resp.status_code == 503
    assert resp.json["down"] == ["scheduler"]
    assert resp.json["checks"]["database"]["ok"] is True


@pytest.fixture
def settings_env(monkeypatch):
    """Set environment variables and rebuild the settings; both restored afterwards."""

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()


def test_health_503_names_redis_and_broker_when_the_shared_redis_stops(
    client, heartbeat, private_redis, settings_env
):
    heartbeat(0.1)
    settings_env(REDIS_URL=private_redis.url)
    assert client.simulate_get("/api/health").status_code == 200

    private_redis.stop()
    resp = client.simulate_get("/api/health")
    assert resp.status_code == 503
    assert resp.json["down"] == ["redis", "broker"]
    assert resp.json["checks"]["redis"]["checked_by"] == "broker"


def test_health_pings_redis_itself_when_the_broker_is_another_server(
    client, heartbeat, private_redis, settings_env
):
    heartbeat(0.1)
    settings_env(BROKER_URL=private_redis.url)
    resp = client.simulate_get("/api/health")
    assert resp.status_code == 200, resp.text
    assert "checked_by" not in resp.json["checks"]["redis"]
    assert resp.json["checks"]["redis"]["latency_ms"] >= 0

    private_redis.stop()
    resp = client.simulate_get("/api/health")
    assert resp.status_code == 503
    assert resp.json["down"] == ["broker"]
    assert resp.json["checks"]["redis"]["ok"] is True


def test_health_with_a_rabbitmq_broker_counts_its_queues_and_pings_redis(
    client, heartbeat, settings_env
):
    url = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except pika.exceptions.AMQPError:
        pytest.skip(f"RabbitMQ is not reachable at {url}")
    heartbeat(0.1)
    settings_env(BROKER_URL=url)
    resp = client.simulate_get("/api/health")
    assert resp.status_code == 200, resp.text
    assert resp.json["checks"]["broker"]["queues"]["events"].keys() == {"ready", "delayed", "dead"}
    assert "checked_by" not in resp.json["checks"]["redis"]


def test_health_503_when_no_scheduler_ever_ran(client, heartbeat):
    heartbeat(0.1)
    with session_scope() as session:
        session.execute(delete(SchedulerHeartbeat))
    resp = client.simulate_get("/api/health")
    assert resp.status_code == 503
    assert resp.json["down"] == ["scheduler"]
    assert resp.json["checks"]["scheduler"]["error"] == "no scheduler has ever run"


@dramatiq.actor(queue_name="test_api_metrics", max_retries=2, min_backoff=10, max_backoff=20)
def always_fails(marker: str) -> None:
    raise RuntimeError(f"boom {marker}")


def test_dead_letter_visible_in_worker_metrics_and_prometheus(worker, broker, workspace):
    _, supervisor_token = workspace.create_agent(role="supervisor")
    _, agent_token = workspace.create_agent(role="agent")
    marker = uuid.uuid4().hex
    always_fails.send_with_options(args=(marker,), tenant_id=workspace.tenant["id"])
    broker.join("test_api_metrics", timeout=10_000)

    # NOTE: both arrive after the queue is empty: Dramatiq runs ``after_nack`` hooks in
    # reverse order, so Metrics counts the dead letter (flushed every
    # METRICS_FLUSH_SECONDS) before DeadLetters commits its row, and on a loaded
    # machine either can lag the join by seconds. Wait for both, generously.

    def shown() -> dict | None:
        view = workspace.call("GET", "/api/automation/worker-metrics", token=supervisor_token)
        assert view.status_code == 200, view.text
        counted = view.json["actors"].get("always_fails", {}).get("totals", {})
        listed = view.json["dead_letters"]["count"] >= 1
        return view.json if listed and counted.get("dead_lettered") == 1 else None

    body = wait_until(shown, "the dead letter listed and counted", 30, interval=0.05)
    assert body["tenant_id"] == workspace.tenant["id"]
    totals = body["actors"]["always_fails"]["totals"]
    assert totals["failed"] == 3 and totals["dead_lettered"] == 1
    latest = body["dead_letters"]["latest"][0]
    assert latest["actor"] == "always_fails" and marker in latest["error"]
    assert "test_api_metrics" in body["queues"] or body["queues"] is not None
    assert body["outbox"]["pending"] >= 0

    assert (
        workspace.call("GET", "/api/automation/worker-metrics", token=agent_token).status_code
        == 403
    )
    assert workspace.client.simulate_get("/api/automation/worker-metrics").status_code == 401

    platform = workspace.client.simulate_get("/api/automation/worker-metrics", headers=OPERATOR)
    assert platform.status_code == 200 and platform.json["tenant_id"] is None
    assert platform.json["actors"]["always_fails"]["totals"]["dead_lettered"] >= 1

    scrape = workspace.client.simulate_get("/metrics", headers=OPERATOR)
    assert scrape.status_code == 200
    assert 'actor="always_fails"' in scrape.text and "omnistream_dead_letters" in scrape.text
    assert workspace.client.simulate_get("/metrics").status_code == 401


def test_worker_metrics_refuses_bad_windows(workspace):
    for minutes in ("0", "100000", "soon"):
        resp = workspace.call("GET", "/api/automation/worker-metrics", params={"minutes": minutes})
        assert resp.status_code == 400


def test_openapi_document_and_offline_docs(client):
    doc = client.simulate_get("/api/openapi.json").json
    assert doc["openapi"] == "3.1.0"
    create = doc["paths"]["/api/agents"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AgentCreate"
    }
    assert "agents.manage" in create["description"]
    assert set(doc["components"]["schemas"]["AgentCreate"]["required"]) == {
        "email",
        "full_name",
        "role",
    }
    assert doc["paths"]["/api/agents/{id}"]["get"]["parameters"][0]["schema"]["format"] == "uuid"
    listed = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert ("/api/auth/register", "post") in listed and ("/api/health", "get") in listed
    page = client.simulate_get("/api/docs")
    assert page.status_code == 200 and "/api/docs/static/swagger-ui-bundle.js" in page.text
    assert "http" not in page.text.split("<body>")[1].replace("/api/", "")
    asset = client.simulate_get("/api/docs/static/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000


def test_the_html_pages_carry_their_protective_headers(client):
    """The docs page sends the browser's cookies and takes tokens; the realtime page sends
    its bearer token to the stream: no framing, no sniffing, no foreign script or peer."""
    docs = client.simulate_get("/api/docs")
    live = client.simulate_get("/realtime", headers={"Host": "inbox.example.com"})
    for page in (docs, live):
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        csp = page.headers["Content-Security-Policy"]
        policy = dict(directive.split(" ", 1) for directive in csp.split("; "))
        assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    docs_policy = docs.headers["Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in docs_policy and "connect-src 'self';" in docs_policy
    # The stream may be on another port of this host (development), never another host.
    assert (
        "connect-src 'self' http://inbox.example.com:*;" in live.headers["Content-Security-Policy"]
    )
    odd_host = client.simulate_get("/realtime", headers={"Host": "a.example; script-src *"})
    assert "connect-src 'self';" in odd_host.headers["Content-Security-Policy"]
