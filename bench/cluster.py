"""The platform on several "machines" of one box: API, worker hosts and schedulers in network
namespaces of their own, against the shared PostgreSQL and broker.

Layout (see bench/netns.py for the network)::

    root namespace   PostgreSQL, Redis, RabbitMQ (127.0.0.1), the TCP relay on the
                     service address, the receiver (bench/event_recorder.py), the harness
    api              gunicorn, as in the Procfile's ``web``
    host1, host2     ``python -m workers`` (the Procfile's ``worker``) and one scheduler
                     each: host1's starts first and leads, host2's stands by

Each run has its own database (``omnistream_hosts_<id>``, created, migrated and dropped),
its own Redis namespace and, on RabbitMQ, its own virtual host (``omnistream-hosts-<id>``),
so other users of the shared servers see none of its messages. Every process, namespace,
relay and virtual host is removed on exit, also on failure or Ctrl-C.

Example::

    with Cluster(ClusterConfig(broker="redis")) as cluster:
        cluster.start_api()
        cluster.start_host("host1", scheduler=True)
        cluster.kill_host("host1")
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bench import common
from bench.event_recorder import Recorder
from bench.netns import Network

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
RABBITMQ = ("127.0.0.1", 5672)
API_PORT = 8000
BROKERS = ("redis", "rabbitmq")
#: Variables a cluster process must not inherit from whoever runs the harness.
_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")


@dataclass(frozen=True)
class ClusterConfig:
    broker: str = "redis"
    hosts: tuple[str, ...] = ("host1", "host2")
    worker_processes: int = 2
    worker_threads: int = 8
    web_concurrency: int = 2
    #: Settings every cluster process gets on top of the run's own (e.g. sweep times).
    settings: Mapping[str, str] = field(default_factory=dict)
    keep_logs: bool = False


class Cluster(contextlib.ExitStack):
    """Owns the namespaces, relay, database, broker space, receiver and every process."""

    def __init__(self, config: ClusterConfig) -> None:
        super().__init__()
        if config.broker not in BROKERS:
            raise ValueError(f"broker must be one of {BROKERS}")
        self.config = config
        self.run_id = uuid.uuid4().hex[:8]
        server = os.environ.get("BENCH_DATABASE_SERVER", common.DEFAULT_DATABASE_SERVER)
        self.env = common.BenchEnv(
            run_id=self.run_id,
            database_url=f"{server.rstrip('/')}/omnistream_hosts_{self.run_id}",
            redis_url=f"redis://{REDIS[0]}:{REDIS[1]}/0",
            redis_namespace=f"omnistream-hosts-{self.run_id}",
            secret_key="hosts-secret-key-" + self.run_id * 4,
        )
        self.vhost = f"omnistream-hosts-{self.run_id}"
        self.net = Network(["api", *config.hosts], run_id=self.run_id[:6])
        self.bench = common.Bench(f"hosts-{config.broker}", self.env, keep_logs=config.keep_logs)
        self.processes: dict[str, list[common.Child]] = {}
        self.recorder: Recorder | None = None
        self.ports: dict[str, int] = {}
        self._restarts: dict[str, int] = {}
        #: Worker processes each started ``python -m workers`` (by pid) forks.
        self._worker_processes: dict[int, int] = {}

    # --- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        super().__enter__()
        try:
            # NOTE: ExitStack unwinds in reverse: processes stop before the relay, the
            # namespaces, the virtual host and the database go.
            self.enter_context(self.bench)
            if self.config.broker == "rabbitmq":
                self._add_vhost()
                self.callback(self._delete_vhost)
            self.enter_context(self.net)
            # NOTE: registered after the namespaces, so it runs before they go: every
            # process gets a SIGTERM (drain) before a namespace's SIGKILL sweep.
            self.callback(self._stop_all)
            self._start_relay()
            self.recorder = Recorder(self.net.service_address)
            self.callback(self.recorder.close)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _stop_all(self) -> None:
        # NOTE: every process gets its SIGTERM first, so they drain side by side.
        cluster = [c for c in self.bench.children if c.name != "relay"]
        for child in cluster:
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        for child in reversed(self.bench.children):
            self.bench._guarded(f"stop {child.name}", child.stop)

    def _add_vhost(self) -> None:
        _rabbitmqctl("add_vhost", self.vhost)
        _rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")

    def _delete_vhost(self) -> None:
        _rabbitmqctl("delete_vhost", self.vhost, check=False)

    def _start_relay(self) -> None:
        service = self.net.service_address
        targets = {"postgres": POSTGRES, "redis": REDIS}
        if self.config.broker == "rabbitmq":
            targets["rabbitmq"] = RABBITMQ
        ports = common.free_ports(len(targets))
        pairs = []
        for (name, (host, port)), listen in zip(targets.items(), ports, strict=True):
            self.ports[name] = listen
            pairs.append(f"{service}:{listen}={host}:{port}")
        relay = self._spawn("relay", [sys.executable, "bench/tcp_forward.py", *pairs], {})
        common.wait_until(
            lambda: "ready" in relay.log_path.read_text(),
            "the TCP relay is listening",
            timeout=15,
            children=[relay],
        )

    # --- processes ----------------------------------------------------------------------

    def settings(self) -> dict[str, str]:
        """The environment of every cluster process (it reaches the servers through the relay)."""
        service = self.net.service_address
        database = self.env.database_url.rsplit("/", 1)[1]
        postgres = f"{service}:{self.ports['postgres']}"
        values = {
            "ENV": "test",
            "PYTHONUNBUFFERED": "1",
            "SECRET_KEY": self.env.secret_key,
            "DATABASE_URL": f"postgresql+psycopg://postgres@{postgres}/{database}",
            "REDIS_URL": f"redis://{service}:{self.ports['redis']}/0",
            "REDIS_NAMESPACE": self.env.redis_namespace,
            "WEBHOOK_ALLOW_HTTP": "true",
            "WEBHOOK_SSRF_ALLOWLIST": self.net.subnet,
            "PASSWORD_HASH_TIME_COST": "1",
            "PASSWORD_HASH_MEMORY_KIB": "64",
            "PASSWORD_HASH_PARALLELISM": "1",
            # NOTE: PostgreSQL's max_connections (100 here) is shared with everyone on
            # the server: at most 5 connections per process (up to ~40 for a cluster).
            "DB_POOL_SIZE": "2",
            "DB_MAX_OVERFLOW": "3",
        }
        if self.config.broker == "rabbitmq":
            vhost = quote(self.vhost, safe="")
            values["BROKER_URL"] = f"amqp://guest:guest@{service}:{self.ports['rabbitmq']}/{vhost}"
        return values | dict(self.config.settings)

    def _spawn(self, name: str, argv: list[str], extra: Mapping[str, str]) -> common.Child:
        env = {k: v for k, v in os.environ.items() if k in _KEEP}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
        child = common.Child(name, argv, env | dict(extra), self.bench.log_dir)
        self.bench.children.append(child)
        self.bench.callback(self.bench._guarded, f"stop {name}", child.stop)
        return child

    def _start_in(self, role: str, name: str, argv: list[str], extra=()) -> common.Child:
        child = self._spawn(name, self.net.exec_argv(role, argv), self.settings() | dict(extra))
        self.processes.setdefault(role, []).append(child)
        return child

    @property
    def api_address(self) -> tuple[str, int]:
        return self.net.hosts["api"].address, API_PORT

    def start_api(self, *, wait: bool = True) -> common.Child:
        """The Procfile's ``web`` in the ``api`` namespace, listening on all its addresses."""
        argv = [
            *common.executable("gunicorn"),
            "--config",
            "python:api.gunicorn_conf",
            "api.app:create_app()",
        ]
        web = self._start_in(
            "api",
            "web",
            argv,
            {"BIND": f"0.0.0.0:{API_PORT}", "WEB_CONCURRENCY": str(self.config.web_concurrency)},
        )
        if wait:
            self.wait_api(web)
        return web

    def wait_api(self, web: common.Child) -> None:
        common.wait_until(
            self._api_up, "the API answers /api/health", timeout=90, interval=0.2, children=[web]
        )

    def _api_up(self) -> bool:
        # NOTE: 503 while no scheduler has run yet: the API itself is up once it answers.
        _status, body = self.request("GET", "/api/health", timeout=5)
        return isinstance(body, dict) and body.get("checks", {}).get("database", {}).get("ok")

    def start_host(
        self,
        role: str,
        *,
        scheduler: bool = True,
        processes: int | None = None,
        wait: bool = True,
    ) -> common.Child:
        """The Procfile's ``worker`` (and a ``scheduler``) in ``role``'s namespace.

        Returns the worker; with ``wait`` once its processes are all ready for work.
        """
        count = self._restarts[role] = self._restarts.get(role, -1) + 1
        suffix = f"-{count}" if count else ""
        processes = processes or self.config.worker_processes
        worker = self._start_in(
            role,
            f"{role}-worker{suffix}",
            [
                sys.executable,
                "-m",
                "workers",
                "--processes",
                str(processes),
                "--threads",
                str(self.config.worker_threads),
            ],
            # NOTE: the default log level (info) prints Dramatiq's "ready for action".
            {},
        )
        self._worker_processes[worker.pid] = processes
        if scheduler:
            self.start_scheduler(role)
        if wait:
            self.wait_worker(worker)
        return worker

    def start_scheduler(self, role: str) -> common.Child:
        """The Procfile's ``scheduler`` in ``role``'s namespace (leader or standby)."""
        count = sum(c.name.startswith(f"{role}-scheduler") for c in self.bench.children)
        suffix = f"-{count}" if count else ""
        return self._start_in(
            role, f"{role}-scheduler{suffix}", [sys.executable, "-m", "scheduler"]
        )

    def wait_worker(self, worker: common.Child) -> None:
        processes = self._worker_processes[worker.pid]
        common.wait_workers_ready(
            worker,
            processes,
            f"{worker.name}'s {processes} worker processes are ready",
            timeout=120,
        )

    def kill_host(self, role: str) -> list[int]:
        """SIGKILL every process of ``role``'s namespace at once, then reap ours."""
        killed = self.net.kill_all(role)
        for child in self.processes.pop(role, []):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(10)
        return killed

    def stop_host(self, role: str) -> None:
        """SIGTERM (drain) every process this harness started in ``role``'s namespace."""
        for child in self.processes.pop(role, []):
            child.stop()

    def host_pids(self, role: str) -> list[int]:
        return self.net.pids(role)

    # --- HTTP to the API ----------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        timeout: float = 15.0,
    ) -> tuple[int, Any]:
        host, port = self.api_address
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            response = conn.getresponse()
            raw = response.read()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw.decode(errors="replace")
        finally:
            conn.close()

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(f"----- {c.name} -----\n{c.tail(lines)}" for c in self.bench.children)


def _rabbitmqctl(*args: str, check: bool = True) -> None:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise common.BenchError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")


def wait_for(predicate, what: str, timeout: float, interval: float = 0.1):
    """``common.wait_until`` without children to watch (a host may be dead on purpose)."""
    return common.wait_until(predicate, what, timeout=timeout, interval=interval)


def now() -> float:
    return time.monotonic()
