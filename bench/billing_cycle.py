"""``billing_cycle`` over many subscriptions whose periods end in the same hour.

What it measures: this run's own database holds ``--subscriptions`` workspaces (100,000 by
default), each with a subscription whose period ended within the last hour, in the mix a
real platform has: most ``active`` on a monthly plan, some ``past_due`` (they renew too),
trials ending (half with a payment method: converted; half without: cancelled),
``cancel_at_period_end`` (cancelled), pending downgrades, attached add-ons (one of them
detached at the period end) and repeating coupons. Rows are written with set-based SQL.
Then ``shared.billing.cycle.run`` runs once, exactly as the scheduler's ``billing_cycle``
job calls it (batches of 500, ``FOR UPDATE SKIP LOCKED``, a commit per batch), timed.

Baseline in the same run: the bare write of as many invoices and invoice lines as the
cycle wrote, with one ``INSERT ... SELECT`` each into scratch copies of the tables (the
floor for putting those rows on disk); the cycle's wall time is printed as a ratio of it.

Charges: the cycle hands each invoice to ``charge_invoice`` after its batch commits
(``shared.billing.charge_queue``); a recording enqueuer counts those hand-offs (each
invoice exactly once). Then every handed-off invoice is sent to ``charge_invoice`` and a
real worker (``dramatiq workers.main --processes P --threads T``, ``BILLING_PROVIDER=stripe``)
charges them at Stripe's fake (``tests/peers/stripe_fake.py``, in this process) for
``--charge-seconds``: charges/s = invoices paid / seconds since the first send. Beside it,
in the same run, the bare provider call rate: plain httpx POSTs of the same form body at
the same concurrency (``bench/billing_charges.py``'s baseline), no database.

Run (from the repository root, PostgreSQL and Redis on 127.0.0.1)::

    .venv/bin/python bench/billing_cycle.py                       # 100,000 subscriptions
    .venv/bin/python bench/billing_cycle.py --subscriptions 10000 --charge-seconds 30

It creates and drops ``omnistream_bench_<random>``. Exit status: 0 every due
subscription was handled once, 1 not, 2 error. No speed target is set by the issue
beyond "fast": the figures are reported (taken under load on a shared machine).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="renewals per transaction")
    parser.add_argument(
        "--charge-seconds", type=float, default=60.0, help="how long the worker charges"
    )
    parser.add_argument("--processes", type=int, default=2, help="charging worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process")
    parser.add_argument("--json", help="write the results to this file")
    return parser.parse_args(argv)


BUILD = [
    # the catalogue
    """
    INSERT INTO billing_plans (id, code, name, currency, price_amount, billing_interval,
                               trial_days, features, is_active, is_default_trial, sort_order)
    VALUES ('00000000-0000-0000-0000-0000000000a1', 'basic', 'Basic', 'USD', 1900, 'month',
            14, '{}', true, false, 0),
           ('00000000-0000-0000-0000-0000000000a2', 'pro', 'Pro', 'USD', 4900, 'month',
            14, '{}', true, false, 1)
    """,
    """
    INSERT INTO billing_add_ons (id, code, name, currency, price_amount, extra_seats,
                                 extra_monthly_messages, extra_monthly_ai_replies,
                                 extra_storage_bytes, is_active)
    VALUES ('00000000-0000-0000-0000-0000000000b1', 'seats', 'Seats', 'USD', 500, 5, 0, 0, 0,
            true)
    """,
    """
    INSERT INTO billing_coupons (id, code, name, percent_off, duration, duration_periods,
                                 times_redeemed, eligible_plan_ids, is_active)
    VALUES ('00000000-0000-0000-0000-0000000000c1', 'launch', 'Launch', 20, 'repeating', 6, 0,
            '{}', true)
    """,
    # the workspaces: bench-<n>
    """
    INSERT INTO tenants (id, name, slug, timezone, status)
    SELECT gen_random_uuid(), 'Bench ' || n, 'bench-' || n, 'UTC', 'active'
      FROM generate_series(1, :count) AS n
    """,
    # one subscription each, its period ended within the last hour; n picks the mix
    """
    INSERT INTO billing_subscriptions (id, tenant_id, plan_id, status, currency, price_amount,
        current_period_start, current_period_end, trial_ends_at, cancel_at_period_end,
        pending_plan_id, coupon_id, coupon_periods_left, past_due_since)
    SELECT gen_random_uuid(), t.id,
           CASE WHEN n % 10 = 1 THEN '00000000-0000-0000-0000-0000000000a2'::uuid
                ELSE '00000000-0000-0000-0000-0000000000a1'::uuid END,
           CASE WHEN n % 20 = 3 THEN 'past_due' WHEN n % 20 = 4 THEN 'trialing'
                ELSE 'active' END,
           'USD', 1900, e - interval '1 month', e,
           CASE WHEN n % 20 = 4 THEN e END,
           n % 20 = 5,
           CASE WHEN n % 10 = 1 THEN '00000000-0000-0000-0000-0000000000a1'::uuid END,
           CASE WHEN n % 10 = 7 THEN '00000000-0000-0000-0000-0000000000c1'::uuid END,
           CASE WHEN n % 10 = 7 THEN 2 END,
           CASE WHEN n % 20 = 3 THEN e - interval '5 days' END
      FROM (SELECT id, CAST(substr(slug, 7) AS int) AS n,
                   now() - make_interval(secs => CAST(substr(slug, 7) AS int) % 3600) AS e
              FROM tenants WHERE slug LIKE 'bench-%') AS t
    """,
    # add-ons on every 10th (every 20th leaves at the period end)
    """
    INSERT INTO billing_subscription_add_ons (id, tenant_id, subscription_id, add_on_id,
        quantity, price_amount, attached_at, detach_at_period_end)
    SELECT gen_random_uuid(), s.tenant_id, s.id, '00000000-0000-0000-0000-0000000000b1', 2,
           500, s.current_period_start, t.n % 20 = 8
      FROM billing_subscriptions s
      JOIN (SELECT id, CAST(substr(slug, 7) AS int) AS n FROM tenants
             WHERE slug LIKE 'bench-%') AS t ON t.id = s.tenant_id
     WHERE t.n % 10 = 8
    """,
    # payment methods: every workspace except half the trials
    """
    INSERT INTO billing_payment_methods (id, tenant_id, provider, provider_payment_method_id,
        brand, last4, is_default)
    SELECT gen_random_uuid(), t.id, 'fake', 'pm_' || t.n, 'visa', '4242', true
      FROM (SELECT id, CAST(substr(slug, 7) AS int) AS n FROM tenants
             WHERE slug LIKE 'bench-%') AS t
     WHERE t.n % 40 <> 4
    """,
]


def build(count: int) -> float:
    from sqlalchemy import text

    from shared.db import session_scope

    started = time.perf_counter()
    with session_scope() as session:
        session.execute(text("SET LOCAL statement_timeout = 0"))  # the data build only
        for statement in BUILD:
            session.execute(text(statement), {"count": count})
    with session_scope() as session:
        session.execute(text("ANALYZE"))
    return time.perf_counter() - started


class ChargeHandOffs:
    """The recording enqueuer: what ``charge_invoice`` would receive, and how often."""

    def __init__(self) -> None:
        self.count = 0
        self.distinct: set[uuid.UUID] = set()

    def __call__(self, ids) -> None:
        self.count += len(ids)
        self.distinct.update(ids)


def install_charge_hook() -> ChargeHandOffs:
    """Record the cycle's hand-offs (the charges are sent after it, see :func:`charge`)."""
    from shared.billing import charge_queue

    recorder = ChargeHandOffs()
    charge_queue.set_enqueuer(recorder)
    return recorder


def bare_write(invoices: int, lines: int) -> float:
    """The floor: as many invoice and line rows, one set-based INSERT each, in scratch tables."""
    from sqlalchemy import text

    from shared.db import session_scope

    started = time.perf_counter()
    with session_scope() as session:
        session.execute(text("SET LOCAL statement_timeout = 0"))
        session.execute(
            text(
                "CREATE TEMP TABLE scratch_invoices (LIKE billing_invoices INCLUDING DEFAULTS)"
                " ON COMMIT DROP"
            )
        )
        session.execute(
            text(
                "CREATE TEMP TABLE scratch_lines (LIKE billing_invoice_lines INCLUDING DEFAULTS)"
                " ON COMMIT DROP"
            )
        )
        session.execute(
            text(
                """
                INSERT INTO scratch_invoices (id, tenant_id, number, status, reason, currency,
                    subtotal, discount_amount, tax_rate_bps, tax_amount, total, amount_paid,
                    amount_refunded, charge_attempts, next_charge_at, period_start, period_end)
                SELECT gen_random_uuid(), gen_random_uuid(), 'INV-' || n, 'open',
                       'subscription_cycle', 'USD', 1900, 0, 0, 0, 1900, 0, 0, 0, now(),
                       now(), now() + interval '1 month'
                  FROM generate_series(1, :n) AS n
                """
            ),
            {"n": invoices},
        )
        session.execute(
            text(
                """
                INSERT INTO scratch_lines (id, tenant_id, invoice_id, position, kind,
                    description, quantity, unit_amount, amount)
                SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 1, 'plan',
                       'Basic (monthly)', 1, 1900, 1900
                  FROM generate_series(1, :n) AS n
                """
            ),
            {"n": lines},
        )
    return time.perf_counter() - started


def counts() -> dict[str, int]:
    from sqlalchemy import text

    from shared.db import session_scope

    with session_scope() as session:
        session.execute(text("SET LOCAL statement_timeout = 0"))
        row = session.execute(
            text(
                """
                SELECT
                  (SELECT count(*) FROM billing_invoices WHERE reason = 'subscription_cycle'),
                  (SELECT count(*) FROM billing_invoice_lines),
                  (SELECT count(*) FROM billing_subscriptions
                    WHERE status <> 'cancelled' AND current_period_end <= now()),
                  (SELECT count(*) FROM (SELECT subscription_id, period_start
                     FROM billing_invoices WHERE reason = 'subscription_cycle'
                     GROUP BY 1, 2 HAVING count(*) > 1) AS twice),
                  (SELECT count(*) FROM billing_subscriptions WHERE status = 'cancelled')
                """
            )
        ).one()
    return dict(
        zip(("invoices", "lines", "still_due", "renewed_twice", "cancelled"), row, strict=True)
    )


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    from tests.peers.stripe_fake import start_fake_stripe

    stripe, server = start_fake_stripe()
    try:
        with common.Bench("billing_cycle", env) as bench:
            from shared.billing import cycle
            from shared.db import session_scope

            built = build(args.subscriptions)
            print(f"[billing_cycle] {args.subscriptions} subscriptions built in {built:.1f} s")
            hand_offs = install_charge_hook()
            started = time.perf_counter()
            with session_scope() as session:
                outcome = cycle.run(session, batch=args.batch)
            wall = time.perf_counter() - started
            found = counts()
            floor = bare_write(found["invoices"], found["lines"])
            charges = charge(args, bench, stripe, sorted(hand_offs.distinct))
    finally:
        server.shutdown()
        server.server_close()
    return report(args, outcome, wall, found, floor, hand_offs, charges)


def charge(args, bench, stripe, invoice_ids: list[uuid.UUID]) -> dict:
    """The worker charges the cycle's invoices at Stripe's fake for ``--charge-seconds``;
    then the bare provider call at the same concurrency."""
    import os

    from sqlalchemy import func, select, text

    from bench.billing_charges import run_baseline
    from shared.config import get_settings
    from shared.db import session_scope
    from shared.models.billing import BillingInvoice

    with session_scope() as session:  # every customer and card as the fake knows them
        session.execute(
            text(
                "INSERT INTO billing_accounts (tenant_id, provider, provider_customer_id)"
                " SELECT id, 'stripe', 'cus_b' FROM tenants WHERE slug LIKE 'bench-%'"
                " ON CONFLICT (tenant_id) DO UPDATE SET provider = 'stripe',"
                " provider_customer_id = 'cus_b'"
            )
        )
        session.execute(
            text(
                "UPDATE billing_payment_methods SET provider = 'stripe',"
                " provider_payment_method_id = 'pm_card_visa'"
            )
        )
    os.environ.update(
        BILLING_PROVIDER="stripe", STRIPE_API_BASE=stripe.url, STRIPE_API_KEY="sk_test_bench"
    )
    get_settings.cache_clear()
    from workers.actors.billing import charge_invoice

    def paid() -> int:
        with session_scope() as session:
            return session.scalar(
                select(func.count())
                .select_from(BillingInvoice)
                .where(BillingInvoice.status == "paid", BillingInvoice.total > 0)
            )

    already = paid()
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
    print(f"[billing_cycle] charging {len(invoice_ids)} invoices", flush=True)
    started = time.perf_counter()
    for invoice_id in invoice_ids:
        charge_invoice.send(str(invoice_id))
    sent_s = time.perf_counter() - started
    deadline = started + args.charge_seconds
    while time.perf_counter() < deadline and paid() - already < len(invoice_ids):
        worker.check_alive()
        time.sleep(0.5)
    elapsed = time.perf_counter() - started
    done = paid() - already
    bench.stop(worker)  # SIGTERM: the charges in flight finish and are recorded
    recorded = paid() - already
    at_the_fake = len(stripe.charges)
    concurrency = args.processes * args.threads
    calls = max(500, min(done, 20_000))
    print(f"[billing_cycle] baseline: {calls} bare POSTs x {concurrency} threads", flush=True)
    baseline = run_baseline(stripe.url, calls, concurrency)
    return {
        "invoices": len(invoice_ids),
        "paid": done,
        "seconds": elapsed,
        "per_s": done / elapsed,
        "send_s": sent_s,
        "recorded": recorded,
        "at_the_fake": at_the_fake,
        "baseline_per_s": baseline["per_s"],
        "concurrency": concurrency,
    }


def report(args, outcome, wall: float, found: dict, floor: float, hand_offs, charges) -> int:
    handled = outcome.renewed + outcome.trials_converted + outcome.cancelled
    common.print_table(
        f"billing_cycle over {args.subscriptions} subscriptions due in the same hour"
        f" (batches of {args.batch}; taken under load on a shared machine)",
        ["figure", "value"],
        [
            ("wall time", f"{wall:.1f} s"),
            (
                "renewed / trials converted / cancelled",
                f"{outcome.renewed} / {outcome.trials_converted} / {outcome.cancelled}",
            ),
            ("invoices written (lines)", f"{found['invoices']} ({found['lines']})"),
            ("invoices/s", f"{found['invoices'] / wall:.0f}"),
            ("subscriptions handled/s", f"{handled / wall:.0f}"),
            ("baseline: bare set-based write of the same rows", f"{floor:.2f} s"),
            ("cycle / baseline", f"{wall / floor:.1f}x"),
            ("charge hand-offs (distinct)", f"{hand_offs.count} ({len(hand_offs.distinct)})"),
            (
                f"charges/s (worker {args.processes} x {args.threads}, Stripe's fake)",
                f"{charges['per_s']:.1f}: {charges['paid']} paid in {charges['seconds']:.0f} s",
            ),
            (
                f"bare provider call ({charges['concurrency']} threads)",
                f"{charges['baseline_per_s']:.1f}/s",
            ),
            ("charges / bare call", f"{charges['per_s'] / charges['baseline_per_s']:.0%}"),
            (
                "the hour's charges at that rate",
                f"{charges['invoices'] / charges['per_s'] / 60:.0f} min",
            ),
        ],
    )
    passed = common.print_targets(
        "Checks",
        [
            common.Target(
                "every due subscription handled",
                f"{found['still_due']} left due",
                "0",
                found["still_due"] == 0 and handled >= args.subscriptions,
            ),
            common.Target(
                "no period renewed twice",
                str(found["renewed_twice"]),
                "0",
                found["renewed_twice"] == 0,
            ),
            common.Target(
                "each paid invoice charged once at the provider",
                f"{charges['at_the_fake']} charges for {charges['recorded']} paid",
                "equal",
                charges["at_the_fake"] == charges["recorded"],
            ),
            common.Target(
                "each invoice handed to charge_invoice once",
                f"{hand_offs.count} for {len(hand_offs.distinct)}",
                "equal",
                hand_offs.count == len(hand_offs.distinct),
            ),
        ],
    )
    common.write_json(
        args.json,
        {
            "subscriptions": args.subscriptions,
            "wall_s": wall,
            "invoices": found["invoices"],
            "invoices_per_s": found["invoices"] / wall,
            "baseline_s": floor,
            "ratio": wall / floor,
            "charges": charges,
            **outcome.as_dict(),
        },
    )
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
