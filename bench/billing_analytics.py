"""Billing Admin analytics over a platform-sized book: 100,000 subscriptions.

What it measures, in one run:

- seed: ``--subscriptions`` tenants each with a subscription (active, past due, trialing
  or cancelled; monthly and yearly plans in two currencies; a third with a coupon, some
  with add-ons) and ``--invoices`` paid invoices each with a plan line, and refunds, all
  with ``INSERT ... SELECT generate_series``, then ANALYZE.
- baseline: a bare aggregate scan of the same tables (``count(*)`` and ``sum`` over
  subscriptions, invoices and lines): what reading the rows costs on this machine now.
- each figure (``shared.billing.analytics``): MRR, revenue by plan, monthly revenue, churn
  and the combined dashboard, in ``--repeat`` interleaved rounds: the median ms and the
  median of each round's ratio to that round's baseline, so a loaded, shared machine
  moves both alike.

Target: the combined dashboard under 2 s at 100,000 subscriptions and 3 invoices each.

Run::

    .venv/bin/python bench/billing_analytics.py                      # 100,000 subscriptions
    .venv/bin/python bench/billing_analytics.py --subscriptions 10000

Exit status: 0 all targets pass, 1 a target failed, 2 error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

SEED = [
    """INSERT INTO billing_plans (id, code, name, currency, price_amount, billing_interval,
                                  trial_days, features, is_active, is_default_trial, sort_order)
       VALUES (gen_random_uuid(), 'bench-m', 'Monthly', 'USD', 2900, 'month',
               0, '{}', true, false, 0),
              (gen_random_uuid(), 'bench-y', 'Yearly', 'USD', 29000, 'year',
               0, '{}', true, false, 1),
              (gen_random_uuid(), 'bench-e', 'Euro', 'EUR', 2500, 'month',
               0, '{}', true, false, 2)""",
    """INSERT INTO billing_coupons (id, code, name, percent_off, duration, times_redeemed,
                                    eligible_plan_ids, is_active)
       VALUES (gen_random_uuid(), 'bench-forever', 'F', 10, 'forever', 0, '{}', true)""",
    """INSERT INTO billing_add_ons (id, code, name, currency, price_amount, extra_seats,
                                    extra_monthly_messages, extra_monthly_ai_replies,
                                    extra_storage_bytes, is_active)
       VALUES (gen_random_uuid(), 'bench-seats', 'Seats', 'USD', 500, 5, 0, 0, 0, true)""",
    """INSERT INTO tenants (id, name, slug, timezone, status)
       SELECT gen_random_uuid(), 'Bench ' || g, 'bench-' || g, 'UTC', 'active'
         FROM generate_series(1, :n) g""",
    """INSERT INTO billing_subscriptions
           (id, tenant_id, plan_id, status, currency, price_amount, current_period_start,
            current_period_end, trial_ends_at, cancel_at_period_end, ended_at, coupon_id,
            created_at)
       SELECT gen_random_uuid(), t.id, p.id,
              (ARRAY['active', 'active', 'active', 'past_due', 'trialing', 'cancelled'])[1 + k % 6],
              p.currency, p.price_amount, now() - interval '10 days', now() + interval '20 days',
              CASE WHEN k % 6 = 4 THEN now() + interval '5 days' END, false,
              CASE WHEN k % 6 = 5 THEN now() - (k % 40) * interval '1 day' END,
              CASE WHEN k % 3 = 0 THEN (SELECT id FROM billing_coupons LIMIT 1) END,
              now() - (k % 400) * interval '1 day'
         FROM (SELECT id, row_number() OVER () AS k FROM tenants WHERE slug LIKE 'bench-%') t
         JOIN billing_plans p ON p.code = (ARRAY['bench-m', 'bench-y', 'bench-e'])[1 + t.k % 3]""",
    """INSERT INTO billing_subscription_add_ons
           (id, tenant_id, subscription_id, add_on_id, quantity, price_amount,
            detach_at_period_end)
       SELECT gen_random_uuid(), s.tenant_id, s.id, a.id, 1, a.price_amount, false
         FROM billing_subscriptions s, billing_add_ons a
        WHERE s.currency = 'USD' AND s.price_amount = 2900 AND random() < 0.25""",
    """INSERT INTO billing_invoices
           (id, tenant_id, subscription_id, number, status, reason, currency, subtotal,
            discount_amount, tax_rate_bps, tax_amount, total, amount_paid, amount_refunded,
            paid_at, charge_attempts, created_at)
       SELECT gen_random_uuid(), s.tenant_id, s.id, 'B-' || substr(md5(s.id::text || i), 1, 24),
              CASE WHEN i = 1 AND hashtext(s.id::text) % 20 = 0 THEN 'partially_refunded'
                   ELSE 'paid' END,
              'subscription_cycle', s.currency, s.price_amount, 0, 0, 0, s.price_amount,
              s.price_amount,
              CASE WHEN i = 1 AND hashtext(s.id::text) % 20 = 0 THEN s.price_amount / 2
                   ELSE 0 END,
              now() - (i * 30 + (random() * 20)::int) * interval '1 day', 0, now()
         FROM billing_subscriptions s, generate_series(1, :invoices) i""",
    """INSERT INTO billing_invoice_lines
           (id, tenant_id, invoice_id, position, kind, description, quantity, unit_amount,
            amount, plan_id)
       SELECT gen_random_uuid(), i.tenant_id, i.id, 0, 'plan', 'plan', 1, i.subtotal,
              i.subtotal, s.plan_id
         FROM billing_invoices i JOIN billing_subscriptions s ON s.id = i.subscription_id""",
    """INSERT INTO billing_payments
           (id, tenant_id, invoice_id, kind, status, amount, currency, provider,
            idempotency_key, settled_at)
       SELECT gen_random_uuid(), tenant_id, id, 'refund', 'succeeded', amount_refunded,
              currency, 'fake', 'bench-refund-' || id, paid_at + interval '3 days'
         FROM billing_invoices WHERE amount_refunded > 0""",
]

BASELINE = [
    "SELECT count(*), sum(price_amount) FROM billing_subscriptions",
    "SELECT count(*), sum(amount_paid), sum(amount_refunded) FROM billing_invoices",
    "SELECT count(*), sum(amount) FROM billing_invoice_lines",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--invoices", type=int, default=3, help="paid invoices each")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds")
    parser.add_argument(
        "--keep-db",
        action="store_true",
        help="seed once into a kept database and reuse it (drop it yourself when done)",
    )
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


def kept_database(args: argparse.Namespace) -> str | None:
    if not args.keep_db:
        return None
    return f"omnistream_bench_keep_billing_analytics_{args.subscriptions}_{args.invoices}"


def timed_rounds(figures: dict, rounds: int) -> dict[str, list[float]]:
    """ms of every figure per round; the figures interleave so each round's load is shared."""
    times: dict[str, list[float]] = {name: [] for name in figures}
    for _ in range(rounds):
        for name, func in figures.items():
            started = time.perf_counter()
            func()
            times[name].append((time.perf_counter() - started) * 1000)
    return times


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    with common.Bench("billing_analytics", env, keep_database=args.keep_db) as bench:
        from sqlalchemy import text

        from shared.billing import analytics
        from shared.db import session_scope

        started = time.monotonic()
        if bench.database_created or not args.keep_db:
            with session_scope() as session:
                session.execute(text("SET LOCAL statement_timeout = 0"))  # seeding only
                for statement in SEED:
                    session.execute(
                        text(statement), {"n": args.subscriptions, "invoices": args.invoices}
                    )
        with session_scope() as session:
            session.connection().exec_driver_sql("ANALYZE")
            counts = {
                table: session.scalar(text(f"SELECT count(*) FROM {table}"))  # noqa: S608
                for table in ("billing_subscriptions", "billing_invoices", "billing_payments")
            }
        seed_s = time.monotonic() - started
        print(f"seeded {counts} in {seed_s:.0f} s", flush=True)

        now = dt.datetime.now(dt.UTC)
        with session_scope() as session:

            def baseline():
                for statement in BASELINE:
                    session.execute(text(statement)).all()

            figures = {
                "baseline (bare scans)": baseline,
                "mrr": lambda: analytics.mrr(session, now),
                "revenue by plan": lambda: analytics.revenue_by_plan(session),
                "revenue monthly": lambda: analytics.revenue_monthly(session, now),
                "churn": lambda: analytics.churn(session, now),
                "dashboard (all four)": lambda: analytics.dashboard(session, now),
            }
            times = timed_rounds(figures, args.repeat)
    base = times["baseline (bare scans)"]
    results = {name: median(ms) for name, ms in times.items()}
    ratios = {
        name: median([m / b for m, b in zip(ms, base, strict=True)]) for name, ms in times.items()
    }
    common.print_table(
        f"Billing analytics: {counts['billing_subscriptions']:,} subscriptions,"
        f" {counts['billing_invoices']:,} invoices (median of {args.repeat} interleaved"
        " rounds; machine shared)",
        ["figure", "median ms", "x baseline (median of per-round ratios)"],
        [(name, common.fmt(ms), f"{ratios[name]:.2f}") for name, ms in results.items()],
    )
    goal_ms = 2000 * args.subscriptions / 100_000
    dashboard = results["dashboard (all four)"]
    targets = [
        common.Target(
            f"dashboard at {args.subscriptions:,} subscriptions",
            f"{dashboard:.0f} ms",
            f"< {goal_ms:.0f} ms",
            dashboard < goal_ms,
        )
    ]
    passed = common.print_targets("Targets (bench/billing_analytics.py)", targets)
    common.write_json(
        args.json_out,
        {"benchmark": "billing_analytics", "ms": results, "ratios": ratios, "seed_s": seed_s},
    )
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv, database=kept_database)


if __name__ == "__main__":
    raise SystemExit(main())
