"""Product import: 100,000 CSV rows through ``import_products``, against a bare INSERT baseline.

What it measures, in one run, on a database of its own:

- baseline: the same rows inserted into ``ai_products`` by a bare multi-row INSERT per batch (no
  parsing, no validation, no upsert, no job bookkeeping): what Postgres alone costs,
  generated column and indexes included.
- import: the real path, :func:`shared.ai.product_import.start_import` (what
  ``POST /api/ai-agents/{id}/products/import`` calls) then the body of the
  ``import_products`` actor, run in this process: CSV parsing, per-row validation,
  upsert by SKU in batches, the job's progress committed with each batch.
- re-import: the same file again, every row now an update of an existing product.

The ratio import/baseline says what the import adds over Postgres itself. ``--bad`` rows
with a negative price are mixed in; each must be reported in the job's errors.

Targets: every row created, updated or reported; the import takes at most 3x the
baseline's time. The rows/s are printed too, but on a shared machine the neighbours' load
moves both runs: compare the ratio (measured in the same run), not the absolute figures.

Run::

    .venv/bin/python bench/ai_products_import.py                 # 100,000 rows
    .venv/bin/python bench/ai_products_import.py --rows 20000    # a quick look

Exit status: 0 all targets pass, 1 a target failed, 2 error.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="CSV data rows")
    parser.add_argument("--bad", type=int, default=100, help="rows with a negative price")
    parser.add_argument("--batch", type=int, default=None, help="AI_PRODUCT_IMPORT_BATCH")
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


def csv_body(rows: int, bad: int) -> bytes:
    every = max(rows // max(bad, 1), 1)
    lines = ["sku,name,description,price,currency,url,in_stock"]
    for i in range(rows):
        price = "-1" if bad and i % every == every - 1 and i // every < bad else f"{i % 997}.99"
        lines.append(
            f"SKU-{i:07d},Product {i},Sturdy product number {i} for daily use,{price},EUR,"
            f"https://shop.example.com/p/{i},{'yes' if i % 3 else 'no'}"
        )
    return ("\n".join(lines) + "\n").encode()


def new_agent(name: str):
    """A tenant of its own and one AI agent; ``(ctx, agent_id)``."""
    from shared.ai import agents
    from shared.context import Ctx
    from shared.db import session_scope
    from shared.events import Actor
    from shared.models import Tenant

    with session_scope() as session:
        tenant = Tenant(name=f"Bench {name}", slug=f"bench-{uuid.uuid4().hex[:12]}")
        session.add(tenant)
        session.flush()
        ctx = Ctx.system(tenant.id, actor=Actor.system())
        agent = agents.create_agent(
            session,
            ctx,
            {name: None for name in agents.FIELDS}
            | {
                "name": name,
                "provider": "offline",
                "instructions": "",
                "temperature": 0.3,
                "max_tokens": 512,
                "guardrails": [],
                "settle_seconds": 2.0,
                "confidence_threshold": 0.1,
                "prompt_cost_per_1k": 0,
                "completion_cost_per_1k": 0,
                "is_active": True,
            },
        )
        return ctx, agent.id


def baseline(body: bytes, batch: int) -> float:
    """Seconds a bare multi-row INSERT per batch of the same rows takes (parsed beforehand)."""
    import csv
    import io

    from sqlalchemy import insert

    from shared.db import session_scope
    from shared.models import AiProduct

    ctx, agent_id = new_agent("Baseline")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    started = time.monotonic()
    for first in range(0, len(rows), batch):
        with session_scope() as session:
            session.connection().execute(
                insert(AiProduct).values(
                    [
                        {
                            "id": uuid.uuid4(),
                            "tenant_id": ctx.tenant_id,
                            "ai_agent_id": agent_id,
                            "sku": r["sku"],
                            "name": r["name"],
                            "description": r["description"],
                            "price": abs(float(r["price"])),
                            "currency": r["currency"],
                            "url": r["url"],
                            "in_stock": r["in_stock"] == "yes",
                            "attributes": {},
                        }
                        for r in rows[first : first + batch]
                    ]
                )
            )
    return time.monotonic() - started


def import_once(ctx, agent_id, body: bytes, batch: int) -> tuple[float, dict]:
    from shared.ai import product_import
    from shared.db import session_scope
    from shared.models import Job

    started = time.monotonic()
    with session_scope() as session:
        job = product_import.start_import(
            session, ctx, agent_id, body, "csv", enqueue=lambda _job, _tenant: None
        )
        job_id = job.id
    status = product_import.process_import(job_id, batch_size=batch)
    elapsed = time.monotonic() - started
    with session_scope() as session:
        result = dict(session.get(Job, job_id).result)
    result["status"] = status
    return elapsed, result


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    with common.Bench("ai_products_import", env):
        from shared.config import get_settings

        batch = args.batch or get_settings().ai_product_import_batch
        body = csv_body(args.rows, args.bad)
        print(f"[ai_products_import] {args.rows:,} rows, {len(body) / 1e6:.1f} MB, batch {batch}")
        base_s = baseline(body, batch)
        print(f"  baseline (bare INSERT): {base_s:.1f} s", flush=True)
        ctx, agent_id = new_agent("Catalogue")
        first_s, first = import_once(ctx, agent_id, body, batch)
        print(f"  import: {first_s:.1f} s {first['created']:,} created", flush=True)
        again_s, again = import_once(ctx, agent_id, body, batch)
        print(f"  re-import: {again_s:.1f} s {again['updated']:,} updated", flush=True)
    good = args.rows - args.bad
    common.print_table(
        f"Product import: {args.rows:,} CSV rows ({args.bad} bad), batch {batch}",
        ["run", "seconds", "rows/s", "x baseline time"],
        [
            (
                "bare INSERT (baseline)",
                common.fmt(base_s),
                common.fmt(args.rows / base_s, 0),
                "1.0",
            ),
            (
                "import (all new)",
                common.fmt(first_s),
                common.fmt(args.rows / first_s, 0),
                common.fmt(first_s / base_s),
            ),
            (
                "re-import (all updates)",
                common.fmt(again_s),
                common.fmt(args.rows / again_s, 0),
                common.fmt(again_s / base_s),
            ),
        ],
    )
    accounted = (
        first["status"] == "succeeded"
        and (first["created"], first["failed"]) == (good, args.bad)
        and (again["updated"], again["failed"]) == (good, args.bad)
        and len(first["errors"]) == min(args.bad, 1000)
    )
    targets = [
        common.Target(
            f"import of {args.rows:,} rows vs bare INSERT",
            f"{first_s / base_s:.1f}x",
            "<= 3x",
            first_s <= 3 * base_s,
        ),
        common.Target(
            "every row created, updated or reported",
            f"{first['created']:,} + {first['failed']} bad",
            f"{good:,} + {args.bad} bad",
            accounted,
        ),
    ]
    passed = common.print_targets("Targets (bench/ai_products_import.py)", targets)
    common.write_json(
        args.json_out,
        {
            "benchmark": "ai_products_import",
            "results": {"baseline_s": base_s, "import_s": first_s, "reimport_s": again_s},
        },
    )
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
