"""The rollups keeping up: 2,000 counted events/s through the real path, alone and beside
the webhook and automation loads, on the Procfile's worker settings.

What it does, in one run (its own database and Redis namespace):

- starts the worker and the scheduler as the Procfile does (``python -m workers
  --processes 2 --threads 8``, ``python -m scheduler``) and three tenants:

  ``analytics``   events the rollups count, committed through the outbox at ``--rate``
                  events/s (transactions of ``--batch``, by ``--committers`` threads,
                  as an API's requests commit side by side) for ``--duration`` s: 80 %
                  ``message.created``, 10 % ``contact.created``, 10 %
                  ``conversation.status_changed`` of real conversations (the rollup
                  re-reads those). Path: commit -> ``dispatch_event`` -> an
                  ``analytics_events`` row -> ``roll_up`` counts it;
  ``webhooks``    3 endpoints on local receivers, ``--webhook-rate`` deliveries/s (the
                  webhook benchmark's paced load);
  ``automation``  1,000 active rules, 50 triggered by ``message.created``,
                  ``--automation-rate`` events/s (the automation benchmark's tenant);

- phase ``alone``: the analytics load only (the baseline); phase ``beside``: the same
  load with the webhook and automation loads running at the same time.

Per phase: events committed/s, events counted/s (from the first commit to the last
count), each event's lag (commit -> counted), and what was still uncounted when the load
stopped; in ``beside`` also the webhook deliveries' latency and the automation events'
drain. Target: in ``beside``, the rollups count >= 95 % of ``--rate`` (2,000/s) and the
last event is counted within 5 s of the load's end.

Run::

    .venv/bin/python bench/analytics_load.py
    .venv/bin/python bench/analytics_load.py --rate 1000 --duration 10
    .venv/bin/python bench/analytics_load.py --database me_analytics  # a name of one's own

Exit status: 0 all targets pass, 1 a target failed, 2 error.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common
from bench import webhooks as webhook_bench

#: The last event must be counted this soon after the load stops ("keeps up").
CATCH_UP_GOAL_S = 5.0
#: Seconds of the worker's idle CPU measured before each phase.
IDLE_SAMPLE_S = 3.0
#: Counted rate against the offered one ("keeps up").
RATE_GOAL = 0.95


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="analytics events/s")
    parser.add_argument("--batch", type=int, default=20, help="events per transaction")
    parser.add_argument("--duration", type=float, default=20.0, help="s of load per phase")
    parser.add_argument(
        "--committers", type=int, default=4, help="threads committing the analytics load"
    )
    parser.add_argument("--webhook-rate", type=float, default=200.0, help="deliveries/s")
    parser.add_argument("--automation-rate", type=float, default=50.0, help="events/s")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--phases", default="alone,beside", help="alone, beside or both (a loaded box: one)"
    )
    parser.add_argument("--json-out", help="also write the figures as JSON to this file")
    parser.add_argument(
        "--database",
        help="this run's database name (default omnistream_bench_<run id>); created and"
        " dropped like the default one",
    )
    return parser.parse_args(argv)


# --- the loads -----------------------------------------------------------------------------


def paced(
    rate: float,
    duration: float,
    batch: int,
    emit_batch,
    committers: int = 1,
    latencies: list[float] | None = None,
) -> dict[str, float]:
    """Call ``emit_batch(first, n)`` to commit ``n`` events per tick at ``rate``; return
    {event id: commit time}. Falls behind (and says so in its figures) if it cannot keep up.

    With ``committers`` > 1 the ticks are shared round-robin among that many threads, each
    keeping the same schedule: a commit that waits (the machine busy, a WAL flush) holds
    back one committer, not the whole load. ``latencies`` gets each commit's seconds.
    """
    total = int(rate * duration)
    ticks = range(0, total, batch)
    start = time.perf_counter()

    def commit(mine: range) -> dict[str, float]:
        commits: dict[str, float] = {}
        for first in mine:
            delay = start + first / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            began = time.perf_counter()
            ids = emit_batch(first, min(batch, total - first))
            if latencies is not None:
                latencies.append(time.perf_counter() - began)
            now = time.time()
            commits.update((str(i), now) for i in ids)
        return commits

    with ThreadPoolExecutor(committers, thread_name_prefix="committer") as pool:
        parts = list(pool.map(commit, (ticks[k::committers] for k in range(committers))))
    return {event_id: at for part in parts for event_id, at in part.items()}


def analytics_emitter(tenant_id: uuid.UUID, conversations: list[str], seed: int):
    """Commit ``n`` events of the mix in one transaction through the outbox writer.

    PERF: one ``emit_many`` per event type (the outbox rows and the after-commit
    publish are those of ``emit``, one statement per type instead of one per event):
    this process shares the 2 cores with the worker it measures.
    """
    from shared.db import session_scope
    from shared.events import Actor, emit_many

    actor = Actor.system()

    def emit_batch(first: int, n: int) -> list[uuid.UUID]:
        # Each batch draws from its own generator: the same mix whichever committer runs it.
        rng = random.Random(seed * 1_000_003 + first)
        by_type: dict[str, list[tuple[uuid.UUID, dict[str, Any]]]] = {}
        for k in range(first, first + n):
            roll = rng.random()
            if roll < 0.8:
                kind = "message.created"
                data = {
                    "id": str(uuid.uuid4()),
                    "conversation_id": rng.choice(conversations),
                    "channel": rng.choice(("whatsapp", "email", "api")),
                    "direction": rng.choice(("inbound", "outbound")),
                    "body": f"message {k}",
                    "created_at": None,
                }
            elif roll < 0.9:
                kind = "contact.created"
                data = {"id": str(uuid.uuid4()), "channel": "whatsapp", "created_at": None}
            else:
                kind = "conversation.status_changed"
                data = {"id": rng.choice(conversations), "status": "open"}
            by_type.setdefault(kind, []).append((tenant_id, data))
        with session_scope() as session:
            return [
                event_id
                for kind, items in by_type.items()
                for event_id in emit_many(session, kind, items, actor=actor)
            ]

    return emit_batch


def automation_emitter(tenant_id: uuid.UUID, conversations: list[str]):
    from bench.automation import TRIGGER, message_data
    from shared.db import session_scope
    from shared.events import Actor, emit

    def emit_batch(first: int, n: int) -> list[uuid.UUID]:
        with session_scope() as session:
            return [
                emit(
                    session,
                    TRIGGER,
                    message_data(conversations[k % len(conversations)], k),
                    tenant_id=tenant_id,
                    actor=Actor.system(),
                )
                for k in range(first, first + n)
            ]

    return emit_batch


def counted_times(event_ids: list[str]) -> dict[str, float]:
    """{event id: counted at (epoch s)} of those already counted."""
    from sqlalchemy import bindparam, text

    from shared.db import session_scope

    statement = text(
        "SELECT event_id::text, extract(epoch FROM counted_at) FROM analytics_events"
        " WHERE event_id = ANY(:ids) AND counted_at IS NOT NULL"
    ).bindparams(bindparam("ids"))
    found: dict[str, float] = {}
    with session_scope() as session:
        for first in range(0, len(event_ids), 20_000):
            chunk = [uuid.UUID(i) for i in event_ids[first : first + 20_000]]
            found.update(
                (row[0], float(row[1])) for row in session.execute(statement, {"ids": chunk})
            )
    return found


def automation_settled(tenant_id: uuid.UUID) -> int:
    from bench.automation import count_where
    from shared.models import AutomationEvent

    return count_where(
        AutomationEvent,
        AutomationEvent.tenant_id == tenant_id,
        AutomationEvent.status.in_(("done", "failed")),
    )


def processed_messages() -> dict[str, int]:
    """{actor: messages processed so far} from the worker metrics' all-time totals."""
    from shared import worker_metrics as wm
    from shared.config import get_settings
    from shared.redis_client import get_redis

    time.sleep(get_settings().metrics_flush_seconds + 0.5)  # the workers' last counts
    totals = get_redis().hgetall(wm.totals_key(get_settings().redis_namespace))
    found: dict[str, int] = {}
    for raw, value in totals.items():
        _queue, _, rest = raw.decode().partition("|")
        actor, _, name = rest.rpartition("|")
        if name == "processed":
            found[actor] = found.get(actor, 0) + int(value)
    return found


# --- one phase -----------------------------------------------------------------------------


def phase(name: str, args, worker, world: dict[str, Any], *, beside: bool) -> dict[str, Any]:
    print(f"[analytics_load] {name}: {args.rate:g} events/s for {args.duration:g} s", flush=True)
    side: dict[str, Any] = {}
    threads = []
    if beside:
        webhook_bench.reset_receivers(world["receivers"])
        settled_before = automation_settled(world["automation_tenant"])

        def webhooks() -> None:
            side["webhook_commits"] = webhook_bench.emit_events(
                world["webhook_tenant"],
                int(args.webhook_rate / 3 * args.duration),
                1,
                args.webhook_rate / 3,
            )

        def automation() -> None:
            side["automation_commits"] = paced(
                args.automation_rate, args.duration, 1, world["automation_emit"]
            )

        threads = [threading.Thread(target=f, daemon=True) for f in (webhooks, automation)]
    meter = common.CpuMeter(
        {"worker": worker.pid, "scheduler": world["scheduler"].pid, "bench": os.getpid()},
        world["database_url"],
    )
    # The worker's idle CPU (its pollers and heartbeats) is left out of its figure per event.
    world["messages_before"] = processed_messages()
    idle_from = meter.sample()
    time.sleep(IDLE_SAMPLE_S)
    idle = common.CpuMeter.usage(idle_from, cpu_from := meter.sample())
    idle_worker_per_s = idle.trees["worker"] / idle.wall
    for thread in threads:
        thread.start()
    started = time.time()
    latencies: list[float] = []
    commits = paced(
        args.rate, args.duration, args.batch, world["analytics_emit"], args.committers, latencies
    )
    load_end = time.time()
    latencies.sort()
    for thread in threads:
        thread.join()
    ids = list(commits)
    uncounted_at_end = len(ids) - len(counted_times(ids))
    common.wait_until(
        lambda: len(counted_times(ids)) == len(ids),
        f"{len(ids)} events counted",
        timeout=300,
        interval=0.5,
        children=[worker],
    )
    usage = common.CpuMeter.usage(cpu_from, meter.sample())
    messages = processed_messages() if "messages_before" in world else {}
    counted = counted_times(ids)
    lags = sorted(counted[i] - commits[i] for i in ids)
    last = max(counted.values())
    figures: dict[str, Any] = {
        "events": len(ids),
        "committed_per_s": len(ids) / (max(commits.values()) - started),
        "counted_per_s": len(ids) / (last - min(commits.values())),
        "lag_p50_ms": common.percentile(lags, 50) * 1000,
        "lag_p99_ms": common.percentile(lags, 99) * 1000,
        # Each analytics transaction's commit (the load's, not the rollups').
        "commit_p50_ms": common.percentile(latencies, 50) * 1000,
        "commit_p99_ms": common.percentile(latencies, 99) * 1000,
        "uncounted_at_load_end": uncounted_at_end,
        "last_counted_after_load_s": last - load_end,
        # NOTE: CPU from the load's start until the last event was counted; beside the
        # other loads the worker's and the benchmark's include theirs too.
        "worker_cpu_ms_per_event": 1000
        * (usage.trees["worker"] - idle_worker_per_s * usage.wall)
        / len(ids),
        "worker_idle_cpu_pct": 100 * idle_worker_per_s,
        # NOTE: the idle rate above is a short sample on a noisy box: the worker's whole CPU
        # from the load's start to the last count, idle pollers included, is the steadier A/B.
        "worker_gross_cpu_ms_per_event": 1000 * usage.trees["worker"] / len(ids),
        "wall_s": usage.wall,
        # The bench's tree holds the worker and the scheduler: its own process alone.
        "bench_cpu_ms_per_event": 1000
        * (usage.trees["bench"] - usage.trees["worker"] - usage.trees["scheduler"])
        / len(ids),
        "postgres_cpu_ms_per_event": 1000 * usage.postgres_database / len(ids),
        "machine_busy_pct": usage.machine_busy_pct,
        "load_average": os.getloadavg(),
        # Messages the worker processed per actor since the phase began (flushed metrics:
        # up to METRICS_FLUSH_SECONDS late), per 1,000 counted events.
        "messages_per_1000_events": {
            actor: round(1000 * (n - world["messages_before"].get(actor, 0)) / len(ids), 1)
            for actor, n in messages.items()
            if n > world["messages_before"].get(actor, 0)
        },
    }
    world["messages_before"] = messages
    if beside:
        webhook = webhook_bench.measure(world["receivers"], side["webhook_commits"], worker, 300)
        expected = len(side["automation_commits"])
        common.wait_until(
            lambda: automation_settled(world["automation_tenant"]) - settled_before >= expected,
            f"{expected} automation events settled",
            timeout=300,
            interval=0.5,
            children=[worker],
        )
        figures["webhooks"] = webhook
        figures["automation"] = {
            "events": expected,
            "settled_after_load_s": time.time() - load_end,
        }
        # NOTE: the whole phase's work is fixed (the events, deliveries and automation
        # events), however fast the box committed it: the worker's and PostgreSQL's CPU
        # until all of it has settled, per analytics event, is the figure to compare
        # between runs (the ones above stop at the last count, before stragglers).
        settled = common.CpuMeter.usage(cpu_from, meter.sample())
        figures["worker_cpu_ms_per_event_all_settled"] = (
            1000 * (settled.trees["worker"] - idle_worker_per_s * settled.wall) / len(ids)
        )
        figures["postgres_cpu_ms_per_event_all_settled"] = (
            1000 * settled.postgres_database / len(ids)
        )
    print(f"  {figures}", flush=True)
    return figures


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    os.environ.update(WEBHOOK_ALLOW_HTTP="true", WEBHOOK_SSRF_ALLOWLIST="127.0.0.1/32")
    receivers = [webhook_bench.Receiver() for _ in range(3)]
    with common.Bench("analytics_load", env) as bench:
        from bench import automation as automation_bench
        from shared.db import session_scope
        from shared.models import Tenant

        webhook_tenant, _ = webhook_bench.create_tenant(env, "Webhook", receivers)  # + publisher
        tenants = {}
        for name in ("analytics", "automation"):
            with session_scope() as session:
                tenant = Tenant(name=f"{name} bench", slug=f"{name}-bench-{env.run_id}")
                session.add(tenant)
                session.flush()
                tenants[name] = tenant.id
        automation_bench.set_rules(tenants["automation"], 1000, 50, matching=1)
        world = {
            "receivers": receivers,
            "database_url": env.database_url,
            "webhook_tenant": webhook_tenant,
            "automation_tenant": tenants["automation"],
            "analytics_emit": analytics_emitter(
                tenants["analytics"],
                automation_bench.add_conversations(tenants["analytics"], 500),
                args.seed,
            ),
            "automation_emit": automation_emitter(
                tenants["automation"],
                automation_bench.add_conversations(tenants["automation"], 200),
            ),
        }
        argv = [
            sys.executable,
            "-m",
            "workers",
            # A diagnosis: WORKER_SAMPLER_OUT=/tmp/x samples the workers' stacks.
            *(["bench.worker_sampler"] if os.environ.get("WORKER_SAMPLER_OUT") else []),
            # WORKER_CPROFILE_OUT=/tmp/y: each Dramatiq thread's CPU profile.
            *(["bench.worker_cprofile"] if os.environ.get("WORKER_CPROFILE_OUT") else []),
            "--processes",
            str(args.processes),
            "--threads",
            str(args.threads),
        ]
        worker = bench.start("worker", argv)
        # The Procfile's scheduler too: its sweepers are part of the path (a parked
        # webhook delivery whose wake-up was missed is theirs to re-drive).
        world["scheduler"] = bench.start("scheduler", [sys.executable, "-m", "scheduler"])
        probe = webhook_bench.emit_events(webhook_tenant, 1, 1)
        webhook_bench.measure(receivers, probe, worker, 90)  # the worker is up
        results = {
            name: phase(name, args, worker, world, beside=name == "beside")
            for name in args.phases.split(",")
        }
    for receiver in receivers:
        receiver.close()
    common.write_json(args.json_out, {"args": vars(args), "results": results})
    return report(args, results)


def report(args, results: dict[str, Any]) -> int:
    base = results.get("alone", {}).get("counted_per_s")
    rows = [
        (
            name,
            r["events"],
            common.fmt(r["committed_per_s"]),
            common.fmt(r["commit_p99_ms"]),
            common.fmt(r["counted_per_s"]),
            f"{r['counted_per_s'] / base:.2f}x" if base else "-",
            common.fmt(r["lag_p50_ms"]),
            common.fmt(r["lag_p99_ms"]),
            r["uncounted_at_load_end"],
            common.fmt(r["last_counted_after_load_s"], 2),
            f"{r['worker_cpu_ms_per_event']:.2f}",
            f"{r['bench_cpu_ms_per_event']:.2f}",
            f"{r['postgres_cpu_ms_per_event']:.2f}",
            f"{r['load_average'][0]:.1f}",
        )
        for name, r in results.items()
    ]
    common.print_table(
        f"analytics events at {args.rate:g}/s offered by {args.committers} committers,"
        f" worker {args.processes} x {args.threads}",
        (
            "phase",
            "events",
            "committed/s",
            "commit p99 ms",
            "counted/s",
            "vs alone",
            "lag p50 ms",
            "lag p99 ms",
            "uncounted at end",
            "last counted +s",
            "worker CPU ms/event",
            "bench CPU ms/event",
            "PostgreSQL CPU ms/event",
            "load",
        ),
        rows,
    )
    if "beside" not in results:
        print("(only the phases asked for: no targets judged)")
        return 0
    beside = results["beside"]
    hooks, rules = beside["webhooks"], beside["automation"]
    common.print_table(
        "beside it",
        ("load", "events", "figure"),
        [
            (
                f"webhooks {args.webhook_rate:g} deliveries/s",
                hooks["deliveries"],
                f"p50 {common.fmt(hooks['p50_ms'])} ms, p99 {common.fmt(hooks['p99_ms'])} ms",
            ),
            (
                f"automation {args.automation_rate:g} events/s (1,000 rules, 50 triggered)",
                rules["events"],
                f"all settled {common.fmt(rules['settled_after_load_s'], 2)} s after the load",
            ),
        ],
    )
    return (
        0
        if common.print_targets(
            "targets",
            [
                common.Target(
                    "counted/s beside the other loads",
                    common.fmt(beside["counted_per_s"]),
                    f">= {RATE_GOAL * args.rate:g}",
                    beside["counted_per_s"] >= RATE_GOAL * args.rate,
                ),
                common.Target(
                    "last event counted after the load",
                    f"{beside['last_counted_after_load_s']:.2f} s",
                    f"< {CATCH_UP_GOAL_S:g} s",
                    beside["last_counted_after_load_s"] < CATCH_UP_GOAL_S,
                ),
            ],
        )
        else 1
    )


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv, database=lambda args: args.database)


if __name__ == "__main__":
    sys.exit(main())
