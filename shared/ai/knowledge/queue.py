"""Hand knowledge work to the workers after commit; re-drive sources a lost message left.

A source row *is* its job: ``pending`` or ``processing`` says work is owed. The API
and reprocess write the row and send ``ingest_knowledge_source`` after commit
(:data:`INGEST`); a message lost on the way (a crash, the broker down) or a worker
killed mid-parse leaves the row waiting, and :func:`sweep` (a scheduler job) sends it
again, later each time (the row's attempts double the wait). ``embed_items`` messages
(:data:`EMBED`) are re-driven too, since a lost one would leave the item ranked by text
alone for good: a new item's vector is owed while its ``embedding`` is null, and
:func:`embedding_sweep.sweep` sends it again (doubling waits, given up visibly after the
last attempt); a re-embedding after a model change is owed on the agent and re-driven
by :func:`reembedding.sweep`.
"""

from __future__ import annotations

import logging
import uuid
from typing import NamedTuple

from sqlalchemy import func, literal_column, or_, select, update
from sqlalchemy.orm import Session

from shared.after_commit_queue import AfterCommitQueue
from shared.config import get_settings
from shared.models import KnowledgeSource, Tenant

log = logging.getLogger(__name__)

#: A ``processing`` claim older than this belongs to a worker that died (the actor's
#: time limit is shorter), so the sweeper may hand the source to another.
PROCESSING_LEASE_SECONDS = 900.0
#: Longest wait between two sweeps of one waiting source.
MAX_SWEEP_BACKOFF_SECONDS = 3600.0
_ONE_SECOND = literal_column("interval '1 second'")

#: ``[source_id, ...]`` -> ``ingest_knowledge_source`` messages, after commit.
INGEST: AfterCommitQueue[uuid.UUID] = AfterCommitQueue(
    "omnistream.knowledge_ingest", "knowledge sources"
)


class ToEmbed(NamedTuple):
    """An item owed a vector; ``kind`` is ``chunk``, ``qna`` or ``product``.

    WHY the tenant: ``embed_items`` is gated (and its dead letter listed) by its first
    item's tenant, so each message must hold one tenant's items; a sweep's batch mixes
    tenants, and only the sender knows them without a query.
    """

    kind: str
    item_id: uuid.UUID
    tenant_id: uuid.UUID


#: ``[ToEmbed, ...]`` -> ``embed_items`` messages (one tenant's and kind's each), after commit.
EMBED: AfterCommitQueue[ToEmbed] = AfterCommitQueue("omnistream.knowledge_embed", "items to embed")


def sweep(session: Session, *, batch: int = 200) -> int:
    """Re-enqueue sources waiting past their backoff (or claimed by a dead worker)."""
    after = get_settings().knowledge_sweep_after_seconds
    backoff = func.least(
        after * func.power(2, func.least(KnowledgeSource.attempts, 10)),
        MAX_SWEEP_BACKOFF_SECONDS,
    )
    stale = KnowledgeSource.updated_at < func.now() - backoff * _ONE_SECOND
    due = (
        select(KnowledgeSource.id)
        .where(
            # NOTE: the bound on updated_at alone lets the partial "stuck" index find them.
            KnowledgeSource.updated_at < func.now() - after * _ONE_SECOND,
            or_(
                (KnowledgeSource.status == "pending") & stale,
                (KnowledgeSource.status == "processing")
                & (
                    KnowledgeSource.updated_at < func.now() - PROCESSING_LEASE_SECONDS * _ONE_SECOND
                ),
            ),
            KnowledgeSource.status.in_(("pending", "processing")),
            # NOTE: a suspended tenant's sources wait for its reactivation (API.md: scheduler
            # jobs skip it), as the embedding sweeps' items do: re-driven, each was touched
            # and sent again every run, only for the tenant gate to drop it.
            select(Tenant.id)
            .where(Tenant.id == KnowledgeSource.tenant_id, Tenant.status == "active")
            .exists(),
        )
        .order_by(KnowledgeSource.updated_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(due))
    if not ids:
        return 0
    # Touch pending rows so the next sweep waits a full backoff again; a dead worker's
    # claim is left as it is, for the claim in ingestion to take over.
    session.execute(
        update(KnowledgeSource)
        .where(KnowledgeSource.id.in_(ids), KnowledgeSource.status == "pending")
        .values(updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    log.info("re-driving %d knowledge source(s)", len(ids))
    INGEST.enqueue_after_commit(session, ids)
    return len(ids)
