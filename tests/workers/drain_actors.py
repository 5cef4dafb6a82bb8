"""An actor for tests/workers/test_drain.py, loaded by a real ``python -m workers`` process.

``hold`` records that it started, waits until the test releases it (a Redis list),
then records that it finished: the test decides when in-flight work ends.
"""

from __future__ import annotations

import dramatiq
import redis

from shared.config import get_settings
from workers.broker import broker  # noqa: F401  (declares the actor on the configured broker)

QUEUE = "test_drain"


def key(marker: str, what: str) -> str:
    return f"{get_settings().redis_namespace}:drain:{marker}:{what}"


@dramatiq.actor(queue_name=QUEUE, max_retries=0, time_limit=60_000)
def hold(marker: str) -> None:
    client = redis.Redis.from_url(get_settings().redis_url)
    client.set(key(marker, "started"), 1, ex=600)
    client.blpop([key(marker, "release")], timeout=30)
    client.set(key(marker, "finished"), 1, ex=600)
