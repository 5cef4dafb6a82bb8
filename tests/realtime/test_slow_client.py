"""A client that never reads: closed past MAX_QUEUED, and gone from the hub at once.

Its server's send is blocked (the client reads nothing), so the stream's generator stays
suspended at a ``yield`` and never reaches its ``finally``. Until then the client stayed
registered: its agent counted as online (round robin kept routing to a dead tab), the
feed kept matching entries against it, the monitor kept re-checking it against the
database, and its queue kept its 1,000 entries; for as long as the socket stayed open.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from api.stream_hub import MAX_QUEUED, Client, Hub, Item
from shared.config import get_settings
from shared.context import Actor, Ctx
from shared.inbox.access import EVERYTHING
from shared.realtime import access
from tests.realtime.conftest import serving


def test_a_client_closed_for_not_reading_leaves_the_hub_at_once(database):
    tenant_id, user_id = uuid.uuid4(), uuid.uuid4()
    viewer = access.Viewer(tenant_id, str(user_id), EVERYTHING, frozenset())
    ctx = Ctx(tenant_id, Actor("user", user_id), user_id=user_id)
    client = Client(ctx, viewer, None, "token")

    async def scenario() -> dict:
        hub = Hub(get_settings().redis_url)
        try:
            events = hub.stream(client, None)
            await events.__anext__()  # "connected"; the send of what follows never ends
            assert hub.local_users[(tenant_id, str(user_id))] == 1
            for n in range(MAX_QUEUED + 1):
                client.offer(Item((n + 1, 0), f"{n + 1}-0", None, b"{}"))
            await asyncio.sleep(0)  # what the close scheduled
            seen = {
                "closed": client.closed,
                "online": dict(hub.local_users),
                "feeds": list(hub.feeds),
                "queued": client.queue.qsize(),
            }
            await events.aclose()  # the socket finally goes: nothing is counted twice
            seen["online_after"] = dict(hub.local_users)
            return seen
        finally:
            await hub.stop()

    seen = asyncio.run(scenario())
    assert seen["closed"] == "too_slow"
    assert seen["online"] == {} and seen["feeds"] == []
    assert seen["queued"] <= 1  # only the close marker is kept
    assert seen["online_after"] == {}


class _Recording(Hub):
    """The hub, keeping its clients and its event loop for the test to feed them."""

    def __init__(self, url: str):
        super().__init__(url)
        self.clients: list[Client] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    def register(self, client: Client):
        self.loop = asyncio.get_running_loop()
        self.clients.append(client)
        return super().register(client)


def _tcp_state(sock: socket.socket) -> int:
    """The socket's TCP state as the kernel has it (1: established), read without reading."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


@pytest.mark.parametrize("closed_too_slow", [False, True])
def test_a_client_that_does_not_read_is_disconnected(
    database, broker, ws, monkeypatch, closed_too_slow
):
    """The server's send to a client that reads nothing waits at most SEND_TIMEOUT_SECONDS,
    then the connection is dropped, whether or not the client was closed as ``too_slow``.

    Before, the send waited for as long as the peer kept the socket open: the connection,
    its buffers (megabytes of events) and its stream's task were held all that time.
    """
    from api import stream_app

    monkeypatch.setattr(stream_app, "SEND_TIMEOUT_SECONDS", 1.0, raising=False)
    hub = _Recording(get_settings().redis_url)
    with serving(stream_app.create_stream_app(hub)) as url:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, port))
        try:
            sock.sendall(
                f"GET /api/stream HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {ws.token}\r\n\r\n".encode()
            )
            deadline = time.monotonic() + 10
            while not hub.clients:
                assert time.monotonic() < deadline, "the stream never opened"
                time.sleep(0.05)
            client = hub.clients[0]
            time.sleep(0.5)  # past its opening: it waits for what is queued

            def flood(count: int, size: int) -> None:
                for n in range(count):
                    key = (2**62 + n, 0)
                    client.offer(Item(key, f"{key[0]}-0", None, b"x" * size))

            # Far more than the kernel's and the server's buffers hold: the send blocks.
            hub.loop.call_soon_threadsafe(flood, 200, 64 * 1024)
            time.sleep(0.5)
            if closed_too_slow:
                hub.loop.call_soon_threadsafe(flood, MAX_QUEUED + 1, 10)
            deadline = time.monotonic() + 6
            while _tcp_state(sock) == 1:  # never read from
                assert time.monotonic() < deadline, "a client that does not read stays connected"
                time.sleep(0.1)
            assert client.closed == ("too_slow" if closed_too_slow else None)
            # Nor is it kept by the process.
            assert httpx.get(f"{url}/health", timeout=5).json()["streams"] == 0
        finally:
            sock.close()
