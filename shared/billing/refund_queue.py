"""Refunds to send, handed to ``refund_invoice`` after the commit that recorded them.

A refund is a ``pending`` ``billing_payments`` row (kind ``refund``) committed with its
idempotency key before any provider call; its id is the message. A lost message is
re-driven by :func:`shared.billing.payments.redrive_stale_refunds` from the billing scheduler.
``workers/actors/billing.py`` installs the enqueuer.
"""

from __future__ import annotations

import uuid

from shared.after_commit_queue import AfterCommitQueue

#: ``[payment_id, ...]`` -> ``refund_invoice`` messages, after commit.
QUEUE: AfterCommitQueue[uuid.UUID] = AfterCommitQueue(
    "omnistream.billing_refunds", "invoice refunds"
)
set_enqueuer = QUEUE.set_enqueuer
