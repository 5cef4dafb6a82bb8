"""Hear, in this process, that another process freed a slot of an endpoint we wait for.

A lease refused by :mod:`.limiter` marks its endpoint as waited for; a release of a
marked endpoint publishes the endpoint's id on one channel (:func:`.limiter.freed_channel`).
:class:`FreedSlots` listens on its own thread and connection and calls back with each
id, so a delivery waiting in this process's pipeline tries again at once, whichever
process freed the slot. Pub/sub drops what arrives while a listener is reconnecting:
the pipeline also retries its waiting deliveries on a timer, so a lost message costs
that interval, never a delivery.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from shared import pubsub
from shared.redis_client import get_redis
from shared.webhooks.limiter import freed_channel

log = logging.getLogger(__name__)


class FreedSlots:
    """A daemon thread on the freed-slot channel: ``on_freed(endpoint_id)`` per message."""

    def __init__(self, on_freed: Callable[[uuid.UUID], None]) -> None:
        self.on_freed = on_freed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-freed", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        pubsub.listen(
            get_redis,
            freed_channel(),
            self._deliver,
            self._stop,
            outage_warning="webhooks: freed-slot channel unavailable; waiting deliveries poll",
        )

    def _deliver(self, data: str) -> None:
        try:
            endpoint_id = uuid.UUID(data)
        except ValueError:
            return
        try:
            self.on_freed(endpoint_id)
        except Exception:
            log.exception("webhooks: a freed-slot callback failed")
