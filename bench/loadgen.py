"""A small asyncio HTTP/1.1 keep-alive load generator for one GET URL on 127.0.0.1.

Closed loop: each of ``--connections`` persistent connections keeps exactly one request
in flight. The request bytes are encoded once; a response is parsed only as far as
its status line, ``Content-Length`` and ``Connection: close``, and the next request
goes out as soon as the body is in. Protocol callbacks (no streams, no HTTP library)
keep the client's own cost per request low, so on a small machine the server, not
the client, is what saturates; the client reports its own CPU use so you can check.

After ``--warmup`` seconds, responses completing during ``--duration`` seconds are
counted and timed (send of the request to the end of the response body). Any
status outside 2xx is an error; so is a connection lost with a request in flight.
The run is bounded by time and by ``--max-requests``.

Run it on its own (``bench/http_api.py`` does, in a separate process)::

    .venv/bin/python bench/loadgen.py http://127.0.0.1:8000/api/health \\
        --connections 32 --warmup 2 --duration 10 [-H 'Authorization: Bearer ...']

It prints one JSON object: ``requests``, ``rps``, ``p50_ms`` / ``p90_ms`` / ``p99_ms`` /
``max_ms``, ``statuses``, ``errors``, ``connection_errors``, ``client_cpu_pct`` (of one
core). ``--latencies-out FILE`` also writes every latency (seconds, native doubles).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from array import array
from collections import Counter
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
#: A response head larger than this is treated as a protocol error.
MAX_HEAD_BYTES = 64 * 1024
#: Reconnections allowed over a whole run (the server closing idle or errored connections).
MAX_RECONNECTS = 10_000


class Run:
    """Shared state of one run: the request, the counters and the measurement window."""

    def __init__(self, port: int, request: bytes, max_requests: int) -> None:
        self.port = port
        self.request = request
        self.max_requests = max_requests
        self.measuring = False
        self.stopping = False
        self.latencies = array("d")
        self.statuses: Counter[int] = Counter()
        self.connection_errors = 0
        self.protocol_errors = 0
        self.reconnects = 0
        self.completed = 0
        self.open: set[Client] = set()
        self.idle = asyncio.Event()

    def record(self, status: int, latency: float) -> None:
        self.completed += 1
        if self.measuring:
            self.latencies.append(latency)
            self.statuses[status] += 1
        if self.completed >= self.max_requests:
            self.stopping = True

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: Client(self), LOOPBACK, self.port)

    def reconnect(self) -> None:
        if self.stopping or self.reconnects >= MAX_RECONNECTS:
            return
        self.reconnects += 1

        async def again() -> None:
            try:
                await self.connect()
            except OSError:
                self.connection_errors += 1
                await asyncio.sleep(0.05)
                self.reconnect()

        asyncio.get_running_loop().create_task(again())


class Client(asyncio.Protocol):
    """One keep-alive connection with one request in flight."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.body_end: int | None = None
        self.status = 0
        self.keep_alive = True
        self.sent_at = 0.0
        self.in_flight = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.run.open.add(self)
        self.run.idle.clear()
        self.send()

    def send(self) -> None:
        if self.run.stopping:
            self.transport.close()
            return
        self.in_flight = True
        self.sent_at = time.perf_counter()
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while buffer:
            if self.body_end is None:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        self.fail()
                    return
                head = bytes(buffer[:end]).lower()
                try:
                    self.status = int(head[9:12])
                    at = head.index(b"\r\ncontent-length:")
                    line_end = head.find(b"\r\n", at + 2)
                    length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
                except ValueError:
                    # NOTE: no Content-Length (chunked or close-delimited) is not supported.
                    self.fail()
                    return
                self.keep_alive = b"\r\nconnection: close" not in head
                self.body_end = end + 4 + length
            if len(buffer) < self.body_end:
                return
            del buffer[: self.body_end]
            self.body_end = None
            self.in_flight = False
            self.run.record(self.status, time.perf_counter() - self.sent_at)
            if self.keep_alive:
                self.send()
            else:
                self.transport.close()
                return

    def fail(self) -> None:
        self.run.protocol_errors += 1
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        run = self.run
        run.open.discard(self)
        if self.in_flight and not run.stopping and run.measuring:
            run.connection_errors += 1
        if not run.open:
            run.idle.set()
        run.reconnect()


def build_request(url: str, headers: list[str]) -> tuple[int, bytes]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != LOOPBACK or not parts.port:
        raise SystemExit(f"only http://{LOOPBACK}:<port>/... is allowed, got {url}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {LOOPBACK}:{parts.port}",
        "User-Agent: omnistream-bench-loadgen",
        "Accept: application/json",
        *headers,
    ]
    return parts.port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def run_load(args: argparse.Namespace) -> dict:
    port, request = build_request(args.url, args.header)
    run = Run(port, request, args.max_requests)
    for _ in range(args.connections):
        await run.connect()
    await asyncio.sleep(args.warmup)
    if args.phases:
        print("#measure-start", flush=True)
    cpu0, t0 = os.times(), time.perf_counter()
    run.measuring = True
    await asyncio.sleep(args.duration)
    run.measuring = False
    cpu1, t1 = os.times(), time.perf_counter()
    if args.phases:
        print("#measure-end", flush=True)
    run.stopping = True
    # In-flight requests finish (and their connections close) within a grace period.
    try:
        await asyncio.wait_for(run.idle.wait(), timeout=args.grace)
    except TimeoutError:
        for client in list(run.open):
            client.transport.abort()
    window = t1 - t0
    latencies = sorted(run.latencies)
    non_2xx = sum(n for status, n in run.statuses.items() if not 200 <= status < 300)
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    if args.latencies_out:
        with open(args.latencies_out, "wb") as f:
            run.latencies.tofile(f)
    return {
        "url": args.url,
        "connections": args.connections,
        "window_s": round(window, 3),
        "requests": len(latencies),
        "rps": len(latencies) / window if window > 0 else math.nan,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p90_ms": percentile(latencies, 90) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else math.nan,
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "non_2xx": non_2xx,
        "connection_errors": run.connection_errors,
        "protocol_errors": run.protocol_errors,
        "errors": non_2xx + run.connection_errors + run.protocol_errors,
        "reconnects": run.reconnects,
        "hit_max_requests": run.completed >= args.max_requests,
        "client_cpu_pct": 100.0 * cpu / window if window > 0 else math.nan,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help=f"http://{LOOPBACK}:<port>/path?query")
    parser.add_argument("-c", "--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds not counted")
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--grace", type=float, default=3.0, help="seconds for in-flight ends")
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--max-requests", type=int, default=5_000_000)
    parser.add_argument("--latencies-out", help="write every latency (float64 seconds) here")
    parser.add_argument(
        "--phases",
        action="store_true",
        help="print '#measure-start' / '#measure-end' lines when the window opens and closes",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.connections <= 1024:
        parser.error("--connections must be within 1..1024")
    if not (0 <= args.warmup <= 600 and 0 < args.duration <= 3600):
        parser.error("--warmup must be within 0..600 s and --duration within (0, 3600] s")
    try:
        result = asyncio.run(run_load(args))
    except OSError as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
