"""Operators' console: what it costs the workers, and how fast /api/ops/overview answers.

What it measures, in one run:

- presence: the per-message cost of :class:`workers.presence.Presence` (busy tracking
  and the cancel check, ``before_process_message`` + ``after_process_message``) beside
  the per-message cost of the existing :class:`workers.metrics.Metrics` hooks (its
  ``before``/``after_process_message`` + ``after_ack``: the baseline), both on the same
  message proxies, in this process, best of ``--repeat`` rounds of ``--messages``.
- overview: ``GET /api/ops/overview`` as the operator (falcon's test client, in this
  process, the broker on Redis) with ``--dead-letters`` dead letters in Postgres and
  ``--delayed`` delayed messages in one delay queue, beside ``GET /api/health`` (the
  baseline: one round trip per dependency) and ``GET /api/automation/worker-metrics``.

Targets, as ratios to baselines measured in the same run (absolute times move with the
machine's load): Presence costs at most the Metrics hooks' cost per message (<= 1.0);
the overview, which does the worker-metrics endpoint's work and reads processes, queue
latencies, tenants, delayed messages and the scheduler besides, answers within 3x the
worker-metrics endpoint's p50 with 1,000 dead letters and 2,000 delayed messages.

Run::

    .venv/bin/python bench/ops_console.py
    .venv/bin/python bench/ops_console.py --delayed 20000 --requests 100

Exit status: 0 all targets pass, 1 a target failed, 2 error.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--dead-letters", type=int, default=1_000)
    parser.add_argument("--delayed", type=int, default=2_000)
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


def _per_message_us(hooks, proxies, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for proxy in proxies:
            hooks(proxy)
        best = min(best, time.perf_counter() - started)
    return best / len(proxies) * 1e6


def measure_presence(args: argparse.Namespace) -> dict[str, float]:
    import dramatiq
    from dramatiq.broker import MessageProxy

    from shared.config import get_settings
    from workers.metrics import Metrics
    from workers.presence import Presence

    settings = get_settings()
    broker = dramatiq.get_broker()
    presence, metrics = Presence(settings), Metrics(settings)
    tenant = str(uuid.uuid4())
    proxies = [
        MessageProxy(
            dramatiq.Message(
                queue_name="events",
                actor_name="dispatch_event",
                args=(str(uuid.uuid4()),),
                kwargs={},
                options={"tenant_id": tenant, "redis_message_id": str(uuid.uuid4())},
            )
        )
        for _ in range(args.messages)
    ]

    def with_presence(proxy):
        presence.before_process_message(broker, proxy)
        presence.after_process_message(broker, proxy, result=None)

    def with_metrics(proxy):
        metrics.before_process_message(broker, proxy)
        metrics.after_process_message(broker, proxy, result=None)
        metrics.after_ack(broker, proxy)

    baseline = _per_message_us(with_metrics, proxies, args.repeat)
    measured = _per_message_us(with_presence, proxies, args.repeat)
    metrics._pending.clear()  # nothing of this reaches Redis
    return {"metrics_us": baseline, "presence_us": measured, "ratio": measured / baseline}


def seed(args: argparse.Namespace) -> None:
    import dramatiq
    from dramatiq.common import dq_name

    from shared import queue_stats
    from shared.config import get_settings
    from shared.db import session_scope
    from shared.dead_letters import record_dead_letter

    with session_scope() as session:
        for index in range(args.dead_letters):
            record_dead_letter(
                session,
                message_id=uuid.uuid4().hex,
                queue_name="webhooks",
                actor_name="deliver_webhook",
                args=[str(uuid.uuid4())],
                kwargs={},
                options={"tenant_id": str(uuid.uuid4())},
                retries=8,
                error=f"Traceback ...\nConnectionError: refused #{index}",
            )
    settings = get_settings()
    client = queue_stats.redis_broker_client(settings)
    key = f"{queue_stats.redis_broker_namespace(settings)}:{dq_name('webhooks')}.msgs"
    eta = int(time.time() * 1000) + 3_600_000
    pipe = client.pipeline(transaction=False)
    for index in range(args.delayed):
        message = dramatiq.Message(
            queue_name=dq_name("webhooks"),
            actor_name="deliver_webhook",
            args=(str(uuid.uuid4()),),
            kwargs={},
            options={"eta": eta + index, "retries": 1, "traceback": "Traceback ...\nTimeout"},
        )
        pipe.hset(key, str(uuid.uuid4()), message.encode())
    pipe.execute()


def time_requests(client, path: str, headers: dict, count: int) -> dict[str, float]:
    for _ in range(5):  # warm-up
        assert client.simulate_get(path, headers=headers).status_code in (200, 503)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        resp = client.simulate_get(path, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        if resp.status_code != 200:
            raise common.BenchError(f"{path} answered {resp.status_code}: {resp.text[:300]}")
    samples.sort()
    return {"p50_ms": common.percentile(samples, 50), "p99_ms": common.percentile(samples, 99)}


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    import os

    os.environ["METRICS_TOKEN"] = token = "bench-operator-" + env.run_id
    with common.Bench("ops_console", env):
        import falcon.testing

        from api.app import create_app

        presence = measure_presence(args)
        seed(args)
        client = falcon.testing.TestClient(create_app())
        operator = {"Authorization": f"Bearer {token}"}
        # NOTE: health answers 503 without a scheduler heartbeat; time it anyway.
        health = []
        for _ in range(args.requests):
            started = time.perf_counter()
            client.simulate_get("/api/health")
            health.append((time.perf_counter() - started) * 1000)
        health.sort()
        timings = {
            "health": {
                "p50_ms": common.percentile(health, 50),
                "p99_ms": common.percentile(health, 99),
            },
            "worker-metrics": time_requests(
                client, "/api/automation/worker-metrics", operator, args.requests
            ),
            "overview": time_requests(client, "/api/ops/overview", operator, args.requests),
        }
        view = client.simulate_get("/api/ops/overview", headers=operator).json
        if view["summary"]["dead_letters"] != args.dead_letters:
            raise common.BenchError("the overview does not count the seeded dead letters")

    common.print_table(
        "per-message cost of the worker middleware (best of rounds)",
        ["hooks", "us/message", "ratio to Metrics"],
        [
            ("Metrics (baseline)", common.fmt(presence["metrics_us"], 2), "1.00"),
            ("Presence", common.fmt(presence["presence_us"], 2), common.fmt(presence["ratio"], 2)),
        ],
    )
    base = timings["health"]["p50_ms"]
    common.print_table(
        f"GET latency, {args.requests} requests each ({args.dead_letters} dead letters,"
        f" {args.delayed} delayed messages)",
        ["endpoint", "p50 ms", "p99 ms", "p50 / health p50"],
        [
            (
                name,
                common.fmt(t["p50_ms"]),
                common.fmt(t["p99_ms"]),
                common.fmt(t["p50_ms"] / base, 1),
            )
            for name, t in timings.items()
        ],
    )
    overview_ratio = timings["overview"]["p50_ms"] / timings["worker-metrics"]["p50_ms"]
    targets = [
        common.Target(
            "Presence cost vs Metrics hooks",
            common.fmt(presence["ratio"], 2),
            "<= 1.00",
            presence["ratio"] <= 1.0,
        ),
        common.Target(
            "overview p50 / worker-metrics p50",
            common.fmt(overview_ratio, 2),
            "<= 3.00",
            overview_ratio <= 3.0,
        ),
    ]
    passed = common.print_targets("targets", targets)
    common.write_json(args.json, {"presence": presence, "timings": timings})
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
