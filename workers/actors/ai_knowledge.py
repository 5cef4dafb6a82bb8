"""Knowledge jobs on the ``knowledge`` queue: ``ingest_knowledge_source`` and ``embed_items``.

Importing this module installs the after-commit enqueuers (in the worker, the API and
the scheduler's sweep). Both actors take row ids and re-read the rows, so a redelivered
message is harmless: ingestion claims the source (a duplicate claims nothing) and
embeddings are recomputed to the same values.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence

import dramatiq
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.ai import embedder, products  # noqa: F401  (embedder installs the provider bridge)
from shared.ai.knowledge import embedding, ingestion, queue
from shared.config import get_settings
from shared.db import session_scope
from shared.models import KnowledgeSource
from workers import queues, tenant_gate
from workers.broker import broker  # noqa: F401  (declares actors on the configured broker)

log = logging.getLogger(__name__)

_settings = get_settings()

#: Items per ``embed_items`` message (one provider call per 64 of them).
EMBED_BATCH = 256


@dramatiq.actor(
    queue_name=queues.KNOWLEDGE,
    # NOTE: the source counts its own attempts and turns failed after
    # KNOWLEDGE_MAX_ATTEMPTS; Dramatiq's retries (with backoff) re-run transient failures.
    max_retries=10,
    min_backoff=_settings.knowledge_retry_min_backoff_ms,
    max_backoff=_settings.knowledge_retry_max_backoff_ms,
    # Shorter than queue.PROCESSING_LEASE_SECONDS, so a live claim is never taken over.
    time_limit=10 * 60_000,
)
def ingest_knowledge_source(source_id: str) -> None:
    """Chunk one source (``pending`` -> ``processing`` -> ``ready`` | ``failed``)."""
    outcome = ingestion.ingest(uuid.UUID(source_id))
    log.debug("knowledge source %s: %s", source_id, outcome)


@dramatiq.actor(
    queue_name=queues.KNOWLEDGE,
    max_retries=5,
    min_backoff=2_000,
    max_backoff=120_000,
    time_limit=5 * 60_000,
)
def embed_items(kind: str, item_ids: list[str]) -> None:
    """Store the provider's embeddings of chunks, QnA pairs or products (``kind``)."""
    with session_scope() as session:
        done = embedding.embed_items(session, kind, [uuid.UUID(i) for i in item_ids])
    log.debug("embedded %d %s item(s)", done, kind)


def enqueue_ingestion(ids: Sequence[uuid.UUID]) -> None:
    for source_id in ids:
        ingest_knowledge_source.send(str(source_id))


def _send_in_batches(kind: str, ids: Sequence[str]) -> None:
    for start in range(0, len(ids), EMBED_BATCH):
        embed_items.send(kind, list(ids[start : start + EMBED_BATCH]))


def enqueue_embeddings(items: Sequence[queue.ToEmbed]) -> None:
    """One message per tenant and kind (in batches): the gate and a dead letter name a
    message's tenant by any of its items, so a sweep's mix of tenants is split here."""
    by_tenant_and_kind: defaultdict[tuple[uuid.UUID, str], list[str]] = defaultdict(list)
    for item in items:
        by_tenant_and_kind[(item.tenant_id, item.kind)].append(str(item.item_id))
    for (_tenant_id, kind), ids in by_tenant_and_kind.items():
        _send_in_batches(kind, ids)


def enqueue_product_embeddings(ids: Sequence[uuid.UUID]) -> None:
    """NOTE: one session's products are one tenant's (a request, or one import's batch)."""
    _send_in_batches("product", [str(product_id) for product_id in ids])


queue.INGEST.set_enqueuer(enqueue_ingestion)
queue.EMBED.set_enqueuer(enqueue_embeddings)
products.EMBED_QUEUE.set_enqueuer(enqueue_product_embeddings)


def tenant_of_source(session: Session, args: tuple) -> uuid.UUID | None:
    """The tenant of a knowledge source: a suspended tenant's is not ingested."""
    return session.scalar(
        select(KnowledgeSource.tenant_id).where(KnowledgeSource.id == uuid.UUID(args[0]))
    )


tenant_gate.resolve_tenant_with(ingest_knowledge_source.actor_name, tenant_of_source)


def tenant_of_items(session: Session, args: tuple) -> uuid.UUID | None:
    """The tenant of an ``embed_items`` batch: a suspended tenant's items are not embedded."""
    kind, item_ids = args
    return embedding.tenant_of(session, kind, [uuid.UUID(i) for i in item_ids])


tenant_gate.resolve_tenant_with(embed_items.actor_name, tenant_of_items)
