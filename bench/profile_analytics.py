"""Profile the analytics path in-process (cProfile, one thread): where a counted event's CPU goes.

A diagnosis tool for ``bench/analytics_load.py`` (not part of ``run_all.py``): no broker,
no worker process. ``--events`` events of the load's mix (80 % ``message.created``,
10 % ``contact.created``, 10 % ``conversation.status_changed``) are committed in
transactions of ``--batch`` with every worker target registered; then each stage runs
under its own profile, with the functions the actors call:

- ``emit``: the load generator's commits (the benchmark's own CPU, not the worker's);
- ``dispatch``: ``dispatch_many`` per committed batch (what ``dispatch_events`` does);
- ``roll_up``: ``rollup.drain`` once per message the dispatch would have sent
  (``--drain-each``: after each dispatched batch instead, inside the dispatch stage and
  printed on its own: what one real ``roll_up`` of a small batch costs).

Each stage also says the CPU of this database's PostgreSQL backends per event
(``--per-target``: each dispatch target's own CPU, without the profiler).

Run::

    .venv/bin/python bench/profile_analytics.py --events 4000 --top 30
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common


def _print(profiler: cProfile.Profile, title: str, top: int, sort: str) -> None:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(top)
    print(f"\n=== {title} ===\n{out.getvalue()}")


def _profiled(title: str, count: int, args, stage, meter: common.CpuMeter) -> None:
    profiler = cProfile.Profile(time.process_time) if args.top else None
    database_from = meter.sample()
    started = time.process_time()
    if profiler:
        profiler.enable()
    stage()
    if profiler:
        profiler.disable()
    took = time.process_time() - started
    database = common.CpuMeter.usage(database_from, meter.sample()).postgres_database
    line = (
        f"{title}: {took / count * 1000:.3f} ms CPU per event ({count} events, {took:.2f} s);"
        f" PostgreSQL {database / count * 1000:.3f} ms"
    )
    if profiler:
        _print(profiler, line, args.top, args.sort)
    else:
        print(line)


def _time_targets(dispatch, spent: dict[str, float]) -> None:
    """Wrap every registered target so its CPU adds up in ``spent`` (by target name)."""

    def timed(name, target):
        def run(session, events):
            started = time.process_time()
            try:
                target(session, events)
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - started

        return run

    dispatch._targets.update(
        {name: timed(name, target) for name, target in dispatch._targets.items()}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--top", type=int, default=30, help="0: timings only, no profile")
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument(
        "--drain-each",
        action="store_true",
        help="roll_up's drain after each dispatched batch (the real worker's shape under"
        " light load) instead of once per message after every dispatch",
    )
    parser.add_argument(
        "--per-target",
        action="store_true",
        help="also time each dispatch target and the commit (CPU, no profiler)",
    )
    args = parser.parse_args(argv)
    env = common.configure_environment()
    with common.Bench("profile_analytics", env):
        import workers.main  # noqa: F401  (every actor module: the worker's targets)
        from bench import automation as automation_bench
        from bench.analytics_load import analytics_emitter
        from shared import dispatch, events
        from shared.analytics import intake, rollup
        from shared.db import session_scope
        from shared.models import Tenant

        events.set_publisher(None)
        rollups: list[list] = []
        intake.set_enqueuer(rollups.append)
        with session_scope() as session:
            tenant = Tenant(name="Analytics profile", slug=f"analytics-profile-{env.run_id}")
            session.add(tenant)
            session.flush()
            tenant_id = tenant.id
        conversations = automation_bench.add_conversations(tenant_id, 500)
        emit_batch = analytics_emitter(tenant_id, conversations, seed=7)
        batches: list[list] = []

        def emit_all() -> None:
            for first in range(0, args.events, args.batch):
                batches.append(emit_batch(first, min(args.batch, args.events - first)))

        spent: dict[str, float] = {}
        if args.per_target:
            _time_targets(dispatch, spent)

        def dispatch_all() -> None:
            for ids in batches:
                with session_scope() as session:
                    dispatch.dispatch_many(session, ids)
                    started = time.process_time()
                spent["(commit + after-commit work)"] = (
                    spent.get("(commit + after-commit work)", 0.0) + time.process_time() - started
                )
                if args.drain_each:
                    started = time.process_time()
                    rollup.drain(tenant_id)
                    spent["(roll_up drain after each batch)"] = (
                        spent.get("(roll_up drain after each batch)", 0.0)
                        + time.process_time()
                        - started
                    )

        def roll_up_all() -> None:
            for tenants in rollups:
                for tid in dict.fromkeys(tenants):
                    rollup.drain(tid)

        meter = common.CpuMeter({}, env.database_url)
        _profiled("emit (load generator)", args.events, args, emit_all, meter)
        _profiled("dispatch", args.events, args, dispatch_all, meter)
        for name, took in sorted(spent.items(), key=lambda item: -item[1]):
            if args.per_target or args.drain_each or not name.startswith("("):
                print(f"  {name}: {took / args.events * 1000:.3f} ms CPU per event")
        print(f"roll_up messages the dispatch would send: {len(rollups)}")
        _profiled("roll_up", args.events, args, roll_up_all, meter)
    return 0


if __name__ == "__main__":
    sys.exit(main())
