"""WhatsApp templates: a 1,000-template sync, and what the template check adds to a send.

What it measures, in one run, against one fake Graph API server (tests/peers/graph.py,
threaded http.server in this process), all in this process (no worker: the figures are
the work's own, not the broker's):

- sync: ``--templates`` templates in one WABA; ``sync.run`` (exactly what the
  ``sync_wa_templates`` actor runs: the listing page after page, then one transaction
  that upserts) timed end to end: the first sync (every template inserted), then
  ``--repeats`` re-syncs of the unchanged listing (nothing written). Graph calls are
  counted at the fake.
- send: ``POST /api/conversations/{id}/messages`` through the whole API in-process
  (falcon.testing, the tenant admin's token), ``--sends`` text replies and as many
  sends of an approved template with two body parameters, interleaved one by one on
  the same 20 conversations, so both see the same database and machine. Overhead =
  template p50 (and mean) over text p50 (and mean). Goal: < 10 %. A template send
  skips the 24-hour window query a text send makes, so the check's own cost is also
  timed alone (``prepare_send``, in one session) and reported as a share of a text send.

Run::

    .venv/bin/python bench/wa_templates.py                       # 1,000 templates, 500 sends
    .venv/bin/python bench/wa_templates.py --templates 5000 --sends 1000

Exit status: 0 all targets met, 1 a target missed, 2 error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import secrets
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

TOKEN = "EAAG-bench-template-token"
OVERHEAD_GOAL = 0.10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--templates", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3, help="re-syncs of the same listing")
    parser.add_argument("--sends", type=int, default=500, help="sends of each kind")
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


def listed(n: int) -> dict:
    return {
        "id": str(10**14 + n),
        "name": f"bench_template_{n:05d}",
        "language": ("en_US", "es", "pt_BR")[n % 3],
        "status": "APPROVED",
        "category": ("UTILITY", "MARKETING")[n % 2],
        "parameter_format": "POSITIONAL",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Order update"},
            {"type": "BODY", "text": f"Hi {{{{1}}}}, order {{{{2}}}} ships today ({n})."},
            {"type": "FOOTER", "text": "Acme Shop"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Thanks"}]},
        ],
    }


def register(client) -> tuple[str, uuid.UUID]:
    resp = client.simulate_post(
        "/api/auth/register",
        json={
            "organization_name": "Template bench",
            "full_name": "Bench Admin",
            "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
            "password": "correct horse battery",
        },
    )
    if resp.status_code != 201:
        raise common.BenchError(f"register answered {resp.status_code}: {resp.text}")
    return resp.json["access_token"], uuid.UUID(resp.json["tenant"]["id"])


def setup(tenant_id: uuid.UUID, waba_id: str) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A WhatsApp account on the WABA and 20 open conversations whose window is open."""
    from shared.channels import accounts
    from shared.context import Ctx
    from shared.db import session_scope
    from shared.models import Contact, Conversation

    with session_scope() as session:
        account = accounts.create_account(
            session,
            Ctx.system(tenant_id),
            channel="whatsapp",
            name="bench",
            external_id=str(secrets.randbelow(10**14) + 10**14),
            settings={"waba_id": waba_id},
            credentials={"access_token": TOKEN},
        )
        conversations = []
        for n in range(20):
            contact = Contact(
                tenant_id=tenant_id,
                channel="whatsapp",
                external_id=f"1555000{n:04d}",
                last_inbound_at=dt.datetime.now(dt.UTC),
            )
            session.add(contact)
            session.flush()
            conversation = Conversation(
                tenant_id=tenant_id,
                contact_id=contact.id,
                channel="whatsapp",
                status="open",
                integration_account_id=account.id,
            )
            session.add(conversation)
            session.flush()
            conversations.append(conversation.id)
        return account.id, conversations


def measure_sync(graph, waba_id: str, account_id: uuid.UUID, repeats: int) -> dict:
    from shared.channels.templates import sync

    runs = []
    for attempt in range(1 + repeats):
        graph.requests.clear()
        started = time.perf_counter()
        outcome = sync.run(account_id, None)
        elapsed = time.perf_counter() - started
        if outcome != "succeeded":
            raise common.BenchError(f"sync {attempt} ended {outcome}")
        calls = len(graph.gets(f"/v21.0/{waba_id}/message_templates"))
        runs.append({"seconds": elapsed, "graph_calls": calls})
        print(f"  sync {attempt}: {elapsed:.3f} s, {calls} Graph calls", flush=True)
    return {"first": runs[0], "resyncs": runs[1:]}


def measure_sends(client, token: str, conversations: list[uuid.UUID], sends: int) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    template = {
        "name": "bench_template_00000",
        "language": "en_US",
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ada"}, {"type": "text", "text": "A-17"}],
            }
        ],
    }
    bodies = {
        "text": lambda n: {"body": f"Hi Ada, order A-17 ships today ({n})."},
        "template": lambda n: {"template": template},
    }
    times: dict[str, list[float]] = {"text": [], "template": []}
    for n in range(sends * 2 + 40):
        kind = ("text", "template")[n % 2]
        path = f"/api/conversations/{conversations[n % len(conversations)]}/messages"
        started = time.perf_counter()
        resp = client.simulate_post(path, json=bodies[kind](n), headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        if resp.status_code != 201:
            raise common.BenchError(f"{kind} send answered {resp.status_code}: {resp.text}")
        if n >= 40:  # the first 20 of each warm the caches and connections
            times[kind].append(elapsed)
    return {
        kind: {
            "n": len(values),
            "p50_ms": statistics.median(values),
            "mean_ms": statistics.fmean(values),
            "p99_ms": common.percentile(sorted(values), 99),
        }
        for kind, values in times.items()
    }


def measure_check(conversation_id: uuid.UUID, tenant_id: uuid.UUID, n: int) -> dict:
    """The template check alone (``prepare_send``: one prebuilt query and the rules), per call.

    A template send skips the 24-hour window query a text send makes, so the two API
    sends can cost about the same; this is what the check itself adds.
    """
    from shared.channels.templates import sending
    from shared.db import session_scope

    template = {
        "name": "bench_template_00000",
        "language": "en_US",
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Ada"}] * 2},
        ],
    }
    with session_scope() as session:
        for _ in range(20):
            sending.prepare_send(session, tenant_id, conversation_id, template)
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            sending.prepare_send(session, tenant_id, conversation_id, template)
        wall = (time.perf_counter() - started) * 1000 / n
        cpu = (time.process_time() - cpu) * 1000 / n
    return {"n": n, "wall_ms": wall, "cpu_ms": cpu}


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    import falcon.testing

    from tests.peers.graph import start_fake_graph

    graph, server = start_fake_graph()
    os.environ.update(META_GRAPH_BASE_URL=graph.base_url, META_GRAPH_VERSION="v21.0")
    waba_id = str(secrets.randbelow(10**14) + 10**14)
    graph.wa_templates[waba_id] = [listed(n) for n in range(args.templates)]
    results: dict = {"templates": args.templates}
    with common.Bench("wa_templates", env):
        from api.app import create_app

        client = falcon.testing.TestClient(create_app())
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Graph call
        token, tenant_id = register(client)
        account_id, conversations = setup(tenant_id, waba_id)
        print(f"[wa_templates] sync of {args.templates} templates", flush=True)
        results["sync"] = measure_sync(graph, waba_id, account_id, args.repeats)
        print(f"[wa_templates] {args.sends} text and {args.sends} template sends", flush=True)
        results["sends"] = measure_sends(client, token, conversations, args.sends)
        results["check"] = measure_check(conversations[0], tenant_id, args.sends)
    server.shutdown()
    server.server_close()
    return report(args, results)


def report(args, results: dict) -> int:
    sync_runs, sends = results["sync"], results["sends"]
    rows = [
        (
            "first sync (all inserted)",
            f"{sync_runs['first']['seconds']:.3f}",
            sync_runs["first"]["graph_calls"],
        )
    ]
    rows += [
        (f"re-sync {n + 1} (unchanged)", f"{r['seconds']:.3f}", r["graph_calls"])
        for n, r in enumerate(sync_runs["resyncs"])
    ]
    common.print_table(
        f"Template sync of one account with {args.templates} templates (in-process)",
        ["run", "wall s", "Graph calls"],
        rows,
    )
    text, template = sends["text"], sends["template"]
    overhead_p50 = template["p50_ms"] / text["p50_ms"] - 1
    overhead_mean = template["mean_ms"] / text["mean_ms"] - 1
    common.print_table(
        "POST /api/conversations/{id}/messages in-process, interleaved",
        ["send", "n", "p50 ms", "mean ms", "p99 ms"],
        [
            (
                kind,
                s["n"],
                common.fmt(s["p50_ms"], 2),
                common.fmt(s["mean_ms"], 2),
                common.fmt(s["p99_ms"], 2),
            )
            for kind, s in sends.items()
        ],
    )
    check = results["check"]
    check_share = check["wall_ms"] / text["p50_ms"]
    print(
        f"\nThe template check alone (prepare_send, {check['n']} calls in one session):"
        f" {check['wall_ms']:.3f} ms wall, {check['cpu_ms']:.3f} ms CPU per send"
        f" = {check_share:.1%} of a text send's p50 (a template send skips the text"
        " send's 24-hour window query)"
    )
    results["overhead"] = {"p50": overhead_p50, "mean": overhead_mean, "check": check_share}
    passed = common.print_targets(
        "Targets",
        [
            common.Target(
                "template send overhead over text (p50)",
                f"{overhead_p50:+.1%} (mean {overhead_mean:+.1%})",
                f"< {OVERHEAD_GOAL:.0%}",
                overhead_p50 < OVERHEAD_GOAL,
            )
        ],
    )
    common.write_json(args.json_out, {"benchmark": "wa_templates", "results": results})
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
