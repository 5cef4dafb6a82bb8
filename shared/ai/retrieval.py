"""Rank an AI agent's knowledge (QnA pairs, chunks, products) for a contact's question.

PostgreSQL full-text ranking does the work, so no extension beyond what the schema already
uses is needed. Scores are normalised to 0..1 across kinds so one threshold
(``AiAgent.confidence_threshold``) decides whether an answer is grounded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

#: ``ts_rank_cd`` normalisation 32 maps a rank r to r / (r + 1): 0..1, comparable across rows.
_RANKED = text(
    """
    SELECT kind, id, source_id, body, score FROM (
        SELECT 'qna' AS kind, q.id, q.source_id,
               q.question || E'\\n' || q.answer AS body,
               ts_rank_cd(q.search, query, 32) AS score
          FROM qna_pairs q, websearch_to_tsquery('simple', :question) query
         WHERE q.tenant_id = :tenant_id AND q.ai_agent_id = :agent_id AND q.search @@ query
        UNION ALL
        SELECT 'chunk', c.id, c.source_id, c.content, ts_rank_cd(c.search, query, 32)
          FROM knowledge_chunks c, websearch_to_tsquery('simple', :question) query
         WHERE c.tenant_id = :tenant_id AND c.ai_agent_id = :agent_id AND c.search @@ query
        UNION ALL
        SELECT 'product', p.id, NULL, p.name || coalesce(E'\\n' || p.description, ''),
               ts_rank_cd(p.search, query, 32)
          FROM ai_products p, websearch_to_tsquery('simple', :question) query
         WHERE p.tenant_id = :tenant_id AND p.ai_agent_id = :agent_id AND p.search @@ query
    ) ranked
    ORDER BY score DESC, id
    LIMIT :limit
    """
)


@dataclass(frozen=True, slots=True)
class Hit:
    """One piece of knowledge and how well it matches (0..1)."""

    kind: str  # "qna", "chunk" or "product"
    id: uuid.UUID
    source_id: uuid.UUID | None
    text: str
    score: float


def retrieve(
    session: Session, tenant_id: uuid.UUID, ai_agent_id: uuid.UUID, question: str, *, limit: int = 5
) -> list[Hit]:
    """The best ``limit`` hits for ``question`` among the agent's knowledge, best first."""
    if not question.strip():
        return []
    rows = session.execute(
        _RANKED,
        {"tenant_id": tenant_id, "agent_id": ai_agent_id, "question": question, "limit": limit},
    )
    return [Hit(r.kind, r.id, r.source_id, r.body, float(r.score)) for r in rows]
