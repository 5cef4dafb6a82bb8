"""HTTP throughput and latency of the API under gunicorn, against a bare Falcon baseline.

What it measures, in one run, all served with the Procfile's ``web`` command
(``gunicorn --config python:api.gunicorn_conf <app>``: gthread, one process per CPU,
4 threads each, keep-alive 5 s):

``bare``
    ``bench/bare_app.py``: a Falcon app answering a constant 15-byte JSON body, no
    middleware. What gunicorn + Falcon cost per request on this machine: the baseline.
``health``
    ``GET /api/health`` of the real app: one PostgreSQL statement reading the scheduler
    heartbeat (also the database check) and one Redis script call for the broker's queue
    depths (also the Redis check: the broker is that Redis); a bench thread keeps a fresh
    heartbeat row, so it answers 200; anything but 2xx counts as an error.
``agents``
    ``GET /api/agents?limit=100`` with a Bearer token, all 100 agents (each with its role)
    returned. Nothing writes to the tenant during the run, so this is the steady state
    of a busy list that does not change: the caller's principal and the rendered page
    are served from each process's caches (``shared/identity/auth_cache.py``,
    ``shared/identity/agents_list_cache.py``) after one Redis ``MGET`` of their epochs; each
    process reads the principal and the page from PostgreSQL again every 2 s (the TTL).
``agents-uncached``
    The same request to a second gunicorn started with ``AGENTS_LIST_CACHE=false``: the
    page is read from PostgreSQL (prebuilt keyset query, 101 rows) and rendered on every
    request; the principal cache stays on. What a list costs when it keeps changing.

Load comes from ``bench/loadgen.py`` (asyncio keep-alive client, 32 connections, one
request in flight each) in a process of its own. Each target is warmed up, then measured
for a fixed window; targets run in rounds, in order ``bare, health, agents,
agents-uncached`` and then reversed, so slow drift in the machine's load hits all of
them alike. For each target the table gives req/s, p50/p99 latency, errors, server CPU
per request (the gunicorn process tree), PostgreSQL CPU per request (every ``postgres``
process: noisy when other work shares the server), the client's CPU and the machine's
busy %. Server CPU per request is the least noisy figure when the machine is shared.

A keep-alive connection stays with the gunicorn process that accepted it, and the
spread is often lopsided (each round prints it, e.g. ``3/29``). A window in which a
process holds none of the connections measures one process, not the configuration:
it is measured again (at most twice) and the repeat is reported.

Targets: authenticated list req/s / bare req/s >= 30 % (``agents``, the cached steady
state); no errors on any target. health / bare and agents-uncached / bare are printed
for information.

Run (from the repository root, PostgreSQL and Redis on 127.0.0.1)::

    .venv/bin/python bench/http_api.py                 # 2 rounds x 4 targets x (2 + 10 s)
    .venv/bin/python bench/http_api.py --duration 30 --rounds 3 --connections 64
    .venv/bin/python bench/http_api.py --web-threads 8 # try other gunicorn settings
    .venv/bin/python bench/http_api.py --json-out bench/results/http_api.json

It creates and drops database ``omnistream_bench_<random>``, uses Redis namespace
``omnistream-bench-<random>`` (deleted at the end) and starts and stops its own
gunicorn processes. Exit status: 0 all targets pass, 1 a target failed, 2 error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common, loadrun

TARGETS = ("bare", "health", "agents", "agents-uncached")
LIST_RATIO_GOAL = 0.30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured s per target")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up s per target")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the 4 targets")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--agents", type=int, default=100, help="agents listed (limit too)")
    parser.add_argument("--web-concurrency", type=int, help="gunicorn processes (default CPUs)")
    parser.add_argument("--web-threads", type=int, help="threads per process (default 4)")
    parser.add_argument("--json-out", help="also write the figures as JSON to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the child logs")
    args = parser.parse_args(argv)
    if not (1 <= args.rounds <= 20 and 0 < args.duration <= 600 and 0 <= args.warmup <= 60):
        parser.error("--rounds 1..20, --duration (0, 600] s, --warmup 0..60 s")
    if not (1 <= args.agents <= 200 and 1 <= args.connections <= 512):
        parser.error("--agents 1..200 (the API's page limit), --connections 1..512")
    return args


# --- set-up --------------------------------------------------------------------------------


class HeartbeatKeeper(threading.Thread):
    """Keep the scheduler heartbeat row fresh (what a leading ``python -m scheduler`` does)."""

    #: Bound on the beats of one run (two hours at the default pace).
    MAX_BEATS = 3600

    def __init__(self, every: float = 2.0) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.every = every
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def beat(self) -> None:
        from sqlalchemy import func
        from sqlalchemy.dialects.postgresql import insert

        from shared.db import session_scope
        from shared.models import SchedulerHeartbeat
        from shared.scheduler_status import HEARTBEAT_NAME

        values = {
            "name": HEARTBEAT_NAME,
            "instance_id": f"bench:{os.getpid()}",
            "hostname": "bench",
            "pid": os.getpid(),
            "leader_since": dt.datetime.now(dt.UTC),
            "beat_at": func.now(),
        }
        stmt = insert(SchedulerHeartbeat).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[SchedulerHeartbeat.name], set_={"beat_at": func.now()}
        )
        with session_scope() as session:
            session.execute(stmt)

    def run(self) -> None:
        for _ in range(self.MAX_BEATS):
            if self.stopped.wait(self.every):
                return
            try:
                self.beat()
            except Exception as exc:  # health then reports 503, which the bench counts
                self.error = exc

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)


def seed_agents(port: int, agents: int) -> str:
    """Register a tenant over HTTP, add agents up to ``agents`` with SQL; return the token."""
    from sqlalchemy import insert, select

    from shared.db import session_scope
    from shared.models import Role, User

    status, body = common.http_request(
        port,
        "POST",
        "/api/auth/register",
        body={
            "organization_name": "Bench Inc",
            "full_name": "Bench Admin",
            "email": "admin@bench.example.com",
            "password": "bench-password-0123456789",
        },
    )
    if status != 201:
        raise common.BenchError(f"POST /api/auth/register answered {status}: {body}")
    token, tenant_id = body["access_token"], body["tenant"]["id"]
    # PERF (of the set-up): one INSERT instead of 99 argon2-hashing POST /api/agents.
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with session_scope() as session:
        role_id = session.scalar(
            select(Role.id).where(Role.tenant_id == tenant_id, Role.name == "agent")
        )
        session.execute(
            insert(User),
            [
                {
                    "tenant_id": tenant_id,
                    "role_id": role_id,
                    "email": f"agent{i:03d}@bench.example.com",
                    "full_name": f"Bench Agent {i:03d}",
                    "avatar_url": f"https://avatars.example.com/{i:03d}.png",
                    "status": "online" if i % 2 else "offline",
                    "created_at": start + dt.timedelta(seconds=i),
                    "updated_at": start + dt.timedelta(seconds=i),
                }
                for i in range(agents - 1)
            ],
        )
    status, page = common.http_request(
        port, "GET", f"/api/agents?limit={agents}", headers={"Authorization": f"Bearer {token}"}
    )
    if status != 200 or len(page.get("items", ())) != agents:
        raise common.BenchError(f"GET /api/agents answered {status}, not {agents} items: {page}")
    return token


# --- the run -------------------------------------------------------------------------------


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    workers = args.web_concurrency or os.cpu_count() or 1
    threads = args.web_threads or 4
    web_env: dict[str, str] = {}
    if args.web_concurrency:
        web_env["WEB_CONCURRENCY"] = str(args.web_concurrency)
    if args.web_threads:
        web_env["WEB_THREADS"] = str(args.web_threads)
    gunicorn = [*common.executable("gunicorn"), "--config", "python:api.gunicorn_conf"]

    with common.Bench("http_api", env, keep_logs=args.keep_logs) as bench:
        keeper = HeartbeatKeeper()
        keeper.beat()
        keeper.start()
        bench.callback(keeper.stop)

        app_port, bare_port, uncached_port = common.free_ports(3)
        started = time.monotonic()
        web = bench.start(
            "web", [*gunicorn, "api.app:create_app()"], {**web_env, "PORT": str(app_port)}
        )
        uncached = bench.start(
            "web-uncached",
            [*gunicorn, "api.app:create_app()"],
            {**web_env, "PORT": str(uncached_port), "AGENTS_LIST_CACHE": "false"},
        )
        bare = bench.start(
            "bare", [*gunicorn, "bench.bare_app:create_app()"], {**web_env, "PORT": str(bare_port)}
        )
        servers = {"web": web, "web-uncached": uncached, "bare": bare}
        for port, child in ((app_port, web), (uncached_port, uncached)):
            health = common.wait_until(
                lambda port=port: common.http_request(port, "GET", "/api/health", timeout=5),
                "GET /api/health answering",
                timeout=90,
                interval=0.2,
                children=[child],
            )
            if health[0] != 200:
                raise common.BenchError(f"GET /api/health answered {health[0]}: {health[1]}")
        common.wait_until(
            lambda: common.http_request(bare_port, "GET", "/", timeout=5)[0] == 200,
            "the bare app answering",
            timeout=90,
            interval=0.2,
            children=[bare],
        )
        print(f"[http_api] gunicorn up in {time.monotonic() - started:.1f} s", flush=True)
        token = seed_agents(app_port, args.agents)

        auth = [f"Authorization: Bearer {token}"]
        plan = {
            "bare": loadrun.Target("bare", bare_port, bare),
            "health": loadrun.Target("health", app_port, web, "/api/health"),
            "agents": loadrun.Target(
                "agents", app_port, web, f"/api/agents?limit={args.agents}", auth
            ),
            "agents-uncached": loadrun.Target(
                "agents-uncached", uncached_port, uncached, f"/api/agents?limit={args.agents}", auth
            ),
        }
        load = loadrun.Load(args.connections, args.warmup, args.duration)
        print(
            f"[http_api] {args.rounds} round(s) x {len(TARGETS)} targets, {args.connections}"
            f" connections, {args.warmup:g} s warm-up + {args.duration:g} s each",
            flush=True,
        )
        results: dict[str, list[dict]] = {name: [] for name in TARGETS}
        discarded: list[dict] = []
        for round_no in range(1, args.rounds + 1):
            order = TARGETS if round_no % 2 else tuple(reversed(TARGETS))
            for name in order:
                result, repeated = loadrun.measure_spread(
                    bench, plan[name], round_no, servers, load, workers=workers
                )
                results[name].append(result)
                discarded += repeated
        combined = {name: loadrun.combine(results[name]) for name in TARGETS}
        combined_discarded = len(discarded)
        if keeper.error is not None:
            print(f"warning: heartbeat refresh failed: {keeper.error!r}")

    return report(args, workers, threads, combined, combined_discarded)


def report(
    args: argparse.Namespace, workers: int, threads: int, combined: dict, discarded: int
) -> int:
    bare = combined["bare"]
    labels = {
        "bare": "bare Falcon GET /",
        "health": "GET /api/health",
        "agents": f"GET /api/agents?limit={args.agents} (auth)",
        "agents-uncached": f"GET /api/agents?limit={args.agents} (auth, cache off)",
    }
    loadrun.print_results(
        f"HTTP API under gunicorn gthread: {workers} processes x {threads} threads,"
        f" {args.connections} keep-alive connections, {args.rounds} x {args.duration:g} s"
        f" per target ({os.cpu_count()} CPUs); pg CPU: every postgres process (this run's"
        " database's backends)",
        {labels[name]: c for name, c in combined.items()},
        labels["bare"],
    )
    ratios = {name: c["rps"] / bare["rps"] for name, c in combined.items() if name != "bare"}
    list_ratio = ratios["agents"]
    print(
        "\nratios (same run), req/s vs bare: "
        + ", ".join(f"{name} {100 * ratio:.1f} %" for name, ratio in ratios.items())
        + "; server CPU per request vs bare: "
        + ", ".join(
            f"{name} {c['server_cpu_ms_per_req'] / bare['server_cpu_ms_per_req']:.1f} x"
            for name, c in combined.items()
            if name != "bare"
        )
    )
    if discarded:
        print(
            f"{discarded} measurement(s) repeated because a gunicorn process held none of the"
            " connections (keep-alive connections stay with the process that accepted them)"
        )
    if bare["client_cpu_pct"] > 85:
        print(
            f"warning: the load generator used {bare['client_cpu_pct']:.0f} % of a core on the"
            " bare target: it may be what limits the baseline"
        )
    targets = [
        common.Target(
            "authenticated list req/s / bare req/s",
            f"{100 * list_ratio:.1f} %",
            f">= {100 * LIST_RATIO_GOAL:.0f} %",
            list_ratio >= LIST_RATIO_GOAL,
        ),
        *(
            common.Target(f"errors on {labels[name]}", str(c["errors"]), "0", c["errors"] == 0)
            for name, c in combined.items()
        ),
    ]
    passed = common.print_targets("Targets (bench/http_api.py)", targets)
    common.write_json(
        args.json_out,
        {
            "benchmark": "http_api",
            "settings": {
                "workers": workers,
                "threads": threads,
                "connections": args.connections,
                "rounds": args.rounds,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "agents": args.agents,
            },
            "results": combined,
            "ratios": {f"{name}_vs_bare": ratio for name, ratio in ratios.items()},
            "repeated_measurements": discarded,
            "targets": [t.__dict__ for t in targets],
        },
    )
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
