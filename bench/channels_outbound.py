"""Outbound sends per second through the real worker, beside a bare httpx POST loop.

What it measures, in one run, against one fake Graph API server (tests/peers/graph.py,
threaded http.server in this process):

- engine: ``--messages`` queued WhatsApp text messages committed through the normal
  path (``create_outbound_message``: row + message.created in one transaction, batches
  of ``--batch``), a real worker (``dramatiq workers.main --processes P --threads T``)
  doing dispatch_event -> send_outbound -> POST /{phone-number-id}/messages -> status
  ``sent``. sends/s = messages / (last arrival at the fake - first commit); "recorded"
  is the same up to the moment every message reads ``sent`` in Postgres. ``commit_s`` is how
  long the commits themselves took: when it is close to the span, the commits (this
  process, the inbox's code) bound the figure, not the send path.
- drain: the same number committed while no worker runs, then a worker started; sends/s
  from the first to the last arrival at the fake: the send path's own rate.
  The worker runs with ``OUTBOUND_SEND_THREADS`` = ``--threads``: at most P x T sends in
  flight, as in the baseline.
- baseline: the same payloads POSTed with one shared httpx client from P x T threads
  in a child process, as the worker's are (no database, no broker): the ceiling the fake
  server and loopback allow at that concurrency.

The fake answers every send after ``--graph-latency-ms`` (default
:data:`bench.common.GRAPH_LATENCY_MS`, Meta's own time to answer; 0: CPU-bound), the
engine and the baseline alike.

Run::

    .venv/bin/python bench/channels_outbound.py                 # 2,000 messages, 1 x 8
    .venv/bin/python bench/channels_outbound.py --messages 500 --threads 4

Exit status: 0 measured, 2 error (no target: the figure is reported as a ratio).
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=100, help="messages per transaction")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument(
        "--graph-latency-ms",
        type=float,
        default=common.GRAPH_LATENCY_MS,
        help="how long the fake Graph API takes to answer a send (0: at once)",
    )
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


def setup(env: common.BenchEnv) -> tuple[uuid.UUID, str, list[uuid.UUID]]:
    """A tenant with a WhatsApp account and 20 open conversations; (tenant, phone id, convs)."""
    from shared.channels import accounts
    from shared.context import Ctx
    from shared.db import session_scope
    from shared.models import Contact, Conversation, Tenant

    with session_scope() as session:
        tenant = Tenant(name="Outbound bench", slug=f"outbound-bench-{env.run_id}")
        session.add(tenant)
        session.flush()
        ctx = Ctx.system(tenant.id)
        phone_number_id = str(uuid.uuid4().int)[:15]
        accounts.create_account(
            session,
            ctx,
            channel="whatsapp",
            name="bench",
            external_id=phone_number_id,
            credentials={"access_token": TOKEN},
        )
        conversations = []
        for n in range(20):
            contact = Contact(
                tenant_id=tenant.id,
                channel="whatsapp",
                external_id=f"1555000{n:04d}",
                last_inbound_at=dt.datetime.now(dt.UTC),
            )
            session.add(contact)
            session.flush()
            conversation = Conversation(
                tenant_id=tenant.id, contact_id=contact.id, channel="whatsapp", status="open"
            )
            session.add(conversation)
            session.flush()
            conversations.append(conversation.id)
        return tenant.id, phone_number_id, conversations


def commit_messages(
    tenant_id: uuid.UUID, conversations: list[uuid.UUID], count: int, batch: int
) -> float:
    """Create ``count`` queued messages; return the first commit's time."""
    from sqlalchemy import select

    from shared.context import Ctx
    from shared.db import session_scope
    from shared.inbox.messages import create_outbound_message
    from shared.models import Conversation

    ctx = Ctx.system(tenant_id)
    first = None
    for start in range(0, count, batch):
        with session_scope() as session:
            rows = session.scalars(
                select(Conversation).where(Conversation.id.in_(conversations))
            ).all()
            for n in range(start, min(start + batch, count)):
                create_outbound_message(session, ctx, rows[n % len(rows)], body=f"bench {n}")
        first = first or time.time()
    return first


def count_sent(tenant_id: uuid.UUID) -> int:
    from sqlalchemy import func, select

    from shared.db import session_scope
    from shared.models import Message

    with session_scope() as session:
        return session.scalar(
            select(func.count()).where(Message.tenant_id == tenant_id, Message.status == "sent")
        )


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    from tests.peers.graph import start_fake_graph

    graph, server = start_fake_graph()
    latency = args.graph_latency_ms / 1000
    graph.latency = latency
    os.environ.update(META_GRAPH_BASE_URL=graph.base_url, META_GRAPH_VERSION="v21.0")
    results: dict = {}
    with common.Bench("channels_outbound", env) as bench:
        from workers import publisher

        publisher.install()
        tenant_id, phone_number_id, conversations = setup(env)
        worker_argv = [
            *common.executable("dramatiq"),
            "workers.main",
            "--processes",
            str(args.processes),
            "--threads",
            str(args.threads),
        ]
        # NOTE: the engine's sends in flight per process capped at the threads, so the
        # worker has the bare loop's concurrency (P x T), not more.
        worker_env = {"OUTBOUND_SEND_THREADS": str(args.threads)}
        worker = bench.start("worker", worker_argv, worker_env)
        # Warm-up: one message end to end (worker started, connections open).
        commit_messages(tenant_id, conversations, 1, 1)
        common.wait_until(
            lambda: count_sent(tenant_id) >= 1, "the warm-up send", timeout=90, children=[worker]
        )
        graph.reset()
        graph.latency = latency
        print(f"[channels_outbound] engine: {args.messages} messages", flush=True)
        first = commit_messages(tenant_id, conversations, args.messages, args.batch)
        committed = time.time()
        common.wait_until(
            lambda: count_sent(tenant_id) >= args.messages + 1,
            f"{args.messages} messages sent",
            timeout=args.drain_timeout,
            interval=0.2,
            children=[worker],
        )
        recorded = time.time()
        arrivals = [r.at for r in graph.sent()]
        if len(arrivals) != args.messages:
            raise common.BenchError(f"{len(arrivals)} requests at the fake for {args.messages}")
        results["engine"] = {
            "sends": len(arrivals),
            "per_s": len(arrivals) / (max(arrivals) - first),
            "recorded_per_s": len(arrivals) / (recorded - first),
            "commit_s": committed - first,
            "span_s": max(arrivals) - first,
        }
        print(f"  {results['engine']}", flush=True)
        bench.stop(worker)

        # Drain: as many messages committed while no worker runs, then a worker started:
        # the send path's own rate (first to last arrival), apart from the commits' pace.
        graph.reset()
        graph.latency = latency
        print(f"[channels_outbound] drain: {args.messages} messages", flush=True)
        commit_messages(tenant_id, conversations, args.messages, args.batch)
        worker = bench.start("worker-drain", worker_argv, worker_env)
        common.wait_until(
            lambda: count_sent(tenant_id) >= 2 * args.messages + 1,
            f"{args.messages} more messages sent",
            timeout=args.drain_timeout,
            interval=0.2,
            children=[worker],
        )
        arrivals = [r.at for r in graph.sent()]
        if len(arrivals) != args.messages:
            raise common.BenchError(f"{len(arrivals)} requests at the fake for {args.messages}")
        results["drain"] = {
            "sends": len(arrivals),
            "per_s": len(arrivals) / (max(arrivals) - min(arrivals)),
        }
        print(f"  {results['drain']}", flush=True)
        bench.stop(worker)

        graph.reset()
        graph.latency = latency
        results["baseline"] = common.in_child(bare_loop, graph.base_url, phone_number_id, args)
        print(f"  baseline {results['baseline']}", flush=True)
    server.shutdown()
    server.server_close()
    return report(args, results)


def bare_loop(base_url: str, phone_number_id: str, args) -> dict:
    """The same POSTs from P x T threads with one httpx client: no database, no broker."""
    import httpx

    from shared.channels.graph import whatsapp_text

    url = f"{base_url}/v21.0/{phone_number_id}/messages"
    concurrency = args.processes * args.threads
    with httpx.Client(
        timeout=20, limits=httpx.Limits(max_connections=concurrency), trust_env=False
    ) as client:

        def post(n: int) -> int:
            payload = whatsapp_text(f"1555000{n % 20:04d}", f"bench {n}")
            return client.post(
                url, json=payload, headers={"Authorization": f"Bearer {TOKEN}"}
            ).status_code

        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            codes = list(pool.map(post, range(args.messages)))
        elapsed = time.time() - started
    if any(code != 200 for code in codes):
        raise common.BenchError("the baseline got non-200 answers")
    return {"sends": len(codes), "per_s": len(codes) / elapsed}


def report(args, results: dict) -> int:
    engine, base = results["engine"], results["baseline"]
    common.print_table(
        f"Outbound WhatsApp sends against the fake Graph API, concurrency"
        f" {args.processes} x {args.threads}, answers after {args.graph_latency_ms:g} ms"
        f" (load average {os.getloadavg()[0]:.2f})",
        ["run", "sends", "sends/s (at the fake)", "sends/s (recorded sent)", "vs baseline"],
        [
            (
                "engine (commit -> worker -> Graph -> sent)",
                engine["sends"],
                common.fmt(engine["per_s"]),
                common.fmt(engine["recorded_per_s"]),
                f"{engine['per_s'] / base['per_s']:.0%}",
            ),
            (
                "drain (backlog committed first; first to last arrival)",
                results["drain"]["sends"],
                common.fmt(results["drain"]["per_s"]),
                "-",
                f"{results['drain']['per_s'] / base['per_s']:.0%}",
            ),
            ("bare httpx POST loop", base["sends"], common.fmt(base["per_s"]), "-", "100%"),
        ],
    )
    common.write_json(
        args.json_out,
        {
            "benchmark": "channels_outbound",
            "graph_latency_ms": args.graph_latency_ms,
            "results": results,
        },
    )
    return common.EXIT_PASS


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
