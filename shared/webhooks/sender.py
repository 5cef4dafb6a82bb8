"""Send many signed attempts at once: one asyncio loop per worker process, on its own thread.

Actor threads hand a batch of claimed deliveries to :func:`send_all` and block
until every attempt of the batch has an outcome; meanwhile the loop multiplexes
the attempts of every thread's batches over one keep-alive connection pool. So
a worker with 8 threads keeps far more than 8 requests in flight, and no thread
sits in a blocking ``recv``.

Each attempt is bounded as a whole by its endpoint's timeout (connect, send and
reading the response together), not per socket operation, so a receiver
dripping bytes cannot hold an attempt longer than the timeout.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import httpcore
import httpx

from shared.webhooks.aio_transport import build_pool
from shared.webhooks.delivery import (
    MAX_READ_BODY,
    Claimed,
    Result,
    classify,
    logged_text,
    prepare,
    response_headers_of,
)
from shared.webhooks.ssrf import UnsafeUrl

T = TypeVar("T")
_USER_AGENT = (b"user-agent", b"OmniStream-Webhooks/1")
_CONTENT_TYPE = (b"content-type", b"application/json")


@functools.lru_cache(maxsize=4096)
def _parsed(url: str) -> tuple[httpcore.URL, bytes]:
    """The URL as httpcore takes it (IDNA host) and its Host header; endpoints' URLs repeat."""
    parsed = httpx.URL(url)
    target = httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )
    return target, parsed.netloc


async def send_one(pool: httpcore.AsyncConnectionPool, claimed: Claimed) -> Result:
    """POST the signed payload once; never raises for what the receiver or network does."""
    body, signed, result = prepare(claimed)
    url, host = _parsed(claimed.url)
    # NOTE: httpcore sends exactly these headers; Host and Content-Length are ours to add.
    headers = [
        (b"host", host),
        (b"content-length", str(len(body)).encode()),
        _USER_AGENT,
        _CONTENT_TYPE,
        *((k.encode(), v.encode()) for k, v in signed.items()),
    ]
    limit = claimed.timeout
    request = httpcore.Request(
        "POST",
        url,
        headers=headers,
        content=body,
        extensions={"timeout": {"connect": limit, "read": limit, "write": limit, "pool": limit}},
    )
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            response = await pool.handle_async_request(request)
            try:
                result.status_code = response.status
                result.response_headers = response_headers_of(
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers
                )
                received = bytearray()
                async for chunk in response.aiter_stream():
                    received += chunk
                    if len(received) >= MAX_READ_BODY:
                        break
                result.response_body = logged_text(bytes(received))
            finally:
                await response.aclose()
    except UnsafeUrl as exc:
        result.error_kind, result.error = "blocked", str(exc)
    except (TimeoutError, httpcore.TimeoutException) as exc:
        result.error_kind, result.error = "timeout", f"no answer within {limit:g} s"
        result.error += f" ({type(exc).__name__})"
    except httpcore.ConnectError as exc:
        result.error_kind, result.error = "connection", f"connect failed: {exc}"[:500]
    except Exception as exc:
        # NOTE: a cut response, a protocol error... and anything unexpected: one odd
        # attempt is a failed attempt, never a failed batch.
        result.error_kind = "connection"
        result.error = f"{type(exc).__name__}: {exc}"[:500]
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return classify(result)


class LoopThread:
    """An event loop running forever on a daemon thread, with the pool that lives on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="webhook-sender", daemon=True
        )
        self.thread.start()
        self.pool: httpcore.AsyncConnectionPool = self.run(self._build())

    @staticmethod
    async def _build() -> httpcore.AsyncConnectionPool:
        return build_pool()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


_lock = threading.Lock()
_current: tuple[int, LoopThread] | None = None


def loop_thread() -> LoopThread:
    """This process's loop thread, started on first use (again in a forked child)."""
    global _current
    with _lock:
        if _current is None or _current[0] != os.getpid():
            _current = (os.getpid(), LoopThread())
        return _current[1]


async def _send_batch(pool: httpcore.AsyncConnectionPool, claims: Sequence[Claimed]):
    return await asyncio.gather(*(send_one(pool, c) for c in claims))


def send_all(claims: Sequence[Claimed]) -> list[Result]:
    """Send every claimed attempt concurrently; results in the order of ``claims``."""
    if not claims:
        return []
    runner = loop_thread()
    return list(runner.run(_send_batch(runner.pool, claims)))
