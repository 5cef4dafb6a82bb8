"""Analytics reports from rollups, against the same answers counted from the source tables.

What it does, in one run:

1. creates its own database and Redis namespace (``bench/common.py``) and builds the
   tenants with ``shared.demo`` (COPY, like ``bench/inbox.py``): by default 100,000
   conversations and 1,000,000 messages each, over 90 days;
2. backfills the rollups from those rows (``shared.analytics.reconcile.backfill``'s
   work, timed), and checks that both ways give the very same answers;
3. measures, one after the other, on the first tenant (beside the others' rows):

   ``overview``  ``GET /api/analytics/overview``: from the rollups
                 (``shared.analytics.reports``) and by aggregate queries over
                 conversations, contacts, messages and users;
   ``trends``    ``GET /api/analytics/trends?period=90d``: likewise, 90 local days;

   each through the whole endpoint in-process (falcon's WSGI test client: auth,
   validation, JSON) and as the bare service call, p50/p99 per way, and the ratio;
4. queues ``--events`` events for the first tenant (messages, contacts, conversation
   changes, as ``dispatch_event`` queues them) and times the ``roll_up`` actor's work
   (``shared.analytics.rollup.drain``) counting them: events/s.

Targets: overview and 90-day trends p99 < 20 ms through the endpoint, from rollups.

Run (PostgreSQL and Redis on 127.0.0.1)::

    .venv/bin/python bench/analytics.py                     # 2 x (100k, 1M): minutes
    .venv/bin/python bench/analytics.py --keep-db           # build once, reuse while iterating
    .venv/bin/python bench/analytics.py --conversations 10000 --messages 100000

Exit status: 0 all targets pass, 1 a target failed, 2 error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common
from bench.inbox import add_volume_arguments, build_tenants

GOAL_MS = 20.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_volume_arguments(parser)
    parser.add_argument("--requests", type=int, default=300, help="measured per rollup target")
    parser.add_argument("--source-requests", type=int, default=20, help="per source target")
    parser.add_argument("--events", type=int, default=20_000, help="queued for the rollup")
    parser.add_argument("--keep-db", action="store_true", help="reuse (and keep) the data")
    parser.add_argument("--json-out", help="also write the figures as JSON to this file")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    if args.requests < 10 or args.source_requests < 3:
        parser.error("--requests >= 10, --source-requests >= 3")
    return args


def kept_database(args: argparse.Namespace) -> str | None:
    if not args.keep_db:
        return None
    return f"omnistream_bench_keep_analytics_{args.conversations}_{args.messages}_{args.tenants}"


# --- the same answers, counted from the source tables ----------------------------------

_SOURCE_OVERVIEW = """
    SELECT
      (SELECT count(*) FROM conversations WHERE tenant_id = :t),
      (SELECT count(*) FROM conversations WHERE tenant_id = :t AND status = 'open'),
      (SELECT count(*) FROM conversations WHERE tenant_id = :t AND status = 'pending'),
      (SELECT count(*) FROM conversations WHERE tenant_id = :t AND status = 'resolved'),
      (SELECT count(*) FROM contacts WHERE tenant_id = :t),
      (SELECT count(*) FROM users WHERE tenant_id = :t AND deleted_at IS NULL),
      (SELECT count(*) FROM users WHERE tenant_id = :t AND deleted_at IS NULL
                                     AND status = 'online'),
      (SELECT count(*) FROM messages WHERE tenant_id = :t AND created_at >= :since
                                       AND created_at < :until)
"""
_SOURCE_TRENDS = """
    SELECT d, sum(c), sum(m) FROM (
      SELECT (created_at AT TIME ZONE :tz)::date AS d, count(*) AS c, 0 AS m
        FROM conversations WHERE tenant_id = :t AND created_at >= :since GROUP BY 1
      UNION ALL
      SELECT (created_at AT TIME ZONE :tz)::date, 0, count(*)
        FROM messages WHERE tenant_id = :t AND created_at >= :since GROUP BY 1
    ) x GROUP BY d
"""


def source_overview(session, tenant_id: uuid.UUID) -> dict[str, Any]:
    from sqlalchemy import text

    from shared.analytics.local_time import tenant_zone, today

    tz = tenant_zone(session, tenant_id)
    day = today(tz)
    since = dt.datetime.combine(day, dt.time(), tzinfo=tz)
    total, open_, pending, resolved, contacts, agents, online, messages = session.execute(
        text(_SOURCE_OVERVIEW),
        {"t": tenant_id, "since": since, "until": since + dt.timedelta(days=1)},
    ).one()
    return {
        "total_conversations": total,
        "open_conversations": open_,
        "pending_conversations": pending,
        "resolved_conversations": resolved,
        "total_contacts": contacts,
        "total_agents": agents,
        "online_agents": online,
        "messages_today": messages,
        "resolution_rate": round(100.0 * resolved / total, 2) if total else 0.0,
    }


def source_trends(session, tenant_id: uuid.UUID, days: int = 90) -> dict[str, Any]:
    from sqlalchemy import text

    from shared.analytics.local_time import tenant_zone, today
    from shared.analytics.periods import last_days
    from shared.analytics.reconcile import zone_name

    tz = tenant_zone(session, tenant_id)
    span = last_days(today(tz), days)
    since = dt.datetime.combine(span[0], dt.time(), tzinfo=tz)
    found = {
        d: (int(c), int(m))
        for d, c, m in session.execute(
            text(_SOURCE_TRENDS), {"t": tenant_id, "tz": zone_name(tz), "since": since}
        )
    }
    return {
        "period": f"{days}d",
        "days": days,
        "conversation_trend": [
            {"date": d.isoformat(), "count": found.get(d, (0, 0))[0]} for d in span
        ],
        "message_trend": [{"date": d.isoformat(), "count": found.get(d, (0, 0))[1]} for d in span],
    }


# --- measuring ---------------------------------------------------------------------------


def timed(call: Callable[[], Any], count: int) -> dict[str, float]:
    """Wall-clock p50/p99 of ``count`` calls, and this thread's CPU per call.

    NOTE: on a machine busy with other work the wall clock is mostly waiting for a
    core; the CPU per call (this process only, not PostgreSQL's) is what the call costs.
    """
    call()  # warm: plans, caches, connections
    samples = []
    cpu_started = time.thread_time()
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    cpu_ms = (time.thread_time() - cpu_started) * 1000 / count
    samples.sort()
    return {
        "p50_ms": common.percentile(samples, 50),
        "p99_ms": common.percentile(samples, 99),
        "cpu_ms": cpu_ms,
        "n": len(samples),
    }


def queue_events(tenant_id: uuid.UUID, count: int, rng: random.Random) -> None:
    """``count`` events queued as the ``analytics`` dispatch target queues them."""
    from sqlalchemy import text

    from shared.db import session_scope

    with session_scope() as session:
        conversations = [
            str(c)
            for c in session.scalars(
                text("SELECT id FROM conversations WHERE tenant_id = :t LIMIT 5000"),
                {"t": tenant_id},
            )
        ]
        now = dt.datetime.now(dt.UTC)
        rows = []
        for _ in range(count):
            roll = rng.random()
            if roll < 0.8:
                kind, data = (
                    "message.created",
                    {
                        "channel": rng.choice(("whatsapp", "email", "api")),
                        "direction": rng.choice(("inbound", "outbound")),
                        "created_at": now.isoformat(),
                    },
                )
            elif roll < 0.9:
                kind, data = "contact.created", {"channel": "whatsapp", "created_at": None}
            else:
                kind, data = (
                    "conversation.status_changed",
                    {"conversation_id": rng.choice(conversations)},
                )
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "t": tenant_id,
                    "type": kind,
                    "data": json.dumps(data),
                    "at": now,
                }
            )
        session.execute(
            text(
                "INSERT INTO analytics_events (event_id, tenant_id, type, data, occurred_at)"
                " VALUES (:id, :t, :type, CAST(:data AS jsonb), :at)"
            ),
            rows,
        )


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    rng = random.Random(args.seed)
    bench_name = "analytics"
    with common.Bench(
        bench_name, env, keep_logs=args.keep_logs, keep_database=args.keep_db
    ) as bench:
        tenants, build_seconds = build_tenants(
            bench,
            conversations=args.conversations,
            messages=args.messages,
            tenants=args.tenants,
            agents=10,
            seed=args.seed,
        )
        import falcon.testing
        from sqlalchemy import select

        from api.app import create_app
        from shared.analytics import reconcile, reports, rollup
        from shared.context import Ctx
        from shared.db import get_sessionmaker, session_scope
        from shared.identity.security import issue_access_token
        from shared.models import User

        started = time.monotonic()
        for tenant in tenants:
            with session_scope() as session:
                reconcile.reconcile_tenant(session, tenant.tenant_id, days=95, include_today=True)
        backfill_seconds = time.monotonic() - started
        print(f"[{bench_name}] rollups backfilled in {backfill_seconds:.1f} s", flush=True)

        tenant_id = tenants[0].tenant_id
        ctx = Ctx.system(tenant_id)
        with session_scope() as session:
            admin = session.scalar(
                select(User.id).where(
                    User.tenant_id == tenant_id, User.email == tenants[0].admin_email
                )
            )
        token = issue_access_token(admin, tenant_id).token
        client = falcon.testing.TestClient(create_app())
        headers = {"Authorization": f"Bearer {token}"}
        make_session = get_sessionmaker()

        def service(fn):
            def call():
                with make_session() as session:
                    return fn(session)

            return call

        ways = {
            "overview": {
                "endpoint": lambda: (
                    client.simulate_get("/api/analytics/overview", headers=headers).json
                ),
                "rollups": service(lambda s: reports.overview(s, ctx)),
                "source": service(lambda s: source_overview(s, tenant_id)),
            },
            "trends": {
                "endpoint": lambda: (
                    client.simulate_get(
                        "/api/analytics/trends", params={"period": "90d"}, headers=headers
                    ).json
                ),
                "rollups": service(lambda s: reports.trends(s, ctx, "90d")),
                "source": service(lambda s: source_trends(s, tenant_id)),
            },
        }
        identical = {
            name: way["endpoint"]() == way["rollups"]() == way["source"]()
            for name, way in ways.items()
        }
        results: dict[str, Any] = {"identical": identical}
        for name, way in ways.items():
            results[name] = {
                "endpoint": timed(way["endpoint"], args.requests),
                "rollups": timed(way["rollups"], args.requests),
                "source": timed(way["source"], args.source_requests),
            }

        queue_events(tenant_id, args.events, rng)
        started = time.perf_counter()
        drained = rollup.drain(tenant_id, budget_seconds=600)
        seconds = time.perf_counter() - started
        results["rollup"] = {
            "events": drained.counted,
            "seconds": seconds,
            "events_per_s": drained.counted / seconds if seconds else 0.0,
        }
        return report(args, build_seconds, backfill_seconds, results)


def report(args, build_seconds: float, backfill_seconds: float, results: dict[str, Any]) -> int:
    rows = []
    for name in ("overview", "trends"):
        figures = results[name]
        ratio = figures["source"]["p99_ms"] / max(figures["rollups"]["p99_ms"], 1e-6)
        for way in ("endpoint", "rollups", "source"):
            rows.append(
                (
                    name,
                    way,
                    common.fmt(figures[way]["p50_ms"], 2),
                    common.fmt(figures[way]["p99_ms"], 2),
                    common.fmt(figures[way]["cpu_ms"], 2),
                    figures[way]["n"],
                    f"{ratio:.0f}x" if way == "source" else "",
                )
            )
    common.print_table(
        f"analytics: {args.conversations:,} conversations, {args.messages:,} messages x"
        f" {args.tenants} tenant(s); build {build_seconds:.0f} s,"
        f" backfill {backfill_seconds:.1f} s; load {os.getloadavg()[0]:.2f}",
        ["report", "way", "p50 ms", "p99 ms", "CPU ms/call", "n", "source/rollups p99"],
        rows,
    )
    rollup_figures = results["rollup"]
    print(
        f"\nroll_up: {rollup_figures['events']:,} events counted in"
        f" {rollup_figures['seconds']:.2f} s = {rollup_figures['events_per_s']:,.0f} events/s"
        f" (one drainer, one tenant)"
    )
    print(f"answers identical (endpoint = rollups = source): {results['identical']}")
    targets = [
        common.Target(
            f"{name} p99 (endpoint, rollups)",
            f"{results[name]['endpoint']['p99_ms']:.2f} ms",
            f"< {GOAL_MS:.0f} ms",
            results[name]["endpoint"]["p99_ms"] < GOAL_MS,
        )
        for name in ("overview", "trends")
    ] + [
        common.Target(
            "rollup answers = source answers",
            str(all(results["identical"].values())),
            "True",
            all(results["identical"].values()),
        )
    ]
    passed = common.print_targets("targets", targets)
    common.write_json(args.json_out, results)
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv, database=kept_database)


if __name__ == "__main__":
    raise SystemExit(main())
