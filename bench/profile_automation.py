"""Profile the automation pipeline in-process: CPU per event of dispatch and evaluation,
PostgreSQL CPU per statement, and where the Python time goes.

A diagnosis tool for ``bench/automation.py`` (not part of ``run_all.py``), whose end-to-end
figures mix the worker's processes, the broker and the database. Here one thread does what
the worker does, on the same tenant (1,000 rules, 50 triggered by ``message.created``, one
matching and acting): ``--events`` events are committed through the outbox in transactions
of 50, dispatched 50 at a time (``dispatch_many``, as ``dispatch_events``) and their queue
rows evaluated ``--batch`` at a time (``evaluate_events``, as ``evaluate_rules``). Each
round prints this thread's CPU per event for both stages; ``--statements`` adds the CPU
of this thread's PostgreSQL backend per statement (``/proc/<pid>/schedstat`` around each
execute), ``--top N`` a ``cProfile`` of the evaluation (thread CPU clock).

Run::

    .venv/bin/python bench/profile_automation.py --events 500 --rounds 3 --statements --top 30
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500, help="events per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=25, help="queue rows per evaluation")
    parser.add_argument("--statements", action="store_true", help="PostgreSQL CPU per statement")
    parser.add_argument("--top", type=int, default=0, help="cProfile lines of the last round")
    return parser.parse_args(argv)


def _on_cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0])


class StatementMeter:
    """PostgreSQL CPU and wall time per statement text, from engine events."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.figures: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])

    def _pid(self, conn) -> int:
        if "bench_pid" not in conn.info:
            cursor = conn.connection.dbapi_connection.cursor()
            cursor.execute("SELECT pg_backend_pid()")
            conn.info["bench_pid"] = cursor.fetchone()[0]
        return conn.info["bench_pid"]

    def before(self, conn, cursor, statement, params, context, executemany) -> None:
        conn.info["bench_started"] = (_on_cpu_ns(self._pid(conn)), time.perf_counter())

    def after(self, conn, cursor, statement, params, context, executemany) -> None:
        cpu, wall = conn.info.pop("bench_started")
        figures = self.figures[" ".join(statement.split())[:100]]
        figures[0] += 1
        figures[1] += (_on_cpu_ns(self._pid(conn)) - cpu) / 1e6
        figures[2] += (time.perf_counter() - wall) * 1000

    def __enter__(self) -> StatementMeter:
        from sqlalchemy import event

        event.listen(self.engine, "before_cursor_execute", self.before)
        event.listen(self.engine, "after_cursor_execute", self.after)
        return self

    def __exit__(self, *exc) -> None:
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self.before)
        event.remove(self.engine, "after_cursor_execute", self.after)

    def print(self, events: int, top: int = 20) -> None:
        ranked = sorted(self.figures.items(), key=lambda item: -item[1][1])
        print(
            f"PostgreSQL CPU per event, all statements: "
            f"{sum(f[1] for f in self.figures.values()) / events:.3f} ms"
        )
        for statement, (count, cpu, wall) in ranked[:top]:
            print(
                f"  {cpu / events:7.3f} ms CPU {wall / events:7.3f} ms wall x{count:<5} {statement}"
            )


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    with common.Bench("profile_automation", env):
        from sqlalchemy import select

        from bench.automation import add_conversations, emit_messages, set_rules
        from bench.automation_effective import _register
        from shared import dispatch
        from shared.automation import evaluator, queue
        from shared.db import get_engine, session_scope
        from shared.models import AutomationEvent

        dispatch.register_target(queue.TARGET_NAME, queue.target_many, batch=True)
        tenant_id = _register()
        conversations = add_conversations(tenant_id, 200)
        set_rules(tenant_id, 1000, 50, matching=1)

        def pending_rows() -> list:
            e = AutomationEvent
            with session_scope() as session:
                return list(
                    session.scalars(
                        select(e.id)
                        .where(e.tenant_id == tenant_id, e.status == "pending")
                        .order_by(e.created_at, e.outbox_event_id)
                    )
                )

        def one_round(profiler: cProfile.Profile | None = None, meter=None) -> None:
            _, ids = emit_messages(tenant_id, conversations, args.events, 50)
            if meter is not None:  # the statements of dispatch and evaluation only
                meter.__enter__()
            started = time.thread_time()
            for first in range(0, len(ids), 50):
                with session_scope() as session:
                    dispatch.dispatch_many(session, ids[first : first + 50])
            dispatched = time.thread_time()
            rows = pending_rows()
            evaluating = time.thread_time()
            if profiler is not None:
                profiler.enable()
            for first in range(0, len(rows), args.batch):
                evaluator.evaluate_events(rows[first : first + args.batch])
            if profiler is not None:
                profiler.disable()
            done = time.thread_time()
            if meter is not None:
                meter.__exit__()
            print(
                f"dispatch {1000 * (dispatched - started) / len(ids):.3f} ms CPU per event,"
                f" evaluation {1000 * (done - evaluating) / len(ids):.3f} ms"
                f" ({len(rows)} queue rows)",
                flush=True,
            )

        one_round()  # warms the rule cache, stores the snapshots, sets the priorities
        meter = StatementMeter(get_engine())
        for number in range(args.rounds):
            last = number == args.rounds - 1
            profiler = cProfile.Profile(time.thread_time) if last and args.top else None
            one_round(profiler, meter if last and args.statements else None)
        if args.statements:
            meter.print(args.events)
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.top)
            print(out.getvalue())
    return common.EXIT_PASS


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
