"""Helpers of the fault tests: a deduplicating receiver, real worker subprocesses, a private Redis.

Every process here is started in a session of its own and killed by its process
group id (the ``dramatiq`` CLI forks its worker processes: killing only the parent
would leave the child delivering).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dramatiq
import redis

from shared.config import Settings
from tests.peers.http_server import PeerServer
from tests.waiting import wait_until
from workers.broker import build_broker

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the receiver ------------------------------------------------------------------------


@dataclass
class DedupReceiver:
    """Records each POST's ``webhook-id``; the first request may hang until released."""

    port: int = 0
    hang_first: bool = False
    delay: float = 0.0
    ids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def received(self) -> list[str]:
        with self.lock:
            return list(self.ids)

    def distinct(self) -> set[str]:
        """What a receiver deduplicating by ``webhook-id`` processed."""
        return set(self.received())


def _handler(state: DedupReceiver):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            assert body
            with state.lock:
                state.ids.append(self.headers["webhook-id"])
                first = len(state.ids) == 1
            if first and state.hang_first:
                state.release.wait(30)
            elif state.delay:
                time.sleep(state.delay)
            payload = b'{"ok":true}'
            try:
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the sender is gone (killed)

    return Handler


class running_receiver:
    """``with running_receiver(...) as r``: a threaded HTTP receiver on 127.0.0.1."""

    def __init__(self, **options) -> None:
        self.state = DedupReceiver(**options)
        self.server = PeerServer(("127.0.0.1", 0), _handler(self.state))
        self.state.port = self.server.server_address[1]

    def __enter__(self) -> DedupReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.state

    def __exit__(self, *exc) -> None:
        self.state.release.set()
        self.server.shutdown()
        self.server.server_close()


# --- processes ---------------------------------------------------------------------------


class Proc:
    """A subprocess in its own process group, its output in a temporary file."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        # NOTE: closed by close(); the file outlives this call on purpose.
        self.output = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="omnistream-fault-", suffix=".log"
        )
        self.popen = subprocess.Popen(
            list(args),
            cwd=ROOT,
            env=env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return Path(self.output.name).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole group (for a worker: its parent and its forked processes)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        self.output.close()


def start_worker(*, namespace: str, redis_url: str | None = None) -> Proc:
    """``dramatiq workers.main`` with this run's database, on its own Redis namespace (and URL)."""
    env = dict(os.environ, REDIS_NAMESPACE=namespace, PYTHONUNBUFFERED="1")
    if redis_url:
        env["REDIS_URL"] = redis_url
        env.pop("BROKER_URL", None)
    return Proc(
        [sys.executable, "-m", "dramatiq", "workers.main", "--processes", "1", "--threads", "2"],
        env,
    )


def start_redis(port: int) -> Proc:
    proc = Proc(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "no"]
    )  # fmt: skip
    client = redis.Redis(port=port, socket_connect_timeout=0.5)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        wait_until(up, f"redis-server on port {port}", 10, details=proc.log)
    finally:
        client.close()
    return proc


# --- a broker of the test's own ----------------------------------------------------------


def namespace_of_test() -> str:
    return f"{os.environ['REDIS_NAMESPACE']}-fault-{uuid.uuid4().hex[:8]}"


def private_broker(namespace: str, redis_url: str | None = None) -> dramatiq.Broker:
    """A broker on ``namespace`` (and ``redis_url``); never made the global broker."""
    settings = Settings(
        redis_namespace=namespace, **({"redis_url": redis_url} if redis_url else {})
    )
    broker = build_broker(settings)
    from workers import queues

    for name in queues.ALL:
        broker.declare_queue(name)
    return broker


def enqueuers(broker: dramatiq.Broker):
    """The webhook-queue enqueuer and the outbox publisher, both sending to ``broker``."""
    from workers.actors.events import dispatch_event
    from workers.actors.webhooks import deliver_webhook

    def enqueue(items) -> None:
        for delivery_id, delay in items:
            message = deliver_webhook.message_with_options(args=(str(delivery_id),))
            broker.enqueue(message, delay=int(delay * 1000) if delay > 0 else None)

    def publish(pending) -> None:
        for event in pending:
            broker.enqueue(
                dispatch_event.message_with_options(
                    args=(str(event.id),), tenant_id=str(event.tenant_id)
                )
            )

    return enqueue, publish


def delete_namespace(namespace: str, redis_url: str) -> None:
    """Delete this test's keys (only under its own namespace) from the shared Redis."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
