"""AI agents: configured assistants, where they answer, their knowledge, and what they cost.

An *AI agent* answers inbound messages on the conversations it owns. *Assignments* say which
integration accounts or channels an agent owns (always, or outside working hours);
*orchestration rules* route a conversation between agents by intent, channel or keyword.
*Knowledge* (chunks of files, URLs and texts; QnA pairs; products) grounds its answers;
*handoff rules* pass the conversation to humans. Each reply is an :class:`AiReply` row, the
durable record of the work (settle window, one in flight per conversation, sources, tokens),
so a lost worker message is re-driven from Postgres, never lost.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

from sqlalchemy import (
    ARRAY,
    REAL,
    BigInteger,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, Timestamps, UUIDPrimaryKey

#: Model providers: ``offline`` answers from the agent's own knowledge with no model at all.
PROVIDERS = ("offline", "openai")
ASSIGNMENT_MODES = ("always", "outside_working_hours")
HANDOFF_KINDS = (
    "keyword",
    "explicit_request",
    "max_turns",
    "low_confidence",
    "model_error",
    "usage_limit",
)
ORCHESTRATION_MATCHES = ("intent", "channel", "keyword")
SOURCE_KINDS = ("file", "url", "text")
SOURCE_STATUSES = ("pending", "processing", "ready", "failed")
#: ``pending`` waits for its settle window; ``generating`` is with the model; the rest are final.
REPLY_STATUSES = ("pending", "generating", "sent", "handed_off", "skipped", "failed")
#: Statuses of a reply still in flight: at most one per conversation.
REPLY_IN_FLIGHT = ("pending", "generating")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


#: Items still owed a vector and not given up: the partial index the embedding sweep reads.
EMBEDDING_OWED = "embedding IS NULL AND embed_gave_up_at IS NULL"


def _embedding_owed_index(table: str) -> Index:
    return Index(f"ix_{table}_embedding_owed", "ai_agent_id", postgresql_where=text(EMBEDDING_OWED))


class EmbeddingRedrives:
    """How often the scheduler re-sent an item's ``embed_items`` (its message was lost or
    the provider kept failing on it): :mod:`shared.ai.knowledge.embedding_sweep`."""

    #: Sweeps that sent the item again (each doubles the wait to the next).
    embed_attempts: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    #: When the last of them sent it.
    embed_swept_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: Still without a vector after the last attempt: no longer sent (set back by a change).
    embed_gave_up_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class AiAgent(UUIDPrimaryKey, Timestamps, Base):
    """A configured assistant: its model, voice and limits."""

    __tablename__ = "ai_agents"
    __table_args__ = (
        CheckConstraint(_in("provider", PROVIDERS), name="provider_known"),
        Index("uq_ai_agents_tenant_name", "tenant_id", func.lower(text("name")), unique=True),
        Index("ix_ai_agents_tenant_created", "tenant_id", text("created_at DESC"), text("id DESC")),
        Index(
            "ix_ai_agents_reembed_due",
            "reembed_due_at",
            postgresql_where=text("reembed_due_at IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(16), server_default="offline")
    #: Chat model name (``gpt-4o-mini``, ``llama3.1``...); ``None`` uses the settings' default.
    model: Mapped[str | None] = mapped_column(String(120))
    embedding_model: Mapped[str | None] = mapped_column(String(120))
    #: OpenAI-compatible base URL (``https://api.openai.com/v1``, ``http://127.0.0.1:11434/v1``).
    base_url: Mapped[str | None] = mapped_column(String(500))
    #: A Fernet token of the provider's API key (shared.crypto); never returned.
    api_key_encrypted: Mapped[str | None] = mapped_column(Text)
    instructions: Mapped[str] = mapped_column(Text, server_default="")
    language: Mapped[str | None] = mapped_column(String(16))
    temperature: Mapped[float] = mapped_column(Float, server_default="0.3")
    max_tokens: Mapped[int] = mapped_column(server_default="512")
    #: Topics and behaviours the agent must refuse, added to its system prompt.
    guardrails: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    #: Seconds to wait after an inbound message for more from the same contact.
    settle_seconds: Mapped[float] = mapped_column(Float, server_default="2")
    #: Below this retrieval score the answer is not grounded: a ``low_confidence`` handoff.
    confidence_threshold: Mapped[float] = mapped_column(Float, server_default="0.1")
    #: Sent to the contact when the conversation passes to humans.
    handoff_message: Mapped[str | None] = mapped_column(Text)
    #: Prices per 1,000 tokens, for the usage's cost.
    prompt_cost_per_1k: Mapped[decimal.Decimal] = mapped_column(Numeric(12, 6), server_default="0")
    completion_cost_per_1k: Mapped[decimal.Decimal] = mapped_column(
        Numeric(12, 6), server_default="0"
    )
    #: Replies a day before a ``usage_limit`` handoff; ``None`` means no limit.
    daily_reply_limit: Mapped[int | None]
    is_active: Mapped[bool] = mapped_column(server_default="true")
    #: A re-embedding is owed (its model changed): when the scheduler next checks that its
    #: ``embed_items`` jobs ran; ``None`` when nothing is owed
    #: (:mod:`shared.ai.knowledge.reembedding`).
    reembed_due_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: Sweeps that found the re-embedding unfinished (each doubles the wait to the next).
    reembed_attempts: Mapped[int] = mapped_column(server_default="0")


class AiAgentAssignment(UUIDPrimaryKey, Timestamps, Base):
    """An AI agent owns the conversations of an integration account, or of a whole channel."""

    __tablename__ = "ai_agent_assignments"
    __table_args__ = (
        CheckConstraint(_in("mode", ASSIGNMENT_MODES), name="mode_known"),
        CheckConstraint(
            "integration_account_id IS NOT NULL OR channel IS NOT NULL", name="has_target"
        ),
        Index("ix_ai_agent_assignments_tenant", "tenant_id", "ai_agent_id"),
        Index("ix_ai_agent_assignments_account", "tenant_id", "integration_account_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ai_agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ai_agents.id", ondelete="CASCADE"))
    integration_account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("integration_accounts.id", ondelete="CASCADE")
    )
    channel: Mapped[str | None] = mapped_column(String(16))
    division_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("divisions.id", ondelete="SET NULL")
    )
    mode: Mapped[str] = mapped_column(String(32), server_default="always")
    is_active: Mapped[bool] = mapped_column(server_default="true")


class AiHandoffRule(UUIDPrimaryKey, Timestamps, Base):
    """When an AI agent passes a conversation to humans, and to which division."""

    __tablename__ = "ai_handoff_rules"
    __table_args__ = (
        CheckConstraint(_in("kind", HANDOFF_KINDS), name="kind_known"),
        Index("ix_ai_handoff_rules_agent", "tenant_id", "ai_agent_id", "position"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ai_agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ai_agents.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    keywords: Mapped[list[str]] = mapped_column(ARRAY(String(200)), server_default="{}")
    max_turns: Mapped[int | None]
    threshold: Mapped[float | None] = mapped_column(Float)
    division_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("divisions.id", ondelete="SET NULL")
    )
    #: Sent to the contact on this handoff; ``None`` uses the agent's handoff message.
    message: Mapped[str | None] = mapped_column(Text)
    position: Mapped[int] = mapped_column(server_default="0")
    is_active: Mapped[bool] = mapped_column(server_default="true")


class AiOrchestrationRule(UUIDPrimaryKey, Timestamps, Base):
    """Routes a conversation to an AI agent by intent, channel or keyword (low priority first)."""

    __tablename__ = "ai_orchestration_rules"
    __table_args__ = (
        CheckConstraint(_in("match_type", ORCHESTRATION_MATCHES), name="match_type_known"),
        Index("ix_ai_orchestration_rules_tenant", "tenant_id", "priority", "created_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    match_type: Mapped[str] = mapped_column(String(16))
    #: The intent's name, for ``intent`` rules (matched by its example phrases).
    intent: Mapped[str | None] = mapped_column(String(120))
    channel: Mapped[str | None] = mapped_column(String(16))
    keywords: Mapped[list[str]] = mapped_column(ARRAY(String(200)), server_default="{}")
    target_ai_agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ai_agents.id", ondelete="CASCADE")
    )
    priority: Mapped[int] = mapped_column(server_default="100")
    is_active: Mapped[bool] = mapped_column(server_default="true")


class KnowledgeSource(UUIDPrimaryKey, Timestamps, Base):
    """A file, URL or text an AI agent knows, chunked by ``ingest_knowledge_source``."""

    __tablename__ = "knowledge_sources"
    __table_args__ = (
        CheckConstraint(_in("kind", SOURCE_KINDS), name="kind_known"),
        CheckConstraint(_in("status", SOURCE_STATUSES), name="status_known"),
        Index("ix_knowledge_sources_agent", "tenant_id", "ai_agent_id", text("created_at DESC")),
        Index(
            "ix_knowledge_sources_stuck",
            "updated_at",
            postgresql_where=text("status IN ('pending', 'processing')"),
        ),
        # The foreign key's ON DELETE (tests/migrations/test_foreign_key_indexes.py).
        Index(
            "ix_knowledge_sources_media",
            "media_id",
            postgresql_where=text("media_id IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ai_agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ai_agents.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(300))
    url: Mapped[str | None] = mapped_column(String(2048))
    #: The uploaded file (``media_files``), for ``file`` sources.
    media_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("media_files.id", ondelete="SET NULL")
    )
    #: The text itself, for ``text`` sources.
    content: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    chunk_count: Mapped[int] = mapped_column(server_default="0")
    attempts: Mapped[int] = mapped_column(server_default="0")
    processed_at: Mapped[dt.datetime | None]


class KnowledgeChunk(EmbeddingRedrives, UUIDPrimaryKey, Base):
    """A passage of a knowledge source, ranked by full text, trigrams or embeddings."""

    __tablename__ = "knowledge_chunks"
    __table_args__ = (
        Index("ix_knowledge_chunks_source", "tenant_id", "source_id", "position"),
        # PERF: btree_gin puts the agent inside the full-text index (migration 0013).
        Index("ix_knowledge_chunks_search", "ai_agent_id", "search", postgresql_using="gin"),
        _embedding_owed_index("knowledge_chunks"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ai_agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ai_agents.id", ondelete="CASCADE"))
    source_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("knowledge_sources.id", ondelete="CASCADE")
    )
    position: Mapped[int]
    content: Mapped[str] = mapped_column(Text)
    search: Mapped[Any] = mapped_column(
        TSVECTOR, Computed("to_tsvector('simple', content)", persisted=True), deferred=True
    )
    #: The provider's embedding, when the agent has an embedding model (no pgvector needed).
    embedding: Mapped[list[float] | None] = mapped_column(ARRAY(REAL), deferred=True)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class KnowledgeTerm(Base):
    """A word an agent's passages use: the lexicon a misspelt question is corrected against.

    Kept by ingestion and source deletion (a word at 0 passages stays: it corrects to
    nothing and costs nothing).
    """

    __tablename__ = "knowledge_terms"
    __table_args__ = (
        PrimaryKeyConstraint("ai_agent_id", "term"),
        # PERF: GIN with the agent in front (btree_gin): a misspelt word is compared
        # with the words of its own agent that share trigrams with it (migration 0027).
        Index(
            "ix_knowledge_terms_agent_trigram",
            "ai_agent_id",
            "term",
            postgresql_using="gin",
            postgresql_ops={"term": "gin_trgm_ops"},
            postgresql_with={"fastupdate": "off"},
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ai_agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ai_agents.id", ondelete="CASCADE"))
    term: Mapped[str] = mapped_column(Text)
    #: Passages holding the word: retrieval looks for candidates through the rarer words.
    chunks: Mapped[int] = mapped_column(server_default="0")


class QnaPair(EmbeddingRedrives, UUIDPrimaryKey, Timestamps, Base):
    """A question and its answer, preferred over chunks when the question matches."""

    __tablename__ = "qna_pairs"
    __table_args__ = (
        Index("ix_qna_pairs_source", "tenant_id", "source_id", text("created_at DESC")),
        # PERF: the agent in front (btree_gin, migration 0027): one agent's postings only.
        Index("ix_qna_pairs_search", "ai_agent_id", "search", postgresql_using="gin"),
        Index(
            "ix_qna_pairs_trigram",
            "ai_agent_id",
            "question",
            postgresql_using="gin",
            postgresql_ops={"question": "gin_trgm_ops"},
        ),
        _embedding_owed_index("qna_pairs"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ai_agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ai_agents.id", ondelete="CASCADE"))
    source_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("knowledge_sources.id", ondelete="CASCADE")
    )
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    search: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('simple', question || ' ' || answer)", persisted=True),
        deferred=True,
    )
    embedding: Mapped[list[float] | None] = mapped_column(ARRAY(REAL), deferred=True)


class AiProduct(EmbeddingRedrives, UUIDPrimaryKey, Timestamps, Base):
    """A product an AI agent can recommend, with its price."""

    __tablename__ = "ai_products"
    __table_args__ = (
        CheckConstraint("price >= 0", name="price_not_negative"),
        Index("ix_ai_products_agent", "tenant_id", "ai_agent_id", text("created_at DESC")),
        Index(
            "uq_ai_products_agent_sku",
            "ai_agent_id",
            "sku",
            unique=True,
            postgresql_where=text("sku IS NOT NULL"),
        ),
        Index("ix_ai_products_search", "ai_agent_id", "search", postgresql_using="gin"),
        _embedding_owed_index("ai_products"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ai_agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ai_agents.id", ondelete="CASCADE"))
    sku: Mapped[str | None] = mapped_column(String(120))
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    price: Mapped[decimal.Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    url: Mapped[str | None] = mapped_column(String(2048))
    image_url: Mapped[str | None] = mapped_column(String(2048))
    in_stock: Mapped[bool] = mapped_column(server_default="true")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    search: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed(
            "to_tsvector('simple', name || ' ' || coalesce(sku, '') || ' ' || "
            "coalesce(description, ''))",
            persisted=True,
        ),
        deferred=True,
    )
    embedding: Mapped[list[float] | None] = mapped_column(ARRAY(REAL), deferred=True)


class AiEvaluation(UUIDPrimaryKey, Timestamps, Base):
    """A human's rating of one AI reply, with the answer it should have given."""

    __tablename__ = "ai_evaluations"
    __table_args__ = (
        CheckConstraint("score BETWEEN 1 AND 5", name="score_range"),
        Index("ix_ai_evaluations_agent", "tenant_id", "ai_agent_id", text("created_at DESC")),
        Index("uq_ai_evaluations_message_evaluator", "message_id", "evaluator_id", unique=True),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ai_agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ai_agents.id", ondelete="CASCADE"))
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    evaluator_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    score: Mapped[int]
    correction: Mapped[str | None] = mapped_column(Text)


class AiUsageDaily(Base):
    """Replies, tokens and cost per AI agent and day (UTC), summed as replies are made."""

    __tablename__ = "ai_usage_daily"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "ai_agent_id", "day"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ai_agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ai_agents.id", ondelete="CASCADE"))
    day: Mapped[dt.date] = mapped_column(Date)
    replies: Mapped[int] = mapped_column(server_default="0")
    test_replies: Mapped[int] = mapped_column(server_default="0")
    handoffs: Mapped[int] = mapped_column(server_default="0")
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cost: Mapped[decimal.Decimal] = mapped_column(Numeric(16, 6), server_default="0")


class AiReply(UUIDPrimaryKey, Timestamps, Base):
    """One answer an AI agent owes a conversation: the durable record of ``ai_reply``'s work."""

    __tablename__ = "ai_replies"
    __table_args__ = (
        CheckConstraint(_in("status", REPLY_STATUSES), name="status_known"),
        # One reply in flight per conversation: a burst of messages joins the pending one.
        Index(
            "uq_ai_replies_in_flight",
            "conversation_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'generating')"),
        ),
        Index("ix_ai_replies_conversation", "tenant_id", "conversation_id", "created_at"),
        Index("ix_ai_replies_due", "due_at", postgresql_where=text("status = 'pending'")),
        Index(
            "ix_ai_replies_generating",
            "updated_at",
            postgresql_where=text("status = 'generating'"),
        ),
        # The foreign key's ON DELETE (tests/migrations/test_foreign_key_indexes.py).
        Index("ix_ai_replies_ai_agent", "ai_agent_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    ai_agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ai_agents.id", ondelete="CASCADE"))
    #: The newest inbound message the reply answers (a burst moves it forward).
    last_message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    #: When the settle window ends (moved forward by each message of a burst).
    due_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    attempts: Mapped[int] = mapped_column(server_default="0")
    reply_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    #: ``[{"kind": "chunk"|"qna"|"product", "id", "source_id", "score"}]``.
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    prompt_tokens: Mapped[int] = mapped_column(server_default="0")
    completion_tokens: Mapped[int] = mapped_column(server_default="0")
    handoff_reason: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[dt.datetime | None]


class AiProductImport(Base):
    """The body of a product import, kept in Postgres until ``import_products`` has read it.

    PERF: apart from ``jobs`` so that polling a job never loads megabytes of CSV; the row
    goes when the import finishes (and with its job or its agent).
    """

    __tablename__ = "ai_product_imports"
    __table_args__ = (CheckConstraint("format IN ('csv', 'json')", name="format_known"),)

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ai_agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ai_agents.id", ondelete="CASCADE"))
    format: Mapped[str] = mapped_column(String(8))
    #: Deferred: the import's batches check the row is there without loading megabytes.
    payload: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
