"""Inbound channel webhooks: the ack path at a fixed rate, and POST -> message stored, end to end.

What it measures, in one run (gunicorn with the Procfile's ``web`` settings, a real
``dramatiq workers.main`` worker with ``--processes P --threads T``):

``ack``
    Signed WhatsApp Cloud API text-message callbacks (each with its own ``wamid``) are
    POSTed to ``/api/webhooks/meta`` at ``--rate`` requests/s for ``--duration`` s, open
    loop (request *i* is due at ``start + i / rate``) over ``--connections`` keep-alive
    connections. Latency is send -> response, i.e. signature check, account lookup,
    INSERT of the raw payload, commit and the ``process_inbound`` enqueue. No worker runs
    during this phase: it measures the ack path, not the 2-core machine also processing
    500 messages/s (each one a contact lock, a message, counters and three events, each
    dispatched). The worker starts afterwards and drains the backlog.
``ack baseline``
    The same client, rate and gunicorn settings against a bare Falcon app that reads the
    body and answers a constant JSON object (no database, no signature): what gunicorn +
    Falcon + this client cost at that rate on this machine.
``e2e``
    At ``--e2e-rate`` requests/s for ``--duration`` s: POST sent -> ``process_inbound``
    finished (``inbound_events.processed_at``, set by ``clock_timestamp()`` just before its
    commit, which also holds the message row and its ``message.created`` outbox event).
    Every message and event is checked to exist.
``e2e baseline``
    The same worker shape running only a bare actor that INSERTs one row, enqueued at the
    same rate: the broker + worker + one-commit floor.

Targets: ack p99 < 20 ms at 500 requests/s; e2e p99 < 150 ms; no errors.

Run (PostgreSQL and Redis on 127.0.0.1)::

    .venv/bin/python bench/channels_inbound.py
    .venv/bin/python bench/channels_inbound.py --rate 500 --duration 10 --e2e-rate 50

It creates and drops ``omnistream_bench_<random>``, uses Redis namespace
``omnistream-bench-<random>`` and starts and stops its own processes. Exit status: 0 all
targets pass, 1 a target failed, 2 error.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common
from bench.webhooks import worker_argv  # same worker command line

ACK_P99_GOAL_MS = 20.0
E2E_P99_GOAL_MS = 150.0
APP_SECRET = "bench-meta-app-secret"
CONTACTS = 200


# --- the baselines (imported by gunicorn / the baseline worker) ------------------------------


def bare_post_app():
    """``gunicorn 'bench.channels_inbound:bare_post_app()'``: read the body, answer constant."""
    import falcon

    class Sink:
        def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
            req.bounded_stream.read()
            resp.content_type = falcon.MEDIA_JSON
            resp.data = b'{"stored":1,"duplicates":0,"dropped":0}'

    app = falcon.App()
    app.add_route("/api/webhooks/meta", Sink())
    return app


if os.environ.get("BENCH_INBOUND_BASELINE") == "1":
    import dramatiq
    from sqlalchemy import text

    from shared.db import session_scope
    from workers.broker import broker  # noqa: F401

    @dramatiq.actor(queue_name="inbound", max_retries=0)
    def bare_insert(key: str) -> None:
        with session_scope() as session:
            session.execute(
                text("INSERT INTO bench_inbound_baseline (key) VALUES (:key)"), {"key": key}
            )


# --- payloads ------------------------------------------------------------------------------


def whatsapp_body(phone_number_id: str, n: int) -> bytes:
    """A text-message callback shaped like Meta's example, with a unique wamid."""
    sender = f"1631555{n % CONTACTS:04d}"
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [{"profile": {"name": f"Bench {n}"}, "wa_id": sender}],
                            "messages": [
                                {
                                    "from": sender,
                                    "id": f"wamid.bench.{uuid.uuid4().hex}",
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": f"bench message {n}"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


# --- the paced client ----------------------------------------------------------------------


def paced_posts(port: int, bodies: list[bytes], rate: float, connections: int, headers_for) -> dict:
    """POST ``bodies`` at ``rate``/s (open loop) over keep-alive connections; time each."""
    schedule = itertools.count()
    latencies: list[float] = []
    lags: list[float] = []
    sent_at: dict[int, float] = {}
    errors: list[str] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.2
    wall_start = time.time() + 0.2

    def worker() -> None:
        conn = http.client.HTTPConnection(common.LOOPBACK, port, timeout=30)
        try:
            while True:
                i = next(schedule)
                if i >= len(bodies):
                    return
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                body = bodies[i]
                headers = {"Content-Type": "application/json", **headers_for(body)}
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/api/webhooks/meta", body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection(common.LOOPBACK, port, timeout=30)
                    status = f"{type(exc).__name__}"
                t1 = time.perf_counter()
                with lock:
                    sent_at[i] = wall_start + (t0 - start)
                    if status == 200:
                        latencies.append(t1 - t0)
                        lags.append(max(0.0, t0 - due))
                    else:
                        errors.append(str(status))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    elapsed = time.perf_counter() - start
    return {
        "requests": len(latencies) + len(errors),
        "rps": (len(latencies) + len(errors)) / max(elapsed, 1e-9),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        **stats(latencies),
        "schedule_lag_p99_ms": 1000 * common.percentile(sorted(lags), 99),
        "sent_at": sent_at,
    }


def stats(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    return {
        "p50_ms": 1000 * common.percentile(ordered, 50),
        "p99_ms": 1000 * common.percentile(ordered, 99),
        "max_ms": 1000 * (ordered[-1] if ordered else float("nan")),
    }


# --- set-up --------------------------------------------------------------------------------


def start_web(bench: common.Bench, app: str, name: str) -> tuple[common.Child, int]:
    (port,) = common.free_ports(1)
    web = bench.start(
        name,
        [*common.executable("gunicorn"), "--config", "python:api.gunicorn_conf", app],
        {"PORT": str(port), "LOG_LEVEL": "warning"},
    )
    common.wait_until(lambda: _answers(port), f"{name} to listen", timeout=60, children=[web])
    return web, port


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection(common.LOOPBACK, port, timeout=2)
    try:
        conn.request("GET", "/api/webhooks/none")
        conn.getresponse().read()
        return True
    finally:
        conn.close()


def seed(port: int) -> str:
    """Register a tenant and a WhatsApp account (with its own app secret) over HTTP."""
    status, body = common.http_request(
        port,
        "POST",
        "/api/auth/register",
        body={
            "organization_name": "Inbound Bench",
            "full_name": "Bench Admin",
            "email": "admin@inbound-bench.example.com",
            "password": "bench-password-0123456789",
        },
    )
    if status != 201:
        raise common.BenchError(f"register answered {status}: {body}")
    phone_number_id = str(100_000_000_000_000 + int(uuid.uuid4().int % 10**14))
    status, account = common.http_request(
        port,
        "POST",
        "/api/integration-accounts",
        body=account_body(phone_number_id),
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    if status != 201:
        raise common.BenchError(f"account create answered {status}: {account}")
    return phone_number_id


def account_body(phone_number_id: str) -> dict:
    """A WhatsApp account with its own app secret (the one the bench signs with)."""
    return {
        "channel": "whatsapp",
        "name": "Bench line",
        "external_id": phone_number_id,
        "credentials": {"access_token": "EAAG-bench", "app_secret": APP_SECRET},
    }


def signed(body: bytes) -> dict[str, str]:
    from shared.channels.signatures import meta_signature

    return {"X-Hub-Signature-256": meta_signature(APP_SECRET, body)}


def e2e_latencies(sent_at: dict[int, float], keys: list[str], timeout: float) -> dict:
    """Wait for every payload's processing; latency = processed_at - its POST's send time."""
    from sqlalchemy import func, select

    from shared.db import session_scope
    from shared.models import InboundEvent, Message, OutboxEvent

    wanted = {keys[i]: t for i, t in sent_at.items()}
    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as session:
            rows = session.execute(
                select(InboundEvent.provider_event_id, InboundEvent.processed_at).where(
                    InboundEvent.status != "pending"
                )
            ).all()
        done = {k: at for k, at in rows if k in wanted}
        if len(done) >= len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    with session_scope() as session:
        messages = session.scalar(select(func.count()).select_from(Message))
        created = session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.type == "message.created")
        )
    latencies = [done[k].timestamp() - wanted[k] for k in done]
    return {
        "processed": len(done),
        "expected": len(wanted),
        "messages": messages,
        "message_created_events": created,
        **stats(latencies),
    }


# --- the run -------------------------------------------------------------------------------


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    results: dict = {}
    with common.Bench("channels_inbound", env, keep_logs=args.keep_logs) as bench:
        web, port = start_web(bench, "api.app:create_app()", "web")
        phone_number_id = seed(port)

        warm = [whatsapp_body(phone_number_id, n) for n in range(200)]
        paced_posts(port, warm, min(args.rate, 200), args.connections, signed)
        n_ack = int(args.rate * args.duration)
        bodies = [whatsapp_body(phone_number_id, n) for n in range(n_ack)]
        print(f"[channels_inbound] ack: {args.rate:g} POST/s for {args.duration:g} s", flush=True)
        ack = with_cpu(web, lambda: paced_posts(port, bodies, args.rate, args.connections, signed))
        results["ack"] = ack
        print(f"  {ack}", flush=True)
        # The worker starts after the ack phase (see the module docstring) and drains it
        # before end-to-end latency is timed.
        worker = bench.start("worker", worker_argv(args, "workers.main"))
        # NOTE: the events' fan-out too: a dispatch backlog would compete with e2e for CPU.
        common.wait_until(
            lambda: _pending() == 0 and _outbox_pending() == 0,
            "the worker to drain",
            timeout=600,
            children=[worker],
        )

        n_e2e = int(args.e2e_rate * args.duration)
        bodies = [whatsapp_body(phone_number_id, 10_000 + n) for n in range(n_e2e)]
        keys = [_event_key(phone_number_id, b) for b in bodies]
        print(
            f"[channels_inbound] e2e: {args.e2e_rate:g} POST/s for {args.duration:g} s", flush=True
        )
        sent = paced_posts(port, bodies, args.e2e_rate, min(args.connections, 8), signed)
        e2e = e2e_latencies(sent.pop("sent_at"), keys, 120)
        e2e["post_errors"] = sent["errors"]
        results["e2e"] = e2e
        print(f"  {e2e}", flush=True)
        bench.stop(worker)
        bench.stop(web)

        # Baselines: a bare POST app, and a bare one-INSERT actor on the same worker shape.
        bare, bare_port = start_web(bench, "bench.channels_inbound:bare_post_app()", "bare_web")
        paced_posts(bare_port, warm, min(args.rate, 200), args.connections, lambda b: {})
        bodies = [whatsapp_body(phone_number_id, n) for n in range(n_ack)]
        base = with_cpu(
            bare, lambda: paced_posts(bare_port, bodies, args.rate, args.connections, lambda b: {})
        )
        results["ack_baseline"] = base
        print(f"  ack baseline {base}", flush=True)
        bench.stop(bare)
        results["e2e_baseline"] = e2e_baseline(bench, args, n_e2e)
        print(f"  e2e baseline {results['e2e_baseline']}", flush=True)
    return report(args, results)


def with_cpu(server: common.Child, measure) -> dict:
    """``measure()``'s figures plus the server's and PostgreSQL's CPU ms per request.

    PERF: on a shared machine, CPU per request is the least noisy figure: latency
    also counts the time other processes held the cores.
    """
    meter = common.CpuMeter({"server": server.pid})
    start = meter.sample()
    result = measure()
    usage = common.CpuMeter.usage(start, meter.sample())
    result.pop("sent_at", None)
    requests = max(result["requests"], 1)
    result["server_cpu_ms_per_req"] = 1000 * usage.trees["server"] / requests
    result["postgres_cpu_ms_per_req"] = 1000 * usage.postgres / requests
    result["machine_busy_pct"] = usage.machine_busy_pct
    return result


def _pending() -> int:
    from sqlalchemy import func, select

    from shared.db import session_scope
    from shared.models import InboundEvent

    with session_scope() as session:
        return session.scalar(
            select(func.count()).select_from(InboundEvent).where(InboundEvent.status == "pending")
        )


def _outbox_pending() -> int:
    from sqlalchemy import func, select

    from shared.db import session_scope
    from shared.models import OutboxEvent

    with session_scope() as session:
        return session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.status == "pending")
        )


def _event_key(phone_number_id: str, body: bytes) -> str:
    message_id = json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    return f"{phone_number_id}/{message_id}"


def e2e_baseline(bench: common.Bench, args: argparse.Namespace, count: int) -> dict:
    from sqlalchemy import text

    from shared.db import session_scope

    with session_scope() as session:
        session.execute(
            text(
                "CREATE TABLE bench_inbound_baseline"
                " (key text PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())"
            )
        )
    os.environ["BENCH_INBOUND_BASELINE"] = "1"
    worker = bench.start("baseline_worker", worker_argv(args, "bench.channels_inbound"))
    import bench.channels_inbound as me

    me.bare_insert.send("probe")
    common.wait_until(
        lambda: _baseline_rows(["probe"]), "baseline probe", timeout=90, children=[worker]
    )
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / args.e2e_rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        key = f"k{i}"
        sent[key] = time.time()
        me.bare_insert.send(key)
    rows = common.wait_until(
        lambda: (r := _baseline_rows(list(sent))) and len(r) >= count and r,
        "baseline inserts",
        timeout=120,
        children=[worker],
    )
    bench.stop(worker)
    return {"processed": len(rows), **stats([at - sent[k] for k, at in rows.items()])}


def _baseline_rows(keys: list[str]) -> dict[str, float]:
    from sqlalchemy import text

    from shared.db import session_scope

    with session_scope() as session:
        rows = session.execute(
            text("SELECT key, at FROM bench_inbound_baseline WHERE key = ANY(:keys)"),
            {"keys": keys},
        ).all()
    return {k: at.timestamp() for k, at in rows}


def report(args: argparse.Namespace, results: dict) -> int:
    ack, base, e2e, e2e_base = (
        results["ack"],
        results["ack_baseline"],
        results["e2e"],
        results["e2e_baseline"],
    )
    f = common.fmt
    common.print_table(
        "Inbound webhooks",
        ["measurement", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "vs base"],
        [
            (
                f"ack {args.rate:g}/s",
                ack["requests"],
                f(ack["rps"]),
                f(ack["p50_ms"]),
                f(ack["p99_ms"]),
                f(ack["max_ms"]),
                ack["errors"],
                f"{ack['p99_ms'] / base['p99_ms']:.1f}x p99",
            ),
            (
                "ack baseline (bare POST)",
                base["requests"],
                f(base["rps"]),
                f(base["p50_ms"]),
                f(base["p99_ms"]),
                f(base["max_ms"]),
                base["errors"],
                "1.0x",
            ),
            (
                f"e2e {args.e2e_rate:g}/s",
                e2e["processed"],
                "-",
                f(e2e["p50_ms"]),
                f(e2e["p99_ms"]),
                f(e2e["max_ms"]),
                e2e["post_errors"] + e2e["expected"] - e2e["processed"],
                f"{e2e['p99_ms'] / e2e_base['p99_ms']:.1f}x p99",
            ),
            (
                "e2e baseline (bare actor)",
                e2e_base["processed"],
                "-",
                f(e2e_base["p50_ms"]),
                f(e2e_base["p99_ms"]),
                f(e2e_base["max_ms"]),
                0,
                "1.0x",
            ),
        ],
    )
    print(
        f"\nCPU per request: ack {f(ack['server_cpu_ms_per_req'], 2)} ms server +"
        f" {f(ack['postgres_cpu_ms_per_req'], 2)} ms PostgreSQL; bare"
        f" {f(base['server_cpu_ms_per_req'], 2)} ms server"
        f" ({ack['server_cpu_ms_per_req'] / max(base['server_cpu_ms_per_req'], 1e-9):.1f}x);"
        f" machine busy {f(ack['machine_busy_pct'], 0)} % during the ack phase"
    )
    print(
        f"\nack client schedule lag p99 {f(ack['schedule_lag_p99_ms'])} ms (how late requests"
        " left the client; large values mean the client, not the server, fell behind)"
    )
    passed = common.print_targets(
        "Targets",
        [
            common.Target(
                f"ack p99 at {args.rate:g}/s",
                f"{f(ack['p99_ms'])} ms",
                f"< {ACK_P99_GOAL_MS:g} ms",
                ack["p99_ms"] < ACK_P99_GOAL_MS and ack["errors"] == 0,
            ),
            common.Target(
                "e2e p99 (POST -> message + message.created)",
                f"{f(e2e['p99_ms'])} ms",
                f"< {E2E_P99_GOAL_MS:g} ms",
                e2e["p99_ms"] < E2E_P99_GOAL_MS and e2e["processed"] == e2e["expected"],
            ),
            common.Target(
                "every message stored once, with its event",
                f"{e2e['messages']} messages / {e2e['message_created_events']} events",
                "equal",
                e2e["messages"] == e2e["message_created_events"],
            ),
        ],
    )
    common.write_json(args.json_out, results)
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500.0, help="ack POST/s")
    parser.add_argument("--e2e-rate", type=float, default=50.0, help="end-to-end POST/s")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--connections", type=int, default=32, help="client connections")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=8, help="worker threads")
    parser.add_argument("--json-out", help="also write the figures as JSON to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the child logs")
    args = parser.parse_args(argv)
    if not (0 < args.rate <= 5000 and 0 < args.e2e_rate <= 1000 and 0 < args.duration <= 300):
        parser.error("--rate (0, 5000], --e2e-rate (0, 1000], --duration (0, 300]")
    return args


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
