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
the agent once none is left or it no longer embeds. Each send counts against the item's
budget of :mod:`embedding_sweep` (reset by the change: :func:`embedding_sweep.forgive`),
and an item that spends it is given up as that sweep gives up its own: a text the
provider always refuses neither costs a call every hour nor keeps the re-embedding open.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from shared.ai.knowledge import embedding_sweep
from shared.ai.knowledge.queue import EMBED, ToEmbed
from shared.config import get_settings
from shared.models import AiAgent, AiProduct, KnowledgeChunk, QnaPair, Tenant

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
    queued: list[ToEmbed] = []
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
            queued.extend(ToEmbed(kind, item_id, agent.tenant_id) for item_id in ids)
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


def _owed(session: Session, agent: AiAgent, limit: int) -> dict[str, list[embedding_sweep.Owed]]:
    """Up to ``limit`` of the agent's items still owed a vector, by kind, locked, with
    their sends so far (``embed_attempts``); given-up items are owed nothing.

    NOTE: SKIP LOCKED passes over an item a worker is storing the vector of right now.
    """
    found: dict[str, list[embedding_sweep.Owed]] = {}
    left = limit
    for kind, table in TABLES:
        if left <= 0:
            break
        rows = session.execute(
            select(table.id, table.tenant_id, table.embed_attempts)
            .where(
                table.tenant_id == agent.tenant_id,
                table.ai_agent_id == agent.id,
                table.embedding.is_(None),
                table.embed_gave_up_at.is_(None),
            )
            .order_by(table.id)
            .limit(left)
            .with_for_update(skip_locked=True)
        ).all()
        found[kind] = [(row[0], row[1], row[2]) for row in rows]
        left -= len(rows)
    return found


def _next_check(agent: AiAgent) -> ColumnElement[dt.datetime]:
    """When to look again: the delay doubling with each sweep, at most an hour."""
    after = get_settings().knowledge_reembed_sweep_after_seconds
    wait = min(after * 2 ** min(agent.reembed_attempts, 10), MAX_SWEEP_BACKOFF_SECONDS)
    return func.now() + wait * _ONE_SECOND


def _sweep_agent(session: Session, agent: AiAgent) -> tuple[list, int]:
    """Send the agent's owed items again, or give up those whose budget is spent (the
    budget of :mod:`embedding_sweep`); ``(sent, given up)``.

    The re-embedding is done once nothing is owed: every item has its vector or was
    given up, so one text the provider always refuses does not keep it open for good.
    """
    owed = _owed(session, agent, SWEEP_ITEMS_PER_AGENT) if model_of(agent) else {}
    sent: list[ToEmbed] = []
    given_up = 0
    for kind, table in TABLES:
        resend, give_up = embedding_sweep.spend(session, kind, table, owed.get(kind, []))
        sent.extend(resend)
        given_up += len(give_up)
    if sent:
        agent.reembed_due_at = _next_check(agent)
        agent.reembed_attempts += 1
    elif sum(len(items) for items in owed.values()) >= SWEEP_ITEMS_PER_AGENT:
        agent.reembed_due_at = func.now()  # a batch all given up: more may be owed
    else:
        agent.reembed_due_at = None
        agent.reembed_attempts = 0
    return sent, given_up


def sweep(session: Session, *, agents: int = SWEEP_AGENTS) -> dict[str, int]:
    """Send again the items of due re-embeddings still without a vector; give up the
    spent ones. Returns ``{"sent": ..., "given_up": ...}`` (recorded with the job's run).

    An agent with none left, or that no longer embeds, is forgotten. Agents locked by
    another sweep or a change of the agent are skipped (SKIP LOCKED): the next run sees
    them. So are suspended tenants' agents, as :mod:`embedding_sweep` skips them: their
    worker would drop each send, spending the items' budget for nothing; they wait until
    reactivation.
    """
    active = select(Tenant.id).where(Tenant.id == AiAgent.tenant_id, Tenant.status == "active")
    due = session.scalars(
        select(AiAgent)
        .where(AiAgent.reembed_due_at <= func.now(), active.exists())
        .order_by(AiAgent.reembed_due_at)
        .limit(agents)
        .with_for_update(of=AiAgent, skip_locked=True)
    ).all()
    sent: list[ToEmbed] = []
    given_up = 0
    for agent in due:
        resend, gave_up = _sweep_agent(session, agent)
        sent.extend(resend)
        given_up += gave_up
    session.flush()
    if sent:
        log.info("re-driving %d item(s) to embed of %d agent(s)", len(sent), len(due))
    EMBED.enqueue_after_commit(session, sent)
    return {"sent": len(sent), "given_up": given_up}


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
