"""The outbox fast path: after commit, enqueue the dispatch of each committed event.

The events one transaction committed travel together: one ``dispatch_events``
message per tenant and up to :data:`MAX_EVENTS_PER_MESSAGE` events; a lone event
goes as ``dispatch_event``.

PERF: a tenant's last, smaller batch joins the tenant's dispatch message that waits in
the queue, if there is one (:mod:`workers.joining`): that message dispatches them with
its own when it starts, freeing the flag at once, so they never wait longer than they
would for their own message. Most transactions commit one event: one per message, each
paid its message's broker and middleware work and a dispatch transaction's fixed
statements and after-commit round trips.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from shared import events
from workers.joining import Joining

#: Events dispatched in one message (and one transaction of the worker) at most.
MAX_EVENTS_PER_MESSAGE = 100
#: A tenant's small dispatch batches (scope: the tenant).
JOINING = Joining("dispatch")


def publish_events(pending: Sequence[events.PendingEvent]) -> None:
    from workers.actors.events import dispatch_event, dispatch_events

    by_tenant: defaultdict[str, list[str]] = defaultdict(list)
    for event in pending:
        by_tenant[str(event.tenant_id)].append(str(event.id))
    for tenant_id, ids in by_tenant.items():
        for start in range(0, len(ids), MAX_EVENTS_PER_MESSAGE):
            chunk = ids[start : start + MAX_EVENTS_PER_MESSAGE]
            last = start + MAX_EVENTS_PER_MESSAGE >= len(ids)
            small = last and len(chunk) < MAX_EVENTS_PER_MESSAGE
            if small and JOINING.join(tenant_id, chunk):
                continue
            try:
                if len(chunk) == 1:
                    dispatch_event.send_with_options(args=(chunk[0],), tenant_id=tenant_id)
                else:
                    dispatch_events.send_with_options(args=(chunk,), tenant_id=tenant_id)
            except BaseException:
                if small:  # the flag is ours: the next batch must send its own
                    JOINING.clear(tenant_id)
                raise


def install() -> None:
    """Make this process publish committed events to the broker."""
    events.set_publisher(publish_events)
