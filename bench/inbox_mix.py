"""The inbox client's traffic mix under gunicorn, against the bare Falcon app in the same run.

What a real inbox front end sends, per 100 requests (``MIX``)::

    40 inbox     GET  /api/conversations?status=open&assignee_id=me&limit=25 (first page,
                      or a next page: a cursor from the agent's own walk)
    25 messages  GET  /api/conversations/{id}/messages?limit=25
    10 get       GET  /api/conversations/{id}
    10 reply     POST /api/conversations/{id}/messages  (201: committed, event enqueued;
                      the text drawn as the built data's agents' messages are)
     2 note      POST /api/conversations/{id}/notes
     2 status    PATCH /api/conversations/{id}/status  (pending, and back to open)
     1 assign    PATCH /api/conversations/{id}/assignment  (a supervisor moves it, and back)
     5 agents    GET  /api/agents
     3 contact   GET  /api/contacts/{id}
     2 search    GET  /api/messages/search?q=...&limit=20

by every agent of two tenants (``--agents`` each) built with ``shared.demo`` like
``bench/inbox.py`` (default 100,000 conversations and 1,000,000 messages per tenant).
Each agent works on its own inbox: the conversations and cursors of its first pages,
walked over HTTP before the run (so every id is one that agent may see). Writes really
change state, so they are built to keep doing so when the mix is cycled: a status
request sets ``pending`` and the one half a mix later sets ``open`` again; an
assignment moves a conversation to another agent and half a mix later back. Replies go
to non-WhatsApp conversations (no 24-hour window to mind); no worker runs, so their
events stay queued in this run's Redis namespace.

Phases, both through gunicorn with the Procfile's settings (``api.gunicorn_conf``):

1. peak: closed loop (``--connections``, one request in flight each), the mix and
   ``bench/bare_app.py`` in alternating rounds; req/s, p50/p99 per kind, server and
   PostgreSQL CPU per request;
2. paced: open loop (``bench/loadgen.py --rate``) at ``--paced-fraction`` (70 %) of the
   mix's measured peak, latencies counted from when each request was due; p50/p99 per kind.

Targets: mix req/s >= 20 % of bare req/s; p99 < 50 ms for every kind while paced; no errors.

``--floor`` also measures, in the same peak rounds, the *floor*: ``GET /api/agents`` with the
mix's agents' tokens, a page every process serves from its read cache. It pays what every
authenticated request pays (routing, middleware, the token, the session, an epoch read,
rendering) and no query, so the mix's distance to the floor is its work, and the floor's
distance to bare is the platform's per-request overhead.

Run (PostgreSQL and Redis on 127.0.0.1)::

    .venv/bin/python bench/inbox_mix.py                   # builds 2 x (100k, 1M): minutes
    .venv/bin/python bench/inbox_mix.py --keep-db         # build once, reuse while iterating
    .venv/bin/python bench/inbox_mix.py --conversations 10000 --messages 100000 --duration 5

The default run creates and drops ``omnistream_bench_<random>``; ``--keep-db`` uses
``omnistream_bench_keep_inbox_mix_<volume>`` and never drops it (drop it by hand). A run
on a kept database measures a copy of it (``omnistream_bench_<random>``, ~1 s to make,
dropped after), so every run starts from the data as built.
Exit status: 0 all targets pass, 1 a target failed, 2 error.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common, loadrun
from bench.inbox import COMMON_WORDS, PHRASES, add_volume_arguments, build_tenants, login
from shared.demo import CITIES, ITEMS, OUTBOUND

#: Requests per 100, by kind (the order is the report's).
MIX = {
    "inbox": 40,
    "messages": 25,
    "get": 10,
    "reply": 10,
    "note": 2,
    "status": 2,
    "assign": 1,
    "agents": 5,
    "contact": 3,
    "search": 2,
}
RATIO_GOAL = 0.20
P99_GOAL_MS = 50.0
PAGE = 25
#: Inbox pages walked per agent to draw cursors and conversations from.
WALK_PAGES = 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_volume_arguments(parser)
    parser.add_argument("--agents", type=int, default=20, help="agents per tenant, all active")
    parser.add_argument("--mixes", type=int, default=60, help="mixes of 100 in the cycled file")
    parser.add_argument("--rounds", type=int, default=2, help="peak rounds (mix and bare)")
    parser.add_argument("--connections", type=int, default=32, help="closed loop (peak)")
    parser.add_argument("--paced-connections", type=int, default=64, help="open loop")
    parser.add_argument("--warmup", type=float, default=2.0, help="s before each window")
    parser.add_argument("--duration", type=float, default=10.0, help="s per peak window")
    parser.add_argument("--paced-duration", type=float, default=20.0, help="s paced")
    parser.add_argument("--paced-fraction", type=float, default=0.7, help="of the mix's peak")
    parser.add_argument(
        "--paced-rate",
        type=float,
        help="req/s paced instead of --paced-fraction: the same offered load for two versions"
        " of the code, whose peaks differ",
    )
    parser.add_argument("--keep-db", action="store_true", help="reuse (and keep) the data")
    parser.add_argument(
        "--web-concurrency",
        type=int,
        help="gunicorn processes of both servers (WEB_CONCURRENCY; default: the Procfile's)",
    )
    parser.add_argument(
        "--web-threads",
        type=int,
        help="threads per gunicorn process of both servers (WEB_THREADS; default: the Procfile's)",
    )
    parser.add_argument(
        "--database",
        help="with --keep-db: the kept database's name (default: one named after the volume),"
        " so engineers sharing a server keep their own",
    )
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        help="diagnosis: replay N requests of the mix in-process (cProfile, CPU per kind)"
        " instead of measuring",
    )
    parser.add_argument(
        "--profile-kinds",
        help="with --profile (and --profile-ab): only these kinds (comma-separated)",
    )
    parser.add_argument(
        "--profile-threads",
        type=int,
        default=1,
        metavar="T",
        help="with --profile: also replay the N requests on T threads at once and compare the"
        " process's CPU per request with one thread (what a gunicorn process's threads add)",
    )
    parser.add_argument(
        "--profile-out", help="with --profile: also write the cProfile stats to this file"
    )
    parser.add_argument(
        "--profile-ab",
        metavar="DIR",
        help="with --profile: replay N requests in two processes, this code and the checkout"
        " in DIR (say `git worktree add /tmp/base main`), alternating slices; CPU per request"
        " (app and this database's PostgreSQL backends) per kind, side by side",
    )
    parser.add_argument(
        "--profile-slice", type=int, default=300, help="with --profile-ab: requests per slice"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure an authenticated request that runs no query (GET /api/agents, cached)"
        " in every peak round: splits the gap to bare into per-request overhead and the work",
    )
    parser.add_argument("--json-out", help="also write the figures as JSON to this file")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    if not (1 <= args.tenants <= 4 and 2 <= args.agents <= 99 and 2 <= args.mixes <= 1000):
        parser.error("--tenants 1..4, --agents 2..99, --mixes 2..1000")
    if args.mixes % 2:
        parser.error("--mixes must be even (each write's undo is half the mixes later)")
    if not (1 <= args.rounds <= 20 and 0 < args.duration <= 600 and args.paced_duration > 0):
        parser.error("--rounds 1..20, --duration (0, 600] s, --paced-duration > 0")
    if not 0 < args.paced_fraction <= 1:
        parser.error("--paced-fraction within (0, 1]")
    if args.paced_rate is not None and args.paced_rate <= 0:
        parser.error("--paced-rate > 0")
    if args.database and not args.keep_db:
        parser.error("--database names a kept database: use it with --keep-db")
    return args


def kept_database(args: argparse.Namespace) -> str | None:
    if not args.keep_db:
        return None
    if args.database:
        return args.database
    return (
        f"omnistream_bench_keep_inbox_mix_{args.tenants}x{args.conversations}"
        f"_{args.messages}_{args.agents}_{args.seed}"
    )


# --- the agents' pools ---------------------------------------------------------------------


class Agent:
    """One agent's token and what it has seen of its inbox: cursors and conversations."""

    def __init__(self, tenant_index: int, token: str, user_id: str) -> None:
        self.tenant_index = tenant_index
        self.token = token
        self.user_id = user_id
        self.cursors: list[str] = []
        self.conversations: list[dict] = []

    def walk(self, port: int) -> None:
        cursor = None
        for _ in range(WALK_PAGES):
            query = {"status": "open", "assignee_id": "me", "limit": PAGE}
            if cursor:
                query["cursor"] = cursor
            status, body = common.http_request(
                port, "GET", f"/api/conversations?{urlencode(query)}", headers=self.headers()
            )
            if status != 200:
                raise common.BenchError(f"the inbox walk answered {status}: {body}")
            self.conversations += body["items"]
            cursor = body["next_cursor"]
            if not cursor:
                return
            self.cursors.append(cursor)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def sign_in(port: int, tenants: list, agents_per_tenant: int) -> tuple[list[Agent], list[str]]:
    """Every agent's token and inbox walk, and each tenant admin's token."""
    agents, admins = [], []
    for index, tenant in enumerate(tenants):
        admins.append(login(port, tenant.admin_email, tenant.password))
        for email, user_id in zip(
            tenant.agent_emails[:agents_per_tenant],
            tenant.agent_ids[:agents_per_tenant],
            strict=True,
        ):
            agent = Agent(index, login(port, email, tenant.password), str(user_id))
            agent.walk(port)
            if not agent.conversations:
                raise common.BenchError(f"{email} has no open conversation to work on")
            agents.append(agent)
    return agents, admins


def assignment_pool(tenants: list, agents: list[Agent], count: int, rng: random.Random):
    """Open conversations no agent walked: (tenant index, id, assignee, the other agent).

    A supervisor moves them between two agents; none of them is in an agent's pools,
    so no other request of the mix finds one hidden by a move.
    """
    from sqlalchemy import select

    from shared.db import session_scope
    from shared.models.inbox import Conversation

    walked = {c["id"] for a in agents for c in a.conversations}
    pool = []
    with session_scope() as session:
        for index, tenant in enumerate(tenants):
            team = [a.user_id for a in agents if a.tenant_index == index]
            rows = session.execute(
                select(Conversation.id, Conversation.assignee_id)
                .where(
                    Conversation.tenant_id == tenant.tenant_id,
                    Conversation.status == "open",
                    Conversation.assignee_id.in_(team),
                    Conversation.id.not_in(walked),
                )
                .order_by(Conversation.created_at.desc())
                .limit(count)
            ).all()
            for conversation_id, assignee in rows:
                other = rng.choice([t for t in team if t != str(assignee)])
                pool.append((index, str(conversation_id), str(assignee), other))
    rng.shuffle(pool)
    return pool[:count]


# --- the mix file --------------------------------------------------------------------------


def floor_requests(agents: list[Agent]) -> list[dict]:
    """``GET /api/agents`` once per agent: the floor's requests (see ``--floor``)."""
    return [
        {"kind": "floor", "method": "GET", "target": "/api/agents", "headers": a.headers()}
        for a in agents
    ]


def reply_text(rng: random.Random) -> str:
    """A reply's body, drawn as the built data's agents' messages are (``shared.demo``).

    WHY: replies become their tenant's newest messages, the window every search reads
    first. One fixed sentence ("On it: order ref12345 ships today.") made every reply
    match "order" and a reference, so within a run an agent's search for "order" read a
    window of matches and probed each one's conversation: on a kept database the paced
    search p99 went from 42 ms (a fresh build's run) to 87-104 ms (its fourth and fifth).
    """
    return rng.choice(OUTBOUND).format(
        ref=f"ref{rng.randrange(100_000):05d}", city=rng.choice(CITIES), item=rng.choice(ITEMS)
    )


def build_mix(
    agents: list[Agent], admins: list[str], assignments: list, mixes: int, rng: random.Random
) -> list[dict]:
    """``mixes`` shuffled blocks of 100 requests in the ``MIX`` proportions, as loadgen specs."""
    kinds: list[str] = []
    for _ in range(mixes):
        block = [kind for kind, count in MIX.items() for _ in range(count)]
        rng.shuffle(block)
        kinds += block
    half = len(kinds) // 2
    ordinals: dict[tuple[str, bool], int] = {}
    toggled_status: dict[int, tuple[Agent, str]] = {}
    specs = []
    for position, kind in enumerate(kinds):
        agent = rng.choice(agents)
        conversation = rng.choice(agent.conversations)
        auth = agent.headers()
        cid = conversation["id"]
        if kind == "inbox":
            query = {"status": "open", "assignee_id": "me", "limit": PAGE}
            # A front end opens the inbox more often than it scrolls it.
            if agent.cursors and rng.random() < 0.4:
                query["cursor"] = rng.choice(agent.cursors)
            spec = ("GET", f"/api/conversations?{urlencode(query)}", None)
        elif kind == "messages":
            spec = ("GET", f"/api/conversations/{cid}/messages?limit={PAGE}", None)
        elif kind == "get":
            spec = ("GET", f"/api/conversations/{cid}", None)
        elif kind == "reply":
            writable = [c for c in agent.conversations if c["channel"] != "whatsapp"]
            target = rng.choice(writable or agent.conversations)["id"]
            body = {"body": reply_text(rng)}
            spec = ("POST", f"/api/conversations/{target}/messages", body)
        elif kind == "note":
            body = {"body": f"Customer called about ref{rng.randrange(100_000):05d}."}
            spec = ("POST", f"/api/conversations/{cid}/notes", body)
        elif kind == "status":
            # Set pending in the first half; the same request of the second half (the
            # one with the same ordinal) sets it open again.
            slot = ordinals.get((kind, position < half), 0)
            if position < half:
                toggled_status[slot] = (agent, cid)
            agent, cid = toggled_status.get(slot, (agent, cid))
            status = "pending" if position < half else "open"
            spec = ("PATCH", f"/api/conversations/{cid}/status", {"status": status})
            auth = agent.headers()
        elif kind == "assign":
            # A supervisor moves it to another agent, and half a mix later back.
            slot = ordinals.get((kind, position < half), 0)
            if not assignments:
                raise common.BenchError("no conversation to move between agents")
            tenant_index, target, assignee, other = assignments[slot % len(assignments)]
            auth = {"Authorization": f"Bearer {admins[tenant_index]}"}
            to = other if position < half else assignee
            spec = ("PATCH", f"/api/conversations/{target}/assignment", {"assignee_id": to})
        elif kind == "agents":
            spec = ("GET", "/api/agents", None)
        elif kind == "contact":
            spec = ("GET", f"/api/contacts/{conversation['contact']['id']}", None)
        else:  # search
            roll = rng.random()
            q = (
                rng.choice(COMMON_WORDS)
                if roll < 0.4
                else rng.choice(PHRASES)
                if roll < 0.7
                else f"ref{rng.randrange(100_000):05d}"
            )
            spec = ("GET", f"/api/messages/search?{urlencode({'q': q, 'limit': 20})}", None)
        ordinals[kind, position < half] = ordinals.get((kind, position < half), 0) + 1
        method, target_path, body = spec
        specs.append(
            {"kind": kind, "method": method, "target": target_path, "headers": auth, "body": body}
        )
    return specs


def preflight(port: int, specs: list[dict]) -> None:
    """Send the first request of each kind once: a kind that fails is a bench error, now."""
    seen = set()
    for spec in specs:
        if spec["kind"] in seen or spec["kind"] in ("status", "assign"):
            continue  # NOTE: a toggle sent out of turn would make its pair a no-op.
        seen.add(spec["kind"])
        status, body = common.http_request(
            port, spec["method"], spec["target"], body=spec["body"], headers=spec["headers"]
        )
        if not 200 <= status < 300:
            raise common.BenchError(
                f"{spec['kind']}: {spec['method']} {spec['target']} answered {status}: {body}"
            )


def profile(specs: list[dict], count: int, stats_file: str | None = None, threads: int = 1) -> int:
    """Replay ``count`` requests of the mix in-process: CPU per kind and where it goes."""
    import cProfile
    import io
    import pstats

    import falcon.testing

    import shared.epoch_cache
    from api.app import create_app

    # NOTE: entries live TTL_SECONDS of wall time; on a loaded box a one-thread replay is
    # so slow that most tokens' auth entries expired between uses (2 of 3 requests paid
    # the JWT check and its query), where a server at the mix's rate hits nearly always.
    shared.epoch_cache.TTL_SECONDS = 120.0
    app = create_app()
    cpu: dict[str, list[float]] = {
        kind: [] for kind in MIX if any(s["kind"] == kind for s in specs)
    }
    profiler = cProfile.Profile(time.process_time)
    # NOTE: the WSGI app is called with environs built once: falcon.testing's client
    # lints every call (wsgiref.validate) and inspects the app, ~0.2 ms CPU a request
    # that no server pays and that would be charged to the app here.
    environs = []
    for spec in specs:
        body = json.dumps(spec["body"]).encode() if spec["body"] is not None else b""
        path, _, query = spec["target"].partition("?")
        headers = dict(spec["headers"], **({"Content-Type": "application/json"} if body else {}))
        environ = falcon.testing.create_environ(
            path=path, query_string=query, method=spec["method"], headers=headers
        )
        environs.append((environ, body))

    def replay(index: int, profiled: bool) -> float:
        spec = specs[index % len(specs)]
        environ, body = environs[index % len(specs)]
        environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        statuses: list[str] = []
        started = time.process_time()
        if profiled:
            profiler.enable()
        chunks = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(chunks)
        profiler.disable()
        if not statuses[0].startswith("2"):
            raise common.BenchError(f"{spec['kind']} {spec['target']}: {statuses[0]}")
        return time.process_time() - started

    for index in range(min(200, count)):  # warm-up: caches, prepared statements
        replay(index, False)
    for index in range(count):  # timed without the profiler's overhead
        cpu[specs[index % len(specs)]["kind"]].append(replay(index, False))
    if threads > 1:
        compare_threads(replay, count, threads)
    for index in range(count):
        replay(index, True)
    # NOTE: this process counted the replies' enqueues; written now, not at exit, when the
    # bench has already deleted its Redis namespace.
    import dramatiq

    from workers.metrics import Metrics

    for middleware in dramatiq.get_broker().middleware:
        if isinstance(middleware, Metrics):
            middleware.flush()
    common.print_table(
        f"CPU per request in-process (the WSGI app called directly, one thread, {count} requests)",
        ["kind", "requests", "CPU ms mean", "CPU ms p50", "share of the mix's CPU"],
        [
            (
                kind,
                len(times),
                common.fmt(1000 * sum(times) / max(len(times), 1), 3),
                common.fmt(1000 * common.percentile(sorted(times), 50), 3),
                f"{100 * sum(times) / sum(map(sum, cpu.values())):.1f} %",
            )
            for kind, times in cpu.items()
        ],
    )
    if stats_file:
        profiler.dump_stats(stats_file)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative").print_stats(60)
    print(out.getvalue())
    return common.EXIT_PASS


def profile_ab(bench: common.Bench, mix_file: Path, args: argparse.Namespace) -> int:
    """This code against the checkout ``args.profile_ab``, in two processes, same minutes.

    Each side replays the same slices of the mix in turn (``--profile-slice`` requests,
    the first side alternating), so both see the same load, data drift and caches; CPU
    is the process's own (``time.process_time``) and, per slice, that of this database's
    backends (only the replaying side is busy then).
    """
    import subprocess

    sides = {"base": str(Path(args.profile_ab).resolve()), "this": str(common.REPO_ROOT)}
    replayer = str(Path(__file__).resolve().parent / "mix_replay.py")
    procs = {
        name: subprocess.Popen(
            [sys.executable, replayer, "--code", code, "--specs", str(mix_file)],
            cwd=code,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, code in sides.items()
    }
    for proc in procs.values():
        bench.callback(proc.kill)
    for name, proc in procs.items():
        if proc.stdout.readline().strip() != "ready":
            raise common.BenchError(f"the {name} replayer did not start")
    meter = common.CpuMeter({}, bench.env.database_url)
    app_cpu: dict[str, dict[str, list[float]]] = {name: {} for name in sides}
    pg_cpu = dict.fromkeys(sides, 0.0)
    loads = [os.getloadavg()[0]]
    #: Per slice, this side's app CPU over the base's for the same requests.
    ratios: list[float] = []
    slices = max(1, args.profile // args.profile_slice)
    for number in range(slices):
        order = list(sides) if number % 2 else list(reversed(sides))
        slice_cpu = {}
        for name in order:
            start = meter.sample()
            procs[name].stdin.write(f"{number * args.profile_slice} {args.profile_slice}\n")
            procs[name].stdin.flush()
            spent = json.loads(procs[name].stdout.readline())
            pg_cpu[name] += common.CpuMeter.usage(start, meter.sample()).postgres_database
            for kind, times in spent.items():
                app_cpu[name].setdefault(kind, []).extend(times)
            slice_cpu[name] = sum(map(sum, spent.values()))
        ratios.append(slice_cpu["this"] / slice_cpu["base"])
        loads.append(os.getloadavg()[0])
    for proc in procs.values():
        proc.stdin.write("\n")
        proc.stdin.flush()
    requests = slices * args.profile_slice

    def per_request(name: str, kind: str | None = None) -> float:
        if kind is None:
            return 1000 * sum(map(sum, app_cpu[name].values())) / requests
        times = app_cpu[name].get(kind, [])
        return 1000 * sum(times) / max(len(times), 1)

    rows = [
        (
            kind,
            len(app_cpu["this"].get(kind, [])),
            common.fmt(per_request("base", kind), 3),
            common.fmt(per_request("this", kind), 3),
            f"{100 * (per_request('this', kind) / per_request('base', kind) - 1):+.1f} %",
        )
        for kind in MIX
        if kind in app_cpu["this"]
    ]
    rows.append(
        (
            "mix (app)",
            requests,
            common.fmt(per_request("base"), 3),
            common.fmt(per_request("this"), 3),
            f"{100 * (per_request('this') / per_request('base') - 1):+.1f} %",
        )
    )
    pg = {name: 1000 * pg_cpu[name] / requests for name in sides}
    rows.append(
        (
            "mix (PostgreSQL)",
            requests,
            common.fmt(pg["base"], 3),
            common.fmt(pg["this"], 3),
            f"{100 * (pg['this'] / pg['base'] - 1):+.1f} %" if pg["base"] else "-",
        )
    )
    ratios.sort()
    rows.append(
        (
            "mix (app), per slice",
            requests,
            "",
            "",
            f"median {100 * (common.percentile(ratios, 50) - 1):+.1f} %, quartiles"
            f" {100 * (common.percentile(ratios, 25) - 1):+.1f} /"
            f" {100 * (common.percentile(ratios, 75) - 1):+.1f} %",
        )
    )
    common.print_table(
        f"CPU ms per request in-process, {sides['base']} (base) vs this code, {slices} alternating"
        f" slices of {args.profile_slice} (load average {min(loads):.1f}-{max(loads):.1f})",
        ["kind", "requests a side", "base", "this", "change"],
        rows,
    )
    return common.EXIT_PASS


def compare_threads(replay, count: int, threads: int, passes: int = 3) -> None:
    """The process's CPU per request replaying on one thread, then on ``threads`` at once.

    Alternating passes of the same ``count`` requests; process CPU (every thread's, user
    and system) over the pass. What a gunicorn worker's threads cost beyond the requests'
    own work (GIL hand-offs, waking each other) shows as the difference.
    """
    import threading

    def run_pass(width: int) -> tuple[float, float]:
        def work(offset: int) -> None:
            for index in range(offset, count, width):
                replay(index, False)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(width)]
        cpu, wall = time.process_time(), time.monotonic()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return time.process_time() - cpu, time.monotonic() - wall

    figures: dict[int, list[tuple[float, float]]] = {1: [], threads: []}
    for _ in range(passes):
        for width in (1, threads):
            figures[width].append(run_pass(width))
    common.print_table(
        f"CPU per request, the same {count} requests on 1 and {threads} threads ({passes}"
        " alternating passes each; process CPU, every thread)",
        ["threads", "CPU ms per request (each pass)", "mean", "req/s (wall)"],
        [
            (
                width,
                " / ".join(f"{1000 * cpu / count:.3f}" for cpu, _ in runs),
                f"{1000 * sum(cpu for cpu, _ in runs) / (count * len(runs)):.3f}",
                f"{count * len(runs) / sum(wall for _, wall in runs):,.0f}",
            )
            for width, runs in figures.items()
        ],
    )


# --- the run -------------------------------------------------------------------------------


def _wait_answering(port: int, path: str, child: common.Child) -> None:
    common.wait_until(
        lambda: common.http_request(port, "GET", path, timeout=5)[0] in (200, 503),
        f"{child.name} answering",
        timeout=90,
        interval=0.2,
        children=[child],
    )


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    rng = random.Random(args.seed)
    # NOTE: the same settings for the app and the bare app, so the ratio compares like with like.
    settings = {"WEB_CONCURRENCY": args.web_concurrency, "WEB_THREADS": args.web_threads}
    server_env = {name: str(value) for name, value in settings.items() if value is not None}
    workers = args.web_concurrency or os.cpu_count() or 1
    bench = common.Bench("inbox_mix", env, keep_logs=args.keep_logs, keep_database=args.keep_db)
    with bench:
        tenants, build_seconds = build_tenants(
            bench,
            conversations=args.conversations,
            messages=args.messages,
            tenants=args.tenants,
            agents=args.agents,
            seed=args.seed,
        )
        if args.keep_db:
            seconds = bench.run_on_copy()
            print(
                f"[inbox_mix] measuring a copy of the kept database ({seconds:.1f} s):"
                " this run's writes leave it as built",
                flush=True,
            )
        app_port, bare_port = common.free_ports(2)
        gunicorn = [*common.executable("gunicorn"), "--config", "python:api.gunicorn_conf"]
        web = bench.start(
            "web", [*gunicorn, "api.app:create_app()"], {**server_env, "PORT": str(app_port)}
        )
        bare = bench.start(
            "bare",
            [*gunicorn, "bench.bare_app:create_app()"],
            {**server_env, "PORT": str(bare_port)},
        )
        servers = {"web": web, "bare": bare}
        _wait_answering(app_port, "/api/health", web)
        _wait_answering(bare_port, "/", bare)
        started = time.monotonic()
        agents, admins = sign_in(app_port, tenants, args.agents)
        assignments = assignment_pool(tenants, agents, args.mixes * MIX["assign"], rng)
        specs = build_mix(agents, admins, assignments, args.mixes, rng)
        mix_file = bench.log_dir / "mix.jsonl"
        mix_file.write_text("".join(json.dumps(s) + "\n" for s in specs))
        preflight(app_port, specs)
        kinds = set((args.profile_kinds or ",".join(MIX)).split(","))
        if args.profile and args.profile_ab:
            replayed = bench.log_dir / "replayed.jsonl"
            replayed.write_text("".join(json.dumps(s) + "\n" for s in specs if s["kind"] in kinds))
            return profile_ab(bench, replayed, args)
        if args.profile:
            return profile(
                [s for s in specs if s["kind"] in kinds],
                args.profile,
                args.profile_out,
                args.profile_threads,
            )
        print(
            f"[inbox_mix] {len(agents)} agents signed in, {len(specs):,} requests in the mix"
            f" ({time.monotonic() - started:.1f} s)",
            flush=True,
        )

        plan = {
            "mix": loadrun.Target("mix", app_port, web, requests_file=mix_file),
            "bare": loadrun.Target("bare", bare_port, bare),
        }
        if args.floor:
            floor_file = bench.log_dir / "floor.jsonl"
            floor_file.write_text("".join(json.dumps(s) + "\n" for s in floor_requests(agents)))
            plan["floor"] = loadrun.Target("floor", app_port, web, requests_file=floor_file)
        names = tuple(plan)
        peak = loadrun.Load(args.connections, args.warmup, args.duration)
        print(
            f"[inbox_mix] peak: {args.rounds} round(s) x ({', '.join(names)}),"
            f" {args.connections} connections, {args.warmup:g} s warm-up + {args.duration:g} s"
            " each",
            flush=True,
        )
        results: dict[str, list[dict]] = {name: [] for name in names}
        repeated = 0
        for round_no in range(1, args.rounds + 1):
            for name in names if round_no % 2 else names[::-1]:
                result, discarded = loadrun.measure_spread(
                    bench, plan[name], round_no, servers, peak, workers=workers
                )
                results[name].append(result)
                repeated += len(discarded)
        combined = {name: loadrun.combine(rs) for name, rs in results.items()}

        rate = args.paced_fraction * combined["mix"]["rps"]
        if args.paced_rate:
            # The report names the paced load by its share of this run's peak.
            rate, args.paced_fraction = args.paced_rate, args.paced_rate / combined["mix"]["rps"]
        print(
            f"[inbox_mix] paced: {rate:,.1f} req/s ({100 * args.paced_fraction:.0f} % of the"
            f" mix's peak), open loop over {args.paced_connections} connections,"
            f" {args.paced_duration:g} s",
            flush=True,
        )
        paced_load = loadrun.Load(args.paced_connections, args.warmup, args.paced_duration, rate)
        paced = loadrun.combine(
            [loadrun.measure(bench, plan["mix"], 1, servers, paced_load, label="paced")]
        )
    return report(args, workers, build_seconds, combined, paced, rate, repeated)


def report(
    args: argparse.Namespace,
    workers: int,
    build_seconds: float,
    combined: dict,
    paced: dict,
    rate: float,
    repeated: int,
) -> int:
    mix, bare = combined["mix"], combined["bare"]
    ratio = mix["rps"] / bare["rps"]
    threads = args.web_threads or "the Procfile's"
    loadrun.print_results(
        f"Peak, closed loop: gunicorn {workers} processes x {threads} threads,"
        f" {args.connections} connections, {args.rounds} x {args.duration:g} s per target;"
        f" {args.tenants} x ({args.conversations:,} conversations, {args.messages:,} messages)"
        f"{f', built in {build_seconds:.0f} s' if build_seconds else ', kept database'};"
        f" {os.cpu_count()} CPUs; pg CPU: every postgres process (this run's database's"
        " backends)",
        combined,
        "bare",
    )
    common.print_table(
        f"Per kind: peak (closed loop) and paced at {rate:,.1f} req/s (open loop,"
        f" {args.paced_connections} connections, {args.paced_duration:g} s; achieved"
        f" {paced['rps']:,.1f} req/s, machine busy {paced['machine_busy_pct']:.0f} %,"
        f" {paced.get('backlogged', 0):,} requests waited for a connection)",
        [
            "kind",
            "share",
            "peak req/s",
            "peak p50 ms",
            "peak p99 ms",
            "paced requests",
            "paced p50 ms",
            "paced p99 ms",
            "paced max ms",
            "errors",
        ],
        [
            (
                kind,
                f"{share} %",
                common.fmt(mix["kinds"][kind]["rps"]),
                common.fmt(mix["kinds"][kind]["p50_ms"], 2),
                common.fmt(mix["kinds"][kind]["p99_ms"], 2),
                paced["kinds"][kind]["requests"],
                common.fmt(paced["kinds"][kind]["p50_ms"], 2),
                common.fmt(paced["kinds"][kind]["p99_ms"], 2),
                common.fmt(paced["kinds"][kind]["max_ms"], 1),
                mix["kinds"][kind]["errors"] + paced["kinds"][kind]["errors"],
            )
            for kind, share in MIX.items()
        ],
    )
    print(
        f"\nmix vs bare (same run): {100 * ratio:.1f} % of bare req/s; server CPU per request"
        f" {mix['server_cpu_ms_per_req']:.3f} vs {bare['server_cpu_ms_per_req']:.3f} ms"
        f" ({mix['server_cpu_ms_per_req'] / bare['server_cpu_ms_per_req']:.1f} x), PostgreSQL"
        f" {mix['postgres_database_cpu_ms_per_req']:.3f} ms per mix request (this run's"
        f" database's backends; every postgres process: {mix['postgres_cpu_ms_per_req']:.3f})"
    )
    if "floor" in combined:
        floor_cpu = combined["floor"]["server_cpu_ms_per_req"]
        overhead = floor_cpu - bare["server_cpu_ms_per_req"]
        work = mix["server_cpu_ms_per_req"] - floor_cpu
        print(
            "floor (GET /api/agents, cached, the mix's tokens):"
            f" {100 * combined['floor']['rps'] / bare['rps']:.1f} % of bare req/s; server CPU"
            f" per request {floor_cpu:.3f} ms: {overhead:.3f} ms is every authenticated"
            f" request's overhead, {work:.3f} ms the mix's work above it (and PostgreSQL's"
            f" {mix['postgres_database_cpu_ms_per_req']:.3f} ms)"
        )
    if repeated:
        print(f"{repeated} peak measurement(s) repeated: a gunicorn process held no connection")
    targets = [
        common.Target(
            "mix req/s / bare req/s",
            f"{100 * ratio:.1f} %",
            f">= {100 * RATIO_GOAL:.0f} %",
            ratio >= RATIO_GOAL,
        ),
        *(
            common.Target(
                f"{kind} p99 at {100 * args.paced_fraction:.0f} % of peak",
                f"{common.fmt(paced['kinds'][kind]['p99_ms'])} ms",
                f"< {P99_GOAL_MS:g} ms",
                paced["kinds"][kind]["p99_ms"] < P99_GOAL_MS,
            )
            for kind in MIX
        ),
        common.Target(
            "errors (peak + paced)",
            str(mix["errors"] + paced["errors"]),
            "0",
            mix["errors"] + paced["errors"] == 0,
        ),
    ]
    passed = common.print_targets("Targets (bench/inbox_mix.py)", targets)
    common.write_json(
        args.json_out,
        {
            "benchmark": "inbox_mix",
            "settings": {k: v for k, v in vars(args).items() if k != "json_out"},
            "mix": MIX,
            "peak": combined,
            "paced": {**paced, "rate": rate},
            "ratio_vs_bare": ratio,
            "targets": [t.__dict__ for t in targets],
        },
    )
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv, database=kept_database)


if __name__ == "__main__":
    sys.exit(main())
