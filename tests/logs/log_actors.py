"""An actor that logs, then fails, for the worker subprocess of the log tests.

Imported only by that subprocess (``python -m workers tests.logs.log_actors``):
the test sends to its queue through a broker of its own, so the suite's
in-process worker never consumes it.
"""

from __future__ import annotations

import logging

import dramatiq

from workers.broker import broker  # noqa: F401  (declares the actor on the configured broker)

QUEUE = "test_json_logs"
ACTOR = "json_logs_test_fails"

log = logging.getLogger("tests.logs.log_actors")


@dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE, max_retries=0)
def json_logs_test_fails() -> None:
    log.info("working, then failing")
    raise RuntimeError("boom from the worker")
