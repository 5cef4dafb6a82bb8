"""The benchmarks' harness: a private database and Redis namespace, child processes, CPU
accounting, percentiles and the printed tables.

Call :func:`configure_environment` before importing anything from ``shared``, ``api`` or
``workers``: settings, the engine and the broker are built from the environment on first use.

Example::

    env = common.configure_environment()
    with common.Bench("http_api", env) as bench:
        web = bench.start("web", [gunicorn, ...], {"PORT": "8123"})
        ...
    # children stopped (SIGTERM, then SIGKILL), Redis keys deleted, database dropped
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
DEFAULT_DATABASE_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

#: How long the fake Graph API takes to answer a send, by default (``--graph-latency-ms``).
#: ASSUMPTION: Meta publishes no figure. Third-party measurements put the Cloud API's own
#: processing of a send at 50-200 ms (template checks, rate limits, routing), plus the
#: round trip to its nearest edge; 150 ms is taken as a typical answer. 0 makes the
#: benches CPU-bound (every cost of ours shows), a latency makes them measure whether
#: the sends in flight are kept at the allowed concurrency.
GRAPH_LATENCY_MS = 150.0

#: Exit codes of every benchmark script (run_all.py reports them).
EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2

#: Environment variables read outside ``shared.config.Settings`` that change how the
#: processes run (gunicorn, honcho's Procfile, Dramatiq). The bench sets its own.
_PROCESS_VARIABLES = (
    "PORT",
    "BIND",
    "WEB_CONCURRENCY",
    "WEB_THREADS",
    "WEB_TIMEOUT",
    "WEB_ACCESS_LOG",
    "LOG_LEVEL",
    "WORKER_PROCESSES",
    "WORKER_THREADS",
    "dramatiq_queue_prefetch",
    "dramatiq_delay_queue_prefetch",
    "dramatiq_worker_timeout",
    "GUNICORN_CMD_ARGS",
    "WEB_CONTROL_SOCKET",
)


class BenchError(RuntimeError):
    """The benchmark could not measure (a process died, a wait timed out...)."""


# --- environment -------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchEnv:
    """This run's identity: the database, Redis namespace and secret every process uses."""

    run_id: str
    database_url: str
    redis_url: str
    redis_namespace: str
    secret_key: str

    def variables(self) -> dict[str, str]:
        return {
            "ENV": "test",
            "SECRET_KEY": self.secret_key,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "REDIS_NAMESPACE": self.redis_namespace,
            "PYTHONUNBUFFERED": "1",
        }


def _require_loopback(url: str, what: str) -> None:
    host = urlsplit(url.replace("postgresql+psycopg://", "postgresql://")).hostname
    if host not in (LOOPBACK, "localhost"):
        print(f"{what} must point at {LOOPBACK} (got host {host!r}): {url}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def configure_environment(database: str | None = None) -> BenchEnv:
    """Pick this run's names and make them this process's environment (and its children's).

    Every platform setting inherited from the caller (``BROKER_URL``, ``WEB_THREADS``,
    ``WORKER_TIMEOUT_MS``...) is removed first, so the figures are those of the defaults.
    ``BENCH_DATABASE_SERVER`` and ``BENCH_REDIS_URL`` may move the servers, on loopback only.
    ``database`` names the database instead of ``omnistream_bench_<run id>`` (a kept one,
    see :class:`Bench`'s ``keep_database``).
    """
    from shared.config import Settings  # reads nothing from the environment until instantiated

    run_id = uuid.uuid4().hex[:10]
    server = os.environ.get("BENCH_DATABASE_SERVER", DEFAULT_DATABASE_SERVER).rstrip("/")
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    _require_loopback(server, "BENCH_DATABASE_SERVER")
    _require_loopback(redis_url, "BENCH_REDIS_URL")
    env = BenchEnv(
        run_id=run_id,
        database_url=f"{server}/{database or f'omnistream_bench_{run_id}'}",
        redis_url=redis_url,
        redis_namespace=f"omnistream-bench-{run_id}",
        secret_key="bench-secret-key-" + run_id * 4,
    )
    cleared = [
        name
        for name in (*(n.upper() for n in Settings.model_fields), *_PROCESS_VARIABLES)
        if os.environ.pop(name, None) is not None
    ]
    if cleared:
        # NOTE: said, because a setting that seems to apply but does not (GUNICORN_CMD_ARGS
        # for a server option) makes a run look like an experiment it was not.
        print(
            f"note: ignoring {', '.join(sorted(cleared))} from the environment: the bench "
            "runs with the defaults and its own options",
            file=sys.stderr,
        )
    os.environ.update(env.variables())
    if (REPO_ROOT / ".env").exists():
        print(
            "warning: .env exists at the repository root; settings not set by the bench "
            "may come from it",
            file=sys.stderr,
        )
    return env


def executable(name: str) -> list[str]:
    """The venv's console script ``name`` (``gunicorn``, ``dramatiq``) or ``python -m name``."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", name]


def free_ports(count: int = 1) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held together, so never the same)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(sock.getsockname()[1])
        return ports


# --- child processes ---------------------------------------------------------------------


class Child:
    """One subprocess in a session of its own, its output in a log file."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: gunicorn/dramatiq children too
        )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError(
                f"{self.name} exited with {self.proc.returncode}; its log:\n{self.tail()}"
            )

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, timeout: float = 25.0) -> int | None:
        """SIGTERM, then SIGKILL (the whole process group) after ``timeout`` s; reap."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} ignored SIGTERM for {timeout:.0f} s: SIGKILL", flush=True)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        # Stragglers of its group (children of a parent that was killed) get 5 s, then SIGKILL.
        deadline = time.monotonic() + 5
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._group_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


def wait_until(
    predicate: Callable[[], T],
    what: str,
    *,
    timeout: float,
    interval: float = 0.05,
    children: Iterable[Child] = (),
) -> T:
    """Return the first truthy ``predicate()``; raise :class:`BenchError` after ``timeout``."""
    children = list(children)
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        for child in children:
            child.check_alive()
        try:
            last = predicate()
        except Exception as exc:  # a server still booting refuses connections
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise BenchError(f"{what}: not within {timeout:.0f} s (last: {last!r})")
        time.sleep(interval)


def wait_workers_ready(worker: Child, processes: int, what: str, *, timeout: float) -> None:
    """Wait until ``worker`` (``python -m workers``) logged Dramatiq's "ready for action"
    once per process (the log level must be info, the default)."""
    wait_until(
        lambda: worker.log_path.read_text(errors="replace").count("ready for action") >= processes,
        what,
        timeout=timeout,
        interval=0.2,
        children=[worker],
    )


def in_child(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` run in a new (spawned) process, its result: a baseline measured
    there shares no GIL, import state or connection pool with the bench itself."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """One request to 127.0.0.1:``port``; return the status and the decoded JSON (or text)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json"} if payload is not None else {}
        all_headers.update(headers or {})
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")
    finally:
        conn.close()


# --- the private database and Redis namespace -------------------------------------------


class Bench(contextlib.ExitStack):
    """Own a database and a Redis namespace for one run, and every child process started.

    On exit (normal, exception, Ctrl-C or SIGTERM) children are stopped, then the
    namespace's keys are deleted and the database dropped. Child logs are printed
    and kept when the run failed.
    """

    def __init__(
        self, name: str, env: BenchEnv, *, keep_logs: bool = False, keep_database: bool = False
    ) -> None:
        super().__init__()
        self.name = name
        self.env = env
        self.keep_logs = keep_logs
        #: Reuse the database if it exists and never drop it: a slow data build is paid
        #: once while iterating (``database_created`` says whether this run made it).
        self.keep_database = keep_database
        self.database_created = False
        self.children: list[Child] = []
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"omnistream-bench-{env.run_id}-"))
        self._previous_handlers: dict[int, Any] = {}

    def __enter__(self) -> Bench:
        super().__enter__()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self._previous_handlers[signum] = signal.signal(signum, _exit_on_signal)
        try:
            from shared import migrate

            # NOTE: registered before creating, so a half-done setup is cleaned up too.
            if not self.keep_database:
                url = self.env.database_url
                self.callback(self._guarded, "drop the database", lambda: self._drop_database(url))
            self.callback(self._guarded, "delete the Redis keys", self._delete_redis_keys)
            started = time.monotonic()
            self.database_created = migrate.create_database(self.env.database_url)
            migrate.upgrade(self.env.database_url)
            kept = (
                ""
                if not self.keep_database
                else (" (kept: created now)" if self.database_created else " (kept: reused)")
            )
            print(
                f"[{self.name}] database {self.env.database_url.rsplit('/', 1)[1]}{kept} ready"
                f" ({time.monotonic() - started:.1f} s), Redis namespace"
                f" {self.env.redis_namespace}, logs in {self.log_dir}",
                flush=True,
            )
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        # NOTE: a second Ctrl-C or SIGTERM must not cut the cleanup short.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        for signum in self._previous_handlers:
            signal.signal(signum, signal.SIG_IGN)
        failed = exc_type is not None
        try:
            if failed:
                for child in reversed(self.children):
                    self._guarded(f"stop {child.name}", child.stop)
                for child in self.children:
                    print(f"----- {child.name} log (last lines) -----\n{child.tail()}")
            return super().__exit__(exc_type, exc, tb)
        finally:
            if failed or self.keep_logs:
                print(f"[{self.name}] child logs kept in {self.log_dir}", flush=True)
            else:
                shutil.rmtree(self.log_dir, ignore_errors=True)
            signal.signal(signal.SIGINT, previous_int)
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)

    def run_on_copy(self) -> float:
        """Go on in a copy of the kept database, dropped on exit; return the seconds it took.

        WHY: a run writes into the database it measures (the inbox mix: ~3,000 replies,
        notes and status changes per tenant). Kept, those piled up run after run and
        moved the figures: search's window filled with the bench's replies (its paced p99
        42 -> 104 ms over five runs) and PostgreSQL's CPU per mix request rose 0.47 ->
        0.86 ms. Every run on a copy starts from the data as built, for ~1 s of copying
        against minutes of building. Children started after this call use the copy.
        """
        import psycopg
        from sqlalchemy import exc
        from sqlalchemy.engine import make_url

        from shared import migrate
        from shared.config import get_settings
        from shared.db import reset_engine

        kept = self.env.database_url
        copy = (
            make_url(kept)
            .set(database=f"omnistream_bench_{self.env.run_id}")
            .render_as_string(hide_password=False)
        )
        reset_engine()  # NOTE: PostgreSQL copies only a database nobody is connected to
        started = time.monotonic()
        self.callback(
            self._guarded, "drop the kept database's copy", lambda: self._drop_database(copy)
        )
        try:
            migrate.copy_database(kept, copy)
        except exc.OperationalError as error:
            if not isinstance(error.orig, psycopg.errors.ObjectInUse):
                raise
            raise BenchError(
                f"could not copy the kept database {make_url(kept).database}: another"
                f" session uses it (a bench run, or a server left running?): {error.orig}"
            ) from error
        self.env = replace(self.env, database_url=copy)
        os.environ["DATABASE_URL"] = copy
        get_settings.cache_clear()
        return time.monotonic() - started

    def start(self, name: str, argv: Sequence[str], extra_env: Mapping[str, str] = ()) -> Child:
        """Start ``argv`` with this run's environment plus ``extra_env``; stop it on exit."""
        env = {**os.environ, **dict(extra_env)}
        child = Child(name, argv, env, self.log_dir)
        self.children.append(child)
        self.callback(self._guarded, f"stop {name}", child.stop)
        return child

    def stop(self, child: Child) -> int | None:
        """Stop ``child`` now (the exit callback then finds it stopped)."""
        return child.stop()

    def _guarded(self, what: str, func: Callable[[], Any]) -> None:
        try:
            func()
        except Exception:
            print(f"[{self.name}] cleanup: could not {what}:\n{traceback.format_exc()}")

    def _drop_database(self, database_url: str) -> None:
        from shared import migrate
        from shared.db import reset_engine

        reset_engine()
        migrate.drop_database(database_url)

    def _delete_redis_keys(self) -> None:
        import redis

        client = redis.Redis.from_url(self.env.redis_url)
        try:
            namespace = self.env.redis_namespace
            deleted = client.delete(namespace)
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{namespace}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += client.delete(*batch)
                    batch.clear()
            if batch:
                deleted += client.delete(*batch)
        finally:
            client.close()


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


# --- CPU accounting (Linux /proc) -------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, str, int]]:
    """``{pid: (ppid, comm, utime + stime in ticks)}`` of every visible process."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        comm = raw[raw.find("(") + 1 : raw.rfind(")")]
        rest = raw[raw.rfind(")") + 2 :].split()
        table[int(entry.name)] = (int(rest[1]), comm, int(rest[11]) + int(rest[12]))
    return table


def _system_ticks() -> tuple[int, int]:
    """``(busy, total)`` CPU ticks of the whole machine since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


@dataclass
class CpuSample:
    at: float
    system: tuple[int, int]
    trees: dict[str, int]
    postgres: int
    #: Ticks of each backend connected to the meter's database, by pid.
    backends: dict[int, int] = field(default_factory=dict)


@dataclass
class CpuUsage:
    """CPU used between two samples: seconds per process tree, PostgreSQL, machine busy %."""

    wall: float
    trees: dict[str, float]
    postgres: float
    machine_busy_pct: float
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    #: Seconds used by the backends of the meter's database only (0 without one).
    postgres_database: float = 0.0


class CpuMeter:
    """Sample CPU time of named process trees (a child and its descendants) and PostgreSQL.

    ``postgres`` counts every PostgreSQL process, other work on the server included;
    with ``database_url`` the meter also counts the backends connected to that
    database alone (``pg_stat_activity``), the figure to trust on a shared server
    (it leaves out the server's own WAL writer and checkpointer).
    """

    def __init__(self, roots: Mapping[str, int], database_url: str | None = None) -> None:
        self.roots = dict(roots)
        self.database_url = database_url

    def _backend_pids(self) -> list[int]:
        import psycopg

        url = self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(url, autocommit=True) as conn:
            query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            return [pid for (pid,) in conn.execute(query)]

    def sample(self) -> CpuSample:
        table = _processes()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _comm, _ticks) in table.items():
            children.setdefault(ppid, []).append(pid)
        trees = {}
        for name, root in self.roots.items():
            ticks, stack = 0, [root]
            while stack:
                pid = stack.pop()
                if pid in table:
                    ticks += table[pid][2]
                    stack.extend(children.get(pid, ()))
            trees[name] = ticks
        postgres = sum(t for _p, comm, t in table.values() if comm.startswith("postgres"))
        backends = {}
        if self.database_url:
            backends = {pid: table[pid][2] for pid in self._backend_pids() if pid in table}
        return CpuSample(time.monotonic(), _system_ticks(), trees, postgres, backends)

    @staticmethod
    def usage(start: CpuSample, end: CpuSample) -> CpuUsage:
        busy = end.system[0] - start.system[0]
        total = max(end.system[1] - start.system[1], 1)
        return CpuUsage(
            wall=end.at - start.at,
            trees={n: (end.trees[n] - start.trees.get(n, 0)) / _CLK_TCK for n in end.trees},
            postgres=(end.postgres - start.postgres) / _CLK_TCK,
            machine_busy_pct=100.0 * busy / total,
            # NOTE: per backend, so one that connected during the window counts in full.
            postgres_database=sum(t - start.backends.get(p, 0) for p, t in end.backends.items())
            / _CLK_TCK,
        )


def connections_per_process(root: int, port: int) -> dict[int, int]:
    """Established TCP connections to local ``port`` held by each descendant of ``root``.

    For gunicorn: how the load generator's keep-alive connections are spread over the
    worker processes (each keeps the connections it accepted until they close).
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            continue
    processes = _processes()
    counts = {}
    for pid, (ppid, _comm, _ticks) in processes.items():
        if ppid != root:
            continue
        count = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        count += 1
        counts[pid] = count
    return counts


# --- figures -----------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (``nan`` when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        # First column left-aligned (names), the figures right-aligned.
        parts = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(parts)

    print(f"\n{title}")
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    goal: str
    passed: bool


def print_targets(title: str, targets: Sequence[Target]) -> bool:
    """Print the targets with PASS/FAIL; return whether all passed."""
    print_table(
        title,
        ["target", "measured", "goal", "result"],
        [(t.name, t.measured, t.goal, "PASS" if t.passed else "FAIL") for t in targets],
    )
    return all(t.passed for t in targets)


def write_json(path: str | None, data: Any) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(f"results written to {path}")


def run_main(
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace, BenchEnv], int],
    argv: list[str] | None = None,
    database: Callable[[argparse.Namespace], str | None] = lambda _args: None,
) -> int:
    """The body of every benchmark's ``main``: parse, set the environment up, run, map errors.

    ``database`` may name a kept database from the arguments (see ``configure_environment``).
    """
    args = parse_args(argv)
    env = configure_environment(database(args))
    try:
        return run(args, env)
    except BenchError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted (cleaned up)", file=sys.stderr)
        return 130
