"""Re-embed an agent's knowledge when the model that makes its vectors changes.

Vectors of two models are not comparable, even at the same size, and no column says which
model made a vector. So a change clears the agent's vectors in the changing transaction
(retrieval then ranks by text alone: no question vector meets an old one) and queues
``embed_items`` for every chunk, QnA pair and product after commit. ``embed_items`` stores
only while the agent still names the model it embedded with (:func:`still_current`).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.ai.knowledge.queue import EMBED
from shared.models import AiAgent, AiProduct, KnowledgeChunk, QnaPair

TABLES = (("chunk", KnowledgeChunk), ("qna", QnaPair), ("product", AiProduct))

Model = tuple[str, str | None, str] | None


def model_of(agent: AiAgent) -> Model:
    """What makes the agent's vectors: provider, endpoint and embedding model (None: no
    vectors). The same model name on another endpoint may be another model."""
    if not agent.embedding_model or agent.provider == "offline":
        return None
    return (agent.provider, agent.base_url, agent.embedding_model)


def model_changed(session: Session, agent: AiAgent) -> int:
    """Clear the agent's vectors and queue them all again (when it still embeds).

    Returns how many items were queued.
    """
    queued: list[tuple[str, uuid.UUID]] = []
    embeds = model_of(agent) is not None
    for kind, table in TABLES:
        mine = (table.tenant_id == agent.tenant_id) & (table.ai_agent_id == agent.id)
        session.execute(
            update(table)
            .where(mine, table.embedding.is_not(None))
            .values(embedding=None)
            .execution_options(synchronize_session=False)
        )
        if embeds:
            ids = session.scalars(select(table.id).where(mine))
            queued.extend((kind, item_id) for item_id in ids)
    EMBED.enqueue_after_commit(session, queued)
    return len(queued)


def still_current(session: Session, agent_id: uuid.UUID, used: Model) -> bool:
    """Whether ``used`` is still the agent's model, its row share-locked until commit: a
    change either committed before (vectors discarded) or waits, then clears them."""
    agent = session.scalars(
        select(AiAgent)
        .where(AiAgent.id == agent_id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    ).one_or_none()
    return agent is not None and model_of(agent) == used
