"""Plan limits: what the monthly-messages check adds to a message send.

What it measures, in this process against this run's own database and Redis namespace:
two workspaces, each with a WhatsApp conversation whose 24-hour window is open, and an
agent's reply sent through ``shared.inbox.messages.send_message`` in its own committed
transaction (the same service ``POST /api/conversations/{id}/messages`` calls; no HTTP,
so the difference is not lost in the server's own cost):
- *without billing*: a workspace that has no subscription (a platform without a trial
  plan): the check returns after an in-process lookup;
- *with billing*: a workspace on a plan with a monthly message limit (never reached):
  the check reads the cached limits and takes a slot from this process's lease, reserved
  in Redis with one ``INCRBY`` per up to 64 sends (``shared.billing.usage``).
The two alternate send by send (A, B, A, B...) so drift on a shared machine hits both
alike; the figure is the difference of their medians (on a loaded machine that difference
is noise of a few ms either way: the check alone is the telling figure). The check alone
(``usage.check_message_send`` in a loop, one transaction) is timed too, as the floor of
what it adds.

Target: the check adds < 0.2 ms to a send (median with billing - median without), and
the check alone has a median < 0.2 ms.

Run (from the repository root, PostgreSQL and Redis on 127.0.0.1)::

    .venv/bin/python bench/billing_limits.py                   # 5 rounds of 400 sends each
    .venv/bin/python bench/billing_limits.py --rounds 10 --sends 1000

It creates and drops ``omnistream_bench_<random>`` and uses Redis namespace
``omnistream-bench-<random>`` (deleted at the end). Exit status: 0 targets pass, 1 a
target failed, 2 error.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common

GOAL_MS = 0.2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sends", type=int, default=400, help="sends per workspace per round")
    parser.add_argument("--checks", type=int, default=5000, help="calls of the check alone")
    parser.add_argument("--json", help="write the results to this file")
    return parser.parse_args(argv)


def _workspace(label: str, *, limit: int | None):
    """A workspace, its admin's context and an open WhatsApp conversation."""
    import datetime as dt

    from sqlalchemy import func

    from shared.billing import subscriptions
    from shared.context import Ctx
    from shared.db import session_scope
    from shared.events import Actor
    from shared.identity.permissions import ALL_KEYS
    from shared.identity.tenants import register_tenant
    from shared.models import Contact, Conversation
    from shared.models.billing import BillingPlan

    with session_scope() as session:
        registered = register_tenant(
            session,
            organization_name=f"Limits bench {label}",
            full_name="Bench Admin",
            email=f"bench-{uuid.uuid4().hex[:8]}@example.com",
            password="correct horse battery",
        )
        tenant, admin = registered.tenant, registered.admin
        ctx = Ctx(
            tenant_id=tenant.id,
            actor=Actor("user", admin.id),
            user_id=admin.id,
            role="admin",
            permissions=ALL_KEYS,
        )
        if limit is not None:
            plan = BillingPlan(
                code=f"bench-{uuid.uuid4().hex[:8]}",
                name="Bench plan",
                currency="USD",
                price_amount=0,
                billing_interval="month",
                monthly_message_limit=limit,
                features={},
            )
            session.add(plan)
            session.flush()
            subscriptions.subscribe(session, ctx, plan_id=plan.id)
        contact = Contact(
            tenant_id=tenant.id,
            channel="whatsapp",
            external_id=f"bench-{uuid.uuid4().hex[:8]}",
            name="Bench contact",
            phone="+14155550100",
            last_inbound_at=func.now() + dt.timedelta(days=3650),
        )
        session.add(contact)
        session.flush()
        conversation = Conversation(
            tenant_id=tenant.id, contact_id=contact.id, channel="whatsapp", status="open"
        )
        session.add(conversation)
        session.flush()
        return ctx, conversation.id


def _send_times(ctx, conversation_id, count: int) -> list[float]:
    from shared.db import session_scope
    from shared.inbox import messages

    times = []
    for _ in range(count):
        started = time.perf_counter()
        with session_scope() as session:
            messages.send_message(session, ctx, conversation_id, body="Thanks, on it")
        times.append(time.perf_counter() - started)
    return times


def _check_times(ctx, count: int) -> list[float]:
    from shared.billing import usage
    from shared.db import session_scope

    times = []
    with session_scope() as session:
        for _ in range(count):
            started = time.perf_counter()
            usage.check_message_send(session, ctx.tenant_id)
            times.append(time.perf_counter() - started)
        session.rollback()  # the reservations are given back
    return times


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    with common.Bench("billing_limits", env):
        plain_ctx, plain_conversation = _workspace("without billing", limit=None)
        billed_ctx, billed_conversation = _workspace("with billing", limit=10**12)
        _send_times(plain_ctx, plain_conversation, 50)  # warm-up (connections, caches)
        _send_times(billed_ctx, billed_conversation, 50)
        plain: list[float] = []
        billed: list[float] = []
        for index in range(args.rounds):
            for _ in range(args.sends):  # alternated send by send: drift hits both alike
                plain += _send_times(plain_ctx, plain_conversation, 1)
                billed += _send_times(billed_ctx, billed_conversation, 1)
            print(f"[billing_limits] round {index + 1}/{args.rounds} done", flush=True)
        check = _check_times(billed_ctx, args.checks)
        no_check = _check_times(plain_ctx, args.checks)
    return report(args, plain, billed, check, no_check)


def _ms(values: list[float], q: float) -> float:
    return common.percentile(sorted(values), q) * 1000


def report(args, plain, billed, check, no_check) -> int:
    rows = []
    for label, values in (
        ("send, workspace without billing (baseline)", plain),
        ("send, workspace on a limited plan", billed),
        ("check alone, limited plan (leased INCRBY)", check),
        ("check alone, no subscription", no_check),
    ):
        rows.append(
            (
                label,
                len(values),
                common.fmt(_ms(values, 50), 3),
                common.fmt(_ms(values, 90), 3),
                common.fmt(_ms(values, 99), 3),
                common.fmt(statistics.fmean(values) * 1000, 3),
            )
        )
    common.print_table(
        "Message send with and without the plan-limit check (ms, taken under load on a"
        " shared machine)",
        ["what", "n", "p50", "p90", "p99", "mean"],
        rows,
    )
    added = _ms(billed, 50) - _ms(plain, 50)
    ratio = _ms(billed, 50) / _ms(plain, 50)
    print(f"send with billing / without (p50): {ratio:.3f}x; added {added:.3f} ms")
    passed = common.print_targets(
        "Targets",
        [
            common.Target(
                "added to a send (p50 difference)",
                f"{added:.3f} ms",
                f"< {GOAL_MS} ms",
                added < GOAL_MS,
            ),
            common.Target(
                "check alone (p50)",
                f"{_ms(check, 50):.3f} ms",
                f"< {GOAL_MS} ms",
                _ms(check, 50) < GOAL_MS,
            ),
        ],
    )
    common.write_json(
        args.json,
        {
            "send_without_billing_p50_ms": _ms(plain, 50),
            "send_with_billing_p50_ms": _ms(billed, 50),
            "added_ms": added,
            "ratio": ratio,
            "check_alone_p50_ms": _ms(check, 50),
        },
    )
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
