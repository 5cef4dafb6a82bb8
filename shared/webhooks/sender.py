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
import atexit
import functools
import logging
import os
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import aiohttp
import yarl

from shared.webhooks.aio_transport import build_session, vet_literal
from shared.webhooks.delivery import (
    MAX_READ_BODY,
    Claimed,
    Result,
    classify,
    logged_text,
    prepare,
    response_headers_of,
)
from shared.webhooks.ssrf import Policy, UnsafeUrl

log = logging.getLogger(__name__)

T = TypeVar("T")


def _blocked(exc: BaseException) -> UnsafeUrl | None:
    """The guard's refusal, if that is what ``exc`` is or was raised from."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, UnsafeUrl):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def send_one(session: aiohttp.ClientSession, policy: Policy, claimed: Claimed) -> Result:
    """POST the signed payload once; never raises for what the receiver or network does."""
    body, signed, result = prepare(claimed)
    limit = claimed.timeout
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            vet_literal(_host_of(claimed.url), policy)
            async with session.post(
                claimed.url, data=body, headers=signed, allow_redirects=False
            ) as response:
                result.status_code = response.status
                result.response_headers = response_headers_of(response.headers.items())
                received = bytearray()
                while len(received) < MAX_READ_BODY:
                    chunk = await response.content.read(MAX_READ_BODY - len(received))
                    if not chunk:
                        break
                    received += chunk
                result.response_body = logged_text(bytes(received))
    except TimeoutError as exc:
        result.error_kind, result.error = "timeout", f"no answer within {limit:g} s"
        result.error += f" ({type(exc).__name__})"
    except aiohttp.ClientConnectorError as exc:
        blocked = _blocked(exc)
        if blocked is not None:
            result.error_kind, result.error = "blocked", str(blocked)
        else:
            result.error_kind, result.error = "connection", f"connect failed: {exc}"[:500]
    except Exception as exc:
        # NOTE: a cut response, a protocol error... and anything unexpected: one odd
        # attempt is a failed attempt, never a failed batch.
        blocked = _blocked(exc)
        if blocked is not None:
            result.error_kind, result.error = "blocked", str(blocked)
        else:
            result.error_kind = "connection"
            result.error = f"{type(exc).__name__}: {exc}"[:500]
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return classify(result)


@functools.lru_cache(maxsize=4096)
def _host_of(url: str) -> str:
    """The host aiohttp connects to: yarl's reading of the URL, not urlsplit's.

    APPSEC: yarl maps a non-ASCII host (127.0.0.2 in fullwidth digits is 127.0.0.2) and aiohttp then
    connects to an IP literal without asking the resolver: the literal must be vetted.
    """
    return yarl.URL(url).raw_host or ""


class LoopThread:
    """An event loop running forever on a daemon thread, with the pools that live on it.

    Every HTTP pool opened on the loop (the webhook pool here, the model clients'
    ones) is adopted, so the process closes their connections when it exits instead
    of dropping them mid-keep-alive.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="webhook-sender", daemon=True
        )
        self.thread.start()
        self.policy = Policy.from_settings()
        self._pools: list[aiohttp.ClientSession] = []
        self.session: aiohttp.ClientSession = self.adopt(self.run(self._build()))

    async def _build(self) -> aiohttp.ClientSession:
        return build_session(self.policy)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def adopt(self, pool: aiohttp.ClientSession) -> aiohttp.ClientSession:
        """Close ``pool`` (opened on this loop) with the loop when the process exits."""
        self._pools.append(pool)
        return pool

    def close(self, timeout: float = 2.0) -> None:
        """Close the adopted pools and stop the loop (at exit; in-flight calls are dropped)."""

        async def close_pools() -> None:
            await asyncio.gather(
                *(pool.close() for pool in self._pools if not pool.closed), return_exceptions=True
            )

        if self.loop.is_closed() or not self.thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(close_pools(), self.loop).result(timeout)
        except Exception:
            log.debug("HTTP pools not closed within %.1f s at exit", timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)


_lock = threading.Lock()
_current: tuple[int, LoopThread] | None = None


def loop_thread() -> LoopThread:
    """This process's loop thread, started on first use (again in a forked child)."""
    global _current
    with _lock:
        if _current is None or _current[0] != os.getpid():
            _current = (os.getpid(), LoopThread())
            atexit.register(_current[1].close)
        return _current[1]


async def _send_batch(runner: LoopThread, claims: Sequence[Claimed]) -> list[Result]:
    return await asyncio.gather(*(send_one(runner.session, runner.policy, c) for c in claims))


def send_all(claims: Sequence[Claimed]) -> list[Result]:
    """Send every claimed attempt concurrently; results in the order of ``claims``."""
    if not claims:
        return []
    runner = loop_thread()
    return list(runner.run(_send_batch(runner, claims)))
