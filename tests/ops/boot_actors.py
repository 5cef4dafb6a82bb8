"""An actor for tests/ops/test_pause_at_boot.py, loaded by a real ``python -m workers``."""

from __future__ import annotations

import dramatiq
import redis

from shared.config import get_settings
from workers.broker import broker  # noqa: F401  (declares the actor on the configured broker)

QUEUE = "test_ops_boot"


def key(marker: str) -> str:
    return f"{get_settings().redis_namespace}:ops-boot:{marker}"


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def mark(marker: str) -> None:
    redis.Redis.from_url(get_settings().redis_url).set(key(marker), 1, ex=600)
