"""Re-embed an agent's knowledge when the model that makes its vectors changes.

Vectors of two models are not comparable, even at the same size, and no column says which
model made a vector. So a change clears the agent's vectors in the changing transaction
(retrieval then ranks by text alone: no question vector meets an old one) and queues
``embed_items`` for every chunk, QnA pair and product after commit. ``embed_items`` stores
only while the agent still names the model it embedded with (:func:`still_current`).

Those messages may be lost (a worker killed, the broker's queue flushed), so the change
also records the work owed on the agent (``reembed_due_at``): :func:`sweep`, a scheduler
job, sends the items still without a vector again once that time has passed (waiting
twice as long after each sweep, at most :data:`MAX_SWEEP_BACKOFF_SECONDS`), and forgets
the agent once none is left or it no longer embeds.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from shared.ai.knowledge import embedding_sweep
from shared.ai.knowledge.queue import EMBED
from shared.config import get_settings
from shared.models import AiAgent, AiProduct, KnowledgeChunk, QnaPair

TABLES = (("chunk", KnowledgeChunk), ("qna", QnaPair), ("product", AiProduct))

Model = tuple[str, str | None, str] | None

log = logging.getLogger(__name__)

#: Longest wait between two sweeps of one agent's unfinished re-embedding.
MAX_SWEEP_BACKOFF_SECONDS = 3600.0
#: Agents one sweep takes, and items it sends again per agent (the rest the next time).
SWEEP_AGENTS = 20
SWEEP_ITEMS_PER_AGENT = 2000
_ONE_SECOND = literal_column("interval '1 second'")


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
        embedding_sweep.forgive(session, table, mine)
        if embeds:
            ids = session.scalars(select(table.id).where(mine))
            queued.extend((kind, item_id) for item_id in ids)
    _owe(session, agent, queued)
    EMBED.enqueue_after_commit(session, queued)
    return len(queued)


def _owe(session: Session, agent: AiAgent, queued: list) -> None:
    """Record in the change's transaction whether a re-embedding is owed, and when the
    sweeper should check it ran: the after-commit messages alone could be lost."""
    after = get_settings().knowledge_reembed_sweep_after_seconds
    due = func.now() + after * _ONE_SECOND if queued else None
    session.execute(
        update(AiAgent)
        .where(AiAgent.tenant_id == agent.tenant_id, AiAgent.id == agent.id)
        .values(reembed_due_at=due, reembed_attempts=0)
        .execution_options(synchronize_session=False)
    )


def _unembedded(session: Session, agent: AiAgent, limit: int) -> list[tuple[str, uuid.UUID]]:
    """Up to ``limit`` of the agent's items still without a vector."""
    found: list[tuple[str, uuid.UUID]] = []
    for kind, table in TABLES:
        if len(found) >= limit:
            break
        ids = session.scalars(
            select(table.id)
            .where(
                table.tenant_id == agent.tenant_id,
                table.ai_agent_id == agent.id,
                table.embedding.is_(None),
            )
            .order_by(table.id)
            .limit(limit - len(found))
        )
        found.extend((kind, item_id) for item_id in ids)
    return found


def _next_check(agent: AiAgent) -> ColumnElement[dt.datetime]:
    """When to look again: the delay doubling with each sweep, at most an hour."""
    after = get_settings().knowledge_reembed_sweep_after_seconds
    wait = min(after * 2 ** min(agent.reembed_attempts, 10), MAX_SWEEP_BACKOFF_SECONDS)
    return func.now() + wait * _ONE_SECOND


def sweep(session: Session, *, agents: int = SWEEP_AGENTS) -> int:
    """Send again the items of due re-embeddings still without a vector; return how many.

    An agent with none left, or that no longer embeds, is forgotten. Agents locked by
    another sweep or a change of the agent are skipped (SKIP LOCKED): the next run sees them.
    """
    due = session.scalars(
        select(AiAgent)
        .where(AiAgent.reembed_due_at <= func.now())
        .order_by(AiAgent.reembed_due_at)
        .limit(agents)
        .with_for_update(skip_locked=True)
    ).all()
    sent: list[tuple[str, uuid.UUID]] = []
    for agent in due:
        owed = _unembedded(session, agent, SWEEP_ITEMS_PER_AGENT) if model_of(agent) else []
        if owed:
            agent.reembed_due_at = _next_check(agent)
            agent.reembed_attempts += 1
        else:
            agent.reembed_due_at = None
            agent.reembed_attempts = 0
        sent.extend(owed)
    session.flush()
    if sent:
        log.info("re-driving %d item(s) to embed of %d agent(s)", len(sent), len(due))
    EMBED.enqueue_after_commit(session, sent)
    return len(sent)


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
