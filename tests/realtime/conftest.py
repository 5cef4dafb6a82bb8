"""Realtime fixtures: the stream app on a real socket (uvicorn, in a thread), an SSE reader.

The stream server runs in this test process, so it shares the run's database and
Redis namespace; events reach it through the real path (the API writes, the
session's Dramatiq worker dispatches, the ``realtime`` target XADDs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import socket
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn

from tests.analytics.conftest import ApiChannel
from tests.workspaces import Workspace, register


@contextlib.contextmanager
def serving(app):
    """Base URL of ``app``'s ``/api/stream`` served on a free port (uvicorn, in a thread)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the stream server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/api/stream"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


@pytest.fixture(scope="module")
def stream_url(database, broker):
    """Base URL of a stream process serving on a free port for the module's tests."""
    from api.stream_app import create_stream_app

    with serving(create_stream_app()) as url:
        yield url


@dataclass
class Event:
    event: str
    id: str | None
    data: str

    @property
    def json(self) -> dict:
        return json.loads(self.data)


@dataclass
class Stream:
    """One open SSE connection, read by a thread into a queue of parsed events."""

    response: httpx.Response
    client: httpx.Client
    events: queue.Queue = field(default_factory=queue.Queue)

    #: The last event id the stream gave, as EventSource keeps it (an id-only block too).
    last_id: str | None = None

    def read(self) -> None:
        name, id_, data = "message", None, []
        try:
            for line in self.response.iter_lines():
                if line == "":
                    if id_ is not None:
                        self.last_id = id_
                    if data:
                        self.events.put(Event(name, id_, "\n".join(data)))
                    name, id_, data = "message", None, []
                elif line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("id: "):
                    id_ = line[4:]
                elif line.startswith("data: "):
                    data.append(line[6:])
        except (httpx.HTTPError, RuntimeError, ValueError):
            pass
        self.events.put(None)

    def next(self, timeout: float = 10.0) -> Event:
        event = self.events.get(timeout=timeout)
        assert event is not None, "the stream ended"
        return event

    def until(self, predicate, timeout: float = 10.0) -> Event:
        """The first event matching ``predicate`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "no matching event in time"
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                raise AssertionError("no matching event in time") from None
            assert event is not None, "the stream ended"
            if predicate(event):
                return event

    def drain(self, quiet: float = 0.3) -> list[Event]:
        """Everything that arrives until the stream is quiet for ``quiet`` seconds."""
        found = []
        while True:
            try:
                event = self.events.get(timeout=quiet)
            except queue.Empty:
                return found
            if event is None:
                return found
            found.append(event)

    def close(self) -> None:
        self.response.close()
        self.client.close()


def open_stream(url: str, headers: dict[str, str]) -> Stream:
    client = httpx.Client(timeout=httpx.Timeout(5.0, read=30.0))
    response = client.send(client.build_request("GET", url, headers=headers), stream=True)
    assert response.status_code == 200, response.read()
    stream = Stream(response, client)
    threading.Thread(target=stream.read, daemon=True).start()
    return stream


@pytest.fixture
def streams():
    """Open streams (closed at the end of the test)."""
    opened: list[Stream] = []

    def connect(url: str, token: str | None = None, **headers: str) -> Stream:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        stream = open_stream(url, headers)
        opened.append(stream)
        return stream

    yield connect
    for stream in opened:
        stream.close()


@pytest.fixture
def ws(client, worker) -> Workspace:
    return register(client)


@pytest.fixture
def other(client, worker) -> Workspace:
    return register(client)


def inbound(ws: Workspace, customer: str, text: str = "Hello") -> dict:
    """A customer writes in through the tenant's api-channel account."""
    channel = getattr(ws, "_api_channel", None)
    if channel is None:
        channel = ws._api_channel = ApiChannel(ws)
    return channel.inbound(customer, text)


def of_type(event_type: str, **data):
    """Predicate: a catalogue event of ``event_type`` whose data has ``data``'s values."""

    def match(event: Event) -> bool:
        if event.event != "message":
            return False
        body = event.json
        return body["type"] == event_type and all(body["data"].get(k) == v for k, v in data.items())

    return match


def about(*conversations: str):
    """Predicate: a catalogue or ``conversation.removed`` entry about one of these
    conversations (its ``data.id`` or ``data.conversation_id``)."""
    wanted = set(conversations)

    def match(event: Event) -> bool:
        if event.event not in ("message", "conversation.removed"):
            return False
        data = event.json["data"]
        return bool({data.get("id"), data.get("conversation_id")} & wanted)

    return match


def in_division(ws: Workspace, customer: str, division: str) -> str:
    """A conversation of ``customer`` moved to ``division`` by a transfer; its id."""
    conversation = inbound(ws, customer, "first")["conversation_id"]
    moved = ws.call(
        "POST", f"/api/conversations/{conversation}/transfer", json={"to_division_id": division}
    )
    assert moved.status_code == 200, moved.text
    return conversation


def ready_event(stream) -> str:
    """Take the stream's opening ``ready`` event; its id (where a resume starts)."""
    event = stream.next()
    assert event.event == "ready", event
    return event.id


def ready_streams(streams, url: str, *tokens: str) -> list:
    """A stream per token, each past its opening ``ready`` event."""
    opened = [streams(url, token) for token in tokens]
    for stream in opened:
        ready_event(stream)
    return opened


def new_division(ws: Workspace, name: str, *agent_ids: str) -> str:
    """A new division of ``ws`` with ``agent_ids`` as its members; its id."""
    resp = ws.call("POST", "/api/divisions", json={"name": name})
    assert resp.status_code == 201, resp.text
    if agent_ids:
        added = ws.call(
            "POST", f"/api/divisions/{resp.json['id']}/agents", json={"agent_ids": list(agent_ids)}
        )
        assert added.status_code in (200, 204), added.text
    return resp.json["id"]
