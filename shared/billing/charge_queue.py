"""Invoices to charge, handed to ``charge_invoice`` after the commit that made them due.

An open invoice whose ``next_charge_at`` has passed is its own outbox row: whoever makes an
invoice due (a subscription, a renewal, an upgrade, an attached add-on) sets
``next_charge_at`` and calls ``QUEUE.enqueue_after_commit(session, [invoice.id])`` in the
same transaction; ``billing_cycle`` re-drives any due invoice whose message was lost.
``workers/actors/billing.py`` installs the enqueuer.
"""

from __future__ import annotations

import uuid

from shared.after_commit_queue import AfterCommitQueue

#: ``[invoice_id, ...]`` -> ``charge_invoice`` messages, after commit.
QUEUE: AfterCommitQueue[uuid.UUID] = AfterCommitQueue(
    "omnistream.billing_charges", "invoice charges"
)
set_enqueuer = QUEUE.set_enqueuer
