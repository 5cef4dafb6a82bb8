"""Fixtures for the webhook tests: a real receiver on 127.0.0.1, endpoints, time moving.

NOTE: the SSRF guard refuses loopback and http by default; tests/conftest.py allows
both for this run (WEBHOOK_ALLOW_HTTP, WEBHOOK_SSRF_ALLOWLIST).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select, update

from shared.db import session_scope
from shared.models import OutboxEvent, WebhookDelivery
from shared.webhooks import sweeper
from tests.peers.http_server import PeerServer
from tests.waiting import wait_until


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What arrived, and how to answer: per path, a list of behaviours (the last repeats).

    A behaviour is an int status, or ``("status", code, headers[, body])``, ``("sleep", s)``
    (then 200), ``("close",)`` (headers, a few body bytes, then the socket closes)
    or ``("redirect",)``.
    """

    port: int = 0
    received: list[Received] = field(default_factory=list)
    plans: dict[str, list[Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Requests being answered now, and the most ever at once, per path.
    active: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def plan(self, path: str, *behaviours: Any) -> None:
        with self.lock:
            self.plans[path] = list(behaviours)

    def next_behaviour(self, path: str) -> Any:
        with self.lock:
            plan = self.plans.get(path) or [200]
            return plan.pop(0) if len(plan) > 1 else plan[0]

    def enter(self, path: str) -> None:
        with self.lock:
            self.active[path] = self.active.get(path, 0) + 1
            self.peak[path] = max(self.peak.get(path, 0), self.active[path])

    def leave(self, path: str) -> None:
        with self.lock:
            self.active[path] -= 1

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]


def _handler(receiver: Receiver):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):
            receiver.enter(self.path)
            try:
                self.answer()
            finally:
                receiver.leave(self.path)

        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.received.append(
                    Received(self.path, dict(self.headers.items()), body, time.time())
                )
            behaviour = receiver.next_behaviour(self.path)
            if isinstance(behaviour, int):
                behaviour = ("status", behaviour, {})
            kind = behaviour[0]
            if kind == "sleep":
                time.sleep(behaviour[1])
                behaviour = ("status", 200, {})
            if kind == "close":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b'{"partial')
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if kind == "redirect":
                behaviour = ("status", 302, {"Location": receiver.url("/elsewhere")})
            _, status, headers, *body = behaviour
            payload = body[0] if body else b'{"ok":true}'
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@pytest.fixture(scope="session")
def receiver():
    """A threaded HTTP receiver on 127.0.0.1 for the whole run (tests use their own paths)."""
    state = Receiver()
    server = PeerServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def path() -> str:
    """A receiver path of this test's own."""
    return f"/hook/{uuid.uuid4().hex[:12]}"


def deliveries(endpoint_id: str) -> list[WebhookDelivery]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == uuid.UUID(endpoint_id))
                .order_by(WebhookDelivery.created_at)
            )
        )


def move_time(endpoint_id: str) -> int:
    """Make the endpoint's waiting deliveries due now (time moved, not slept), and sweep."""
    with session_scope() as session:
        session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.endpoint_id == uuid.UUID(endpoint_id),
                WebhookDelivery.status == "pending",
            )
            .values(next_attempt_at=WebhookDelivery.created_at, sweep_at=WebhookDelivery.created_at)
        )
    with session_scope() as session:
        return sweeper.sweep(session)


def settled(endpoint_id: str, count: int = 1, *, statuses=("succeeded", "failed", "disabled")):
    """Wait until ``count`` deliveries of the endpoint are not in flight and have an attempt."""

    def check():
        rows = deliveries(endpoint_id)
        done = [
            d
            for d in rows
            if d.status in statuses or (d.status == "pending" and d.attempt_count > 0)
        ]
        return rows if len(done) >= count and all(d.status != "in_flight" for d in rows) else None

    return wait_until(check, f"{count} deliveries of {endpoint_id} settled")


@pytest.fixture
def ws(worker, workspace):
    """A workspace whose own events (its admin's creation...) are already dispatched.

    NOTE: otherwise an endpoint created now could receive them, and counts would drift.
    """
    wait_until(
        lambda: all(e.status == "processed" for e in outbox(workspace.tenant["id"])),
        "the workspace's first events dispatched",
    )
    return workspace


def outbox(tenant_id: str, event_type: str | None = None) -> list[OutboxEvent]:
    query = select(OutboxEvent).where(OutboxEvent.tenant_id == uuid.UUID(tenant_id))
    if event_type:
        query = query.where(OutboxEvent.type == event_type)
    with session_scope() as session:
        return list(session.scalars(query.order_by(OutboxEvent.occurred_at)))
