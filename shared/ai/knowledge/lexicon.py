"""An agent's lexicon: the words its passages use and in how many (``knowledge_terms``).

Retrieval corrects misspelt question words against it and looks for candidates through
the rarer words of a question (a word in half the passages finds nothing in particular).
Ingestion adds a source's words when its passages land and forgets the old ones when
they are replaced; deleting a source forgets its words. Counts may drift a little
(a crash between two ingestions of one source cannot, both run in one transaction);
they steer the search and never decide a score.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

#: NOTE: one agent's lexicon is updated by one transaction at a time (an advisory lock
#: taken in the transaction), so two ingestions never lock shared words in two orders.
_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('knowledge_terms'), hashtext(:a))")

_ADD = text(
    """
    INSERT INTO knowledge_terms (tenant_id, ai_agent_id, term, chunks)
    SELECT :t, :a, lexeme, n
      FROM (SELECT lexeme, count(*) AS n
              FROM knowledge_chunks, unnest(tsvector_to_array(search)) AS lexeme
             WHERE source_id = :s AND length(lexeme) BETWEEN 3 AND 40
             GROUP BY lexeme) AS words
    ON CONFLICT (ai_agent_id, term)
    DO UPDATE SET chunks = knowledge_terms.chunks + excluded.chunks
    """
)
_FORGET = text(
    """
    UPDATE knowledge_terms k SET chunks = greatest(k.chunks - words.n, 0)
      FROM (SELECT lexeme, count(*) AS n
              FROM knowledge_chunks, unnest(tsvector_to_array(search)) AS lexeme
             WHERE source_id = :s AND length(lexeme) BETWEEN 3 AND 40
             GROUP BY lexeme) AS words
     WHERE k.ai_agent_id = :a AND k.term = words.lexeme
    """
)


def lock(session: Session, agent_id: uuid.UUID) -> None:
    session.execute(_LOCK, {"a": str(agent_id)})


def add_source(
    session: Session, tenant_id: uuid.UUID, agent_id: uuid.UUID, source_id: uuid.UUID
) -> None:
    """Count the words of the source's passages in (call :func:`lock` first)."""
    session.execute(_ADD, {"t": tenant_id, "a": agent_id, "s": source_id})


def forget_source(session: Session, agent_id: uuid.UUID, source_id: uuid.UUID) -> None:
    """Count the words of the source's passages out, before they are deleted."""
    session.execute(_FORGET, {"a": agent_id, "s": source_id})
