"""A TCP relay: listen on ``LISTEN_HOST:PORT`` and pipe each connection to ``TARGET:PORT``.

Why: the scale-out harness's namespaces (bench/netns.py) cannot reach the shared
PostgreSQL, Redis and RabbitMQ on 127.0.0.1, and those servers must not be
reconfigured. The relay, run in the root namespace, listens on the service address
instead. Relayed connections come from 127.0.0.1, so RabbitMQ's ``guest`` (loopback
only) and PostgreSQL's local trust rules apply unchanged.

When one side closes (a killed host's sockets are closed by its kernel) the other side
is closed too, so PostgreSQL ends the session (releasing its locks) and RabbitMQ
requeues the consumer's unacknowledged messages at once, as they would for a real
machine whose processes died.

Run::

    python bench/tcp_forward.py 10.211.7.1:40001=127.0.0.1:5432 10.211.7.1:40002=127.0.0.1:6379

It prints ``ready`` once every listener is bound, then runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

#: Bytes read per chunk; the writer's buffer pauses reading above a few of these.
_HIGH_WATER = 1 << 20


class _Pipe(asyncio.Protocol):
    """One side of a relayed connection; writes what it reads to its peer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.pending: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.pending.append(data)
        else:
            peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    # NOTE: back-pressure: a slow peer pauses this side's reading.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


#: Connect tasks in progress (the loop keeps only weak references to tasks).
_connecting: set[asyncio.Task] = set()


async def _serve(listen: tuple[str, int], target: tuple[str, int]) -> asyncio.Server:
    loop = asyncio.get_running_loop()

    def accepted() -> _Pipe:
        inbound = _Pipe()

        async def connect() -> None:
            try:
                _t, outbound = await loop.create_connection(_Pipe, *target)
            except OSError:
                if inbound.transport is not None:
                    inbound.transport.close()
                return
            outbound.peer, inbound.peer = inbound, outbound
            if inbound.closed:
                outbound.transport.close()
                return
            for side, other in ((inbound, outbound), (outbound, inbound)):
                for chunk in side.pending:
                    other.transport.write(chunk)
                side.pending.clear()

        task = loop.create_task(connect())
        _connecting.add(task)
        task.add_done_callback(_connecting.discard)
        return inbound

    return await loop.create_server(accepted, *listen, reuse_address=True, backlog=512)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main(pairs: list[str]) -> None:
    servers = []
    for pair in pairs:
        listen, _, target = pair.partition("=")
        servers.append(await _serve(_address(listen), _address(target)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    asyncio.run(main(sys.argv[1:]))
