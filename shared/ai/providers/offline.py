"""The built-in provider: answers from the agent's own knowledge, with no model and no key.

It returns the best-matching QnA pair's answer, else the best knowledge chunk (cut at
a sentence near :data:`MAX_CHARS`). Knowledge that tries to speak as the system or to
give orders (:func:`shared.ai.prompt.looks_hostile`) is never repeated to a contact:
such a hit is passed over, and with no clean hit the provider has no answer (the
reply path hands the conversation off as ``low_confidence``).
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.ai.prompt import looks_hostile
from shared.ai.providers.base import (
    NO_ANSWER,
    Completion,
    Embeddings,
    ModelRequest,
    ProviderError,
    estimate_tokens,
)
from shared.ai.retrieval import Hit

#: Longest answer taken from a chunk.
MAX_CHARS = 700


def answer_of(hit: Hit) -> str:
    """What the contact reads for ``hit``: a QnA pair's answer, a chunk's text, a product."""
    text = hit.text.strip()
    if hit.kind == "qna":
        _question, _, answer = text.partition("\n")
        return (answer or text).strip()
    if len(text) <= MAX_CHARS:
        return text
    cut = text[:MAX_CHARS]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "), cut.rfind("\n"))
    return (cut[: end + 1] if end > MAX_CHARS // 3 else cut.rstrip() + "…").strip()


def best_clean_hit(hits: Sequence[Hit]) -> Hit | None:
    """The best hit whose text is plain knowledge (QnA pairs first at equal rank)."""
    clean = [h for h in hits if not looks_hostile(h.text)]
    if not clean:
        return None
    return max(clean, key=lambda h: (h.score, h.kind == "qna"))


class OfflineProvider:
    name = "offline"

    async def complete(self, request: ModelRequest) -> Completion:
        hit = best_clean_hit(request.hits)
        if hit is None:
            raise ProviderError(NO_ANSWER, "no knowledge matches the question")
        text = answer_of(hit)
        prompt_tokens = estimate_tokens(request.question) + estimate_tokens(hit.text)
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=estimate_tokens(text),
            model="offline",
            used_hits=(hit,),
        )

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """No embeddings offline: retrieval ranks by full text (an empty result says so)."""
        return Embeddings(vectors=[], model="offline")
