"""Re-drive the embeddings of items whose ``embed_items`` message was lost; give up visibly.

New chunks, QnA pairs and products are embedded by ``embed_items``, sent after commit
(:data:`shared.ai.knowledge.queue.EMBED`). A process killed between commit and send, or
a broker that loses the message, leaves the item without a vector: the durable record
of the work owed is ``embedding IS NULL`` on an item of an agent that embeds.

:func:`sweep` (a scheduler job) sends such items again once they have waited
``KNOWLEDGE_EMBED_SWEEP_AFTER_SECONDS`` (the after-commit message gets its chance
first), then twice as long after each send (``embed_attempts``, from
``embed_swept_at``), at most :data:`MAX_SWEEP_BACKOFF_SECONDS`. An item still without a
vector when the wait after its :data:`MAX_ATTEMPTS`-th send runs out is given up
(``embed_gave_up_at``), logged and counted in the job's result, and never sent again
until it changes (a product replaced, a new embedding model) — a text the provider
always refuses must not cost a call every hour forever.

Skipped, as the other sweeps skip them: suspended tenants' items (their worker would
drop each send; they wait until reactivation) and agents with a re-embedding under
way (``reembed_due_at``: :mod:`shared.ai.knowledge.reembedding` re-drives those).
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import func, literal_column, select, true, update
from sqlalchemy.orm import Session

from shared.ai.knowledge.queue import EMBED, ToEmbed
from shared.config import get_settings
from shared.models import AiAgent, AiProduct, KnowledgeChunk, QnaPair, Tenant

log = logging.getLogger(__name__)

#: Sends of one item before it is given up.
MAX_ATTEMPTS = 5
#: Longest wait between two sends of one item.
MAX_SWEEP_BACKOFF_SECONDS = 3600.0
#: Items of each kind one sweep takes (the rest the next time).
SWEEP_BATCH = 500
TABLES = (("chunk", KnowledgeChunk), ("qna", QnaPair), ("product", AiProduct))
_ONE_SECOND = literal_column("interval '1 second'")


def wait_after(attempts: int) -> float:
    """Seconds an item waits after its ``attempts``-th send (after it became owed, at 0)."""
    after = get_settings().knowledge_embed_sweep_after_seconds
    return min(after * 2 ** min(attempts, 10), MAX_SWEEP_BACKOFF_SECONDS)


def _owed_since(table):
    """When the item last needed a vector: a chunk is never edited; a product replaced
    (or a QnA pair) is touched with its embedding cleared."""
    return table.created_at if table is KnowledgeChunk else table.updated_at


#: A locked item owed a vector: ``(id, tenant_id, embed_attempts)``.
Owed = tuple[uuid.UUID, uuid.UUID, int]


def _due(session: Session, table, batch: int) -> list[Owed]:
    """Up to ``batch`` owed items whose wait ran out, locked (:data:`Owed`).

    PERF: driven from the agents that embed, each reading its own owed items through the
    partial index (``ix_<table>_embedding_owed``, by agent): the items of agents without
    vectors (all null, for good) are never read. A join over the index instead read all
    100,000 such items of a bench database per sweep (33 ms against 0.7 ms).
    """
    after = get_settings().knowledge_embed_sweep_after_seconds
    wait = func.least(
        after * func.power(2, func.least(table.embed_attempts, 10)), MAX_SWEEP_BACKOFF_SECONDS
    )
    waited_from = func.coalesce(table.embed_swept_at, _owed_since(table)).label("waited_from")
    owed = (
        select(table.id, waited_from)
        .where(
            table.ai_agent_id == AiAgent.id,
            table.tenant_id == AiAgent.tenant_id,
            table.embedding.is_(None),
            table.embed_gave_up_at.is_(None),
            waited_from < func.now() - wait * _ONE_SECOND,
        )
        .order_by(waited_from)
        .limit(batch)
        .lateral()
    )
    active = select(Tenant.id).where(Tenant.id == AiAgent.tenant_id, Tenant.status == "active")
    due = (
        select(owed.c.id)
        .select_from(AiAgent)
        .join(owed, true())
        .where(
            # The agent embeds (reembedding.model_of) and no re-embedding is under way.
            AiAgent.embedding_model.is_not(None),
            AiAgent.provider != "offline",
            AiAgent.reembed_due_at.is_(None),
            active.exists(),
        )
        .order_by(owed.c.waited_from)
        .limit(batch)
    )
    rows = session.execute(
        select(table.id, table.tenant_id, table.embed_attempts)
        # NOTE: rechecked once locked: an item embedded meanwhile is not sent again.
        .where(table.id.in_(due), table.embedding.is_(None))
        .with_for_update(skip_locked=True)
    ).all()
    return [(row[0], row[1], row[2]) for row in rows]


def _sweep_kind(session: Session, kind: str, table, batch: int) -> tuple[list, list]:
    """Stamp the due items of one kind as sent again, or given up; ``(sent, given_up)``."""
    return spend(session, kind, table, _due(session, table, batch))


def spend(
    session: Session, kind: str, table, due: list[Owed]
) -> tuple[list[ToEmbed], list[uuid.UUID]]:
    """Charge a send to each of the locked items of one kind, or give up those whose
    budget is spent; ``([to send], [id given up])``.

    Shared with :mod:`shared.ai.knowledge.reembedding`: an item the provider always
    refuses costs the same few sends whichever sweep re-drives it.
    """
    resend = [
        ToEmbed(kind, item_id, tenant_id) for item_id, tenant_id, n in due if n < MAX_ATTEMPTS
    ]
    give_up = [item_id for item_id, _tenant_id, n in due if n >= MAX_ATTEMPTS]
    if resend:
        session.execute(
            update(table)
            .where(table.id.in_([item.item_id for item in resend]))
            .values(embed_attempts=table.embed_attempts + 1, embed_swept_at=func.now())
            .execution_options(synchronize_session=False)
        )
    if give_up:
        session.execute(
            update(table)
            .where(table.id.in_(give_up))
            .values(embed_gave_up_at=func.now())
            .execution_options(synchronize_session=False)
        )
        log.warning(
            "gave up embedding %d %s item(s) still without a vector after %d sends: %s",
            len(give_up),
            kind,
            MAX_ATTEMPTS,
            ", ".join(str(i) for i in give_up[:10]),
        )
    return resend, give_up


def sweep(session: Session, *, batch: int = SWEEP_BATCH) -> dict[str, int]:
    """Send ``embed_items`` again for owed items whose wait ran out; give up the spent ones.

    Returns ``{"sent": ..., "given_up": ...}`` (recorded with the job's run). Items locked
    by another sweep are skipped (SKIP LOCKED): the next run sees them.
    """
    sent: list[ToEmbed] = []
    given_up = 0
    for kind, table in TABLES:
        resend, give_up = _sweep_kind(session, kind, table, batch)
        sent.extend(resend)
        given_up += len(give_up)
    if sent:
        log.info("re-driving %d item(s) to embed whose embed_items was lost", len(sent))
    EMBED.enqueue_after_commit(session, sent)
    return {"sent": len(sent), "given_up": given_up}


def forgive(session: Session, table, *conditions) -> None:
    """Start the items' re-drive budget afresh: their text or model changed, so a new
    vector is owed and the sends that failed before say nothing about it."""
    session.execute(
        update(table)
        .where(*conditions, (table.embed_attempts > 0) | table.embed_gave_up_at.is_not(None))
        .values(embed_attempts=0, embed_swept_at=None, embed_gave_up_at=None)
        .execution_options(synchronize_session=False)
    )
