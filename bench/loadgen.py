"""A small asyncio HTTP/1.1 keep-alive load generator for requests to 127.0.0.1.

What it sends: one GET URL, or (``--requests-file``) a mix: a JSON-lines file of
requests, each ``{"kind", "method", "target", "headers", "body"}``, sent in file order
and cycled. Every request is encoded once, before the run. Latencies and statuses are
kept per ``kind``, so one run measures a traffic mix and reports each request kind.

How it sends:

- closed loop (default): each of ``--connections`` persistent connections keeps exactly
  one request in flight; a latency runs from the send to the end of the response body.
  This finds the peak rate.
- open loop (``--rate R``): requests are due at Poisson-spaced times, R per second on
  average, whatever the server does; a due request goes out on an idle connection, or
  waits for the next one to free up. Its latency runs from the time it was *due*, so a
  server that falls behind is charged for the queue it causes (no coordinated omission).
  This measures latency at a given load.

A response is parsed only as far as its status line, ``Content-Length`` and
``Connection: close``. Protocol callbacks (no streams, no HTTP library) keep the
client's own cost per request low, so on a small machine the server, not the client, is
what saturates; the client reports its own CPU use so you can check.

After ``--warmup`` seconds, responses completing during ``--duration`` seconds are
counted and timed. Any status outside 2xx is an error; so is a connection lost with a
request in flight. The run is bounded by time and by ``--max-requests``.

Run it on its own (``bench/loadrun.py`` runs it in a separate process for the benches)::

    .venv/bin/python bench/loadgen.py http://127.0.0.1:8000/api/health \\
        --connections 32 --warmup 2 --duration 10 [-H 'Authorization: Bearer ...']
    .venv/bin/python bench/loadgen.py http://127.0.0.1:8000 --requests-file mix.jsonl \\
        --rate 500 --connections 64

It prints one JSON object: ``requests``, ``rps``, ``p50_ms`` / ``p90_ms`` / ``p99_ms`` /
``max_ms``, ``statuses``, ``errors``, ``connection_errors``, ``client_cpu_pct`` (of one
core), ``kinds`` (the same figures per request kind) and, in open loop, ``rate``,
``backlogged`` (requests that waited for a free connection) and ``max_backlog``.
``--latencies-out FILE`` also writes every latency (seconds, native doubles) and, beside
it in ``FILE.kinds``, each one's kind (one byte: its index in ``kind_names``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
from array import array
from collections import Counter, deque
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
#: A response head larger than this is treated as a protocol error.
MAX_HEAD_BYTES = 64 * 1024
#: Reconnections allowed over a whole run (the server closing idle or errored connections).
MAX_RECONNECTS = 10_000
#: Request kinds in one mix (a kind's index is stored in one byte).
MAX_KINDS = 255


class Requests:
    """The encoded requests of a run, cycled in order, each with its kind's index."""

    def __init__(self, encoded: list[tuple[int, bytes]], kind_names: list[str]) -> None:
        if not encoded:
            raise SystemExit("no request to send")
        self.encoded = encoded
        self.kind_names = kind_names
        self.position = 0

    def next(self) -> tuple[int, bytes]:
        item = self.encoded[self.position]
        self.position = (self.position + 1) % len(self.encoded)
        return item


class Run:
    """Shared state of one run: the requests, the counters and the measurement window."""

    def __init__(self, port: int, requests: Requests, max_requests: int, paced: bool) -> None:
        self.port = port
        self.requests = requests
        self.max_requests = max_requests
        self.paced = paced
        self.measuring = False
        self.stopping = False
        self.latencies = array("d")
        self.kinds = array("B")
        self.statuses: Counter[tuple[int, int]] = Counter()
        self.connection_errors = 0
        self.protocol_errors = 0
        self.reconnects = 0
        self.completed = 0
        self.open: set[Client] = set()
        self.idle_clients: list[Client] = []
        self.backlog: deque[tuple[int, bytes, float]] = deque()
        self.backlogged = 0
        self.max_backlog = 0
        self.idle = asyncio.Event()

    def record(self, kind: int, status: int, latency: float) -> None:
        self.completed += 1
        if self.measuring:
            self.latencies.append(latency)
            self.kinds.append(kind)
            self.statuses[kind, status] += 1
        if self.completed >= self.max_requests:
            self.stopping = True

    def ready(self, client: Client) -> None:
        """``client`` can send: the next request (closed loop), a waiting one, or idle."""
        if self.stopping:
            client.transport.close()
        elif not self.paced:
            client.send(*self.requests.next(), time.perf_counter())
        elif self.backlog:
            client.send(*self.backlog.popleft())
        else:
            self.idle_clients.append(client)

    def due(self, at: float) -> None:
        """Open loop: a request is due at ``at``; send it now, or queue it for a connection."""
        kind, request = self.requests.next()
        while self.idle_clients:
            client = self.idle_clients.pop()
            if client in self.open:
                client.send(kind, request, at)
                return
        self.backlog.append((kind, request, at))
        if self.measuring:
            self.backlogged += 1
            self.max_backlog = max(self.max_backlog, len(self.backlog))

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
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.body_end: int | None = None
        self.status = 0
        self.keep_alive = True
        self.started_at = 0.0
        self.kind = 0
        self.in_flight = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.run.open.add(self)
        self.run.idle.clear()
        self.run.ready(self)

    def send(self, kind: int, request: bytes, started_at: float) -> None:
        self.in_flight = True
        self.kind = kind
        self.started_at = started_at
        self.transport.write(request)

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
            self.run.record(self.kind, self.status, time.perf_counter() - self.started_at)
            if self.keep_alive:
                self.run.ready(self)
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


def _target(url: str) -> tuple[int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != LOOPBACK or not parts.port:
        raise SystemExit(f"only http://{LOOPBACK}:<port>/... is allowed, got {url}")
    return parts.port, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def encode(
    port: int, method: str, target: str, headers: list[str], body: bytes | None = None
) -> bytes:
    """One HTTP/1.1 request, ready to write."""
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {LOOPBACK}:{port}",
        "User-Agent: omnistream-bench-loadgen",
        "Accept: application/json",
        *headers,
    ]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def load_requests(url: str, headers: list[str], requests_file: str | None) -> tuple[int, Requests]:
    """The run's port and requests: ``url`` alone, or the mix in ``requests_file``."""
    port, target = _target(url)
    if requests_file is None:
        return port, Requests([(0, encode(port, "GET", target, headers))], [f"GET {target}"])
    kind_names: list[str] = []
    encoded = []
    with open(requests_file) as f:
        for line in f:
            if not line.strip():
                continue
            spec = json.loads(line)
            if spec["kind"] not in kind_names:
                if len(kind_names) >= MAX_KINDS:
                    raise SystemExit(f"more than {MAX_KINDS} request kinds")
                kind_names.append(spec["kind"])
            extra = [f"{k}: {v}" for k, v in (spec.get("headers") or {}).items()]
            body = spec.get("body")
            payload = json.dumps(body).encode() if body is not None else None
            encoded.append(
                (
                    kind_names.index(spec["kind"]),
                    encode(port, spec["method"], spec["target"], headers + extra, payload),
                )
            )
    return port, Requests(encoded, kind_names)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def figures(latencies: list[float], statuses: Counter[int], window: float) -> dict:
    """req/s, percentiles and statuses of some responses (``latencies`` sorted)."""
    return {
        "requests": len(latencies),
        "rps": len(latencies) / window if window > 0 else math.nan,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p90_ms": percentile(latencies, 90) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else math.nan,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "non_2xx": sum(n for status, n in statuses.items() if not 200 <= status < 300),
    }


async def pace(run: Run, rate: float, seed: int) -> None:
    """Open loop: make requests due at Poisson-spaced times, ``rate`` per second."""
    rng = random.Random(seed)
    due_at = time.perf_counter()
    while not run.stopping:
        now = time.perf_counter()
        while due_at <= now and not run.stopping:
            run.due(due_at)
            due_at += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, due_at - time.perf_counter()))


async def run_load(args: argparse.Namespace) -> dict:
    port, requests = load_requests(args.url, args.header, args.requests_file)
    run = Run(port, requests, args.max_requests, paced=args.rate is not None)
    for _ in range(args.connections):
        await run.connect()
    pacer = asyncio.create_task(pace(run, args.rate, args.seed)) if args.rate else None
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
    for client in run.idle_clients:
        client.transport.close()
    # In-flight requests finish (and their connections close) within a grace period.
    try:
        await asyncio.wait_for(run.idle.wait(), timeout=args.grace)
    except TimeoutError:
        for client in list(run.open):
            client.transport.abort()
    if pacer is not None:
        await pacer
    window = t1 - t0
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    if args.latencies_out:
        with open(args.latencies_out, "wb") as f:
            run.latencies.tofile(f)
        with open(args.latencies_out + ".kinds", "wb") as f:
            run.kinds.tofile(f)
    overall: Counter[int] = Counter()
    for (_kind, status), n in run.statuses.items():
        overall[status] += n
    result = {
        "url": args.url,
        "connections": args.connections,
        "window_s": round(window, 3),
        **figures(sorted(run.latencies), overall, window),
        "connection_errors": run.connection_errors,
        "protocol_errors": run.protocol_errors,
        "reconnects": run.reconnects,
        "hit_max_requests": run.completed >= args.max_requests,
        "client_cpu_pct": 100.0 * cpu / window if window > 0 else math.nan,
        "kind_names": requests.kind_names,
        "kinds": {
            name: figures(
                sorted(x for x, k in zip(run.latencies, run.kinds, strict=True) if k == index),
                Counter({s: n for (k, s), n in run.statuses.items() if k == index}),
                window,
            )
            for index, name in enumerate(requests.kind_names)
        },
    }
    result["errors"] = result["non_2xx"] + run.connection_errors + run.protocol_errors
    if args.rate:
        result.update(rate=args.rate, backlogged=run.backlogged, max_backlog=run.max_backlog)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help=f"http://{LOOPBACK}:<port>/path?query (only the port with -f)")
    parser.add_argument("-c", "--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds not counted")
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--grace", type=float, default=3.0, help="seconds for in-flight ends")
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("-f", "--requests-file", help="JSON lines of requests (a mix), cycled")
    parser.add_argument("--rate", type=float, help="open loop: requests/s due (Poisson)")
    parser.add_argument("--seed", type=int, default=1, help="of the open loop's schedule")
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
    if args.rate is not None and not 0 < args.rate <= 100_000:
        parser.error("--rate must be within (0, 100000] requests/s")
    try:
        result = asyncio.run(run_load(args))
    except OSError as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
