"""Rank an AI agent's knowledge (QnA pairs, chunks, products) for a contact's question.

PostgreSQL does the finding; this module decides what a match is worth, on one 0..1
scale for every kind, so one threshold (``AiAgent.confidence_threshold``) says whether
an answer is grounded:

1. The question's words, as PostgreSQL's ``simple`` parser reads them, minus common
   words ("what", "is", "the"...) unless nothing else is left, crudely stemmed
   (:func:`stem`), are OR-ed into one prefix ``tsquery``. Candidate passages are found
   through the question's rarer words (the agent's lexicon counts the passages of each
   word; :meth:`Terms.searched`), at most :data:`CANDIDATE_CAP`: ranking every passage
   that holds a common word would cost seconds at 100,000 and tell little.
   ``ts_rank_cd`` (cover density) keeps the best :data:`POOL` of each kind.
2. Each pooled hit is scored by *coverage*, the share of the question's words it holds
   (from its stored ``tsvector``), lifted a little by its cover density. A passage with
   every word of the question scores near 1; one with a third of them near 0.3.
3. QnA pairs are also compared whole, question to question, by trigram similarity
   (``pg_trgm``): "how do i reset my pasword" still finds "How do I reset my password?".
   A pair whose question matches is preferred (:data:`QNA_PREFERENCE`): its answer
   was written for exactly this.
4. A question word the agent's passages never use is corrected to the closest word
   they do (trigram similarity over the agent's lexicon, ``knowledge_terms``: small and
   indexed, where trigrams over whole passages would recheck most of them); a corrected
   word counts for less than an exact one (:data:`FUZZY_WEIGHT`).
5. With a question embedding (an agent with ``embedding_model``), pooled hits that
   have embeddings are re-ranked by blending cosine similarity in
   (:data:`VECTOR_WEIGHT`); when text finds nothing at all, the agent's embedded items
   are scanned by cosine alone (bounded by :data:`VECTOR_SCAN_LIMIT`, as without
   pgvector this is a scan).

Knowledge is data, never instructions: hits carry text only, and the reply path
frames it as quoted material (see tests/ai_knowledge/fixtures/hostile_knowledge.json).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, REAL
from sqlalchemy.orm import Session

#: Hits of each kind scored per query at most (the best by cover density).
POOL = 40
#: Added to a QnA pair's score when its question matches the contact's (capped at 1).
QNA_PREFERENCE = 0.1
#: A QnA question this similar (trigram) to the contact's counts as matching.
QNA_MATCH = 0.5
#: A question word corrected against the lexicon is weaker evidence than an exact one.
FUZZY_WEIGHT = 0.8
#: Share of the score that cosine similarity takes when embeddings are available.
VECTOR_WEIGHT = 0.5
#: Items scanned by cosine alone when text finds nothing (no pgvector: a real scan).
VECTOR_SCAN_LIMIT = 5000
#: Question words shorter than this are never corrected (too many near neighbours).
MIN_CORRECTED = 4
#: Passages the candidate words may hold together (see :meth:`Terms.searched`).
CANDIDATE_BUDGET = 3000
#: Candidate passages ranked at most, whatever the counts say (they may be stale).
CANDIDATE_CAP = 1000
#: What a word the lexicon cannot tell about is assumed to be: common.
COMMON = 1_000_000
#: Question words used at most (a pasted paragraph should not become a 200-term OR).
MAX_TERMS = 16

#: Words too common to say what a question is about (English, Spanish, Portuguese, French).
_STOPWORDS = """
    a an and are as at be been but by can could did do does for from had has have how i if
    in into is it its me my no not of on or our please she so than that the their them then
    there these they this to was we were what when where which who why will with would you
    your yours hi hello thanks thank
    el la los las un una unos unas y o de del al en con por para que como cual es son esta
    estan hay mi mis tu tus su sus se lo le les me te nos por favor hola gracias
    o a os as um uma de do da dos das em no na nos nas com por para que como e sao esta
    meu minha seu sua ola obrigado obrigada
    le la les un une des et ou de du au aux en avec pour que qui comment est sont je tu il
    elle nous vous ils mon ma mes ton ta tes son sa ses bonjour merci
"""
STOPWORDS = frozenset(_STOPWORDS.split())

_LEXEMES = text("SELECT array(SELECT lexeme FROM unnest(to_tsvector('simple', :question)))")

#: The pool of each kind: tenant and agent first, then the GIN index on ``search``.
_FULL_TEXT = text(
    """
    WITH query AS (SELECT to_tsquery('simple', :tsquery) AS q)
    (SELECT 'qna' AS kind, p.id, p.source_id, p.question || E'\\n' || p.answer AS body,
            tsvector_to_array(p.search) AS lexemes, ts_rank_cd(p.search, query.q, 32) AS rank,
            similarity(p.question, :question) AS question_similarity,
            CASE WHEN :with_vectors THEN p.embedding END AS embedding
       FROM qna_pairs p, query
      WHERE p.tenant_id = :tenant_id AND p.ai_agent_id = :agent_id
        AND (p.search @@ query.q OR p.question % :question)
      ORDER BY greatest(ts_rank_cd(p.search, query.q, 32), similarity(p.question, :question))
               DESC
      LIMIT :pool)
    UNION ALL
    (SELECT 'chunk', c.id, c.source_id, c.content, tsvector_to_array(c.search),
            ts_rank_cd(c.search, query.q, 32), 0.0,
            CASE WHEN :with_vectors THEN c.embedding END
       FROM (SELECT * FROM knowledge_chunks
              WHERE ai_agent_id = :agent_id AND tenant_id = :tenant_id
                AND search @@ to_tsquery('simple', :searched)
              LIMIT :cap) AS c, query
      ORDER BY ts_rank_cd(c.search, query.q, 32) DESC
      LIMIT :pool)
    UNION ALL
    (SELECT 'product', p.id, NULL, p.name || coalesce(E'\\n' || p.description, ''),
            tsvector_to_array(p.search), ts_rank_cd(p.search, query.q, 32), 0.0,
            CASE WHEN :with_vectors THEN p.embedding END
       FROM ai_products p, query
      WHERE p.tenant_id = :tenant_id AND p.ai_agent_id = :agent_id AND p.search @@ query.q
      ORDER BY ts_rank_cd(p.search, query.q, 32) DESC
      LIMIT :pool)
    """
)

#: The question words the agent's passages use, and in how many passages (primary key).
_KNOWN = text(
    """
    SELECT term, chunks FROM knowledge_terms
     WHERE ai_agent_id = :agent_id AND term = ANY(CAST(:words AS text[]))
    """
)
#: The closest known word to each unknown one (trigram GiST, nearest first).
_CORRECTIONS = text(
    """
    SELECT asked, best.term, best.chunks
      FROM unnest(CAST(:words AS text[])) AS asked
     CROSS JOIN LATERAL (
           SELECT k.term, k.chunks
             FROM knowledge_terms k
            WHERE k.term % asked AND k.ai_agent_id = :agent_id AND k.tenant_id = :tenant_id
            ORDER BY k.term <-> asked
            LIMIT 1) AS best
    """
)

#: Cosine alone (vectors are stored unit length, so it is a dot product).
_BY_VECTOR = text(
    """
    SELECT kind, id, source_id, body,
           (SELECT sum(a * b) FROM unnest(embedding, :vector) AS t(a, b)) AS cosine
      FROM (
        (SELECT 'qna' AS kind, id, source_id, question || E'\\n' || answer AS body, embedding
           FROM qna_pairs WHERE tenant_id = :tenant_id AND ai_agent_id = :agent_id
            AND embedding IS NOT NULL LIMIT :scan)
        UNION ALL
        (SELECT 'chunk', id, source_id, content, embedding
           FROM knowledge_chunks WHERE tenant_id = :tenant_id AND ai_agent_id = :agent_id
            AND embedding IS NOT NULL LIMIT :scan)
        UNION ALL
        (SELECT 'product', id, NULL, name || coalesce(E'\\n' || description, ''), embedding
           FROM ai_products WHERE tenant_id = :tenant_id AND ai_agent_id = :agent_id
            AND embedding IS NOT NULL LIMIT :scan)
      ) items
     ORDER BY cosine DESC NULLS LAST
     LIMIT :limit
    """
).bindparams(bindparam("vector", type_=ARRAY(REAL)))


@dataclass(frozen=True, slots=True)
class Hit:
    """One piece of knowledge and how well it matches (0..1)."""

    kind: str  # "qna", "chunk" or "product"
    id: uuid.UUID
    source_id: uuid.UUID | None
    text: str
    score: float


#: Endings cut before prefix matching ("shipping" -> "shipp", matching shipped/shipping).
_ENDINGS = ("ing", "ed", "es", "s")


def stem(word: str) -> str:
    """A crude, language-blind stem: the schema's ``simple`` text search does not stem, so
    question words are matched as prefixes after their commonest endings are cut."""
    for ending in _ENDINGS:
        if len(word) - len(ending) >= 4 and word.endswith(ending):
            return word[: -len(ending)]
    return word


def question_words(lexemes: Sequence[str]) -> list[str]:
    """The words that say what the question is about: stopwords out, unless none is left."""
    words = [w for w in dict.fromkeys(lexemes) if w]
    content = [w for w in words if w not in STOPWORDS and not (len(w) == 1 and w.isalpha())]
    return (content or words)[:MAX_TERMS]


def question_terms(lexemes: Sequence[str]) -> list[str]:
    """The stems of :func:`question_words`, as the tsquery matches them."""
    return list(dict.fromkeys(stem(w) for w in question_words(lexemes)))


@dataclass(slots=True)
class Terms:
    """The question's stems, which were corrected, and how many passages hold each."""

    stems: list[str]
    fuzzy: set[str]
    passages: dict[str, int]

    def searched(self) -> list[str]:
        """The stems candidates are looked up by: the rarest first, until together they
        hold :data:`CANDIDATE_BUDGET` passages (a common word alone finds nothing in
        particular, and ranking every passage holding it would cost seconds).
        """
        known = sorted(
            (self.passages.get(s, COMMON), s) for s in self.stems if self.passages.get(s) != 0
        )
        picked, total = [], 0
        for count, term in known:
            if picked and total + count > CANDIDATE_BUDGET:
                break
            picked.append(term)
            total += count
        return picked


def question_terms_for(
    session: Session, tenant_id: uuid.UUID, agent_id: uuid.UUID, words: Sequence[str]
) -> Terms:
    """Stems of ``words``, unknown words replaced by the lexicon's closest (counting less)."""
    best: dict[str, tuple[str, int]] = {}
    if words:
        known = session.execute(_KNOWN, {"words": list(words), "agent_id": agent_id})
        best = {row.term: (row.term, row.chunks) for row in known}
    unknown = [w for w in words if w not in best and len(w) >= MIN_CORRECTED]
    if unknown:
        corrections = session.execute(
            _CORRECTIONS, {"words": unknown, "agent_id": agent_id, "tenant_id": tenant_id}
        )
        best |= {row.asked: (row.term, row.chunks) for row in corrections}
    stems: list[str] = []
    fuzzy: set[str] = set()
    passages: dict[str, int] = {}
    for word in words:
        replacement, count = best.get(word, (word, COMMON if len(word) < MIN_CORRECTED else 0))
        term = stem(replacement)
        if term in passages:
            passages[term] = max(passages[term], count)
            continue
        stems.append(term)
        passages[term] = count
        if replacement != word:
            fuzzy.add(term)
    return Terms(stems, fuzzy, passages)


def _tsquery(terms: Sequence[str]) -> str:
    """``'a':* | 'b':*``: each term quoted, so no word is read as tsquery syntax, and
    matched as a prefix (short terms exactly: "at":* would match half the dictionary)."""
    return " | ".join(
        "'" + term.replace("\\", "\\\\").replace("'", "''") + "'" + (":*" if len(term) >= 4 else "")
        for term in terms
    )


def _holds(term: str, lexemes: frozenset[str] | set[str]) -> bool:
    if len(term) < 4:
        return term in lexemes
    return term in lexemes or any(lexeme.startswith(term) for lexeme in lexemes)


def cosine(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    """Cosine similarity of two vectors (0 when either is missing or empty)."""
    if not a or not b or len(a) != len(b):
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def lexical_score(
    terms: Sequence[str],
    lexemes: Sequence[str],
    rank: float,
    fuzzy: frozenset[str] | set[str] = frozenset(),
) -> float:
    """Share of the question's terms the item holds (a corrected one counts
    :data:`FUZZY_WEIGHT`), lifted a little by cover density."""
    if not terms:
        return 0.0
    present = set(lexemes)
    found = sum(FUZZY_WEIGHT if term in fuzzy else 1.0 for term in terms if _holds(term, present))
    coverage = found / len(terms)
    return coverage * (0.85 + 0.15 * min(max(rank, 0.0), 1.0))


def qna_score(lexical: float, question_similarity: float) -> float:
    """A pair is worth its best evidence; a matching question is preferred over passages."""
    score = max(lexical, question_similarity)
    if question_similarity >= QNA_MATCH:
        score += QNA_PREFERENCE
    return min(score, 1.0)


def blend(lexical: float, vector: Sequence[float] | None, query: Sequence[float] | None) -> float:
    """Text score and cosine similarity together, when both the item and question have one."""
    if not vector or not query:
        return lexical
    return (1 - VECTOR_WEIGHT) * lexical + VECTOR_WEIGHT * max(cosine(vector, query), 0.0)


def retrieve(
    session: Session,
    tenant_id: uuid.UUID,
    ai_agent_id: uuid.UUID,
    question: str,
    *,
    limit: int = 5,
    query_embedding: Sequence[float] | None = None,
) -> list[Hit]:
    """The best ``limit`` hits for ``question`` among the agent's knowledge, best first.

    ``query_embedding`` is the question's embedding by the agent's embedding model
    (computed by the caller through its provider); without it, ranking is by text.
    """
    question = question.replace("\x00", "").strip()
    if not question or limit <= 0:
        return []
    params = {
        "tenant_id": tenant_id,
        "agent_id": ai_agent_id,
        "question": question[:2000],
        "pool": max(POOL, limit),
        "with_vectors": query_embedding is not None,
    }
    hits = _Hits()
    lexemes = session.execute(_LEXEMES, {"question": params["question"]}).scalar_one()
    terms = question_terms_for(session, tenant_id, ai_agent_id, question_words(lexemes))
    if terms.stems:
        queries = {
            "tsquery": _tsquery(terms.stems),
            "searched": _tsquery(terms.searched() or terms.stems),
        }
        for row in session.execute(_FULL_TEXT, params | queries | {"cap": CANDIDATE_CAP}):
            lexical = lexical_score(terms.stems, row.lexemes, row.rank, terms.fuzzy)
            if row.kind == "qna":
                lexical = qna_score(lexical, row.question_similarity)
            hits.keep(row, blend(lexical, row.embedding, query_embedding))
    if not hits.best and query_embedding is not None:
        vector = normalised(query_embedding)
        scan = {"vector": vector, "scan": VECTOR_SCAN_LIMIT, "limit": limit}
        for row in session.execute(_BY_VECTOR, params | scan):
            hits.keep(row, VECTOR_WEIGHT * max(row.cosine or 0.0, 0.0))
    return hits.ranked(limit)


class _Hits:
    """The best score seen for each item (an item can come from several queries)."""

    def __init__(self) -> None:
        self.best: dict[uuid.UUID, Hit] = {}

    def keep(self, row, score: float) -> None:
        score = min(max(float(score), 0.0), 1.0)
        known = self.best.get(row.id)
        if known is None or known.score < score:
            self.best[row.id] = Hit(row.kind, row.id, row.source_id, row.body, score)

    def ranked(self, limit: int) -> list[Hit]:
        """Best first; on a tie a QnA pair first (its answer was written for the question)."""
        order = sorted(self.best.values(), key=lambda h: (-h.score, h.kind != "qna", str(h.id)))
        return order[:limit]


def normalised(vector: Sequence[float]) -> list[float]:
    """``vector`` at unit length, as stored embeddings are (cosine is then a dot product)."""
    values = [float(x) for x in vector]
    norm = math.sqrt(sum(x * x for x in values))
    return [x / norm for x in values] if norm else values
