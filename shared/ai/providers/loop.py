"""Run model calls on the worker process's event loop: the webhook engine's loop thread.

PERF: a model answer takes seconds; a Dramatiq thread waiting for each one would cap
a worker at ``threads`` answers in flight (8 threads x 2 s = 4 answers a second).
Calls are coroutines submitted to the one loop thread each process already runs for
webhook attempts (:func:`shared.webhooks.sender.loop_thread`), bounded by
``AI_MAX_CONCURRENT_CALLS`` per process; threads only hand work over.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

from shared.config import get_settings
from shared.webhooks import sender

T = TypeVar("T")

_semaphores: dict[int, asyncio.Semaphore] = {}


def _loop() -> asyncio.AbstractEventLoop:
    return sender.loop_thread().loop


async def _bounded(coro: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.get_running_loop()
    semaphore = _semaphores.get(id(loop))
    if semaphore is None:
        semaphore = _semaphores[id(loop)] = asyncio.Semaphore(
            get_settings().ai_max_concurrent_calls
        )
    async with semaphore:
        return await coro


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Start ``coro`` on the loop (within the concurrency bound); returns at once."""
    return asyncio.run_coroutine_threadsafe(_bounded(coro), _loop())


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the loop and wait for it (the synchronous test endpoint, embeddings)."""
    return submit(coro).result(timeout)
