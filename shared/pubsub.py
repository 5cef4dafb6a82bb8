"""One Redis pub/sub subscription kept alive on a background thread.

Used by the listeners that turn another process's news into an in-process wake-up
(:mod:`shared.webhooks.freed_slots`, :mod:`workers.wake`). Pub/sub keeps nothing for a
subscriber that is reconnecting, so each caller also has a slower fallback (a timer, a
poll) and may catch up in ``on_subscribed``; this loop only reconnects, warning once per
outage rather than once a second.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import redis

log = logging.getLogger(__name__)

#: Seconds between tries while Redis is unreachable.
RECONNECT_SECONDS = 1.0


def listen(
    connect: Callable[[], redis.Redis],
    channel: str,
    on_message: Callable[[str], None],
    stop: threading.Event,
    *,
    outage_warning: str,
    on_subscribed: Callable[[], None] | None = None,
    read_seconds: float = 1.0,
) -> None:
    """Call ``on_message(data)`` for each message on ``channel`` until ``stop`` is set
    (seen within ``read_seconds``); reconnect after a Redis outage."""
    warned = False
    while not stop.is_set():
        pubsub = None
        try:
            pubsub = connect().pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(channel)
            if on_subscribed is not None:
                on_subscribed()
            warned = False
            while not stop.is_set():
                message = pubsub.get_message(timeout=read_seconds)
                if message is not None and message["type"] == "message":
                    data = message["data"]
                    on_message(data.decode() if isinstance(data, bytes) else data)
        except (redis.RedisError, OSError):
            if not warned:  # once per outage
                log.warning(outage_warning)
                warned = True
            stop.wait(RECONNECT_SECONDS)
        finally:
            if pubsub is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
