"""Rank an AI agent's knowledge (QnA pairs, chunks, products) for a contact's question.

PostgreSQL does the finding; this module decides what a match is worth, on one 0..1
scale for every kind, so one threshold (``AiAgent.confidence_threshold``) says whether
an answer is grounded:

1. The question's words, as PostgreSQL's ``simple`` parser reads them, minus common
   words ("what", "is", "the"...) unless nothing else is left, crudely stemmed
   (:func:`stem`), are OR-ed into one prefix ``tsquery``. The words, how many passages
   hold each (the agent's lexicon) and the corrections of step 4 take one round trip.
   Candidate passages are found in two tiers through the question's rarer words
   (:meth:`Terms.strict`, :meth:`Terms.searched`): those holding two of them, at most
   :data:`CANDIDATE_CAP`, and only when they are fewer than :data:`POOL`, those holding
   one (:data:`LOOSE_CAP`). Ranking reads every candidate's ``tsvector``, so the
   candidates are few and chosen: ranking every passage that holds a common word would
   cost seconds at 100,000 and tell little. ``ts_rank_cd`` (cover density) keeps the
   best :data:`POOL` of each kind.
2. Each pooled hit is scored by *coverage*, the share of the question's words it holds
   (PostgreSQL says which, for the pooled hits only), lifted a little by its cover
   density. A passage with every word of the question scores near 1; one with a third
   of them near 0.3.
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

import itertools
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
#: Candidate passages of the first tier ranked at most, whatever the counts say (they
#: may be stale): ranking reads each candidate's ``tsvector`` (TOASTed, ~1.6 kB), the
#: bulk of a query's cost.
CANDIDATE_CAP = 150
#: Candidate passages of the second tier (one rare word each: filling the pool only).
LOOSE_CAP = POOL
#: Rarest stems the first candidate tier pairs up (:meth:`Terms.strict`; 10 pairs).
STRICT_TERMS = 5
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

#: The question's words (in the tsvector's order) with, in the same round trip, how many
#: passages hold each, and for each unknown content word the closest word the agent's
#: passages still use (trigram GIN over the agent's lexicon with the agent in front,
#: ``ix_knowledge_terms_agent_trigram``: a tenth of a millisecond a word; a word whose
#: passages are all gone is no correction). ``checked``: a correction was looked for.
_WORDS = text(
    """
    WITH asked AS (
        SELECT w.word, w.n,
               w.word <> ALL(CAST(:stopwords AS text[]))
                 AND (length(w.word) > 1 OR w.word !~ '^[[:alpha:]]$') AS content
          FROM unnest(to_tsvector('simple', :question)) WITH ORDINALITY
               AS w(word, positions, weights, n)
    ), ranked AS (
        SELECT asked.*, k.chunks AS known,
               content AND k.chunks IS NULL AND length(word) >= :min_corrected
                 AND count(*) FILTER (WHERE content) OVER (ORDER BY n) <= :max_terms AS checked
          FROM asked
          LEFT JOIN knowledge_terms k
            ON k.ai_agent_id = :agent_id AND k.tenant_id = :tenant_id AND k.term = asked.word
    )
    SELECT r.word, r.known, r.checked, fix.term AS fixed, fix.chunks AS fixed_chunks
      FROM ranked r
      LEFT JOIN LATERAL (
           SELECT t.term, t.chunks
             FROM knowledge_terms t
            WHERE r.checked AND t.ai_agent_id = :agent_id AND t.tenant_id = :tenant_id
              AND t.term % r.word AND t.chunks > 0
            ORDER BY similarity(t.term, r.word) DESC, t.term
            LIMIT 1) AS fix ON true
     ORDER BY r.n
    """
)

#: The pool of each kind: QnA pairs and products by their agent-scoped indexes; passages
#: in two tiers: at most ``:cap`` holding two of the question's rarest words
#: (``:strict``), and only when they are fewer than the pool, at most ``:loose_cap``
#: holding one of them (``:searched``). ``matched`` is which of the question's terms an
#: item holds, so only the pooled items are looked into, never every word of each one.
#: ``reach``: a stored question of ``L`` characters has at most ``2L + 2`` trigrams, and
#: trigram similarity is at most the ratio of the two sets' sizes, so a question too short
#: to reach the match threshold against a long message is not compared with it (a pasted
#: page against 500 pairs cost 40 ms); its words still count through full text.
_FULL_TEXT = text(
    """
    WITH query AS (
        SELECT to_tsquery('simple', :tsquery) AS q,
               coalesce(array_length(show_trgm(:question), 1), 0) * show_limit() AS reach
    ),
    terms AS (
        SELECT to_tsquery('simple', t.q) AS q, t.i
          FROM unnest(CAST(:term_queries AS text[])) WITH ORDINALITY AS t(q, i)
    ),
    strict AS MATERIALIZED (
        SELECT id, source_id, content, search,
               CASE WHEN :with_vectors THEN embedding END AS embedding
          FROM knowledge_chunks
         WHERE ai_agent_id = :agent_id AND tenant_id = :tenant_id
           AND search @@ to_tsquery('simple', :strict)
         LIMIT :cap
    ),
    loose AS (
        SELECT id, source_id, content, search,
               CASE WHEN :with_vectors THEN embedding END AS embedding
          FROM knowledge_chunks
         WHERE (SELECT count(*) FROM strict) < :pool
           AND ai_agent_id = :agent_id AND tenant_id = :tenant_id
           AND search @@ to_tsquery('simple', :searched)
           AND NOT search @@ to_tsquery('simple', :strict)
         LIMIT :loose_cap
    ),
    pool AS (
        (SELECT 'qna' AS kind, p.id, p.source_id, p.question || E'\\n' || p.answer AS body,
                p.search, ts_rank_cd(p.search, query.q, 32) AS rank,
                s.question_similarity,
                CASE WHEN :with_vectors THEN p.embedding END AS embedding
           FROM qna_pairs p, query,
                LATERAL (SELECT CASE WHEN 2 * length(p.question) + 2 >= query.reach
                                     THEN similarity(p.question, :question) ELSE 0.0
                                END AS question_similarity) AS s
          WHERE p.ai_agent_id = :agent_id AND p.tenant_id = :tenant_id
            AND (p.search @@ query.q
                 OR (2 * length(p.question) + 2 >= query.reach AND p.question % :question))
          ORDER BY greatest(ts_rank_cd(p.search, query.q, 32), s.question_similarity) DESC
          LIMIT :pool)
        UNION ALL
        (SELECT 'chunk', c.id, c.source_id, c.content, c.search,
                ts_rank_cd(c.search, query.q, 32), 0.0,
                c.embedding
           FROM (SELECT * FROM strict UNION ALL SELECT * FROM loose) AS c, query
          ORDER BY ts_rank_cd(c.search, query.q, 32) DESC
          LIMIT :pool)
        UNION ALL
        (SELECT 'product', p.id, NULL, p.name || coalesce(E'\\n' || p.description, ''),
                p.search, ts_rank_cd(p.search, query.q, 32), 0.0,
                CASE WHEN :with_vectors THEN p.embedding END
           FROM ai_products p, query
          WHERE p.ai_agent_id = :agent_id AND p.tenant_id = :tenant_id AND p.search @@ query.q
          ORDER BY ts_rank_cd(p.search, query.q, 32) DESC
          LIMIT :pool)
    )
    SELECT kind, id, source_id, body, rank, question_similarity, embedding,
           array(SELECT terms.i FROM terms WHERE pool.search @@ terms.q) AS matched
      FROM pool
    """
)

#: The closest known word to each unknown one, for the words :data:`_WORDS` did not
#: look at (a question of stopwords only).
_CORRECTIONS = text(
    """
    SELECT asked, best.term, best.chunks
      FROM unnest(CAST(:words AS text[])) AS asked
     CROSS JOIN LATERAL (
           SELECT k.term, k.chunks
             FROM knowledge_terms k
            WHERE k.ai_agent_id = :agent_id AND k.tenant_id = :tenant_id AND k.term % asked
              AND k.chunks > 0
            ORDER BY similarity(k.term, asked) DESC, k.term
            LIMIT 1) AS best
    """
)

#: Cosine alone (vectors are stored unit length, so it is a dot product), over the items
#: embedded at the question's size (others are another model's, see :func:`blend`).
_BY_VECTOR = text(
    """
    SELECT kind, id, source_id, body,
           (SELECT sum(a * b) FROM unnest(embedding, :vector) AS t(a, b)) AS cosine
      FROM (
        (SELECT 'qna' AS kind, id, source_id, question || E'\\n' || answer AS body, embedding
           FROM qna_pairs WHERE tenant_id = :tenant_id AND ai_agent_id = :agent_id
            AND cardinality(embedding) = :dims LIMIT :scan)
        UNION ALL
        (SELECT 'chunk', id, source_id, content, embedding
           FROM knowledge_chunks WHERE tenant_id = :tenant_id AND ai_agent_id = :agent_id
            AND cardinality(embedding) = :dims LIMIT :scan)
        UNION ALL
        (SELECT 'product', id, NULL, name || coalesce(E'\\n' || description, ''), embedding
           FROM ai_products WHERE tenant_id = :tenant_id AND ai_agent_id = :agent_id
            AND cardinality(embedding) = :dims LIMIT :scan)
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

    def _by_rarity(self) -> list[str]:
        """The stems some passage holds (or may: never looked up), the rarest first."""
        counted = ((self.passages.get(s, COMMON), s) for s in self.stems)
        return [term for count, term in sorted(counted) if count != 0]

    def searched(self) -> list[str]:
        """The stems candidates are looked up by: the rarest first, until together they
        hold :data:`CANDIDATE_BUDGET` passages (a common word alone finds nothing in
        particular, and ranking every passage holding it would cost seconds).
        """
        picked, total = [], 0
        for term in self._by_rarity():
            count = self.passages.get(term, COMMON)
            if picked and total + count > CANDIDATE_BUDGET:
                break
            picked.append(term)
            total += count
        return picked or list(self.stems)

    def strict(self) -> str:
        """The tsquery of the first candidate tier: any two of the rarest stems (the
        searched ones, at least two, at most :data:`STRICT_TERMS`). A passage holding
        two rare words of the question is worth ranking; one holding one of them is
        mostly noise, looked at only when the first tier finds too few.
        """
        rarest = self._by_rarity()
        rare = rarest[: min(max(len(self.searched()), 2), STRICT_TERMS)]
        if len(rare) < 2:
            return _tsquery(rare or self.stems)
        return " | ".join(
            f"({_tsquery([a])} & {_tsquery([b])})" for a, b in itertools.combinations(rare, 2)
        )


def question_terms_for(
    session: Session, tenant_id: uuid.UUID, agent_id: uuid.UUID, question: str
) -> Terms:
    """The question's stems, unknown words replaced by the lexicon's closest (counting
    less): one round trip (:data:`_WORDS`), a second only for a question of stopwords."""
    rows = session.execute(
        _WORDS,
        {
            "question": question,
            "agent_id": agent_id,
            "tenant_id": tenant_id,
            "stopwords": sorted(STOPWORDS),
            "min_corrected": MIN_CORRECTED,
            "max_terms": MAX_TERMS,
        },
    ).all()
    words = question_words([row.word for row in rows])
    best: dict[str, tuple[str, int]] = {}
    checked: set[str] = set()
    for row in rows:
        if row.known is not None:
            best[row.word] = (row.word, row.known)
        elif row.fixed is not None:
            best[row.word] = (row.fixed, row.fixed_chunks)
        if row.checked:
            checked.add(row.word)
    unknown = [w for w in words if w not in best and w not in checked and len(w) >= MIN_CORRECTED]
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
    """Text score and cosine similarity together, when both the item and question have one.

    A vector of another size is another model's (the agent's embedding model changed and
    the item is not embedded again yet): it says nothing, like a missing one.
    """
    if not vector or not query or len(vector) != len(query):
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
    terms = question_terms_for(session, tenant_id, ai_agent_id, params["question"])
    if terms.stems:
        queries = {
            "tsquery": _tsquery(terms.stems),
            "term_queries": [_tsquery([term]) for term in terms.stems],
            "searched": _tsquery(terms.searched()),
            "strict": terms.strict(),
            "cap": CANDIDATE_CAP,
            "loose_cap": LOOSE_CAP,
        }
        for row in session.execute(_FULL_TEXT, params | queries):
            held = [terms.stems[i - 1] for i in row.matched]
            lexical = lexical_score(terms.stems, held, row.rank, terms.fuzzy)
            if row.kind == "qna":
                lexical = qna_score(lexical, row.question_similarity)
            hits.keep(row, blend(lexical, row.embedding, query_embedding))
    if not hits.best and query_embedding is not None:
        vector = normalised(query_embedding)
        scan = {"vector": vector, "dims": len(vector), "scan": VECTOR_SCAN_LIMIT, "limit": limit}
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
