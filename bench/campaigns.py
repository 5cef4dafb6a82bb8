"""A WhatsApp campaign of 100,000 recipients: messages handed to the provider per second,
beside a bare httpx POST loop, and nobody messaged twice when a worker is killed mid-run.

What it measures, in one run, against one fake Graph API (tests/peers/graph.py, threaded
http.server in this process), with the Procfile's worker and scheduler as subprocesses:

- campaign: ``--recipients`` contacts (inserted with SQL), one approved-template campaign
  whose recipients are chosen by a contact filter and sent through the real path
  (``send`` -> ``run_campaign`` batches -> messages -> ``send_outbound_batch`` -> Graph).
  The account is paced as fast as it goes (its ``campaign_batch_size`` = ``--batch``,
  interval 0), as a number with a high Meta tier would be. Rate = recipients / (last
  arrival at the fake - the send call). Also the CPU per recipient of the worker and
  scheduler trees, of this process (the fake Graph API) and of this run's database
  backends. ``WORKER_SAMPLER_OUT=/tmp/prefix`` loads :mod:`bench.worker_sampler` into the
  worker processes (where their threads wait, counted).
- kill: a second campaign of ``--kill-recipients``; once ``--kill-at`` of its messages
  arrived, the worker's whole process group is SIGKILLed and a new worker started at
  once. The scheduler re-drives what the dead worker held (its send claims run out after
  ``OUTBOUND_CLAIM_SECONDS`` = ``--claim-seconds``). Checked: every recipient was sent
  exactly one request, except those the dead worker had at the provider, which end
  ``failed`` as ``delivery_unknown`` and were sent one request at most; nobody gets two.
  Reported: the messages in doubt and the time from the kill to the campaign's end.
- baseline: the same template payloads POSTed with one shared httpx client from as many
  threads as the worker may have sends in flight (processes x ``OUTBOUND_ACCOUNT_CONCURRENCY``):
  no database, no broker. It runs in a child process, as the worker does (in this one its
  threads would share the fake's interpreter lock).

The fake answers every send after ``--graph-latency-ms`` (default
:data:`bench.common.GRAPH_LATENCY_MS`, Meta's own time to answer; 0: CPU-bound), the
same for the campaign and the baseline; at a latency, the rate says whether the sends in
flight are kept at the allowed concurrency, which "in flight" reports (the mean number of
sends the fake was answering over the span, from its own count).

Run::

    .venv/bin/python bench/campaigns.py                       # 100,000 + 20,000 recipients
    .venv/bin/python bench/campaigns.py --recipients 10000 --kill-recipients 5000

Exit status: 0 measured and nobody messaged twice, 1 a duplicate or a lost recipient,
2 error. The rate is reported as a ratio (goal: at least 80 % of the bare loop).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import signal
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

TOKEN = "EAAG-bench-token"
TEMPLATE = "order_update"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--kill-recipients", type=int, default=20_000)
    parser.add_argument("--kill-at", type=float, default=0.4, help="share sent before the kill")
    parser.add_argument("--batch", type=int, default=500, help="the account's batch size")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--claim-seconds", type=float, default=20.0)
    parser.add_argument("--drain-timeout", type=float, default=1200.0)
    parser.add_argument(
        "--graph-latency-ms",
        type=float,
        default=common.GRAPH_LATENCY_MS,
        help="how long the fake Graph API takes to answer a send (0: at once)",
    )
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


# --- data ------------------------------------------------------------------------------------


def setup(env: common.BenchEnv, batch: int) -> tuple[uuid.UUID, uuid.UUID, str]:
    """A tenant, its WhatsApp account (paced by ``batch``) and approved template."""
    from shared.channels import accounts
    from shared.context import Ctx
    from shared.db import session_scope
    from shared.models import Tenant, WaTemplate

    with session_scope() as session:
        tenant = Tenant(name="Campaign bench", slug=f"campaign-bench-{env.run_id}")
        session.add(tenant)
        session.flush()
        phone_number_id = str(uuid.uuid4().int)[:15]
        account = accounts.create_account(
            session,
            Ctx.system(tenant.id),
            channel="whatsapp",
            name="bench",
            external_id=phone_number_id,
            settings={"campaign_batch_size": batch, "campaign_batch_interval_ms": 0},
            credentials={"access_token": TOKEN},
        )
        session.add(
            WaTemplate(
                tenant_id=tenant.id,
                integration_account_id=account.id,
                meta_template_id=str(uuid.uuid4().int)[:15],
                name=TEMPLATE,
                language="en_US",
                category="MARKETING",
                status="APPROVED",
                components=[{"type": "BODY", "text": "Hi {{1}}, your code is {{2}}"}],
            )
        )
        return tenant.id, account.id, phone_number_id


def add_contacts(tenant_id: uuid.UUID, count: int, tag: str) -> None:
    """``count`` WhatsApp contacts tagged ``tag`` (multi-row inserts of 5,000)."""
    from sqlalchemy import insert

    from shared.db import session_scope
    from shared.models import Contact

    base = 10**11 + uuid.uuid4().int % 10**10
    for first in range(0, count, 5_000):
        rows = [
            {
                "id": uuid.uuid4(),
                "tenant_id": tenant_id,
                "channel": "whatsapp",
                "external_id": str(base + n),
                "name": f"Customer {n}",
                "phone": f"+{base + n}",
                "tags": [tag],
            }
            for n in range(first, min(first + 5_000, count))
        ]
        with session_scope() as session:
            session.execute(insert(Contact), rows)


def start_campaign(tenant_id: uuid.UUID, account_id: uuid.UUID, tag: str) -> uuid.UUID:
    """Create the campaign, choose the tagged contacts, send it now; its id."""
    from shared.campaigns import campaigns, lifecycle, recipients
    from shared.context import Ctx
    from shared.db import session_scope

    ctx = Ctx.system(tenant_id)
    template = {
        "name": TEMPLATE,
        "language": "en_US",
        "components": [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "{{name}}"},
                    {"type": "text", "text": "SPRING"},
                ],
            }
        ],
    }
    with session_scope() as session:
        created = campaigns.create(
            session,
            ctx,
            name=f"bench {tag}",
            channel="whatsapp",
            integration_account_id=account_id,
            template=template,
        )
    campaign_id = created["id"]
    with session_scope() as session:
        recipients.add(session, ctx, campaign_id, contact_filter={"tags": [tag]})
    with session_scope() as session:
        lifecycle.send(session, ctx, campaign_id)
    return campaign_id


def counts(campaign_id: uuid.UUID) -> dict[str, int]:
    from shared.campaigns.campaigns import counts as campaign_counts
    from shared.db import session_scope

    with session_scope() as session:
        return campaign_counts(session, campaign_id)


def settled(campaign_id: uuid.UUID, total: int) -> bool:
    found = counts(campaign_id)
    return found["total"] >= total and found["pending"] == 0 and found["queued"] == 0


def in_doubt(campaign_id: uuid.UUID) -> int:
    from sqlalchemy import func, select

    from shared.db import session_scope
    from shared.models import CampaignRecipient, Message

    with session_scope() as session:
        return session.scalar(
            select(func.count())
            .select_from(CampaignRecipient)
            .join(Message, Message.id == CampaignRecipient.message_id)
            .where(
                CampaignRecipient.campaign_id == campaign_id,
                Message.error_code == "delivery_unknown",
            )
        )


# --- the run ---------------------------------------------------------------------------------


def _recipient(request) -> str | None:
    """The number a send reached; None for a body the kill cut short (unparsable)."""
    try:
        return request.json["to"]
    except ValueError:
        return None


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    from tests.peers.graph import start_fake_graph

    graph, server = start_fake_graph()
    latency = args.graph_latency_ms / 1000
    graph.latency = latency
    os.environ.update(
        META_GRAPH_BASE_URL=graph.base_url,
        META_GRAPH_VERSION="v21.0",
        OUTBOUND_CLAIM_SECONDS=str(args.claim_seconds),
        # NOTE: every send's bound must stay under half the claim (refused otherwise).
        GRAPH_TIMEOUT_SECONDS=str(args.claim_seconds / 5),
        SMTP_TIMEOUT_SECONDS=str(args.claim_seconds / 10),
        WEBHOOK_TIMEOUT_SECONDS=str(args.claim_seconds / 5),
    )
    results: dict = {}
    # The API's way: the send's first batch is queued with its commit. Without the enqueuer
    # it was dropped, and the scheduler re-drove the campaign a minute later (REDRIVE_AFTER),
    # a minute the rate counted.
    import workers.actors.campaigns  # noqa: F401  (installs the run_campaign enqueuer)

    with common.Bench("campaigns", env) as bench:
        tenant_id, account_id, phone_number_id = setup(env, args.batch)
        own = f"/{phone_number_id}/messages"
        add_contacts(tenant_id, args.recipients, "spring")
        add_contacts(tenant_id, args.kill_recipients, "autumn")
        worker_argv = [
            *common.executable("python"),
            "-m",
            "workers",
            # A diagnosis: WORKER_SAMPLER_OUT=/tmp/x samples the workers' stacks.
            *(["bench.worker_sampler"] if os.environ.get("WORKER_SAMPLER_OUT") else []),
            "--processes",
            str(args.processes),
            "--threads",
            str(args.threads),
        ]
        worker = bench.start("worker", worker_argv)
        scheduler = bench.start("scheduler", [*common.executable("python"), "-m", "scheduler"])
        meter = common.CpuMeter(
            {"worker": worker.pid, "scheduler": scheduler.pid, "bench": os.getpid()},
            env.database_url,
        )

        def arrivals() -> list:
            return [r for r in graph.sent() if r.path.endswith(own)]

        # NOTE: the campaign starts once the worker processes are up: their boot (imports,
        # 10-30 s on a loaded machine) is no part of a campaign's rate.
        common.wait_workers_ready(worker, args.processes, "worker", timeout=180)
        print(f"[campaigns] campaign: {args.recipients} recipients", flush=True)
        started = time.time()
        before = meter.sample()
        busy_before = graph.in_flight_seconds()
        campaign_id = start_campaign(tenant_id, account_id, "spring")
        common.wait_until(
            lambda: settled(campaign_id, args.recipients),
            f"{args.recipients} recipients settled",
            timeout=args.drain_timeout,
            interval=0.5,
            children=[worker],
        )
        used = common.CpuMeter.usage(before, meter.sample())
        busy = graph.in_flight_seconds() - busy_before
        used.trees["bench"] -= used.trees["worker"] + used.trees["scheduler"]  # its children
        sent = arrivals()
        last = max(r.at for r in sent)
        results["campaign"] = {
            "recipients": args.recipients,
            "requests": len(sent),
            "per_s": len(sent) / (last - started),
            "span_s": last - started,
            "in_flight": busy / (last - started),
            "counts": counts(campaign_id),
            # CPU ms per recipient: where a campaign's time goes (bench = the fake Graph API
            # and this script's polling; postgres = this run's database backends).
            "cpu_ms": {
                **{name: 1000 * s / args.recipients for name, s in used.trees.items()},
                "postgres": 1000 * used.postgres_database / args.recipients,
            },
            "machine_busy_pct": used.machine_busy_pct,
        }
        print(f"  {results['campaign']}", flush=True)
        duplicates = sum(n - 1 for n in Counter(r.json["to"] for r in sent).values() if n > 1)

        graph.reset()
        graph.latency = latency
        print(f"[campaigns] kill: {args.kill_recipients} recipients", flush=True)
        kill_id = start_campaign(tenant_id, account_id, "autumn")
        threshold = int(args.kill_recipients * args.kill_at)
        common.wait_until(
            lambda: len(arrivals()) >= threshold,
            f"{threshold} sends before the kill",
            timeout=args.drain_timeout,
            interval=0.05,
            children=[worker],
        )
        os.killpg(worker.pid, signal.SIGKILL)
        killed_at = time.time()
        worker.stop(timeout=5)
        worker = bench.start("worker-after-kill", worker_argv)
        common.wait_until(
            lambda: settled(kill_id, args.kill_recipients),
            f"{args.kill_recipients} recipients settled after the kill",
            timeout=args.drain_timeout,
            interval=0.5,
            children=[worker],
        )
        sent = arrivals()
        # NOTE: a request the SIGKILL cut mid-body reached no one (the provider refuses it).
        whole = [to for r in sent if (to := _recipient(r)) is not None]
        per_number = Counter(whole)
        duplicates += sum(n - 1 for n in per_number.values() if n > 1)
        doubtful = in_doubt(kill_id)
        final = counts(kill_id)
        results["kill"] = {
            "recipients": args.kill_recipients,
            "requests": len(whole),
            "requests_cut_by_the_kill": len(sent) - len(whole),
            "numbers_reached": len(per_number),
            "in_doubt": doubtful,
            "duplicates": duplicates,
            "recovery_s": time.time() - killed_at,
            "counts": final,
        }
        print(f"  {results['kill']}", flush=True)

        graph.reset()
        graph.latency = latency
        results["baseline"] = common.in_child(bare_loop, graph.base_url, phone_number_id, args)
        print(f"  baseline {results['baseline']}", flush=True)
    server.shutdown()
    server.server_close()
    return report(args, results)


def bare_loop(base_url: str, phone_number_id: str, args) -> dict:
    """The same POSTs from as many threads as the worker may have in flight."""
    import httpx

    from shared.config import get_settings

    url = f"{base_url}/v21.0/{phone_number_id}/messages"
    per_process = min(
        get_settings().outbound_send_threads, get_settings().outbound_account_concurrency
    )
    concurrency = args.processes * per_process
    count = min(args.recipients, 50_000)
    with httpx.Client(
        timeout=20, limits=httpx.Limits(max_connections=concurrency), trust_env=False
    ) as client:

        def post(n: int) -> int:
            payload = {
                "messaging_product": "whatsapp",
                "to": str(10**11 + n),
                "type": "template",
                "template": {
                    "name": TEMPLATE,
                    "language": {"code": "en_US"},
                    "components": [
                        {
                            "type": "body",
                            "parameters": [
                                {"type": "text", "text": f"Customer {n}"},
                                {"type": "text", "text": "SPRING"},
                            ],
                        }
                    ],
                },
            }
            return client.post(
                url, json=payload, headers={"Authorization": f"Bearer {TOKEN}"}
            ).status_code

        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            codes = list(pool.map(post, range(count)))
        elapsed = time.time() - started
    if any(code != 200 for code in codes):
        raise common.BenchError("the baseline got non-200 answers")
    return {"sends": count, "per_s": count / elapsed, "concurrency": concurrency}


def report(args, results: dict) -> int:
    campaign, kill, base = results["campaign"], results["kill"], results["baseline"]
    common.print_table(
        f"WhatsApp campaigns against the fake Graph API ({args.processes} worker processes,"
        f" answers after {args.graph_latency_ms:g} ms)",
        ["run", "recipients", "requests", "sends/s", "in flight", "vs baseline"],
        [
            (
                "campaign (send -> batches -> messages -> Graph)",
                campaign["recipients"],
                campaign["requests"],
                common.fmt(campaign["per_s"]),
                common.fmt(campaign["in_flight"]),
                f"{campaign['per_s'] / base['per_s']:.0%}",
            ),
            (
                f"bare httpx POST loop ({base['concurrency']} threads)",
                base["sends"],
                base["sends"],
                common.fmt(base["per_s"]),
                base["concurrency"],
                "100%",
            ),
        ],
    )
    cpu = campaign["cpu_ms"]
    print(
        "CPU ms per recipient: "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in cpu.items())
        + f" (machine busy {campaign['machine_busy_pct']:.0f} %,"
        f" load average {os.getloadavg()[0]:.2f})",
        flush=True,
    )
    print(
        f"worker killed after {args.kill_at:.0%} of {kill['recipients']}: "
        f"{kill['numbers_reached']} numbers reached by {kill['requests']} requests, "
        f"{kill['in_doubt']} failed as delivery_unknown, {kill['duplicates']} duplicates, "
        f"settled {kill['recovery_s']:.1f} s after the kill",
        flush=True,
    )
    common.write_json(
        args.json_out,
        {
            "benchmark": "campaigns",
            "graph_latency_ms": args.graph_latency_ms,
            "results": results,
        },
    )
    lost = kill["numbers_reached"] < kill["recipients"] - kill["in_doubt"]
    if kill["duplicates"] or campaign["requests"] != campaign["recipients"] or lost:
        return common.EXIT_FAIL
    return common.EXIT_PASS


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
