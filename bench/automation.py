"""Automation service: events/s through the automation queue, dry-run latency, and cost curves.

What it measures, in one run (a tenant registered over HTTP, conversations and rules
inserted with SQL):

- end to end: ``--events`` ``message.created`` events committed through the outbox (in
  transactions of ``--batch``) with a worker started as the Procfile's (``dramatiq
  workers.main --processes 2 --threads 8``), for a tenant with 1,000 active rules of
  which 50 are triggered by message.created (one matches and sets a priority). Rate =
  events / (last queue row done - first commit). Baseline, same run: the same events
  with no rule triggered by them (dispatch only, no queue row).
- dry-run: ``--requests`` sequential ``POST /api/automation/rules/{id}/dry-run`` with a
  real event id through gunicorn (the Procfile's web command); baseline ``GET`` of the
  same rule. Target p99 < 20 ms.
- curves (in-process, one thread, events evaluated ``--curve-batch`` at a time as the
  worker's ``evaluate_rules`` does, each batch in a rolled-back transaction so every point
  sees the same rows): ms per event vs rules triggered by its type (0/10/50/200 of
  1,000, none matching) and vs total rules (100/1,000/5,000 with 50 triggered). The
  cost should follow the triggered count, not the total. Then the end-to-end tenant
  (50 triggered, one matches and acts) one event per transaction and in batches. Each
  point is wall ms and CPU ms per event (this thread plus its PostgreSQL backend, the
  latter from ``/proc/<pid>/schedstat``); the targets judge CPU, which a loaded host
  distorts least.
  The end-to-end runs report CPU per event of the worker processes and of the
  database's backends the same way.

Run::

    .venv/bin/python bench/automation.py
    .venv/bin/python bench/automation.py --events 1000 --requests 300 --curve-events 40

Exit status: 0 all targets pass, 1 a target failed, 2 error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

TRIGGER = "message.created"
OTHER_TRIGGERS = ("conversation.status_changed", "contact.updated", "note.created")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50, help="events per transaction")
    parser.add_argument("--requests", type=int, default=500, help="dry-run requests")
    parser.add_argument("--curve-events", type=int, default=60, help="events per curve point")
    parser.add_argument(
        "--curve-batch", type=int, default=25, help="events per transaction in the curves"
    )
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


# --- data ----------------------------------------------------------------------------------


def rule_row(tenant_id: uuid.UUID, n: int, trigger: str, *, matching: bool = False) -> dict:
    """A realistic three-leaf rule; ``matching`` ones fire on every message (set_priority)."""
    leaves = [
        {"attribute": "conversation.status", "operator": "in", "value": ["open", "pending"]},
        {"attribute": "contact.country", "operator": "not_in", "value": ["XX", "YY"]},
        {"attribute": "message.content", "operator": "contains", "value": f"never-{n}"},
    ]
    if matching:
        leaves = leaves[:2]
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "name": f"rule {n}",
        "trigger_event_types": [trigger],
        "conditions": {"match": "all", "conditions": leaves},
        "actions": [{"type": "set_priority", "params": {"priority": "high"}}],
        "priority": n,
    }


def set_rules(tenant_id: uuid.UUID, total: int, triggered: int, *, matching: int = 0) -> None:
    """Replace the tenant's rules: ``triggered`` by message.created, the rest by others."""
    from sqlalchemy import delete, insert

    from shared.automation.rules import bump_rules_version
    from shared.db import session_scope
    from shared.models import AutomationRule

    rows = [
        rule_row(
            tenant_id,
            n,
            TRIGGER if n < triggered else OTHER_TRIGGERS[n % len(OTHER_TRIGGERS)],
            matching=n < matching,
        )
        for n in range(total)
    ]
    with session_scope() as session:
        session.execute(delete(AutomationRule).where(AutomationRule.tenant_id == tenant_id))
        for first in range(0, len(rows), 1000):
            session.execute(insert(AutomationRule), rows[first : first + 1000])
        bump_rules_version(session, tenant_id)


def add_conversations(tenant_id: uuid.UUID, count: int) -> list[str]:
    from shared.db import session_scope
    from shared.models import Contact, Conversation

    ids = []
    with session_scope() as session:
        for n in range(count):
            contact = Contact(
                tenant_id=tenant_id,
                channel="email",
                external_id=f"c{n}",
                name=f"Customer {n}",
                country="DE",
            )
            session.add(contact)
            session.flush()
            conversation = Conversation(tenant_id=tenant_id, contact_id=contact.id, channel="email")
            session.add(conversation)
            session.flush()
            ids.append(str(conversation.id))
    return ids


def message_data(conversation_id: str, n: int) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "conversation_id": conversation_id,
        "channel": "email",
        "direction": "inbound",
        "sender_type": "contact",
        "content_type": "text",
        "body": f"hello, message {n}",
        "attachments": [],
    }


def emit_messages(tenant_id: uuid.UUID, conversations: list[str], count: int, batch: int):
    """Commit ``count`` message.created events; return (first commit time, outbox ids)."""
    from shared.db import session_scope
    from shared.events import Actor, emit

    ids, first = [], None
    for start in range(0, count, batch):
        with session_scope() as session:
            for n in range(start, min(start + batch, count)):
                data = message_data(conversations[n % len(conversations)], n)
                ids.append(emit(session, TRIGGER, data, tenant_id=tenant_id, actor=Actor.system()))
        first = first or time.perf_counter()
    return first, ids


def count_where(model, *conditions) -> int:
    from sqlalchemy import func, select

    from shared.db import session_scope

    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(*conditions))


# --- measurements --------------------------------------------------------------------------


def end_to_end(tenant_id, conversations, args, worker, *, expect_rows: bool) -> dict:
    """Events/s from the first commit until every event is dispatched (and evaluated), and
    the CPU per event of the worker processes and of this database's PostgreSQL backends
    (the figure a loaded host distorts least)."""
    from shared.config import get_settings
    from shared.models import AutomationEvent, OutboxEvent

    before = count_where(AutomationEvent, AutomationEvent.tenant_id == tenant_id)
    meter = common.CpuMeter({"worker": worker.pid}, database_url=get_settings().database_url)
    start = meter.sample()
    first, ids = emit_messages(tenant_id, conversations, args.events, args.batch)

    def finished():
        if count_where(OutboxEvent, OutboxEvent.id.in_(ids), OutboxEvent.status == "pending"):
            return False
        if not expect_rows:
            return True
        done = count_where(
            AutomationEvent,
            AutomationEvent.tenant_id == tenant_id,
            AutomationEvent.status.in_(("done", "failed")),
        )
        return done - before >= len(ids)

    common.wait_until(
        finished, "every event settled", timeout=args.drain_timeout, interval=0.1, children=[worker]
    )
    elapsed = time.perf_counter() - first
    usage = common.CpuMeter.usage(start, meter.sample())
    return {
        "events": len(ids),
        "seconds": elapsed,
        "per_s": len(ids) / elapsed,
        "worker_cpu_ms": 1000 * usage.trees["worker"] / len(ids),
        "postgres_cpu_ms": 1000 * usage.postgres_database / len(ids),
        "load": os.getloadavg()[0],
    }


def http_latencies(port: int, method: str, path: str, token: str, body, n: int) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        status, answer = common.http_request(port, method, path, body=body, headers=headers)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            raise common.BenchError(f"{method} {path} answered {status}: {answer}")
    ordered = sorted(latencies)
    return {
        "n": n,
        "p50_ms": common.percentile(ordered, 50) * 1000,
        "p99_ms": common.percentile(ordered, 99) * 1000,
    }


def _on_cpu_ns(pid: int) -> int:
    """Nanoseconds process ``pid`` has run on a CPU (``/proc/<pid>/schedstat``, exact)."""
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0])


def evaluator_cost(tenant_id, conversations, n_events: int, batch: int = 1) -> dict:
    """Mean ms of the evaluator's work on one event, evaluated ``batch`` at a time as the
    worker does (one rolled-back transaction per batch, so rows stay the same): wall
    time, and CPU time of this thread plus its PostgreSQL backend (what a loaded host
    distorts least)."""
    from sqlalchemy import insert, select, text

    from shared.automation import evaluator
    from shared.automation.queue import fingerprint
    from shared.db import get_sessionmaker
    from shared.models import AutomationEvent

    session = get_sessionmaker()()
    wall = cpu = backend_cpu = 0.0
    evaluated, warm_up, n = 0, max(5, batch), 0
    try:
        while evaluated < n_events:  # the first batch warms the cache and the pool
            rows = []
            for _ in range(batch):
                data = message_data(conversations[n % len(conversations)], n)
                n += 1
                rows.append(
                    {
                        "tenant_id": tenant_id,
                        "outbox_event_id": uuid.uuid4(),
                        "event_type": TRIGGER,
                        "conversation_id": uuid.UUID(data["conversation_id"]),
                        "payload": data,
                        "fingerprint": fingerprint(TRIGGER, data),
                        "status": "processing",
                    }
                )
            ids = list(session.scalars(insert(AutomationEvent).returning(AutomationEvent.id), rows))
            events = list(
                session.scalars(select(AutomationEvent).where(AutomationEvent.id.in_(ids)))
            )
            backend = session.scalar(text("SELECT pg_backend_pid()"))
            started, cpu_started = time.perf_counter(), time.thread_time()
            backend_started = _on_cpu_ns(backend)
            if batch == 1:
                evaluator.process(session, events[0])
            else:
                evaluator.process_many(session, events)
            if n > warm_up:
                wall += time.perf_counter() - started
                cpu += time.thread_time() - cpu_started
                backend_cpu += (_on_cpu_ns(backend) - backend_started) / 1e9
                evaluated += batch
            session.rollback()
    finally:
        session.close()
    return {
        "wall_ms": 1000 * wall / evaluated,
        "cpu_ms": 1000 * (cpu + backend_cpu) / evaluated,
        "postgres_cpu_ms": 1000 * backend_cpu / evaluated,
    }


def cost_per_event(tenant_id, conversations, n_events: int, batch: int = 1) -> float:
    """:func:`evaluator_cost`'s wall ms per event."""
    return evaluator_cost(tenant_id, conversations, n_events, batch)["wall_ms"]


# --- the run -------------------------------------------------------------------------------


def register(port: int) -> tuple[str, uuid.UUID]:
    status, body = common.http_request(
        port,
        "POST",
        "/api/auth/register",
        body={
            "organization_name": "Automation bench",
            "full_name": "Bench Admin",
            "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
            "password": "correct horse battery",
        },
    )
    if status != 201:
        raise common.BenchError(f"POST /api/auth/register answered {status}: {body}")
    return body["access_token"], uuid.UUID(body["tenant"]["id"])


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    results: dict = {}
    with common.Bench("automation", env) as bench:
        from sqlalchemy import select

        from shared.db import session_scope
        from shared.models import AutomationEvent, AutomationRule
        from workers import publisher

        publisher.install()
        [port] = common.free_ports()
        gunicorn = [*common.executable("gunicorn"), "--config", "python:api.gunicorn_conf"]
        web = bench.start("web", [*gunicorn, "api.app:create_app()"], {"PORT": str(port)})
        common.wait_until(
            lambda: common.http_request(port, "GET", "/api/health")[0] in (200, 503),
            "gunicorn up",
            timeout=240,  # a loaded 2-core host can take minutes
            children=[web],
        )
        token, tenant_id = register(port)
        conversations = add_conversations(tenant_id, args.conversations)
        worker_argv = [
            *common.executable("dramatiq"),
            "workers.main",
            "--processes",
            str(args.processes),
            "--threads",
            str(args.threads),
        ]
        worker = bench.start("worker", worker_argv)

        print("[automation] baseline: no rule triggered by message.created", flush=True)
        set_rules(tenant_id, 1000, 0)
        end_to_end(
            tenant_id,
            conversations,
            argparse.Namespace(**{**vars(args), "events": 20}),
            worker,
            expect_rows=False,
        )  # warm-up
        results["e2e_baseline"] = end_to_end(
            tenant_id, conversations, args, worker, expect_rows=False
        )
        print(f"  {results['e2e_baseline']}", flush=True)
        print("[automation] 1,000 rules, 50 triggered by message.created", flush=True)
        set_rules(tenant_id, 1000, 50, matching=1)
        results["e2e_rules"] = end_to_end(tenant_id, conversations, args, worker, expect_rows=True)
        print(f"  {results['e2e_rules']}", flush=True)
        bench.stop(worker)

        with session_scope() as session:
            event_id = session.scalar(
                select(AutomationEvent.id).where(AutomationEvent.tenant_id == tenant_id).limit(1)
            )
            rule_id = session.scalar(
                select(AutomationRule.id).where(
                    AutomationRule.tenant_id == tenant_id,
                    AutomationRule.trigger_event_types.contains([TRIGGER]),
                )
            )
        rule_path = f"/api/automation/rules/{rule_id}"
        print(f"[automation] dry-run x {args.requests}", flush=True)
        http_latencies(port, "GET", rule_path, token, None, 20)  # warm-up
        results["get_rule"] = http_latencies(port, "GET", rule_path, token, None, args.requests)
        body = {"event_id": str(event_id)}
        results["dry_run"] = http_latencies(
            port, "POST", f"{rule_path}/dry-run", token, body, args.requests
        )
        print(f"  get {results['get_rule']}\n  dry-run {results['dry_run']}", flush=True)

        batch = args.curve_batch
        curve_triggered, curve_total, curve_acting = {}, {}, {}

        def point(label: str, size: int) -> dict:
            cost = evaluator_cost(tenant_id, conversations, args.curve_events, size)
            print(
                f"  {label}: {cost['wall_ms']:.2f} ms, CPU {cost['cpu_ms']:.2f} ms"
                f" (PostgreSQL {cost['postgres_cpu_ms']:.2f})",
                flush=True,
            )
            return cost

        for triggered in (0, 10, 50, 200):
            set_rules(tenant_id, 1000, triggered)
            curve_triggered[triggered] = point(f"1,000 rules, {triggered} triggered", batch)
        for total in (100, 1000, 5000):
            set_rules(tenant_id, total, 50)
            curve_total[total] = point(f"{total} rules, 50 triggered", batch)
        set_rules(tenant_id, 1000, 50, matching=1)  # the end-to-end tenant: one rule acts
        for size in dict.fromkeys((1, batch)):
            curve_acting[size] = point(f"end-to-end rules, batches of {size}", size)
        results["curve_triggered_ms"] = curve_triggered
        results["curve_total_ms"] = curve_total
        results["curve_acting_ms"] = curve_acting
    return report(args, results)


def report(args, results: dict) -> int:
    base, rules = results["e2e_baseline"], results["e2e_rules"]
    common.print_table(
        f"End to end, {args.events} message.created, worker --processes {args.processes}"
        f" --threads {args.threads}",
        ["run", "events/s", "ratio", "worker CPU ms/event", "PostgreSQL CPU ms/event", "load"],
        [
            (
                name,
                common.fmt(run["per_s"]),
                f"{run['per_s'] / base['per_s']:.0%}",
                common.fmt(run["worker_cpu_ms"], 2),
                common.fmt(run["postgres_cpu_ms"], 2),
                common.fmt(run["load"]),
            )
            for name, run in (
                ("dispatch only (no rule triggered)", base),
                ("1,000 rules, 50 triggered (queue + evaluate)", rules),
            )
        ],
    )
    common.print_table(
        "API latency (sequential, new connection each)",
        ["request", "p50 ms", "p99 ms"],
        [
            (
                "GET rule (baseline)",
                common.fmt(results["get_rule"]["p50_ms"]),
                common.fmt(results["get_rule"]["p99_ms"]),
            ),
            (
                "POST dry-run (real event)",
                common.fmt(results["dry_run"]["p50_ms"]),
                common.fmt(results["dry_run"]["p99_ms"]),
            ),
        ],
    )
    by_triggered = results["curve_triggered_ms"]
    zero = by_triggered[0]["cpu_ms"] or 1e-9
    common.print_table(
        f"Evaluator cost per event vs rules its type triggers (1,000 rules in total),"
        f" batches of {args.curve_batch}",
        ["triggered", "ms/event", "CPU ms/event", "CPU x of 0 triggered"],
        [
            (
                n,
                common.fmt(c["wall_ms"], 2),
                common.fmt(c["cpu_ms"], 2),
                f"{c['cpu_ms'] / zero:.1f}x",
            )
            for n, c in by_triggered.items()
        ],
    )
    by_total = results["curve_total_ms"]
    first = by_total[100]["cpu_ms"]
    common.print_table(
        "Evaluator cost per event vs total rules (50 triggered)",
        ["total rules", "ms/event", "CPU ms/event", "CPU x of 100 rules"],
        [
            (
                n,
                common.fmt(c["wall_ms"], 2),
                common.fmt(c["cpu_ms"], 2),
                f"{c['cpu_ms'] / first:.2f}x",
            )
            for n, c in by_total.items()
        ],
    )
    common.print_table(
        "Evaluator cost per event, end-to-end rules (50 triggered, one acts), by batch size",
        ["events per transaction", "ms/event", "CPU ms/event"],
        [
            (size, common.fmt(c["wall_ms"], 2), common.fmt(c["cpu_ms"], 2))
            for size, c in results["curve_acting_ms"].items()
        ],
    )
    flat = by_total[5000]["cpu_ms"] / first
    grows = by_triggered[200]["cpu_ms"] / max(by_triggered[10]["cpu_ms"], 1e-9)
    targets = [
        common.Target(
            "end to end, 1,000 rules / 50 triggered",
            f"{rules['per_s']:.0f} events/s",
            ">= 500 events/s",
            rules["per_s"] >= 500,
        ),
        common.Target(
            "dry-run p99",
            f"{results['dry_run']['p99_ms']:.1f} ms",
            "< 20 ms",
            results["dry_run"]["p99_ms"] < 20,
        ),
        common.Target(
            "cost at 5,000 / at 100 total rules (50 triggered)",
            f"{flat:.2f}x",
            "<= 1.5x",
            flat <= 1.5,
        ),
        common.Target(
            "cost at 200 / at 10 triggered rules",
            f"{grows:.1f}x",
            "> 2x (grows)",
            grows > 2,
        ),
    ]
    passed = common.print_targets("Targets (bench/automation.py)", targets)
    common.write_json(args.json_out, {"benchmark": "automation", "results": results})
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
