"""Hand stored inbound payloads to ``process_inbound`` once their transaction commits.

An :class:`~shared.after_commit_queue.AfterCommitQueue`: the actor module installs
the enqueuer; the ack path calls :func:`enqueue_after_commit`. An id whose message is
lost (crash, broker down) stays ``pending`` and the scheduler's
:func:`shared.channels.inbound_sweeper.sweep` re-enqueues it.
"""

from __future__ import annotations

import uuid

from shared.after_commit_queue import AfterCommitQueue

#: ``[inbound_event_id, ...]`` -> ``process_inbound`` messages, after commit.
QUEUE: AfterCommitQueue[uuid.UUID] = AfterCommitQueue(
    "omnistream.inbound_events", "inbound payload(s)"
)
set_enqueuer = QUEUE.set_enqueuer
enqueue = QUEUE.enqueue
enqueue_after_commit = QUEUE.enqueue_after_commit
