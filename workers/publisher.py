"""The outbox fast path: after commit, enqueue the dispatch of each committed event.

The events one transaction committed travel together: one ``dispatch_events``
message per tenant and up to :data:`MAX_EVENTS_PER_MESSAGE` events; a lone event
goes as ``dispatch_event``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from shared import events

#: Events dispatched in one message (and one transaction of the worker) at most.
MAX_EVENTS_PER_MESSAGE = 100


def publish_events(pending: Sequence[events.PendingEvent]) -> None:
    from workers.actors.events import dispatch_event, dispatch_events

    by_tenant: defaultdict[str, list[str]] = defaultdict(list)
    for event in pending:
        by_tenant[str(event.tenant_id)].append(str(event.id))
    for tenant_id, ids in by_tenant.items():
        for start in range(0, len(ids), MAX_EVENTS_PER_MESSAGE):
            chunk = ids[start : start + MAX_EVENTS_PER_MESSAGE]
            if len(chunk) == 1:
                dispatch_event.send_with_options(args=(chunk[0],), tenant_id=tenant_id)
            else:
                dispatch_events.send_with_options(args=(chunk,), tenant_id=tenant_id)


def install() -> None:
    """Make this process publish committed events to the broker."""
    events.set_publisher(publish_events)
