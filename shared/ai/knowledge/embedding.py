"""Embeddings of chunks, QnA pairs and products, stored as ``real[]`` (no pgvector needed).

The model providers live with the reply path; this module only needs something with
``embed(texts) -> list[list[float]]``. :func:`set_embedder_factory` installs how an
agent's embedder is built (the providers module does it on import); until one is
installed, or for an agent without ``embedding_model``, :func:`embed_items` does
nothing and retrieval ranks by text alone.

Vectors are stored unit-length, so cosine similarity is a dot product
(:func:`shared.ai.retrieval.normalised`).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

from sqlalchemy import bindparam, literal, select, update
from sqlalchemy.orm import Session

from shared.ai import usage
from shared.ai.knowledge import reembedding
from shared.ai.retrieval import normalised
from shared.models import AiAgent, AiProduct, KnowledgeChunk, QnaPair

log = logging.getLogger(__name__)

#: Texts sent to the provider per call.
BATCH = 64
KINDS = ("chunk", "qna", "product")


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def embed_counted(embedder: Embedder, texts: Sequence[str]) -> tuple[list[list[float]], int]:
    """Vectors and the tokens they cost: the embedder's count (``embed_counted``, the
    providers' bridge) or about four characters a token for one that counts none."""
    counted = getattr(embedder, "embed_counted", None)
    if counted is not None:
        return counted(texts)
    return embedder.embed(texts), sum(max(1, (len(t) + 3) // 4) for t in texts if t)


EmbedderFactory = Callable[[AiAgent], Embedder | None]
_factory: EmbedderFactory = lambda _agent: None  # noqa: E731


def set_embedder_factory(factory: EmbedderFactory | None) -> EmbedderFactory:
    """Install how an agent's embedder is built (None: no embeddings anywhere).

    Returns the factory it replaces, so a caller that swaps it for a while (a test) can
    put the installed one back rather than leave the process without embeddings.
    """
    global _factory
    previous, _factory = _factory, factory or (lambda _agent: None)
    return previous


def embedder_for(agent: AiAgent) -> Embedder | None:
    """The agent's embedder, or None when it has no embedding model or none is installed."""
    if not agent.embedding_model:
        return None
    return _factory(agent)


def _texts(session: Session, kind: str, ids: Sequence[uuid.UUID]) -> list[tuple]:
    """``(id, tenant_id, ai_agent_id, text, version)`` of each item still there; the
    version is its ``updated_at`` (None for a chunk, which is never edited)."""
    if kind == "chunk":
        columns = (KnowledgeChunk.content,)
        table = KnowledgeChunk
    elif kind == "qna":
        columns = (QnaPair.question, QnaPair.answer)
        table = QnaPair
    else:
        columns = (AiProduct.name, AiProduct.description)
        table = AiProduct
    rows = session.execute(
        select(table.id, table.tenant_id, table.ai_agent_id, _version(table), *columns).where(
            table.id.in_(ids)
        )
    ).all()
    return [(r[0], r[1], r[2], "\n".join(str(v) for v in r[4:] if v), r[3]) for r in rows]


def _version(table):
    """The column that changes with the item's text: ``updated_at`` (a chunk has none)."""
    return table.updated_at if hasattr(table, "updated_at") else literal(None).label("version")


#: The table of each kind of item.
TABLES = {"chunk": KnowledgeChunk, "qna": QnaPair, "product": AiProduct}


def tenant_of(session: Session, kind: str, ids: Sequence[uuid.UUID]) -> uuid.UUID | None:
    """The tenant of a batch of ``kind`` items (one tenant's), by any still there; None if
    all are gone.

    WHY: by its first only, a batch whose first item was deleted since it was queued was
    tenantless: a suspended tenant's other items were embedded (the model called, and
    billed) instead of dropped. PERF: primary-key probes, stopping at the first found.
    """
    table = TABLES.get(kind)
    if table is None or not ids:
        return None
    return session.scalar(select(table.tenant_id).where(table.id.in_(ids)).limit(1))


def store(
    session: Session,
    kind: str,
    vectors: dict[uuid.UUID, Sequence[float]],
    versions: dict[uuid.UUID, object] | None = None,
) -> None:
    """Write unit-length embeddings of ``kind`` items (one statement for the batch).

    With ``versions`` (each item's ``updated_at`` when its text was read), an item edited
    since keeps no vector: WHY: a product replaced while its old text was being embedded
    got that text's vector over the cleared one, and its new text was never embedded (the
    sweep sends only items without a vector). The edit queued the new text already.
    """
    if not vectors:
        return
    table = TABLES[kind].__table__
    statement = update(table).where(table.c.id == bindparam("item_id"))
    if versions is not None and "updated_at" in table.c:
        statement = statement.where(table.c.updated_at == bindparam("version"))
    session.execute(
        statement.values(embedding=bindparam("vec")),
        [
            {"item_id": item_id, "vec": normalised(vec), "version": (versions or {}).get(item_id)}
            for item_id, vec in vectors.items()
        ],
        execution_options={"synchronize_session": False},
    )


def embed_items(session: Session, kind: str, ids: Sequence[uuid.UUID]) -> int:
    """Compute and store the embeddings of the items; return how many were embedded.

    Idempotent: a redelivered message computes the same vectors again (items deleted
    meanwhile are skipped); items of agents without an embedder are left as they are.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    by_agent: defaultdict[uuid.UUID, list[tuple]] = defaultdict(list)
    for row in _texts(session, kind, ids):
        by_agent[row[2]].append(row)
    done = 0
    for agent_id, rows in by_agent.items():
        agent = session.get(AiAgent, agent_id)
        embedder = embedder_for(agent) if agent is not None else None
        if embedder is None:
            continue
        used = reembedding.model_of(agent)
        tokens = 0
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            vectors, cost = embed_counted(embedder, [row[3] for row in batch])
            tokens += cost
            if len(vectors) != len(batch):
                raise ValueError(f"the embedder answered {len(vectors)} vectors for {len(batch)}")
            if not reembedding.still_current(session, agent_id, used):
                break  # the model changed meanwhile: the change queued these items again
            store(
                session,
                kind,
                {row[0]: vec for row, vec in zip(batch, vectors, strict=True)},
                {row[0]: row[4] for row in batch},
            )
            done += len(batch)
        # Embedding input is prompt input: counted (and priced) as generation prompts are.
        usage.record(session, agent, prompt_tokens=tokens)
    return done
