"""Run ``bench/loadgen.py`` against a server, with CPU accounting, and pool its rounds.

The benches over HTTP (``bench/http_api.py``, ``bench/inbox_mix.py``) measure the same
way: loadgen in a process of its own, the CPU of the server's process tree, of every
PostgreSQL process and of the machine sampled when loadgen opens and closes its
measurement window; a window in which a gunicorn process held none of the keep-alive
connections measured again; rounds of one target pooled into one set of figures.

Example::

    target = loadrun.Target("bare", port, bare_child)
    result = loadrun.measure(bench, target, round_no=1, servers=servers, load=load)
    pooled = loadrun.combine([result, ...])
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import common

LOADGEN = common.REPO_ROOT / "bench" / "loadgen.py"
#: Times a measurement is repeated when a gunicorn process got none of the connections.
MAX_REPEATS = 2


@dataclass(frozen=True)
class Target:
    """What one measurement sends, and the server that answers it."""

    name: str
    port: int
    server: common.Child
    path: str = "/"
    headers: Sequence[str] = ()
    #: A JSON-lines mix for ``loadgen --requests-file`` (then ``path`` is not used).
    requests_file: Path | None = None


@dataclass(frozen=True)
class Load:
    """How loadgen sends: ``connections``, warm-up and window; ``rate`` makes it open loop."""

    connections: int
    warmup: float
    duration: float
    rate: float | None = None
    extra: Sequence[str] = field(default_factory=tuple)


def measure(
    bench: common.Bench,
    target: Target,
    round_no: int,
    servers: Mapping[str, common.Child],
    load: Load,
    label: str = "",
) -> dict:
    """Run loadgen against ``target``; return its figures plus CPU use over the window."""
    label = label or target.name
    latencies_path = bench.log_dir / f"latencies-{label}-{round_no}.bin"
    argv = [
        sys.executable,
        str(LOADGEN),
        f"http://{common.LOOPBACK}:{target.port}{target.path}",
        "--connections",
        str(load.connections),
        "--warmup",
        str(load.warmup),
        "--duration",
        str(load.duration),
        "--latencies-out",
        str(latencies_path),
        "--phases",
        *load.extra,
    ]
    if target.requests_file is not None:
        argv += ["--requests-file", str(target.requests_file)]
    if load.rate is not None:
        argv += ["--rate", f"{load.rate:.3f}", "--seed", str(round_no)]
    for header in target.headers:
        argv += ["-H", header]
    limit = load.warmup + load.duration + 60
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=common.REPO_ROOT)
    # NOTE: a watchdog bounds the reads below even if loadgen hangs.
    watchdog = threading.Timer(limit, proc.kill)
    watchdog.start()
    try:
        meter = common.CpuMeter(
            {**{n: c.pid for n, c in servers.items()}, "loadgen": proc.pid},
            database_url=bench.env.database_url,
        )
        start = end = None
        spread: list[int] = []
        result_line = ""
        for line in proc.stdout:
            if line.startswith("#measure-start"):
                start = meter.sample()
                spread = sorted(
                    common.connections_per_process(target.server.pid, target.port).values()
                )
            elif line.startswith("#measure-end"):
                end = meter.sample()
            elif line.strip():
                result_line = line
        proc.wait(10)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    if proc.returncode != 0 or start is None or end is None:
        raise common.BenchError(f"loadgen on {label} failed ({proc.returncode}): {result_line}")
    target.server.check_alive()
    result = json.loads(result_line)
    usage = common.CpuMeter.usage(start, end)
    server_name = next(n for n, c in servers.items() if c is target.server)
    result.update(
        target=label,
        round=round_no,
        server_cpu_s=usage.trees[server_name],
        postgres_cpu_s=usage.postgres,
        postgres_database_cpu_s=usage.postgres_database,
        machine_busy_pct=usage.machine_busy_pct,
        connections_per_worker=spread,
        latencies_path=str(latencies_path),
    )
    print(
        f"  round {round_no} {label:<7} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:6.1f} ms"
        f"  p99 {result['p99_ms']:6.1f} ms  errors {result['errors']}"
        f"  server CPU {1000 * usage.trees[server_name] / max(result['requests'], 1):.3f} ms/req"
        f"  machine busy {usage.machine_busy_pct:.0f} %"
        f"  connections per worker {'/'.join(map(str, spread))}",
        flush=True,
    )
    return result


def measure_spread(
    bench: common.Bench,
    target: Target,
    round_no: int,
    servers: Mapping[str, common.Child],
    load: Load,
    *,
    workers: int,
    label: str = "",
) -> tuple[dict, list[dict]]:
    """:func:`measure`, again (up to :data:`MAX_REPEATS` times) while a process got no connection.

    A keep-alive connection stays with the gunicorn process that accepted it; a window in
    which one process holds none measures one process, not the configuration. Returns
    the kept result and the discarded ones.
    """
    discarded: list[dict] = []
    for attempt in range(1 + MAX_REPEATS):
        result = measure(bench, target, round_no, servers, load, label)
        spread = result["connections_per_worker"]
        if workers == 1 or min(spread, default=1) > 0 or attempt == MAX_REPEATS:
            return result, discarded
        print(f"    a worker got no connection ({spread}): measuring again")
        discarded.append(result)
    raise AssertionError("unreachable")


def _pooled(latencies: Sequence[float], requests: int, window: float) -> dict:
    ordered = sorted(latencies)
    return {
        "requests": requests,
        "rps": requests / window if window else float("nan"),
        "p50_ms": common.percentile(ordered, 50) * 1000,
        "p90_ms": common.percentile(ordered, 90) * 1000,
        "p99_ms": common.percentile(ordered, 99) * 1000,
        "max_ms": ordered[-1] * 1000 if ordered else float("nan"),
    }


def _add_statuses(total: dict[str, int], statuses: Mapping[str, int]) -> None:
    for status, count in statuses.items():
        total[status] = total.get(status, 0) + count


def combine(results: list[dict]) -> dict:
    """Pool the rounds of one target: req/s over the summed windows, merged percentiles.

    A mix (several request kinds) is also pooled per kind, under ``kinds``.
    """
    latencies = array("d")
    kinds = array("B")
    names: list[str] = results[0].get("kind_names", [])
    for result in results:
        if result.get("kind_names", names) != names:
            raise common.BenchError("rounds of one target sent different request kinds")
        with open(result["latencies_path"], "rb") as f:
            latencies.frombytes(f.read())
        with open(result["latencies_path"] + ".kinds", "rb") as f:
            kinds.frombytes(f.read())
    requests = sum(r["requests"] for r in results)
    window = sum(r["window_s"] for r in results)
    statuses: dict[str, int] = {}
    for result in results:
        _add_statuses(statuses, result["statuses"])
    pooled = {
        **_pooled(latencies, requests, window),
        "window_s": window,
        "rps_by_round": [r["rps"] for r in results],
        "errors": sum(r["errors"] for r in results),
        "statuses": statuses,
        "server_cpu_ms_per_req": 1000 * sum(r["server_cpu_s"] for r in results) / max(requests, 1),
        "postgres_cpu_ms_per_req": 1000
        * sum(r["postgres_cpu_s"] for r in results)
        / max(requests, 1),
        "postgres_database_cpu_ms_per_req": 1000
        * sum(r["postgres_database_cpu_s"] for r in results)
        / max(requests, 1),
        "client_cpu_pct": sum(r["client_cpu_pct"] * r["window_s"] for r in results) / window,
        "machine_busy_pct": sum(r["machine_busy_pct"] * r["window_s"] for r in results) / window,
    }
    if len(names) > 1:
        pooled["kinds"] = {}
        for index, name in enumerate(names):
            mine = [x for x, k in zip(latencies, kinds, strict=True) if k == index]
            kind_statuses: dict[str, int] = {}
            for result in results:
                _add_statuses(kind_statuses, result["kinds"][name]["statuses"])
            pooled["kinds"][name] = {
                **_pooled(mine, len(mine), window),
                "statuses": kind_statuses,
                "errors": sum(n for s, n in kind_statuses.items() if not 200 <= int(s) < 300),
            }
    for key in ("backlogged", "max_backlog"):
        if key in results[0]:
            pooled[key] = (
                max(r[key] for r in results)
                if key == "max_backlog"
                else sum(r[key] for r in results)
            )
    return pooled


def print_results(title: str, combined: Mapping[str, dict], baseline: str) -> None:
    """The table of pooled targets (:func:`combine`), each beside ``combined[baseline]``."""
    base = combined[baseline]
    common.print_table(
        title,
        [
            "target",
            "req/s",
            f"vs {baseline}",
            "p50 ms",
            "p99 ms",
            "errors",
            "server CPU ms/req",
            "pg CPU ms/req (this db)",
            "client CPU %",
            "machine busy %",
            "req/s by round",
        ],
        [
            (
                name,
                common.fmt(c["rps"]),
                f"{100 * c['rps'] / base['rps']:.1f} %",
                common.fmt(c["p50_ms"], 2),
                common.fmt(c["p99_ms"], 2),
                f"{c['errors']}" + (f" {c['statuses']}" if c["errors"] else ""),
                common.fmt(c["server_cpu_ms_per_req"], 3),
                f"{common.fmt(c['postgres_cpu_ms_per_req'], 3)}"
                f" ({common.fmt(c['postgres_database_cpu_ms_per_req'], 3)})",
                common.fmt(c["client_cpu_pct"], 0),
                common.fmt(c["machine_busy_pct"], 0),
                " / ".join(common.fmt(v, 0) for v in c["rps_by_round"]),
            )
            for name, c in combined.items()
        ],
    )
