"""The effective-state check's share of the evaluator's per-event cost.

In-process, one thread, a tenant with 1,000 rules of which 50 are triggered by
``message.created`` (as ``bench/automation.py``): each event is evaluated by
``evaluator.process`` in a rolled-back transaction, so every round sees the same rows.
Variants, interleaved round by round so drift hits them alike:

- ``without``: the check switched off (``blocked`` answers "runs" at once, the per-event
  read carries constants instead of the control, timezone and clock columns) — the
  evaluator as it was before the check;
- ``with, plain rules``: the check on, rules with no snooze, schedule or rollout;
- ``with, every rule gated``: every triggered rule has an expired snooze, a weekly
  schedule (open now) and a 99 % rollout, so each check runs in full.

Two figures per setting: the A/B medians (the whole evaluator with and without the
check; on a busy 2-core machine rounds drift by more than the check costs, so read
them with the spread printed per round), and the direct one: the time spent inside
the check (every ``blocked`` call of an event, timed around the calls) over the
per-event cost. Target: the check adds under 5 % to the per-event cost (issue 17),
judged on the direct figure.

Run::

    .venv/bin/python bench/automation_effective.py [--rounds 6 --events 200]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common
from bench.automation import TRIGGER, add_conversations, cost_per_event, set_rules


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--events", type=int, default=200, help="events per variant per round")
    parser.add_argument("--json-out")
    return parser.parse_args(argv)


def _register() -> uuid.UUID:
    import falcon.testing

    from api.app import create_app

    client = falcon.testing.TestClient(create_app())
    resp = client.simulate_post(
        "/api/auth/register",
        json={
            "organization_name": "Effective-state bench",
            "full_name": "Bench Admin",
            "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
            "password": "correct horse battery",
        },
    )
    if resp.status_code != 201:
        raise common.BenchError(f"register answered {resp.status_code}: {resp.text}")
    return uuid.UUID(resp.json["tenant"]["id"])


def _statement_without_check():
    """The per-batch read as it was: rules version and runs, no control or clock columns."""
    from sqlalchemy import Boolean, Integer, String, Uuid, any_, bindparam, func, literal, select
    from sqlalchemy.dialects.postgresql import ARRAY

    from shared.models import AutomationEvent, AutomationRun, AutomationSettings

    r, e = AutomationRun, AutomationEvent
    event_ids = bindparam("event_ids", type_=ARRAY(Uuid))
    runs = (
        select(
            r.automation_event_id,
            func.array_agg(r.rule_id).filter(r.status != "failed").label("settled"),
            func.bool_or(r.status == "failed").label("any_failed"),
        )
        .where(r.automation_event_id == any_(event_ids), r.reprocess.is_(False))
        .group_by(r.automation_event_id)
        .subquery("runs")
    )
    return (
        select(
            e.id.label("event_id"),
            select(AutomationSettings.rules_version)
            .where(AutomationSettings.tenant_id == e.tenant_id)
            .scalar_subquery()
            .label("rules_version"),
            literal(None, Boolean).label("paused"),
            literal(None, ARRAY(String)).label("paused_event_types"),
            literal(None, Integer).label("max_actions_per_minute"),
            literal(None, String).label("pause_reason"),
            literal("UTC").label("tenant_timezone"),
            literal(None).label("now"),
            runs.c.settled,
            func.coalesce(runs.c.any_failed, False).label("any_failed"),
        )
        .outerjoin(runs, runs.c.automation_event_id == e.id)
        .where(e.id == any_(event_ids))
    )


def _gate_every_rule(tenant_id: uuid.UUID) -> None:
    import datetime as dt

    from sqlalchemy import update

    from shared.automation.rules import bump_rules_version
    from shared.db import session_scope
    from shared.models import AutomationRule

    every_day = [
        {"weekday": d, "intervals": [{"start": "00:00", "end": "24:00"}]} for d in range(7)
    ]
    with session_scope() as session:
        session.execute(
            update(AutomationRule)
            .where(
                AutomationRule.tenant_id == tenant_id,
                AutomationRule.trigger_event_types.contains([TRIGGER]),
            )
            .values(
                snoozed_until=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
                schedule={
                    "enabled": True,
                    "timezone": "Europe/Berlin",
                    "days": every_day,
                    "exceptions": [],
                },
                rollout_percentage=99,
            )
        )
        bump_rules_version(session, tenant_id)


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    import datetime as dt

    with common.Bench("automation_effective", env):
        from shared.automation import clock, evaluator

        tenant_id = _register()
        conversations = add_conversations(tenant_id, 200)
        set_rules(tenant_id, 1000, 50)
        with_check = (evaluator._RUN_STATE, evaluator.blocked)
        without_check = (_statement_without_check(), lambda *_: None)

        def measure(variant) -> float:
            evaluator._RUN_STATE, evaluator.blocked = variant
            try:
                if variant is without_check:
                    with clock.travel(lambda: dt.datetime.now(dt.UTC)):
                        return cost_per_event(tenant_id, conversations, args.events)
                return cost_per_event(tenant_id, conversations, args.events)
            finally:
                evaluator._RUN_STATE, evaluator.blocked = with_check

        def order(round_no: int):
            # ABBA: neither variant always runs first (warm caches, drift)
            pairs = (("without", without_check), ("with", with_check))
            return pairs if round_no % 2 == 0 else pairs[::-1]

        spent = {"seconds": 0.0, "events": 0}

        def timed_blocked(rule_id, gate, moment, _blocked=evaluator.blocked):
            started = time.perf_counter()
            try:
                return _blocked(rule_id, gate, moment)
            finally:
                spent["seconds"] += time.perf_counter() - started

        def direct() -> float:
            """Microseconds per event inside the check (timer overhead included: an upper bound)."""
            spent["seconds"] = 0.0
            evaluator.blocked = timed_blocked
            try:
                cost_per_event(tenant_id, conversations, args.events)
            finally:
                evaluator.blocked = with_check[1]
            return 1e6 * spent["seconds"] / (args.events + 5)

        plain = {"without": [], "with": []}
        for round_no in range(args.rounds):
            for name, variant in order(round_no):
                plain[name].append(measure(variant))
            print(
                f"[effective] round {round_no + 1}: plain rules "
                f"{plain['without'][-1]:.3f} / {plain['with'][-1]:.3f} ms",
                flush=True,
            )
        plain_direct = direct()
        _gate_every_rule(tenant_id)
        gated = {"without": [], "with": []}
        for round_no in range(args.rounds):
            for name, variant in order(round_no):
                gated[name].append(measure(variant))
            print(
                f"[effective] round {round_no + 1}: gated rules "
                f"{gated['without'][-1]:.3f} / {gated['with'][-1]:.3f} ms",
                flush=True,
            )

        gated_direct = direct()

    def median(values):
        ordered = sorted(values)
        return ordered[len(ordered) // 2]

    rows, results = [], {}
    for label, figures, inside in (
        ("plain rules", plain, plain_direct),
        ("every rule gated", gated, gated_direct),
    ):
        base, cost = median(figures["without"]), median(figures["with"])
        overhead = 100 * (cost - base) / base
        share = 100 * inside / (1000 * cost)
        results[label] = {
            "without_ms": base,
            "with_ms": cost,
            "ab_added_pct": overhead,
            "check_us_per_event": inside,
            "check_pct": share,
        }
        rows.append(
            [
                label,
                common.fmt(base, 3),
                common.fmt(cost, 3),
                common.fmt(overhead, 1),
                common.fmt(inside, 1),
                common.fmt(share, 2),
            ]
        )
    common.print_table(
        "ms per event, 1,000 rules / 50 triggered (A/B: median of rounds)",
        ["rules", "without", "with", "A/B added %", "check µs/event", "check %"],
        rows,
    )
    common.write_json(args.json_out, results)
    ok = all(r["check_pct"] < 5 for r in results.values())
    print("target: under 5 % added:", "PASS" if ok else "MISS")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
