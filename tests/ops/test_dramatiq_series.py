"""``/metrics`` repeats Dramatiq's own Prometheus series: same names, types, labels, buckets."""

from __future__ import annotations

import inspect
import threading
import uuid

import dramatiq
import dramatiq.middleware.prometheus as dramatiq_prometheus_source
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.conftest import OPERATOR
from tests.waiting import wait_until

EXPECTED = {
    "dramatiq_messages": "counter",
    "dramatiq_message_errors": "counter",
    "dramatiq_message_retries": "counter",
    "dramatiq_message_rejects": "counter",
    "dramatiq_messages_inprogress": "gauge",
    "dramatiq_delayed_messages_inprogress": "gauge",
    "dramatiq_message_duration_milliseconds": "histogram",
}
BUCKETS = [
    *("5.0", "10.0", "25.0", "50.0", "75.0", "100.0", "250.0", "500.0", "750.0", "1000.0"),
    *("2500.0", "5000.0", "7500.0", "10000.0", "30000.0", "60000.0", "600000.0", "900000.0"),
    "+Inf",
]

_hold = threading.Event()
_flaky: set[str] = set()


@dramatiq.actor(queue_name="test_ops_series", max_retries=1, min_backoff=10, max_backoff=20)
def series_actor(marker: str, hold: bool = False) -> None:
    if hold:
        _hold.wait(10)
    if marker in _flaky:
        raise RuntimeError("flaky")


def _scrape(client) -> dict:
    resp = client.simulate_get("/metrics", headers=OPERATOR)
    assert resp.status_code == 200, resp.text
    return {family.name: family for family in text_string_to_metric_families(resp.text)}


def _value(family, name: str, **labels: str) -> float | None:
    for sample in family.samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def test_the_names_and_buckets_are_dramatiqs_own():
    source = inspect.getsource(dramatiq_prometheus_source)
    for name in EXPECTED:
        full = f"{name}_total" if EXPECTED[name] == "counter" else name
        assert f'"{full}"' in source, full
    assert '["queue_name", "actor_name"]' in source
    for bound in BUCKETS[:-1]:
        assert f"{int(float(bound))},\n" in source


def test_series_count_what_the_worker_did(client, worker):
    labels = {"queue_name": "test_ops_series", "actor_name": "series_actor"}
    ok, flaky = uuid.uuid4().hex, uuid.uuid4().hex
    _flaky.add(flaky)
    series_actor.send(ok)
    series_actor.send(flaky)  # fails, is retried once, fails again: dead-lettered

    def settled():
        families = _scrape(client)
        rejects = families["dramatiq_message_rejects"]
        return families if _value(rejects, "dramatiq_message_rejects_total", **labels) else None

    families = wait_until(settled, timeout=10)
    for name, kind in EXPECTED.items():
        assert families[name].type == kind, name
    assert _value(families["dramatiq_messages"], "dramatiq_messages_total", **labels) == 3
    assert (
        _value(families["dramatiq_message_errors"], "dramatiq_message_errors_total", **labels) == 2
    )
    # Dramatiq counts a retry when it is enqueued onto the delay queue: so its label says.
    retries = families["dramatiq_message_retries"]
    dq = {"queue_name": "test_ops_series.DQ", "actor_name": "series_actor"}
    assert _value(retries, "dramatiq_message_retries_total", **dq) == 1
    histogram = families["dramatiq_message_duration_milliseconds"]
    buckets = [
        s.labels["le"]
        for s in histogram.samples
        if s.name.endswith("_bucket") and s.labels["actor_name"] == "series_actor"
    ]
    assert buckets == BUCKETS
    count = "dramatiq_message_duration_milliseconds_count"
    assert _value(histogram, count, **labels) == 3
    assert (
        _value(histogram, "dramatiq_message_duration_milliseconds_bucket", le="+Inf", **labels) == 3
    )

    _hold.clear()
    held = uuid.uuid4().hex
    series_actor.send(held, hold=True)
    try:

        def running():
            gauge = _scrape(client)["dramatiq_messages_inprogress"]
            return _value(gauge, "dramatiq_messages_inprogress", **labels) == 1

        wait_until(running, timeout=10)
    finally:
        _hold.set()
    wait_until(
        lambda: (
            not _value(
                _scrape(client)["dramatiq_messages_inprogress"],
                "dramatiq_messages_inprogress",
                **labels,
            )
        ),
        timeout=10,
    )
