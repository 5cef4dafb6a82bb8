"""charge_invoice throughput through a real worker, beside the bare provider call rate.

What it measures, in one run:

- engine: one tenant with a Stripe customer and a default payment method, ``--invoices``
  open invoices due now, and a real worker (``dramatiq workers.main --processes P
  --threads T``) with BILLING_PROVIDER=stripe pointed at the fake Stripe
  (``tests/peers/stripe_fake.py``, a threaded HTTP server in this process). Every
  ``charge_invoice`` message is enqueued at once; charges/s = invoices / (last ``paid``
  seen - first enqueue). Each charge is two transactions (the pending row, then the
  outcome) around one provider call through the official ``stripe`` client.
- baseline: the bare provider call: a plain httpx POST of the same form body to the same
  fake's ``/v1/payment_intents``, at the same concurrency (P x T threads), no database.
- worker CPU ms per charge (the worker process tree's CPU over the engine run).

The fake Stripe lives in this process in both phases; in the baseline the client threads
share its interpreter too, so the baseline is if anything pessimistic. On a machine shared
with other work both rates move with the neighbours' load: read the ratio, measured minutes
apart in the same run, and the CPU per charge.

Target: engine >= 50% of the bare call rate (the rest is two commits per charge).

Run::

    .venv/bin/python bench/billing_charges.py                  # 2,000 invoices
    .venv/bin/python bench/billing_charges.py --invoices 500 --threads 4

Exit status: 0 the target passes, 1 it failed, 2 error.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


def make_tenant(env: common.BenchEnv) -> uuid.UUID:
    """A tenant whose customer and default method already exist (as after a card was added)."""
    from shared.db import session_scope
    from shared.models import Tenant
    from shared.models.billing import BillingAccount, BillingPaymentMethod

    with session_scope() as session:
        tenant = Tenant(name="Billing bench", slug=f"billing-bench-{env.run_id}")
        session.add(tenant)
        session.flush()
        session.add(
            BillingAccount(tenant_id=tenant.id, provider="stripe", provider_customer_id="cus_b")
        )
        session.add(
            BillingPaymentMethod(
                tenant_id=tenant.id,
                provider="stripe",
                provider_payment_method_id="pm_card_visa",
                is_default=True,
            )
        )
        return tenant.id


def make_invoices(tenant_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    import datetime as dt

    from sqlalchemy import insert

    from shared.db import session_scope
    from shared.models.billing import BillingInvoice

    ids = [uuid.uuid4() for _ in range(count)]
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "id": i,
            "tenant_id": tenant_id,
            "number": f"B-{uuid.uuid4().hex[:12]}-{n}",
            "status": "open",
            "reason": "subscription_cycle",
            "currency": "USD",
            "subtotal": 4900,
            "total": 4900,
            "next_charge_at": now,
        }
        for n, i in enumerate(ids)
    ]
    with session_scope() as session:
        session.execute(insert(BillingInvoice), rows)
    return ids


def paid_count(ids: list[uuid.UUID]) -> int:
    from sqlalchemy import func, select

    from shared.db import session_scope
    from shared.models.billing import BillingInvoice

    with session_scope() as session:
        return session.scalar(
            select(func.count())
            .select_from(BillingInvoice)
            .where(BillingInvoice.id.in_(ids), BillingInvoice.status == "paid")
        )


def run_engine(args, worker, ids: list[uuid.UUID]) -> dict:
    from workers.actors.billing import charge_invoice

    start_cpu = common.CpuMeter({"worker": worker.pid}).sample()
    started = time.perf_counter()
    for invoice_id in ids:
        charge_invoice.send(str(invoice_id))
    common.wait_until(
        lambda: paid_count(ids) >= len(ids),
        f"{len(ids)} invoices paid",
        timeout=args.drain_timeout,
        interval=0.1,
        children=[worker],
    )
    elapsed = time.perf_counter() - started
    usage = common.CpuMeter.usage(start_cpu, common.CpuMeter({"worker": worker.pid}).sample())
    return {
        "calls": len(ids),
        "per_s": len(ids) / elapsed,
        "seconds": elapsed,
        "worker_cpu_ms": 1000 * usage.trees["worker"] / len(ids),
        "machine_busy_pct": usage.machine_busy_pct,
    }


def run_baseline(url: str, count: int, concurrency: int) -> dict:
    """The same provider call, bare: a form POST per charge from ``concurrency`` threads."""
    import httpx

    local = threading.local()

    def call(n: int) -> int:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=30, trust_env=False)
        body = {
            "amount": "4900",
            "currency": "usd",
            "customer": "cus_b",
            "payment_method": "pm_card_visa",
            "off_session": "true",
            "confirm": "true",
            "metadata[invoice_id]": f"bare-{n}",
        }
        headers = {"Idempotency-Key": f"bare:{uuid.uuid4()}", "Authorization": "Bearer sk_b"}
        return client.post(f"{url}/v1/payment_intents", data=body, headers=headers).status_code

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(call, range(count)))
    elapsed = time.perf_counter() - started
    if any(s != 200 for s in statuses):
        raise common.BenchError(f"baseline answers: {sorted(set(statuses))}")
    return {"calls": count, "per_s": count / elapsed, "seconds": elapsed}


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    from tests.peers.stripe_fake import start_fake_stripe

    stripe, server = start_fake_stripe()
    os.environ.update(
        BILLING_PROVIDER="stripe",
        STRIPE_API_BASE=stripe.url,
        STRIPE_API_KEY="sk_test_bench",
        LOG_LEVEL="WARNING",
    )
    results: dict = {}
    try:
        with common.Bench("billing_charges", env) as bench:
            tenant_id = make_tenant(env)
            warm = make_invoices(tenant_id, 1)
            ids = make_invoices(tenant_id, args.invoices)
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
            run_engine(args, worker, warm)
            print(f"[billing_charges] engine: {args.invoices} charges", flush=True)
            results["engine"] = run_engine(args, worker, ids)
            print(f"  {results['engine']}", flush=True)
            bench.stop(worker)
            charged = len(stripe.charges)
            if charged != args.invoices + 1:
                raise common.BenchError(f"{charged} charges at the fake for {args.invoices + 1}")
            concurrency = args.processes * args.threads
            print(f"[billing_charges] baseline: bare POSTs x {concurrency} threads", flush=True)
            results["baseline"] = run_baseline(stripe.url, args.invoices, concurrency)
            print(f"  {results['baseline']}", flush=True)
    finally:
        server.shutdown()
        server.server_close()
    return report(args, results)


def report(args, results: dict) -> int:
    rows = [
        (
            name,
            r["calls"],
            common.fmt(r["per_s"]),
            common.fmt(r["seconds"], 2),
            common.fmt(r["worker_cpu_ms"]) if "worker_cpu_ms" in r else "",
            f"{r['machine_busy_pct']:.0f}" if "machine_busy_pct" in r else "",
        )
        for name, r in results.items()
    ]
    common.print_table(
        f"charge_invoice through a worker --processes {args.processes} --threads {args.threads}"
        " vs the bare provider call at the same concurrency",
        ["run", "charges", "charges/s", "seconds", "worker CPU ms/charge", "box %"],
        rows,
    )
    ratio = results["engine"]["per_s"] / results["baseline"]["per_s"]
    passed = common.print_targets(
        "Targets (bench/billing_charges.py)",
        [common.Target("engine / bare call rate", f"{ratio:.0%}", ">= 50%", ratio >= 0.5)],
    )
    common.write_json(args.json_out, {"benchmark": "billing_charges", "results": results})
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
