"""The outbox fast path: after commit, enqueue ``dispatch_event`` for each new event."""

from __future__ import annotations

from collections.abc import Sequence

from shared import events


def publish_events(pending: Sequence[events.PendingEvent]) -> None:
    from workers.actors.events import dispatch_event

    for event in pending:
        dispatch_event.send_with_options(args=(str(event.id),), tenant_id=str(event.tenant_id))


def install() -> None:
    """Make this process publish committed events to the broker."""
    events.set_publisher(publish_events)
