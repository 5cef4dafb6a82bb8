"""Automation stats from the rollups, beside the same figures computed by scanning the runs.

What it does, in one run:

1. creates its own database (``bench/common.py``), registers a tenant and writes
   ``--runs`` automation runs over the last 30 days for ``--rules`` rules, with one
   ``INSERT ... SELECT generate_series`` (statuses and durations varied);
2. builds the rollups from those runs (the same buckets ``roll_up_automation_stats``
   keeps, minute/hour/day per rule and for all rules) with one grouped INSERT, timed;
3. measures, through the whole endpoint in-process (falcon's test client: auth,
   validation, JSON), p50/p99 of

   ``overview``  ``GET /api/automation/stats`` over the last 30 days (totals and per rule);
   ``series``    ``GET /api/automation/stats/timeseries?granularity=day`` over 30 days;

   and the same figures by aggregate queries over ``automation_runs`` (count, sums,
   ``percentile_cont`` for p50/p95, per rule and per day), and prints the ratio.

Target: overview and 30-day series p99 < 50 ms from the rollups (issue 17).
The machine may be shared: figures are noisy; the ratio is what carries.

Run (PostgreSQL and Redis on 127.0.0.1)::

    .venv/bin/python bench/automation_stats.py                  # 10,000,000 runs: minutes
    .venv/bin/python bench/automation_stats.py --runs 1000000

Exit status: 0 the target passes, 1 it failed, 2 error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

GOAL_MS = 50.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000_000)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200, help="per rollup target")
    parser.add_argument("--scan-requests", type=int, default=5, help="per scan target")
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


def _register(client) -> tuple[str, uuid.UUID]:
    resp = client.simulate_post(
        "/api/auth/register",
        json={
            "organization_name": "Automation stats bench",
            "full_name": "Bench Admin",
            "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
            "password": "correct horse battery",
        },
    )
    if resp.status_code != 201:
        raise common.BenchError(f"register answered {resp.status_code}: {resp.text}")
    return resp.json["access_token"], uuid.UUID(resp.json["tenant"]["id"])


_RUNS = """
INSERT INTO automation_runs (id, tenant_id, automation_event_id, rule_id, rule_version,
    rule_snapshot, facts, matched, status, duration_ms, reprocess, created_at)
SELECT gen_random_uuid(), :tenant_id, :event_id, (:rules)[1 + i % cardinality(:rules)], 1,
       '{}', '{}', i % 3 = 0,
       CASE WHEN i % 97 = 0 THEN 'failed' WHEN i % 3 = 0 THEN 'matched'
            WHEN i % 11 = 0 THEN 'skipped' ELSE 'not_matched' END,
       0.05 + (i % 1000) * 0.004 + CASE WHEN i % 50 = 0 THEN 30 ELSE 0 END,
       true, now() - make_interval(secs => (i::float8 / :n) * 30 * 86400)
  FROM generate_series(:first, :last) AS i
"""


def _backfill_statement() -> str:
    from shared.models.automation_stats import LATENCY_BOUNDS_MS, LATENCY_COLUMNS

    bounds = ", ".join(str(b) for b in LATENCY_BOUNDS_MS)
    bucket = "(SELECT count(*) FROM unnest(ARRAY[@B@]::float8[]) b WHERE b < duration_ms)"
    histogram = ", ".join(
        "count(*) FILTER (WHERE r.bucket = @I@)".replace("@I@", str(i))
        for i in range(len(LATENCY_COLUMNS))
    )
    template = """
    INSERT INTO automation_stats (tenant_id, granularity, rule_id, bucket_start, runs, matches,
        skipped, failures, actions, duration_ms_sum, @COLUMNS@)
    SELECT :tenant_id, g.granularity, k.rule_id, date_trunc(g.granularity, r.created_at, 'UTC'),
           count(*), count(*) FILTER (WHERE r.status IN ('matched', 'failed')),
           count(*) FILTER (WHERE r.status = 'skipped'),
           count(*) FILTER (WHERE r.status = 'failed'),
           count(*) FILTER (WHERE r.status = 'matched'), sum(r.duration_ms), @HISTOGRAM@
      FROM (SELECT rule_id, status, duration_ms, created_at, @BUCKET@ AS bucket
              FROM automation_runs WHERE tenant_id = :tenant_id) AS r
     CROSS JOIN (VALUES ('minute'), ('hour'), ('day')) AS g(granularity)
     CROSS JOIN LATERAL (VALUES (r.rule_id), ('00000000-0000-0000-0000-000000000000'::uuid))
           AS k(rule_id)
     GROUP BY 1, 2, 3, 4
    """
    template = template.replace("@BUCKET@", bucket.replace("@B@", bounds))
    return template.replace("@COLUMNS@", ", ".join(LATENCY_COLUMNS)).replace(
        "@HISTOGRAM@", histogram
    )


_SCAN_OVERVIEW = """
SELECT rule_id, count(*), count(*) FILTER (WHERE status IN ('matched', 'failed')),
       count(*) FILTER (WHERE status = 'skipped'), count(*) FILTER (WHERE status = 'failed'),
       avg(duration_ms), percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)
  FROM automation_runs
 WHERE tenant_id = :tenant_id AND created_at >= :lo AND created_at < :hi
 GROUP BY GROUPING SETS ((rule_id), ())
"""
_SCAN_SERIES = """
SELECT date_trunc('day', created_at, 'UTC') AS day, count(*),
       count(*) FILTER (WHERE status IN ('matched', 'failed')),
       count(*) FILTER (WHERE status = 'failed'), avg(duration_ms),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)
  FROM automation_runs
 WHERE tenant_id = :tenant_id AND created_at >= :lo AND created_at < :hi
 GROUP BY 1 ORDER BY 1
"""


def _latencies(call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append(1000 * (time.perf_counter() - started))
    return sorted(out)


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    with common.Bench("automation_stats", env):
        import falcon.testing
        from sqlalchemy import text

        from api.app import create_app
        from shared.db import session_scope
        from shared.models import AutomationEvent

        client = falcon.testing.TestClient(create_app())
        token, tenant_id = _register(client)
        rules = [uuid.uuid4() for _ in range(args.rules)]
        with session_scope() as session:
            event = AutomationEvent(
                tenant_id=tenant_id,
                outbox_event_id=uuid.uuid4(),
                event_type="message.created",
                payload={},
                fingerprint="bench",
                status="done",
            )
            session.add(event)
            session.flush()
            event_id = event.id
        started = time.monotonic()
        # One generate_series per million rows (each its own transaction).
        for offset in range(0, args.runs, 1_000_000):
            with session_scope() as session:
                session.execute(text("SET LOCAL statement_timeout = 0"))
                session.execute(
                    text(_RUNS),
                    {
                        "tenant_id": tenant_id,
                        "event_id": event_id,
                        "rules": rules,
                        "n": args.runs,
                        "first": offset + 1,
                        "last": min(offset + 1_000_000, args.runs),
                    },
                )
        print(
            f"[stats] {args.runs:,} runs written in {time.monotonic() - started:.1f} s", flush=True
        )
        started = time.monotonic()
        with session_scope() as session:
            session.execute(text("SET LOCAL statement_timeout = 0"))
            session.execute(text("ANALYZE automation_runs"))
            session.execute(text(_backfill_statement()), {"tenant_id": tenant_id})
            session.execute(text("ANALYZE automation_stats"))
        backfill = time.monotonic() - started
        print(f"[stats] rollups built in {backfill:.1f} s", flush=True)

        now = dt.datetime.now(dt.UTC)
        lo, hi = now - dt.timedelta(days=30), now
        frm = lo.isoformat().replace("+00:00", "Z")
        headers = {"Authorization": f"Bearer {token}"}

        def endpoint(path: str, params: dict):
            def call():
                resp = client.simulate_get(path, params=params, headers=headers)
                if resp.status_code != 200:
                    raise common.BenchError(f"{path} answered {resp.status_code}: {resp.text}")
                return resp.json

            return call

        overview = endpoint("/api/automation/stats", {"from": frm})
        series = endpoint("/api/automation/stats/timeseries", {"from": frm, "granularity": "day"})
        answer = overview()
        if answer["totals"]["runs"] < args.runs * 0.99:
            raise common.BenchError(f"the rollups count {answer['totals']['runs']} runs")

        def scan(sql: str):
            def call():
                with session_scope() as session:
                    session.execute(text("SET LOCAL statement_timeout = 0"))
                    return session.execute(
                        text(sql), {"tenant_id": tenant_id, "lo": lo, "hi": hi}
                    ).all()

            return call

        for call in (overview, series):
            _latencies(call, 10)  # warm-up
        figures = {
            "overview": (
                _latencies(overview, args.requests),
                _latencies(scan(_SCAN_OVERVIEW), args.scan_requests),
            ),
            "series": (
                _latencies(series, args.requests),
                _latencies(scan(_SCAN_SERIES), args.scan_requests),
            ),
        }

    rows, results = [], {"runs": args.runs, "rules": args.rules, "backfill_s": backfill}
    ok = True
    for name, (rollup, scanned) in figures.items():
        p50, p99 = common.percentile(rollup, 50), common.percentile(rollup, 99)
        s50, s99 = common.percentile(scanned, 50), common.percentile(scanned, 99)
        ok = ok and p99 < GOAL_MS
        results[name] = {
            "rollup_p50_ms": p50,
            "rollup_p99_ms": p99,
            "scan_p50_ms": s50,
            "scan_p99_ms": s99,
            "ratio_p50": s50 / p50,
        }
        rows.append(
            [
                name,
                common.fmt(p50),
                common.fmt(p99),
                common.fmt(s50),
                common.fmt(s99),
                common.fmt(s50 / p50, 0),
            ]
        )
    common.print_table(
        f"{args.runs:,} runs, {args.rules} rules, last 30 days (ms; endpoint vs bare scan query)",
        ["figures", "rollup p50", "rollup p99", "scan p50", "scan p99", "scan/rollup"],
        rows,
    )
    common.write_json(args.json_out, results)
    print(f"target: p99 < {GOAL_MS:.0f} ms from the rollups:", "PASS" if ok else "MISS")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
