"""Run every benchmark in sequence and summarize their PASS / FAIL / ERROR.

Each benchmark is a script of its own (see its docstring), run here as a subprocess
with its default settings, one after the other so they do not compete for the CPU:

- ``bench/http_api.py``: HTTP req/s and latency under gunicorn vs a bare Falcon app.
- ``bench/outbox_latency.py``: outbox commit -> dispatch_event latency at 200 events/s.
- ``bench/automation_engine.py``: the pure rule engine's evaluations/s on one core.
- ``bench/automation.py``: automation events/s end to end, dry-run latency, cost curves.

Run::

    .venv/bin/python bench/run_all.py                  # all, defaults (~8 minutes)
    .venv/bin/python bench/run_all.py outbox_latency   # just some, by name
    make bench

Each gets ``--timeout`` seconds (default 600) before it is sent SIGTERM (it then
cleans up its database, Redis keys and processes), and SIGKILL 60 s later. Exit
status: 0 when every benchmark passed its targets, 1 when a target failed, 2 when
a benchmark could not run.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BENCHMARKS = ("http_api", "outbox_latency", "automation_engine", "automation")
RESULT = {0: "PASS", 1: "FAIL"}


def run_one(name: str, timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(BENCH_DIR / f"{name}.py")], cwd=BENCH_DIR.parent)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"\n[run_all] {name} exceeded {timeout:.0f} s: SIGTERM", flush=True)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        code = 2
    except KeyboardInterrupt:
        # The child got the Ctrl-C too and is cleaning up; give it the time to.
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    return code, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {BENCHMARKS}")
    parser.add_argument("--timeout", type=float, default=600.0, help="s per benchmark")
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.names) - set(BENCHMARKS)):
        parser.error(f"unknown benchmark(s) {unknown}; choose from {BENCHMARKS}")
    if not 10 <= args.timeout <= 7200:
        parser.error("--timeout must be within 10..7200 s")
    names = args.names or list(BENCHMARKS)
    outcomes = []
    for name in names:
        print(f"\n===== {name} =====", flush=True)
        code, elapsed = run_one(name, args.timeout)
        outcomes.append((name, code, elapsed))
    print("\n===== summary =====")
    for name, code, elapsed in outcomes:
        print(f"{name:<16} {RESULT.get(code, f'ERROR (exit {code})'):<16} {elapsed:6.1f} s")
    codes = [code for _n, code, _e in outcomes]
    return 0 if all(c == 0 for c in codes) else (1 if all(c in (0, 1) for c in codes) else 2)


if __name__ == "__main__":
    sys.exit(main())
