"""Hand template syncs to ``sync_wa_templates`` once the transaction that asked has committed.

The actor module installs the enqueuer; the sync request and the scheduler's claim call
:func:`enqueue_after_commit`. A lost message leaves the account's sync ``queued``, and
the scheduler's claim sends it again (``shared.channels.templates.sync.STUCK_AFTER``).
"""

from __future__ import annotations

from typing import Any

from shared.after_commit_queue import AfterCommitQueue

#: ``[SyncRequest, ...]`` -> ``sync_wa_templates`` messages, after commit.
QUEUE: AfterCommitQueue[Any] = AfterCommitQueue("omnistream.wa_template_syncs", "template sync(s)")
set_enqueuer = QUEUE.set_enqueuer
enqueue = QUEUE.enqueue
enqueue_after_commit = QUEUE.enqueue_after_commit
