"""AI agents: create, read, replace, toggle and delete the configured assistants.

The provider API key is a secret at rest (:mod:`shared.crypto`, like integration
credentials): it is written, never read back. Views answer ``has_api_key`` and the
activity log keeps views, so the key reaches neither a response, a log line nor an
activity row. Only the reply path decrypts it (:func:`api_key`).

``base_url`` is where the reply path will POST prompts, so it is checked like a
webhook URL (:mod:`shared.webhooks.ssrf`) unless ``AI_ALLOW_PRIVATE_BASE_URL`` lets
agents reach a model server on the host or the private network (Ollama, vLLM,
llama.cpp): allowed by default outside production, refused by default in production.
Deleting an agent deletes everything that belongs to it through the FKs' cascades, but
takes itself off its conversations first by a statement (:func:`_release_conversations`).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from shared import activity, crypto
from shared.ai.config_views import AiAgentView
from shared.ai.knowledge import reembedding
from shared.channels import media_release
from shared.config import get_settings
from shared.context import Ctx
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.inbox import conversations as convs
from shared.inbox import divisions, states
from shared.models import AiAgent, Conversation, KnowledgeSource
from shared.models.ai import AiReply
from shared.pagination import Page, paginate
from shared.realtime import feed
from shared.schemas.inbox import ConversationView
from shared.sql import contains_pattern, count_under_lock, flush_unique, tenant_row
from shared.webhooks import ssrf

VIEW = "ai_agents.review"
MANAGE = "ai_agents.manage"
#: AI agents one workspace may have. WHY: the usage summary answers every agent in one
#: list and no plan limits them (``shared.billing`` caps seats, messages, replies,
#: storage); a handful is the norm.
MAX_AGENTS = 100

#: The columns a create or a full replace sets (``api_key`` is handled apart).
FIELDS = (
    "name",
    "description",
    "provider",
    "model",
    "embedding_model",
    "base_url",
    "instructions",
    "language",
    "temperature",
    "max_tokens",
    "guardrails",
    "settle_seconds",
    "confidence_threshold",
    "handoff_message",
    "prompt_cost_per_1k",
    "completion_cost_per_1k",
    "daily_reply_limit",
    "is_active",
)


class AgentLimitReached(ValidationFailed):
    code = "agent_limit"


class _Keep:
    """``api_key`` left out of a replace: the stored key stays (it cannot be read back)."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


# ------------------------------------------------------------------ secrets and urls


def api_key(agent: AiAgent) -> str | None:
    """The agent's provider key in clear, for the model call only; never log it."""
    return crypto.decrypt(agent.api_key_encrypted) if agent.api_key_encrypted else None


def agent_view(agent: AiAgent) -> dict[str, Any]:
    data = {name: getattr(agent, name) for name in AiAgentView.model_fields if hasattr(agent, name)}
    data["has_api_key"] = agent.api_key_encrypted is not None
    return AiAgentView.model_validate(data).model_dump(mode="json")


def base_url_policy() -> ssrf.Policy | None:
    """The SSRF policy for model servers, or None when private addresses are allowed.

    The reply path applies the same policy when it connects (DNS may change after save).
    """
    settings = get_settings()
    return None if settings.ai_private_base_url_allowed else ssrf.Policy.from_settings(settings)


def check_base_url(url: str | None) -> str | None:
    """``url`` with its trailing slash removed, or a 422 naming ``base_url``."""
    if url is None:
        return None
    policy = base_url_policy()
    try:
        if policy is None:
            _check_shape(url)
        else:
            ssrf.check_url(url, policy)
    except ssrf.UnsafeUrl as exc:
        raise ValidationFailed.field("base_url", str(exc)) from exc
    return url.rstrip("/")


def _check_shape(url: str) -> None:
    """What even a trusted model server URL must be: http(s), a host, no credentials."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise ssrf.UnsafeUrl(f"not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https"):
        raise ssrf.UnsafeUrl("the URL must start with http:// or https://")
    if not parts.hostname:
        raise ssrf.UnsafeUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ssrf.UnsafeUrl("credentials in the URL are not allowed; set api_key instead")
    ssrf.canonical_host(parts.hostname)


# ------------------------------------------------------------------ reads


def list_agents(
    session: Session,
    ctx: Ctx,
    *,
    limit: int,
    cursor: str | None = None,
    is_active: bool | None = None,
    q: str | None = None,
) -> Page[AiAgent]:
    ctx.require(VIEW)
    query = select(AiAgent).where(AiAgent.tenant_id == ctx.tenant_id)
    if is_active is not None:
        query = query.where(AiAgent.is_active.is_(is_active))
    if q:
        query = query.where(AiAgent.name.ilike(contains_pattern(q)))
    return paginate(
        session,
        query,
        created_at=AiAgent.created_at,
        id_column=AiAgent.id,
        limit=limit,
        cursor=cursor,
    )


def get_agent(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, *, for_update: bool = False
) -> AiAgent:
    """The caller's tenant's AI agent, or 404 (also for another tenant's)."""
    ctx.require(VIEW)
    return find_agent(session, ctx.tenant_id, agent_id, for_update=for_update)


def find_agent(
    session: Session, tenant_id: uuid.UUID, agent_id: uuid.UUID, *, for_update: bool = False
) -> AiAgent:
    return tenant_row(
        session, AiAgent, tenant_id, agent_id, missing="AI agent not found", lock=for_update
    )


def share_agent(session: Session, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> AiAgent:
    """The tenant's AI agent FOR KEY SHARE (404 when there is none), for a row about to be
    added under it.

    WHY: a deletion of the agent that commits while the new row's foreign key check waits
    for it failed that insert: a 409 logged as a database refusal. Locked before, the
    deletion waits for the new row (and cascades it), or went first and this is a 404.
    Only FOR UPDATE (a deletion, a replace) waits for it, not the reply path's locks.
    """
    agent = session.scalars(
        select(AiAgent)
        .where(AiAgent.tenant_id == tenant_id, AiAgent.id == agent_id)
        .with_for_update(read=True, key_share=True)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if agent is None:
        raise NotFound("AI agent not found")
    return agent


def check_owned(session: Session, ctx: Ctx, agent_id: uuid.UUID, field: str) -> None:
    """A 422 naming ``field`` unless ``agent_id`` is one of the tenant's AI agents, for a row
    about to name it: the agent is locked FOR KEY SHARE as :func:`share_agent` does (a
    deletion waits for the row, or went first: the 422).

    NOTE: call it before locking that row: a deletion's cascade takes the row after the
    agent, so a replace holding its row while waiting for the agent would deadlock.
    """
    found = session.scalar(
        select(AiAgent.id)
        .where(AiAgent.tenant_id == ctx.tenant_id, AiAgent.id == agent_id)
        .with_for_update(read=True, key_share=True)
    )
    if found is None:
        raise ValidationFailed.field(field, "no such AI agent in this workspace")


# ------------------------------------------------------------------ writes


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"An AI agent named '{name}' exists",
        details=[{"field": "name", "message": "already used in this workspace"}],
    )


def _flush_unique(session: Session, name: str) -> None:
    """Flush; a name taken (also by a concurrent request) is a 409, not a 500."""
    flush_unique(session, "uq_ai_agents_tenant_name", _name_taken(name))


def _apply(agent: AiAgent, fields: dict[str, Any], key: Any) -> None:
    for name in FIELDS:
        setattr(agent, name, fields[name])
    agent.base_url = check_base_url(fields["base_url"])
    if key is not KEEP:
        agent.api_key_encrypted = crypto.encrypt(key) if key else None


def _check_room(session: Session, ctx: Ctx) -> None:
    """422 ``agent_limit`` when the workspace has :data:`MAX_AGENTS` already.

    NOTE: a transaction-scoped advisory lock per tenant, so two concurrent creates cannot
    both pass the count.
    """
    count = count_under_lock(
        session,
        f"ai_agents:{ctx.tenant_id}",
        select(func.count()).where(AiAgent.tenant_id == ctx.tenant_id),
    )
    if count >= MAX_AGENTS:
        raise AgentLimitReached(
            f"A workspace may have at most {MAX_AGENTS} AI agents",
            details=[{"field": "body", "message": f"at most {MAX_AGENTS} AI agents per workspace"}],
        )


def create_agent(
    session: Session, ctx: Ctx, fields: dict[str, Any], *, api_key: str | None = None
) -> AiAgent:
    """Create an agent from every field of :data:`FIELDS` (the schema fills defaults)."""
    ctx.require(MANAGE)
    _check_room(session, ctx)
    agent = AiAgent(tenant_id=ctx.tenant_id)
    _apply(agent, fields, api_key)
    session.add(agent)
    _flush_unique(session, fields["name"])
    session.refresh(agent)
    activity.record(session, ctx, "ai_agent.created", "ai_agent", agent.id, after=agent_view(agent))
    return agent


def replace_agent(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, fields: dict[str, Any], *, api_key: Any = KEEP
) -> AiAgent:
    """Replace every field; ``api_key`` left out (:data:`KEEP`) keeps the stored key,
    ``None`` removes it, a string replaces it. A new embedding model re-embeds the
    agent's knowledge (:mod:`shared.ai.knowledge.reembedding`)."""
    ctx.require(MANAGE)
    agent = get_agent(session, ctx, agent_id, for_update=True)
    before = agent_view(agent)
    embedded_by = reembedding.model_of(agent)
    _apply(agent, fields, api_key)
    agent.updated_at = func.now()
    _flush_unique(session, fields["name"])
    session.refresh(agent)
    if reembedding.model_of(agent) != embedded_by:
        reembedding.model_changed(session, agent)
    activity.record(
        session,
        ctx,
        "ai_agent.updated",
        "ai_agent",
        agent.id,
        before=before,
        after=agent_view(agent),
    )
    return agent


def set_active(session: Session, ctx: Ctx, agent_id: uuid.UUID, is_active: bool) -> AiAgent:
    ctx.require(MANAGE)
    agent = get_agent(session, ctx, agent_id, for_update=True)
    if agent.is_active != is_active:
        agent.is_active = is_active
        agent.updated_at = func.now()
        session.flush()
        session.refresh(agent)
        activity.record(
            session,
            ctx,
            "ai_agent.activated" if is_active else "ai_agent.deactivated",
            "ai_agent",
            agent.id,
            before={"is_active": not is_active},
            after={"is_active": is_active},
        )
    return agent


def delete_agent(session: Session, ctx: Ctx, agent_id: uuid.UUID) -> None:
    """Delete the agent; its assignments, rules, knowledge, products, evaluations, usage
    and replies go with it (FK cascades); conversations it owned are released first, as a
    change of theirs (:func:`_release_conversations`). Its file sources' media is freed
    unless a message or another agent's source uses it."""
    ctx.require(MANAGE)
    agent = _lock_for_deletion(session, ctx, agent_id)
    activity.record(
        session, ctx, "ai_agent.deleted", "ai_agent", agent.id, before=agent_view(agent)
    )
    files = session.scalars(
        select(KnowledgeSource.media_id).where(
            KnowledgeSource.tenant_id == ctx.tenant_id,
            KnowledgeSource.ai_agent_id == agent.id,
            KnowledgeSource.media_id.is_not(None),
        )
    ).all()
    _release_conversations(session, ctx, agent.id)
    session.execute(
        delete(AiAgent).where(AiAgent.tenant_id == ctx.tenant_id, AiAgent.id == agent.id)
    )
    session.expunge(agent)
    # The cascade took the file sources; their files must not stay counted as storage.
    for media_id in sorted(set(files)):
        media_release.release(session, ctx.tenant_id, media_id)


def _lock_for_deletion(session: Session, ctx: Ctx, agent_id: uuid.UUID) -> AiAgent:
    """The agent, locked after the reply path's rows of it (404 before any lock).

    NOTE: lock order, the reply path's (:mod:`shared.ai.generation`'s docstring): the
    agent's in-flight replies, then its conversations (both in conversation order), then
    the agent. The reply path's foreign key checks (``ai_replies``, ``ai_usage_daily``,
    ``conversations.ai_agent_id``) take the agent FOR KEY SHARE after its replies and
    conversations; agent first, the release and the cascade below waited for a row held
    by a transaction that waited for the agent: a deadlock. Whatever takes the agent later
    waits for the deletion, as ``ingestion._locked`` does; a conversation claimed by the
    agent between these locks is released too, by the statement of
    :func:`_release_conversations`.
    """
    find_agent(session, ctx.tenant_id, agent_id)
    session.execute(
        select(AiReply.id)
        .where(
            AiReply.tenant_id == ctx.tenant_id,
            AiReply.ai_agent_id == agent_id,
            AiReply.status.in_(("pending", "generating")),
        )
        .order_by(AiReply.conversation_id)
        .with_for_update()
    ).all()
    # NOTE: FOR NO KEY UPDATE: a reply's upsert on a conversation the agent owns already
    # takes the agent FOR KEY SHARE and then the conversation (its foreign keys, in that
    # order) without locking the conversation first; FOR UPDATE here blocked that second
    # check while the deletion waited for the agent: a deadlock. The release below
    # changes the conversations' AI fields only, never their ids.
    session.execute(
        select(Conversation.id)
        .where(*_owned_by(ctx.tenant_id, agent_id))
        .order_by(Conversation.id)
        .with_for_update(key_share=True)
    ).all()
    agent = session.scalars(
        select(AiAgent)
        .where(AiAgent.tenant_id == ctx.tenant_id, AiAgent.id == agent_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if agent is None:
        raise NotFound("AI agent not found")  # deleted meanwhile
    return agent


def _owned_by(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> tuple:
    return (Conversation.tenant_id == tenant_id, Conversation.ai_agent_id == agent_id)


def _release_conversations(session: Session, ctx: Ctx, agent_id: uuid.UUID) -> None:
    """Take the agent off its conversations as a change of theirs, before the delete.

    NOTE: by a statement, not the foreign key's SET NULL, which left ``updated_at`` as it
    was (clients syncing with ``updated_since`` never saw it), told no stream (agents' open
    views kept showing the deleted agent answering) and left ``ai_active`` true with no
    agent: a state no AI answers, shown as the AI's. ``ai_active`` false is what it is: a
    later message is claimed by an AI on duty like one no AI ever had.
    """
    owned = _owned_by(ctx.tenant_id, agent_id)
    now = states.db_now(session)
    few = _few_enough(session, owned)
    statement = (
        update(Conversation)
        .where(*owned)
        .values(ai_agent_id=None, ai_active=False, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not few:
        session.execute(statement)
        data = {"ai_agent_id": str(agent_id)}
        feed.announce(session, ctx.tenant_id, feed.AI_RELEASED, data, ctx.actor.as_dict(), now)
        return
    table = Conversation.__table__
    released = session.execute(
        statement.returning(*(table.c[name] for name in ConversationView.model_fields))
    )
    for row in released:
        view = ConversationView.data(row._asdict())
        convs.announce_ai_change(session, ctx, view, None, now)


def _few_enough(session: Session, owned: tuple) -> bool:
    """Whether the streams are told one by one: at most ``divisions.ANNOUNCED_ONE_BY_ONE``
    conversations, the bound a deleted division's announcements keep (and for its reason).

    NOTE: stable until the commit: the agent row is locked, so no conversation can take
    it meanwhile (the foreign key check waits on that lock).
    """
    bound = divisions.ANNOUNCED_ONE_BY_ONE
    found = session.scalars(select(Conversation.id).where(*owned).limit(bound + 1)).all()
    return len(found) <= bound
