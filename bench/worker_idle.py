"""What an idle worker host costs: CPU of ``python -m workers`` with 1, 2 and 4 processes
and nothing to do, per process and per second.

Every Dramatiq consumer (one per queue and delay queue) polls the broker while its queue
is empty, and every worker process runs its own background threads (presence beat,
freed-slot listener, metrics flush). That cost grows with the process count whatever the
load, and on a 2-core machine it is taken from the work: this bench shows how much.

Per round: start the worker with P processes (this run's database and Redis namespace),
wait until every process is ready, let it settle ``--settle`` s, then measure the CPU of
its process tree (``/proc``) over ``--seconds`` s. ``--variant NAME:KEY=VALUE,...`` adds
rounds with other settings, measured back to back with the defaults in the same run
(the machine is shared: compare within a run only). Redis's own CPU is printed too, but
it counts every user of the shared server.

Run::

    .venv/bin/python bench/worker_idle.py
    .venv/bin/python bench/worker_idle.py --processes 1,4 --variant slow:WORKER_TIMEOUT_MS=1000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common


def _redis_pid() -> int | None:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/comm") as f:
                    if f.read().strip() == "redis-server":
                        return int(entry.name)
            except OSError:
                continue
    return None


def _variants(specs: list[str]) -> list[tuple[str, dict[str, str]]]:
    variants = [("default", {})]
    for spec in specs:
        name, _, pairs = spec.partition(":")
        settings = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
        variants.append((name, settings))
    return variants


def measure(bench: common.Bench, processes: int, threads: int, settings, settle, seconds):
    """CPU seconds per wall second of one idle worker host (its whole process tree)."""
    worker = bench.start(
        f"worker-{processes}-{int(time.monotonic() * 1000)}",
        [
            sys.executable,
            "-m",
            "workers",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
        ],
        settings,
    )
    try:
        common.wait_workers_ready(
            worker, processes, f"{processes} worker processes ready", timeout=180
        )
        time.sleep(settle)
        redis_pid = _redis_pid()
        roots = {"workers": worker.pid} | ({"redis": redis_pid} if redis_pid else {})
        meter = common.CpuMeter(roots)
        start = meter.sample()
        time.sleep(seconds)
        usage = common.CpuMeter.usage(start, meter.sample())
    finally:
        bench.stop(worker)
    return usage


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:KEY=VALUE,... settings of extra rounds, measured after the defaults",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    counts = [int(p) for p in args.processes.split(",")]
    rows = []
    with common.Bench("worker_idle", env) as bench:
        for name, settings in _variants(args.variant):
            for count in counts:
                usage = measure(bench, count, args.threads, settings, args.settle, args.seconds)
                worker = usage.trees["workers"] / usage.wall
                rows.append(
                    (
                        name,
                        count,
                        common.fmt(100 * worker, 1),
                        common.fmt(100 * worker / count, 1),
                        common.fmt(100 * usage.trees.get("redis", 0.0) / usage.wall, 1),
                        common.fmt(usage.machine_busy_pct, 0),
                    )
                )
                print(f"[{name}] {count} processes idle: {100 * worker:.1f} % of a core")
    common.print_table(
        f"Idle worker host ({args.threads} threads per process; CPU over {args.seconds:g} s)",
        [
            "variant",
            "processes",
            "worker CPU % of a core",
            "per process %",
            "redis-server % (shared)",
            "machine busy %",
        ],
        rows,
    )
    print(
        f"\nmachine: {os.cpu_count()} cores, shared with other work while measured; load"
        f" average now {os.getloadavg()[0]:.1f}"
    )
    return common.EXIT_PASS


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
