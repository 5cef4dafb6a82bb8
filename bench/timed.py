"""Time-driven work: scheduled sends due in the same minute, and check_sla over many clocks.

Two measurements, each beside a baseline taken in the same run:

- ``scheduled``: ``--messages`` scheduled WhatsApp messages all due at one instant, with
  the Procfile's processes (``python -m scheduler`` and ``python -m workers --processes 2
  --threads 8``) and the fake Graph API (tests/peers/graph.py) as the provider. The
  scheduler's ``send_due_scheduled_messages`` (every 10 s) claims them, the workers create
  the messages and ``send_outbound`` POSTs them. Reported: seconds from the due instant to
  the first and the last arrival at the fake, and the spread first -> last; the goal is
  every message handed to the provider within 120 s of its time. Baseline: the same POSTs
  from 2 x 8 threads with one httpx client (no database, no broker). Also the CPU per
  message of the worker and scheduler process trees and of this database's PostgreSQL
  backends, from due to the last arrival: the figure that holds on a loaded machine.
- ``check_sla``: ``--conversations`` open conversations, each with an SLA clock, of which
  ``--due`` are past a due time. Reported: database time (time spent in statements, summed
  by a cursor listener) of one ``check_sla`` run that records those breaches, and of a run
  with nothing due, beside a plain scan reading the same clocks and conversations. Goal:
  under 1 s of database time per run.

Run::

    .venv/bin/python bench/timed.py                       # 10,000 sends; 100,000 clocks
    .venv/bin/python bench/timed.py --messages 1000 --conversations 10000 --only check_sla

Exit status: 0 both goals met, 1 a goal missed, 2 error.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

TOKEN = "EAAG-bench-token"
#: The Procfile's worker concurrency (WORKER_PROCESSES x WORKER_THREADS defaults).
PROCESSES, THREADS = 2, 8
SEND_GOAL_SECONDS = 120.0
CHECK_GOAL_SECONDS = 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000, help="clocks past due in the check")
    parser.add_argument("--only", choices=("scheduled", "check_sla"))
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


# --- scheduled sends ------------------------------------------------------------------------


def setup_tenant(env: common.BenchEnv, name: str):
    from shared.db import session_scope
    from shared.identity.tenants import register_tenant

    with session_scope() as session:
        registration = register_tenant(
            session,
            organization_name=f"{name} {env.run_id}",
            full_name="Bench Admin",
            email=f"bench-{uuid.uuid4().hex[:8]}@example.com",
            password="bench password 1",
        )
        return registration.tenant.id, registration.admin.id


def setup_whatsapp(tenant_id: uuid.UUID, conversations: int) -> tuple[str, list[uuid.UUID]]:
    from shared.channels import accounts
    from shared.context import Ctx
    from shared.db import session_scope
    from shared.models import Contact, Conversation

    with session_scope() as session:
        phone_number_id = str(uuid.uuid4().int)[:15]
        accounts.create_account(
            session,
            Ctx.system(tenant_id),
            channel="whatsapp",
            name="bench",
            external_id=phone_number_id,
            credentials={"access_token": TOKEN},
        )
        ids = []
        for n in range(conversations):
            contact = Contact(
                tenant_id=tenant_id,
                channel="whatsapp",
                external_id=f"1555{n:07d}",
                last_inbound_at=dt.datetime.now(dt.UTC),
            )
            session.add(contact)
            session.flush()
            conversation = Conversation(
                tenant_id=tenant_id, contact_id=contact.id, channel="whatsapp", status="open"
            )
            session.add(conversation)
            session.flush()
            ids.append(conversation.id)
        return phone_number_id, ids


def schedule_all(
    tenant_id: uuid.UUID, author_id: uuid.UUID, conversations: list[uuid.UUID], count: int, at
) -> None:
    from sqlalchemy import insert

    from shared.db import session_scope
    from shared.models import ScheduledMessage

    rows = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "conversation_id": conversations[n % len(conversations)],
            "author_id": author_id,
            "body": f"scheduled {n}",
            "run_at": at,
            "due_at": at,
            "timezone": "UTC",
        }
        for n in range(count)
    ]
    with session_scope() as session:
        for start in range(0, count, 2_000):
            session.execute(insert(ScheduledMessage.__table__), rows[start : start + 2_000])


def measure_scheduled(args, env: common.BenchEnv, bench: common.Bench) -> dict:
    from tests.peers.graph import start_fake_graph

    graph, server = start_fake_graph()
    os.environ.update(META_GRAPH_BASE_URL=graph.base_url, META_GRAPH_VERSION="v21.0")
    try:
        tenant_id, author_id = setup_tenant(env, "Scheduled bench")
        phone_number_id, conversations = setup_whatsapp(tenant_id, 200)
        worker = bench.start(
            "worker",
            [
                sys.executable,
                "-m",
                "workers",
                "--processes",
                str(PROCESSES),
                "--threads",
                str(THREADS),
            ],
        )
        scheduler = bench.start("scheduler", [sys.executable, "-m", "scheduler"])
        common.wait_until(
            _leads,
            "the scheduler leads",
            timeout=60,
            children=[worker, scheduler],
        )
        from sqlalchemy import func, select

        from shared.db import session_scope

        with session_scope() as session:
            due = session.scalar(select(func.now())) + dt.timedelta(seconds=5)
        schedule_all(tenant_id, author_id, conversations, args.messages, due)
        print(f"[timed] {args.messages} scheduled messages due at {due:%H:%M:%S}", flush=True)
        meter = common.CpuMeter(
            {"worker": worker.pid, "scheduler": scheduler.pid}, env.database_url
        )
        cpu_from = meter.sample()
        common.wait_until(
            lambda: len(graph.sent()) >= args.messages,
            f"{args.messages} messages at the fake Graph API",
            timeout=args.drain_timeout,
            interval=0.5,
            children=[worker, scheduler],
        )
        usage = common.CpuMeter.usage(cpu_from, meter.sample())
        arrivals = sorted(r.at for r in graph.sent())
        due_epoch = due.timestamp()
        result = {
            "messages": len(arrivals),
            "first_after_due_s": arrivals[0] - due_epoch,
            "last_after_due_s": arrivals[-1] - due_epoch,
            "spread_s": arrivals[-1] - arrivals[0],
        }
        result["per_s"] = len(arrivals) / max(result["spread_s"], 1e-6)
        # Load-independent: CPU per message of the Procfile's processes and of their database.
        result["cpu_ms_per_message"] = {
            "worker": 1000 * usage.trees["worker"] / len(arrivals),
            "scheduler": 1000 * usage.trees["scheduler"] / len(arrivals),
            "postgres": 1000 * usage.postgres_database / len(arrivals),
        }
        result["machine_busy_pct"] = usage.machine_busy_pct
        bench.stop(scheduler)
        bench.stop(worker)
        graph.reset()
        result["baseline"] = bare_loop(graph.base_url, phone_number_id, args.messages)
        return result
    finally:
        server.shutdown()
        server.server_close()


def _leads() -> bool:
    from sqlalchemy import select

    from shared.db import session_scope
    from shared.models import SchedulerHeartbeat

    with session_scope() as session:
        return session.scalar(select(SchedulerHeartbeat.pid).limit(1)) is not None


def bare_loop(base_url: str, phone_number_id: str, count: int) -> dict:
    """The same POSTs from 2 x 8 threads with one httpx client: no database, no broker."""
    import httpx

    from shared.channels.graph import whatsapp_text

    url = f"{base_url}/v21.0/{phone_number_id}/messages"
    concurrency = PROCESSES * THREADS
    with httpx.Client(
        timeout=20, limits=httpx.Limits(max_connections=concurrency), trust_env=False
    ) as client:

        def post(n: int) -> int:
            payload = whatsapp_text(f"1555{n % 200:07d}", f"scheduled {n}")
            headers = {"Authorization": f"Bearer {TOKEN}"}
            return client.post(url, json=payload, headers=headers).status_code

        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            codes = list(pool.map(post, range(count)))
        elapsed = time.time() - started
    if any(code != 200 for code in codes):
        raise common.BenchError("the baseline got non-200 answers")
    return {"messages": len(codes), "seconds": elapsed, "per_s": len(codes) / elapsed}


# --- check_sla ------------------------------------------------------------------------------


class DatabaseClock:
    """Seconds spent inside statements (cursor execute to its return), summed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.statements = 0

    def install(self, engine) -> None:
        from sqlalchemy import event

        @event.listens_for(engine, "before_cursor_execute")
        def before(conn, cursor, statement, parameters, context, executemany):
            conn.info["timed_started"] = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def after(conn, cursor, statement, parameters, context, executemany):
            took = time.perf_counter() - conn.info.pop("timed_started")
            self.seconds += took
            self.statements += 1
            if os.environ.get("TIMED_BENCH_TRACE"):
                print(f"    {took * 1000:8.1f} ms  {' '.join(statement.split())[:110]}")

    def reset(self) -> None:
        self.seconds, self.statements = 0.0, 0


def build_clocks(tenant_id: uuid.UUID, count: int, due: int) -> uuid.UUID:
    """``count`` open conversations with clocks under one policy; ``due`` of them past due."""
    from sqlalchemy import text

    from shared.db import session_scope
    from shared.models import SlaPolicy

    with session_scope() as session:
        # NOTE: building 100,000 rows outlasts the application's statement timeout.
        session.execute(text("SET LOCAL statement_timeout = 0"))
        policy = SlaPolicy(
            tenant_id=tenant_id,
            name="Bench",
            first_response_minutes=30,
            resolution_minutes=24 * 60,
        )
        session.add(policy)
        session.flush()
        params = {"tenant": tenant_id, "count": count, "due": due, "policy": policy.id}
        session.execute(
            text(
                "INSERT INTO contacts (id, tenant_id, channel, external_id)"
                " SELECT md5('c' || n)::uuid, :tenant, 'api', 'c' || n"
                " FROM generate_series(1, :count) n"
            ),
            params,
        )
        session.execute(
            text(
                "INSERT INTO conversations (id, tenant_id, contact_id, channel, status)"
                " SELECT md5('v' || n)::uuid, :tenant, md5('c' || n)::uuid, 'api', 'open'"
                " FROM generate_series(1, :count) n"
            ),
            params,
        )
        # Started n seconds ago: the first ``due`` clocks are past their 30-minute target.
        session.execute(
            text(
                "INSERT INTO conversation_slas (conversation_id, tenant_id, policy_id,"
                " policy_version, started_at, first_response_due_at, resolution_due_at,"
                " next_check_at)"
                " SELECT md5('v' || n)::uuid, :tenant, :policy, 1, s, s + interval '30 min',"
                "   s + interval '1 day', s + interval '30 min'"
                " FROM (SELECT n, now() - interval '30 min' - make_interval(secs => :due - n)"
                "       AS s FROM generate_series(1, :count) n) t"
            ),
            params,
        )
        session.execute(text("ANALYZE contacts, conversations, conversation_slas"))
        return policy.id


def measure_check(args, env: common.BenchEnv) -> dict:
    from sqlalchemy import func, select, text

    from shared.db import get_engine, session_scope
    from shared.timekeeping import sla

    tenant_id, _ = setup_tenant(env, "SLA bench")
    started = time.monotonic()
    build_clocks(tenant_id, args.conversations, args.due)
    print(
        f"[timed] {args.conversations} conversations with SLA clocks"
        f" ({time.monotonic() - started:.1f} s)",
        flush=True,
    )
    clock = DatabaseClock()
    clock.install(get_engine())

    def run(what) -> tuple[float, float, int, int]:
        clock.reset()
        wall = time.perf_counter()
        with session_scope() as session:
            result = what(session)
        return clock.seconds, time.perf_counter() - wall, clock.statements, result

    with session_scope() as session:
        now = session.scalar(select(func.now()))
    due_run = run(lambda s: sla.check_due(s, now=now))
    idle_run = run(lambda s: sla.check_due(s, now=now))
    scan = run(
        lambda s: len(
            s.execute(
                text(
                    "SELECT c.id, c.status, c.division_id, k.next_check_at,"
                    " k.first_response_due_at, k.resolution_due_at"
                    " FROM conversation_slas k JOIN conversations c ON c.id = k.conversation_id"
                    " WHERE k.tenant_id = :t AND c.status = 'open'"
                ),
                {"t": tenant_id},
            ).all()
        )
    )
    return {
        "conversations": args.conversations,
        "due_run": {
            "db_s": due_run[0],
            "wall_s": due_run[1],
            "statements": due_run[2],
            "breaches": due_run[3],
        },
        "idle_run": {"db_s": idle_run[0], "wall_s": idle_run[1], "breaches": idle_run[3]},
        "plain_scan": {"db_s": scan[0], "wall_s": scan[1], "rows": scan[3]},
    }


# --- report -------------------------------------------------------------------------------


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    results: dict = {}
    with common.Bench("timed", env) as bench:
        if args.only in (None, "scheduled"):
            results["scheduled"] = measure_scheduled(args, env, bench)
            print(f"  {results['scheduled']}", flush=True)
        if args.only in (None, "check_sla"):
            results["check_sla"] = measure_check(args, env)
            print(f"  {results['check_sla']}", flush=True)
    return report(results)


def report(results: dict) -> int:
    passed = True
    if "scheduled" in results:
        s, base = results["scheduled"], results["scheduled"]["baseline"]
        ok = s["last_after_due_s"] <= SEND_GOAL_SECONDS
        passed &= ok
        common.print_table(
            f"Scheduled messages due at one instant, worker {PROCESSES} x {THREADS} + scheduler,"
            " fake Graph API",
            ["run", "messages", "first after due", "last after due", "spread", "sends/s"],
            [
                (
                    "engine (scheduler -> worker -> Graph)",
                    s["messages"],
                    f"{s['first_after_due_s']:.1f} s",
                    f"{s['last_after_due_s']:.1f} s" + ("" if ok else " (goal 120 s: MISSED)"),
                    f"{s['spread_s']:.1f} s",
                    common.fmt(s["per_s"]),
                ),
                (
                    "bare httpx POST loop",
                    base["messages"],
                    "-",
                    "-",
                    f"{base['seconds']:.1f} s",
                    common.fmt(base["per_s"]),
                ),
            ],
        )
        cpu = s["cpu_ms_per_message"]
        print(
            f"CPU per message (load-independent): worker {cpu['worker']:.2f} ms, scheduler"
            f" {cpu['scheduler']:.2f} ms, PostgreSQL (this database's backends)"
            f" {cpu['postgres']:.2f} ms; machine {s['machine_busy_pct']:.0f} % busy"
        )
    if "check_sla" in results:
        c = results["check_sla"]
        ok = (
            c["due_run"]["db_s"] < CHECK_GOAL_SECONDS and c["idle_run"]["db_s"] < CHECK_GOAL_SECONDS
        )
        passed &= ok
        scan = c["plain_scan"]["db_s"]
        common.print_table(
            f"check_sla over {c['conversations']:,} open conversations with SLA clocks",
            ["run", "database time", "wall time", "vs plain scan"],
            [
                (
                    f"check_sla, {c['due_run']['breaches']} breaches recorded",
                    f"{c['due_run']['db_s'] * 1000:.0f} ms",
                    f"{c['due_run']['wall_s'] * 1000:.0f} ms",
                    f"{c['due_run']['db_s'] / scan:.2f}x",
                ),
                (
                    "check_sla, nothing due",
                    f"{c['idle_run']['db_s'] * 1000:.1f} ms",
                    f"{c['idle_run']['wall_s'] * 1000:.1f} ms",
                    f"{c['idle_run']['db_s'] / scan:.3f}x",
                ),
                (
                    f"plain scan of the same {c['plain_scan']['rows']:,} rows",
                    f"{scan * 1000:.0f} ms",
                    f"{c['plain_scan']['wall_s'] * 1000:.0f} ms",
                    "1x",
                ),
            ],
        )
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
