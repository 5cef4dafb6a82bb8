"""A message to send again (a retry now, a re-enqueued dead letter), and who sends it.

``shared`` cannot import the broker (it lives in ``workers``), so the callers pass a
:data:`Sender`: the API passes ``workers.resend.send``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Broker bookkeeping that must not travel with a message sent again.
BROKER_OPTIONS = frozenset({"eta", "redis_message_id", "traceback", "dead_message_ttl"})


@dataclass(frozen=True)
class Resend:
    queue: str
    actor: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    #: None: the broker gives it a new id.
    message_id: str | None = None


#: Enqueues a :class:`Resend` now (no delay); raises what the broker raises.
Sender = Callable[[Resend], None]


def clean_options(options: Mapping[str, Any], *, keep_retries: bool) -> dict[str, Any]:
    """The options to send again: without broker bookkeeping, and with a fresh retry
    budget unless ``keep_retries`` (a retry now keeps its count, as Sidekiq's does)."""
    dropped = BROKER_OPTIONS if keep_retries else BROKER_OPTIONS | {"retries"}
    return {name: value for name, value in options.items() if name not in dropped}
