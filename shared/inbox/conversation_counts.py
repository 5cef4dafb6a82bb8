"""Many conversations' new outbound messages counted in one statement.

What :func:`shared.inbox.messages.count_statement` does for one conversation (message
count, last message, last activity; for a human's message the first response and the
hand-over from the AI agent), for the batches of both bulk writers: a campaign's
(:mod:`shared.inbox.bulk_outbound`) and scheduled sends' (:mod:`shared.inbox.outbound_many`).

NOTE: relative (``message_count + n``): concurrent sends on a conversation never lose a
count; the conversations are given sorted by id, so batches that share some lock them in
one order. ``c.id = ANY(:ids)`` bounds the rows read to the batch's whatever the plan the
statistics (or their absence: autovacuum is not relied on) lead to.

NOTE (never back): a conversation's last message only moves forward in time
(:func:`last_message_values`). A writer takes its message's clock, then may wait for the
conversation's row while a writer of a newer message holds it; set as it came, the
older message's count put ``last_message_at`` back and its text in the preview, though
the newer message stays the last one listed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Table, case, func, text
from sqlalchemy.orm import Session

_COUNT = text(
    """
    UPDATE conversations c
       SET message_count = c.message_count + v.n,
           last_message_at = greatest(c.last_message_at, v.sent_at),
           last_message_preview = CASE WHEN v.sent_at >= coalesce(c.last_message_at, v.sent_at)
                                       THEN v.preview ELSE c.last_message_preview END,
           last_activity_at = greatest(c.last_activity_at, v.sent_at),
           first_response_at = coalesce(c.first_response_at, v.first_at),
           ai_active = CASE WHEN v.first_at IS NULL THEN c.ai_active ELSE false END,
           updated_at = now()
      FROM unnest(CAST(:tenants AS uuid[]), CAST(:ids AS uuid[]), CAST(:counts AS int[]),
                  CAST(:sent AS timestamptz[]), CAST(:previews AS text[]),
                  CAST(:first AS timestamptz[]))
           AS v(tenant_id, id, n, sent_at, preview, first_at)
     WHERE c.id = ANY(CAST(:ids AS uuid[])) AND c.id = v.id AND c.tenant_id = v.tenant_id
    """
)


def last_message_values(table: Table, at: ColumnElement, preview: ColumnElement) -> dict:
    """``conversations``' last-message columns for a message written ``at``, never moved back
    (see the module's note); ``preview`` is taken only when the message is the newest."""
    newer = at >= func.coalesce(table.c.last_message_at, at)
    return {
        "last_message_at": func.greatest(table.c.last_message_at, at),
        "last_message_preview": case((newer, preview), else_=table.c.last_message_preview),
        "last_activity_at": func.greatest(table.c.last_activity_at, at),
    }


@dataclass(frozen=True, slots=True)
class Counted:
    """``count`` new messages on a conversation, the last at ``sent_at`` with ``preview``;
    ``first_at``: the earliest of them written by a human (None: none was)."""

    tenant_id: uuid.UUID
    conversation_id: uuid.UUID
    count: int
    sent_at: dt.datetime
    preview: str
    first_at: dt.datetime | None = None


def count_many(session: Session, counted: Sequence[Counted]) -> None:
    """One UPDATE for all of them (PERF: not one statement per conversation or message)."""
    if not counted:
        return
    ordered = sorted(counted, key=lambda c: c.conversation_id)
    session.execute(
        _COUNT,
        {
            "tenants": [c.tenant_id for c in ordered],
            "ids": [c.conversation_id for c in ordered],
            "counts": [c.count for c in ordered],
            "sent": [c.sent_at for c in ordered],
            "previews": [c.preview for c in ordered],
            "first": [c.first_at for c in ordered],
        },
    )


__all__ = ["Counted", "count_many", "last_message_values"]
