"""What the worker spends on a message besides its actor: CPU per no-op message.

Starts the Procfile's worker shape (``python -m workers`` with this module as an extra
actor module, every queue consumed, ``--processes``/``--threads``), then sends ``--messages``
no-op messages carrying a real tenant's ``tenant_id`` (as dispatch's do) and measures the
worker tree's CPU from the first send until the last message ran, less its idle CPU
over the same time. What is left is Dramatiq's handling, our middleware (metrics,
presence, tenant gate, dead letters, log context), the fetches, acks and wake-ups.
``--rounds`` repeats the burst on the same worker (the median is the figure to compare).

Run::

    .venv/bin/python bench/noop_messages.py --messages 5000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUEUE = "noop_bench"
DONE_KEY = "noop-bench-done"


def _declare():
    import dramatiq

    import workers.broker  # noqa: F401  (the configured broker)
    from shared.redis_client import get_redis, key

    @dramatiq.actor(queue_name=QUEUE, max_retries=0)
    def noop(last: bool = False) -> None:
        if last:
            get_redis().incr(key(DONE_KEY))

    return noop


if __name__ != "__main__":
    noop = _declare()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)

    from bench import common

    env = common.configure_environment()
    with common.Bench("noop_messages", env) as bench:
        from shared.db import session_scope
        from shared.models import Tenant
        from shared.redis_client import get_redis, key

        with session_scope() as session:
            tenant = Tenant(name="noop bench", slug=f"noop-bench-{env.run_id}")
            session.add(tenant)
            session.flush()
            tenant_id = str(tenant.id)
        actor = _declare()
        worker = bench.start(
            "worker",
            [
                sys.executable,
                "-m",
                "workers",
                "bench.noop_messages",
                # Diagnosis: WORKER_CPROFILE_OUT (see bench.worker_cprofile).
                *(["bench.worker_cprofile"] if os.environ.get("WORKER_CPROFILE_OUT") else []),
                "--processes",
                str(args.processes),
                "--threads",
                str(args.threads),
            ],
        )
        common.wait_workers_ready(worker, args.processes, "worker", timeout=90)
        redis = get_redis()
        meter = common.CpuMeter({"worker": worker.pid})
        figures = []
        for round_no in range(args.rounds + 1):
            time.sleep(2)
            idle_from = meter.sample()
            time.sleep(2)
            start = meter.sample()
            idle = common.CpuMeter.usage(idle_from, start)
            idle_per_s = idle.trees["worker"] / idle.wall
            done_before = int(redis.get(key(DONE_KEY)) or 0)
            for n in range(args.messages):
                actor.send_with_options(
                    kwargs={"last": n == args.messages - 1}, tenant_id=tenant_id
                )
            common.wait_until(
                lambda before=done_before: int(redis.get(key(DONE_KEY)) or 0) > before,
                "the last message ran",
                timeout=300,
                interval=0.05,
                children=[worker],
            )
            time.sleep(0.3)  # the few still running on other threads
            usage = common.CpuMeter.usage(start, meter.sample())
            net = usage.trees["worker"] - idle_per_s * usage.wall
            per_message_ms = 1000 * net / args.messages
            label = "warm-up" if round_no == 0 else f"round {round_no}"
            print(
                f"  {label}: {per_message_ms:.3f} ms worker CPU per message"
                f" ({usage.trees['worker']:.2f} s in {usage.wall:.1f} s, idle"
                f" {100 * idle_per_s:.1f} % of a core; load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            if round_no:
                figures.append(per_message_ms)
        print(f"median {statistics.median(figures):.3f} ms worker CPU per no-op message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
