"""Send a message again for the console (a retry now, a re-enqueued dead letter)."""

from __future__ import annotations

import dramatiq
import pika.exceptions
import redis

from shared.errors import DependencyUnavailable
from shared.ops.resend import Resend


def send(resend: Resend) -> None:
    """Enqueue ``resend`` on the global broker now; 503 when the broker cannot take it."""
    broker = dramatiq.get_broker()
    extra = {"message_id": resend.message_id} if resend.message_id else {}
    message = dramatiq.Message(
        queue_name=resend.queue,
        actor_name=resend.actor,
        args=tuple(resend.args),
        kwargs=resend.kwargs,
        options=dict(resend.options),
        **extra,
    )
    try:
        broker.enqueue(message)
    except (dramatiq.errors.DramatiqError, redis.RedisError, pika.exceptions.AMQPError) as exc:
        raise DependencyUnavailable(
            "The message broker is unavailable; nothing was sent",
            details=[{"field": "broker", "message": type(exc).__name__}],
        ) from exc
