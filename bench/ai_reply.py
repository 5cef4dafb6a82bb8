"""AI replies: the overhead around the model, and answering many conversations at once.

Two measurements in one run, each beside a baseline measured in the same run:

- overhead: ``--overhead`` replies prepared and settled in this process with the
  offline provider (an agent with 200 QnA pairs): claim + prepare (history, handoff
  rules, retrieval, prompt) + settle (the outbound message, the reply row, usage), i.e.
  everything ``ai_reply`` does but the model call. Baseline: a human's reply through the
  same outbound path (``create_outbound_message`` in its own transaction).
  Target: p99 < 50 ms.
- throughput: ``--conversations`` conversations each receive one inbound message
  (row + ``message.created`` committed like the inbound path) on an account owned by an
  ``openai`` agent whose model (tests/peers/llm.py, in this process) takes ``--model-seconds``
  per answer; a real worker with the Procfile's settings (``--processes 2 --threads 8``)
  does dispatch -> ai_reply -> model -> outbound message -> send_outbound -> fake Graph.
  Measured: first commit to the last reply ``sent`` (settle window included). Baseline:
  the same number of model calls made all at once from this process (asyncio + httpx):
  the floor the model's latency allows. Target: all answered within 15 s (a thread per
  model call would need conversations x model-seconds / 16 threads = 62.5 s).
  Also printed: each stage's first, median and last moment over the conversations
  (read back from the rows each stage writes: the stage that lags is the one that
  serializes), and the CPU per conversation of the worker, of this database's
  PostgreSQL backends and of the bench itself, the figures a loaded host moves least.

Run::

    .venv/bin/python bench/ai_reply.py
    .venv/bin/python bench/ai_reply.py --conversations 200 --overhead 100

Exit status: 0 every target met, 1 a target missed, 2 error.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

TOKEN = "EAAG-bench-token"
QUESTION = "How long does shipping take?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument("--model-seconds", type=float, default=2.0)
    parser.add_argument("--overhead", type=int, default=300, help="replies timed in-process")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--settle-seconds", type=float, default=2.0, help="the agent's window")
    parser.add_argument("--goal-seconds", type=float, default=15.0)
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


def setup(env: common.BenchEnv, label: str, provider: str, conversations: int, settle: float):
    """A tenant, a WhatsApp account its agent owns, the agent's FAQ, and open conversations."""
    from shared.channels import accounts
    from shared.context import Ctx
    from shared.db import session_scope
    from shared.models import Contact, Conversation, Tenant
    from shared.models.ai import AiAgent, AiAgentAssignment, KnowledgeSource, QnaPair

    with session_scope() as session:
        tenant = Tenant(name=f"AI bench {label}", slug=f"ai-bench-{label}-{env.run_id}")
        session.add(tenant)
        session.flush()
        account = accounts.create_account(
            session,
            Ctx.system(tenant.id),
            channel="whatsapp",
            name="bench",
            external_id=str(uuid.uuid4().int)[:15],
            credentials={"access_token": TOKEN},
        )
        agent = AiAgent(
            tenant_id=tenant.id,
            name="Bench agent",
            provider=provider,
            settle_seconds=settle,
            confidence_threshold=0.01,
        )
        session.add(agent)
        session.flush()
        session.add(
            AiAgentAssignment(
                tenant_id=tenant.id, ai_agent_id=agent.id, integration_account_id=account.id
            )
        )
        source = KnowledgeSource(
            tenant_id=tenant.id, ai_agent_id=agent.id, kind="text", title="FAQ", status="ready"
        )
        session.add(source)
        session.flush()
        topics = ["shipping", "returns", "payment", "warranty", "sizes", "stores", "gifts"]
        for n in range(200):
            topic = topics[n % len(topics)]
            session.add(
                QnaPair(
                    tenant_id=tenant.id,
                    ai_agent_id=agent.id,
                    source_id=source.id,
                    question=f"Question {n} about {topic}: how long does {topic} take?",
                    answer=f"Answer {n}: {topic} takes {n % 5 + 1} business days.",
                )
            )
        ids = []
        now = dt.datetime.now(dt.UTC)
        for n in range(conversations):
            contact = Contact(
                tenant_id=tenant.id,
                channel="whatsapp",
                external_id=f"1555{n:07d}",
                last_inbound_at=now,
            )
            session.add(contact)
            session.flush()
            conversation = Conversation(
                tenant_id=tenant.id,
                contact_id=contact.id,
                channel="whatsapp",
                status="open",
                integration_account_id=account.id,
            )
            session.add(conversation)
            session.flush()
            ids.append((conversation.id, contact.id))
        return tenant.id, agent.id, ids


def write_inbound(tenant_id, conversations, *, batch: int = 50) -> tuple[float, list]:
    """One inbound message per conversation, committed with its event; (first commit, ids)."""
    from shared.db import session_scope
    from shared.events import Actor, emit
    from shared.models import Message
    from shared.schemas.messages import MessageView

    first = None
    created = []
    for start in range(0, len(conversations), batch):
        with session_scope() as session:
            for conversation_id, contact_id in conversations[start : start + batch]:
                message = Message(
                    tenant_id=tenant_id,
                    conversation_id=conversation_id,
                    channel="whatsapp",
                    direction="inbound",
                    sender_type="contact",
                    sender_id=contact_id,
                    status="received",
                    body=QUESTION,
                )
                session.add(message)
                session.flush()
                emit(
                    session,
                    "message.created",
                    MessageView.data(message),
                    tenant_id=tenant_id,
                    actor=Actor("contact", contact_id),
                )
                created.append((conversation_id, message.id))
        first = first or time.time()
    return first, created


def measure_overhead(env: common.BenchEnv, args) -> dict:
    """Claim + prepare + settle per reply, model excluded; and a human reply's write."""
    from sqlalchemy import select

    from shared.ai import generation, replies
    from shared.ai.providers import loop
    from shared.context import Ctx
    from shared.db import session_scope
    from shared.inbox.messages import create_outbound_message
    from shared.models import Conversation

    tenant_id, _agent_id, conversations = setup(env, "overhead", "offline", args.overhead, 0.0)
    _first, created = write_inbound(tenant_id, conversations)
    reply_ids = []
    for conversation_id, message_id in created:
        with session_scope() as session:
            reply_ids.append(
                replies.schedule(session, tenant_id, conversation_id, message_id, QUESTION)
            )
    samples, statuses = [], []
    for reply_id in reply_ids:
        started = time.perf_counter()
        plan = generation.prepare(generation.claim(reply_id))
        prepared = time.perf_counter()
        completion = loop.run(plan.provider.complete(plan.request))  # the model: excluded
        settled_from = time.perf_counter()
        statuses.append(generation.finish(plan, completion, None))
        samples.append((prepared - started) + (time.perf_counter() - settled_from))
    if set(statuses) != {"sent"}:
        raise common.BenchError(f"overhead replies ended {set(statuses)}")
    baseline = []
    ctx = Ctx.system(tenant_id)
    for conversation_id, _contact in conversations:
        started = time.perf_counter()
        with session_scope() as session:
            conversation = session.scalars(
                select(Conversation).where(Conversation.id == conversation_id)
            ).one()
            create_outbound_message(session, ctx, conversation, body="A human's answer.")
        baseline.append(time.perf_counter() - started)
    samples.sort()
    baseline.sort()

    def stats(values):
        return {
            q: common.percentile(values, p) * 1000
            for q, p in (("p50", 50), ("p95", 95), ("p99", 99))
        }

    return {"replies": len(samples), "ai": stats(samples), "human": stats(baseline)}


def count_answered(tenant_id) -> int:
    from sqlalchemy import func, select

    from shared.db import session_scope
    from shared.models.ai import AiReply

    with session_scope() as session:
        return session.scalar(
            select(func.count()).where(AiReply.tenant_id == tenant_id, AiReply.status == "sent")
        )


def _spread(times: list[float], first: float) -> dict[str, float]:
    """First, median and last of ``times`` in seconds after ``first``."""
    times = sorted(times)
    if not times:
        return {}
    return {
        "first": round(times[0] - first, 2),
        "p50": round(common.percentile(times, 50) - first, 2),
        "last": round(times[-1] - first, 2),
    }


def stage_times(tenant_id, first: float, llm, graph) -> dict[str, dict[str, float]]:
    """Each stage's first, median and last moment over the conversations, after ``first``.

    Read from the rows the stages write (and the fake peers' logs), so the worker runs
    uninstrumented: the inbound events dispatched, the replies scheduled and due, the
    model called, the replies settled, their outbound events dispatched, the sends.
    """
    from sqlalchemy import text

    from shared.db import session_scope

    def epochs(session, sql: str) -> list[float]:
        rows = session.execute(text(sql), {"tenant_id": tenant_id}).scalars()
        return [at.timestamp() for at in rows if at is not None]

    events = """SELECT processed_at FROM outbox_events WHERE tenant_id = :tenant_id
                   AND type = 'message.created' AND data->>'direction' = '{}'"""
    with session_scope() as session:
        stages = {
            "inbound dispatched": epochs(session, events.format("inbound")),
            "reply scheduled": epochs(
                session, "SELECT created_at FROM ai_replies WHERE tenant_id = :tenant_id"
            ),
            "reply due": epochs(
                session, "SELECT due_at FROM ai_replies WHERE tenant_id = :tenant_id"
            ),
            "model called": [r.at for r in llm.chats()],
            "reply settled": epochs(
                session,
                "SELECT created_at FROM messages WHERE tenant_id = :tenant_id"
                " AND sender_type = 'ai_agent'",
            ),
            "outbound dispatched": epochs(session, events.format("outbound")),
            "at the Graph API": [r.at for r in graph.sent()],
        }
    return {name: _spread(times, first) for name, times in stages.items()}


def model_baseline(base_url: str, count: int) -> float:
    """``count`` chat calls at once from this process: the floor the model latency allows."""
    import aiohttp

    async def run() -> float:
        connector = aiohttp.TCPConnector(limit=count)
        async with aiohttp.ClientSession(connector=connector) as session:
            body = {"model": "m", "messages": [{"role": "user", "content": QUESTION}]}

            async def call() -> int:
                async with session.post(f"{base_url}/chat/completions", json=body) as answer:
                    await answer.read()
                    return answer.status

            started = time.perf_counter()
            statuses = await asyncio.gather(*(call() for _ in range(count)))
            elapsed = time.perf_counter() - started
        if any(status != 200 for status in statuses):
            raise common.BenchError("the baseline's model calls failed")
        return elapsed

    return asyncio.run(run())


def measure_throughput(env: common.BenchEnv, args, bench: common.Bench, llm, graph) -> dict:
    from workers import publisher

    tenant_id, _agent_id, conversations = setup(
        env, "throughput", "openai", args.conversations, args.settle_seconds
    )
    publisher.install()
    worker = bench.start(
        "worker",
        [
            *common.executable("dramatiq"),
            "workers.main",
            "--processes",
            str(args.processes),
            "--threads",
            str(args.threads),
        ],
    )
    # Warm-up: one conversation end to end (processes started, connections open).
    warm_tenant, _, warm = setup(env, "warmup", "openai", 1, 0.0)
    write_inbound(warm_tenant, warm)
    common.wait_until(
        lambda: count_answered(warm_tenant) >= 1, "the warm-up reply", timeout=90, children=[worker]
    )
    common.wait_until(lambda: graph.sent(), "the warm-up send", timeout=30, children=[worker])
    llm.requests.clear()
    graph.reset()
    llm.delay = args.model_seconds
    print(f"[ai_reply] throughput: {args.conversations} conversations", flush=True)
    meter = common.CpuMeter({"worker": worker.pid, "bench": os.getpid()}, env.database_url)
    cpu_from = meter.sample()
    first, _ = write_inbound(tenant_id, conversations)
    committed = time.time()
    common.wait_until(
        lambda: count_answered(tenant_id) >= args.conversations,
        f"{args.conversations} replies sent",
        timeout=300,
        interval=0.1,
        children=[worker],
    )
    answered = time.time() - first
    common.wait_until(
        lambda: len(graph.sent()) >= args.conversations,
        "every answer at the fake Graph API",
        timeout=120,
        interval=0.1,
        children=[worker],
    )
    at_graph = max(r.at for r in graph.sent()) - first
    cpu = common.CpuMeter.usage(cpu_from, meter.sample())
    stages = {"inbound committed": _spread([first, committed], first)}
    stages |= stage_times(tenant_id, first, llm, graph)
    bench.stop(worker)
    model_calls = len(llm.chats())
    baseline = model_baseline(llm.base_url, args.conversations)
    return {
        "conversations": args.conversations,
        "answered_s": answered,
        "at_graph_s": at_graph,
        "model_calls": model_calls,
        "stages": stages,
        # CPU per conversation: what the host's load does not change (wall times it does).
        "cpu_ms_per_conversation": {
            "worker": cpu.trees["worker"] * 1000 / args.conversations,
            "postgres (this database)": cpu.postgres_database * 1000 / args.conversations,
            # NOTE: the bench's tree holds the worker's: its own CPU is the difference.
            "bench (fake model and Graph API)": (cpu.trees["bench"] - cpu.trees["worker"])
            * 1000
            / args.conversations,
        },
        "machine_busy_pct": cpu.machine_busy_pct,
        "load_average": os.getloadavg(),
        "baseline_s": baseline,
    }


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    from tests.peers.graph import start_fake_graph
    from tests.peers.llm import start_fake_llm

    graph, graph_server = start_fake_graph()
    llm, llm_server = start_fake_llm()
    os.environ.update(
        META_GRAPH_BASE_URL=graph.base_url,
        META_GRAPH_VERSION="v21.0",
        AI_OPENAI_BASE_URL=llm.base_url,
    )
    results: dict = {}
    try:
        with common.Bench("ai_reply", env) as bench:
            print(f"[ai_reply] overhead: {args.overhead} replies in-process", flush=True)
            results["overhead"] = measure_overhead(env, args)
            print(f"  {results['overhead']}", flush=True)
            results["throughput"] = measure_throughput(env, args, bench, llm, graph)
            print(f"  {results['throughput']}", flush=True)
    finally:
        for server in (graph_server, llm_server):
            server.shutdown()
            server.server_close()
    return report(args, results)


def report(args, results: dict) -> int:
    over, thr = results["overhead"], results["throughput"]
    common.print_table(
        "ai_reply overhead per reply (model call excluded), ms",
        ["run", "replies", "p50", "p95", "p99", "p99 vs baseline"],
        [
            (
                "AI reply: claim + prepare + settle",
                over["replies"],
                common.fmt(over["ai"]["p50"]),
                common.fmt(over["ai"]["p95"]),
                common.fmt(over["ai"]["p99"]),
                f"{over['ai']['p99'] / over['human']['p99']:.1f}x",
            ),
            (
                "baseline: a human reply's write",
                over["replies"],
                common.fmt(over["human"]["p50"]),
                common.fmt(over["human"]["p95"]),
                common.fmt(over["human"]["p99"]),
                "1.0x",
            ),
        ],
    )
    common.print_table(
        f"{thr['conversations']} conversations, a {args.model_seconds:g} s model, settle window"
        f" {args.settle_seconds:g} s, worker {args.processes} x {args.threads}",
        ["run", "seconds", "vs baseline"],
        [
            (
                "all replies sent (first commit -> last sent)",
                common.fmt(thr["answered_s"], 2),
                f"{thr['answered_s'] / thr['baseline_s']:.1f}x",
            ),
            (
                "last answer at the fake Graph API",
                common.fmt(thr["at_graph_s"], 2),
                f"{thr['at_graph_s'] / thr['baseline_s']:.1f}x",
            ),
            ("baseline: the model calls all at once", common.fmt(thr["baseline_s"], 2), "1.0x"),
        ],
    )
    common.print_table(
        "stages, seconds after the first inbound commit (over the conversations)",
        ["stage", "first", "p50", "last"],
        [
            (name, *(common.fmt(spread.get(k), 2) for k in ("first", "p50", "last")))
            for name, spread in thr["stages"].items()
        ],
    )
    common.print_table(
        f"CPU per conversation, ms (machine {thr['machine_busy_pct']:.0f} % busy, load average"
        f" {' / '.join(f'{v:.1f}' for v in thr['load_average'])} at the end)",
        ["process", "ms"],
        [(name, common.fmt(ms, 1)) for name, ms in thr["cpu_ms_per_conversation"].items()],
    )
    passed = common.print_targets(
        "Targets",
        [
            common.Target(
                "ai_reply overhead p99",
                f"{over['ai']['p99']:.1f} ms",
                "< 50 ms",
                over["ai"]["p99"] < 50,
            ),
            # NOTE: answered = the last answer handed to the channel (the contact's view),
            # not the last reply row settled, which comes seconds earlier.
            common.Target(
                f"{thr['conversations']} conversations answered (at the Graph API)",
                f"{thr['at_graph_s']:.2f} s",
                f"< {args.goal_seconds:g} s",
                thr["at_graph_s"] < args.goal_seconds,
            ),
        ],
    )
    common.write_json(args.json_out, {"benchmark": "ai_reply", "results": results})
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
