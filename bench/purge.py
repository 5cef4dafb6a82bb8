"""Retention purge: 1,000,000 old webhook deliveries deleted while webhooks keep flowing.

What it measures, in one run:

- seed: ``--rows`` finished deliveries 100+ days old, each with ``--attempts`` attempts,
  written with ``INSERT ... SELECT generate_series`` (then VACUUM ANALYZE, as a
  long-lived table would be) on a history-only endpoint of a tenant of its own.
- baseline: a real worker (``dramatiq workers.main --processes P --threads T``, the
  webhook benchmark's shape) delivering to 3 local receivers, paced at ``--rate``
  deliveries/s for ``--duration`` s: commit -> 2xx received latency (p50/p99).
- purge: the real path (the scheduler's ``purge_old_rows`` job sends the actor, which
  chains itself) with the same paced load running until it ends. Purge time is from
  the job to the last old row gone; the worker metrics' ``items`` must count every row.
  "box %" is how busy the whole machine was in each phase: on a shared machine the
  neighbours' load moves the p99 of both phases, so compare the two.

Targets: purge of 1,000,000 deliveries < 120 s; delivery p99 during the purge < 250 ms.

Run::

    .venv/bin/python bench/purge.py                     # 1,000,000 deliveries
    .venv/bin/python bench/purge.py --rows 100000       # a quick look

Exit status: 0 all targets pass, 1 a target failed, 2 error.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common
from bench import webhooks as wh

SEED_CHUNK = 200_000

SEED_DELIVERIES = """
INSERT INTO webhook_deliveries
    (id, tenant_id, endpoint_id, event_id, event_type, payload, status, attempt_count,
     next_attempt_at, sweep_at, last_attempt_at, last_status_code, created_at, finished_at)
SELECT gen_random_uuid(), :tenant, :endpoint, gen_random_uuid(), 'agent.status_changed',
       jsonb_build_object('type', 'agent.status_changed', 'timestamp', ts,
                          'data', jsonb_build_object('id', gen_random_uuid(), 'seq', g,
                                                     'status', 'online')),
       'succeeded', :attempts, ts, ts, ts, 200, ts, ts
  FROM (SELECT g, now() - interval '100 days' - g * interval '1 second' AS ts
          FROM generate_series(:first, :last) g) s
"""

SEED_ATTEMPTS = """
INSERT INTO webhook_attempts
    (id, tenant_id, delivery_id, attempt, started_at, duration_ms, request_url,
     request_headers, request_body, response_status, response_headers, response_body)
SELECT gen_random_uuid(), d.tenant_id, d.id, n, d.created_at, 12, 'https://example.com/hook',
       '{"content-type": "application/json", "webhook-id": "x", "webhook-timestamp": "1",
         "webhook-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}'::jsonb,
       d.payload::text, 200, '{"content-length": "0"}'::jsonb, ''
  FROM webhook_deliveries d CROSS JOIN generate_series(1, :attempts) n
 WHERE d.endpoint_id = :endpoint
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="old deliveries to purge")
    parser.add_argument("--attempts", type=int, default=1, help="attempts per old delivery")
    parser.add_argument("--rate", type=float, default=200.0, help="paced deliveries/s")
    parser.add_argument("--duration", type=float, default=60.0, help="baseline paced seconds")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--purge-timeout", type=float, default=600.0)
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


def seed(tenant_id, endpoint_id, rows: int, attempts: int) -> float:
    """Insert the old deliveries and their attempts; return the seconds it took."""
    from sqlalchemy import text

    from shared.db import get_engine

    started = time.monotonic()
    params = {"tenant": tenant_id, "endpoint": endpoint_id, "attempts": attempts}
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SET statement_timeout = 0"))
        for first in range(1, rows + 1, SEED_CHUNK):
            last = min(first + SEED_CHUNK - 1, rows)
            conn.execute(text(SEED_DELIVERIES), {**params, "first": first, "last": last})
            print(f"  {last:,} deliveries ({time.monotonic() - started:.0f} s)", flush=True)
        if attempts:
            conn.execute(text(SEED_ATTEMPTS), params)
            print(
                f"  {rows * attempts:,} attempts ({time.monotonic() - started:.0f} s)", flush=True
            )
        conn.execute(text("VACUUM ANALYZE webhook_deliveries, webhook_attempts"))
    return time.monotonic() - started


def purged_deliveries(env: common.BenchEnv) -> int:
    """Deliveries the purge reported in the worker metrics (all time)."""
    import redis

    from shared import worker_metrics as wm

    client = redis.Redis.from_url(env.redis_url)
    try:
        totals = wm.read_totals(client, env.redis_namespace)
    finally:
        client.close()
    counts = totals.get(("maintenance", "purge_old_rows"), {})
    return counts.get(wm.item_field("webhook_deliveries"), 0)


def old_rows_left(endpoint_id) -> bool:
    from sqlalchemy import select

    from shared.db import session_scope
    from shared.models import WebhookDelivery

    with session_scope() as session:
        return (
            session.scalar(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.endpoint_id == endpoint_id)
                .limit(1)
            )
            is not None
        )


def paced_until(stop: threading.Event, tenant_id, rate: float, out: dict) -> None:
    """Emit paced events (``rate`` deliveries/s over 3 endpoints) in 2 s rounds until ``stop``."""
    per_endpoint = rate / 3
    while not stop.is_set():
        out.update(wh.emit_events(tenant_id, int(per_endpoint * 2), 1, per_endpoint))


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    os.environ.update(WEBHOOK_ALLOW_HTTP="true", WEBHOOK_SSRF_ALLOWLIST="127.0.0.1/32")
    receivers = [wh.Receiver() for _ in range(3)]
    results: dict = {"rows": args.rows, "attempts_per_row": args.attempts}
    with common.Bench("purge", env) as bench:
        from scheduler import jobs
        from shared.db import session_scope
        from shared.webhooks import endpoints

        tenant_id, ctx = wh.create_tenant(env, "Purge", receivers)
        with session_scope() as session:
            # History only: an event type the load never emits, so nothing is sent to it.
            old, _secret = endpoints.create_endpoint(
                session, ctx, url=receivers[0].url(), event_types=["conversation.created"]
            )
            old_id = old.id
        print(
            f"[purge] seeding {args.rows:,} old deliveries x {args.attempts} attempts", flush=True
        )
        results["seed_s"] = seed(tenant_id, old_id, args.rows, args.attempts)

        worker = bench.start("worker", wh.worker_argv(args, "workers.main"))
        wh.measure(receivers, wh.emit_events(tenant_id, 1, 1), worker, 90)
        wh.reset_receivers(receivers)

        n_paced = int(args.rate / 3 * args.duration)
        print(f"[purge] baseline: {args.rate:g} deliveries/s for {args.duration:g} s", flush=True)
        cpu_from = wh.cpu_sample(worker)
        results["baseline"] = wh.measure(
            receivers, wh.emit_events(tenant_id, n_paced, 1, args.rate / 3), worker, 120, cpu_from
        )
        print(f"  {results['baseline']}", flush=True)
        wh.reset_receivers(receivers)

        print("[purge] purge_old_rows with the same paced load", flush=True)
        stop, commits = threading.Event(), {}
        load = threading.Thread(target=paced_until, args=(stop, tenant_id, args.rate, commits))
        load.start()
        time.sleep(2)  # the load is steady before the purge starts
        started, cpu_from = time.monotonic(), wh.cpu_sample(worker)
        try:
            jobs.run(next(j for j in jobs.JOBS if j.name == "purge_old_rows"), lambda _s: True)
            common.wait_until(
                lambda: not old_rows_left(old_id),
                "every old delivery purged",
                timeout=args.purge_timeout,
                interval=0.5,
                children=[worker],
            )
            results["purge_s"] = time.monotonic() - started
            time.sleep(2)  # and steady a little after
        finally:
            stop.set()
            load.join()
        results["during_purge"] = wh.measure(receivers, commits, worker, 120, cpu_from)
        results["purged_per_metrics"] = common.wait_until(
            lambda: (n := purged_deliveries(env)) >= args.rows and n,
            f"{args.rows:,} purged deliveries counted in the worker metrics",
            timeout=10,
        )
        print(f"  purge {results['purge_s']:.1f} s; {results['during_purge']}", flush=True)
        bench.stop(worker)
    for r in receivers:
        r.close()
    return report(args, results)


def report(args, results: dict) -> int:
    rows = []
    for name, key in (("paced, no purge", "baseline"), ("paced, during the purge", "during_purge")):
        r = results[key]
        purge = key == "during_purge"
        rows.append(
            (
                name,
                r["deliveries"],
                common.fmt(r["p50_ms"]),
                common.fmt(r["p99_ms"]),
                f"{r['machine_busy_pct']:.0f}",
                common.fmt(results["purge_s"]) if purge else "",
                common.fmt(args.rows / results["purge_s"], 0) if purge else "",
            )
        )
    common.print_table(
        f"Purge: {args.rows:,} old deliveries x {args.attempts} attempts, webhook load"
        f" {args.rate:g}/s, worker --processes {args.processes} --threads {args.threads}",
        ["run", "deliveries", "p50 ms", "p99 ms", "box %", "purge s", "rows/s"],
        rows,
    )
    print(
        f"seeding took {results['seed_s']:.0f} s; worker metrics counted"
        f" {results['purged_per_metrics']:,} purged deliveries"
    )
    goal_s = 120 * args.rows / 1_000_000
    targets = [
        common.Target(
            f"purge of {args.rows:,} deliveries",
            f"{results['purge_s']:.1f} s",
            f"< {goal_s:.0f} s",
            results["purge_s"] < goal_s,
        ),
        common.Target(
            "delivery p99 during the purge",
            f"{results['during_purge']['p99_ms']:.0f} ms",
            "< 250 ms",
            results["during_purge"]["p99_ms"] < 250,
        ),
    ]
    passed = common.print_targets("Targets (bench/purge.py)", targets)
    common.write_json(args.json_out, {"benchmark": "purge", "results": results})
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
