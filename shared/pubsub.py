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
from collections.abc import Callable, Mapping

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
    also: Mapping[str, Callable[[str], None]] | None = None,
) -> None:
    """Call ``on_message(data)`` for each message on ``channel`` until ``stop`` is set
    (seen within ``read_seconds``); reconnect after a Redis outage. ``also``: more
    channels on the same subscription, each with its own callback."""
    warned = False
    while not stop.is_set():
        pubsub = None
        try:
            pubsub = connect().pubsub(ignore_subscribe_messages=True)
            callbacks = {channel: on_message, **(also or {})}
            pubsub.subscribe(*callbacks)
            if on_subscribed is not None:
                on_subscribed()
            warned = False
            while not stop.is_set():
                message = pubsub.get_message(timeout=read_seconds)
                if message is not None and message["type"] == "message":
                    data, name = message["data"], message["channel"]
                    callback = callbacks[name.decode() if isinstance(name, bytes) else name]
                    callback(data.decode() if isinstance(data, bytes) else data)
        except (redis.RedisError, OSError):
            if not warned:  # once per outage
                log.warning(outage_warning)
                warned = True
            stop.wait(RECONNECT_SECONDS)
        finally:
            if pubsub is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
