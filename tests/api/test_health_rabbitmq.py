"""Health with a RabbitMQ broker: one kept connection, probes never wait for it, 503 and back."""

from __future__ import annotations

import logging
import os
import threading
import urllib.parse

import falcon.testing
import pika
import pika.exceptions
import pytest

from shared import queue_stats
from shared.config import get_settings
from shared.rabbitmq_probe import FRESH_SECONDS, STALE_SECONDS, probe_for
from tests.api.test_operations import _beat
from tests.peers.tcp_proxy import TcpProxy
from tests.waiting import wait_until

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


class Clock:
    """The probe's clock, moved by the test instead of slept."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rabbit_proxy(monkeypatch):
    """RabbitMQ behind a proxy this test can stop; BROKER_URL points at the proxy."""
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close()
    except pika.exceptions.AMQPError:
        pytest.skip(f"RabbitMQ is not reachable at {AMQP_URL}")
    real = urllib.parse.urlsplit(AMQP_URL)
    proxy = TcpProxy(real.hostname, real.port or 5672).start()
    url = real._replace(netloc=f"{real.username}:{real.password}@127.0.0.1:{proxy.port}").geturl()
    monkeypatch.setenv("BROKER_URL", url)
    get_settings.cache_clear()
    _beat(0.1)
    probe = probe_for(url, timeout=queue_stats.TIMEOUT_SECONDS)
    probe.clock = Clock()
    yield proxy, probe
    probe.close()
    proxy.stop()
    monkeypatch.undo()
    get_settings.cache_clear()


def _refreshed(probe, checks: int) -> None:
    """Wait for the background read a stale answer started (a real round trip, not time)."""
    wait_until(lambda: probe.checks > checks and not probe._refreshing, timeout=10)


def test_health_reuses_one_connection_and_a_burst_costs_one_check(app, rabbit_proxy, caplog):
    _, probe = rabbit_proxy
    client = falcon.testing.TestClient(app)
    caplog.set_level(logging.INFO)
    assert client.simulate_get("/api/health").status_code == 200
    checks, connection = probe.checks, probe._connection
    assert connection is not None and connection.is_open

    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda: statuses.append(client.simulate_get("/api/health").status))
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == ["200 OK"] * 20
    assert probe.checks == checks  # all within the second: the first answer served them

    # Past the second: the old answer is served at once and one background read replaces it.
    probe.clock.now += FRESH_SECONDS
    assert [client.simulate_get("/api/health").status_code for _ in range(5)] == [200] * 5
    _refreshed(probe, checks)
    assert probe.checks == checks + 1
    assert probe._connection is connection  # the same AMQP connection, not a new one

    # Nobody asked for longer than STALE_SECONDS: the caller reads the broker itself.
    probe.clock.now += STALE_SECONDS
    assert client.simulate_get("/api/health").status_code == 200
    assert probe.checks == checks + 2
    assert not [r for r in caplog.records if r.name.startswith("pika") and r.levelno < 30]


def test_health_503_when_rabbitmq_is_unreachable_then_recovers(app, rabbit_proxy):
    proxy, probe = rabbit_proxy
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/api/health").status_code == 200

    proxy.stop()  # the port is closed and the kept connection is cut
    probe.clock.now += FRESH_SECONDS
    checks = probe.checks
    assert client.simulate_get("/api/health").status_code == 200  # the last answer, once more
    _refreshed(probe, checks)
    resp = client.simulate_get("/api/health")
    assert resp.status_code == 503
    assert resp.json["down"] == ["broker"]
    assert resp.json["checks"]["broker"]["error"].startswith("unreachable")
    assert probe._connection is None

    # A failure is remembered for the second too: probes of a dead broker stay cheap.
    checks = probe.checks
    assert client.simulate_get("/api/health").status_code == 503
    assert probe.checks == checks

    proxy.start()  # the same port again
    assert client.simulate_get("/api/health").status_code == 503  # still within the second
    probe.clock.now += FRESH_SECONDS
    client.simulate_get("/api/health")
    _refreshed(probe, checks)
    resp = client.simulate_get("/api/health")
    assert resp.status_code == 200, resp.text
    assert "events" in resp.json["checks"]["broker"]["queues"]


def test_health_503_when_the_broker_port_is_closed(app, monkeypatch):
    monkeypatch.setenv("BROKER_URL", "amqp://guest:guest@127.0.0.1:1/")
    get_settings.cache_clear()
    try:
        _beat(0.1)
        resp = falcon.testing.TestClient(app).simulate_get("/api/health")
        assert resp.status_code == 503
        assert resp.json["down"] == ["broker"]
        assert resp.json["checks"]["redis"]["ok"] is True
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
